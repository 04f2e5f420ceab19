// Stream lifetime headers (PROTOCOL.md §5.1): `Stream-TTL` (sliding, in
// seconds) and `Stream-Expires-At` (absolute, RFC 3339).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ds {

// Largest TTL we accept: 100 years. Larger values are almost certainly a
// client bug and would overflow millisecond arithmetic.
inline constexpr uint64_t kMaxTtlSeconds = 100ull * 366 * 24 * 3600;

// Accepts only a non-negative decimal integer without sign, leading zeros,
// fraction or exponent: "0", "3600". Rejects "+3600", "03600", "3.6e3".
std::optional<uint64_t> ParseTtlSeconds(std::string_view text);

// Parses an RFC 3339 date-time ("2025-01-02T03:04:05Z",
// "2025-01-02T03:04:05.123+02:00") into milliseconds since the Unix epoch.
std::optional<int64_t> ParseRfc3339Ms(std::string_view text);

// Formats milliseconds since the epoch as RFC 3339 in UTC with millisecond
// precision: "2025-01-02T03:04:05.123Z".
std::string FormatRfc3339Ms(int64_t ms);

}  // namespace ds
