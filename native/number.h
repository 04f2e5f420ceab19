// The one grammar the protocol uses for decimal header values (Stream-TTL,
// Stream-Fork-Sub-Offset): "0" or a non-zero digit followed by digits. No
// sign, no leading zeros, no fraction, no exponent, no spaces.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace ds {

// Returns nullopt when `text` breaks the grammar or exceeds `max`.
inline std::optional<uint64_t> ParseCanonicalUint(std::string_view text, uint64_t max) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  if (text.size() > 1 && text[0] == '0') return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (value > max) return std::nullopt;
  return value;
}

}  // namespace ds
