// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for the subscription
// callback and claim tokens (subscription_token.h). Small and dependency
// free: the engine links no crypto library.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace ds {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);
Sha256Digest HmacSha256(std::string_view key, std::string_view message);

// Equality that takes the same time wherever the inputs differ (token
// checks must not tell an attacker how many leading bytes were right).
bool ConstantTimeEqual(std::string_view a, std::string_view b);

}  // namespace ds
