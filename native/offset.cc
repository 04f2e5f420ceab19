#include "offset.h"

namespace ds {
namespace {

bool ParseField(std::string_view digits, uint64_t* value) {
  *value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    *value = *value * 10 + static_cast<uint64_t>(c - '0');
  }
  return true;
}

}  // namespace

std::string EncodeOffset(uint64_t position) {
  std::string out = "0000000000000000_0000000000000000";
  for (size_t i = kOffsetWidth; i > 17 && position != 0; --i) {
    out[i - 1] = static_cast<char>('0' + position % 10);
    position /= 10;
  }
  return out;
}

std::optional<uint64_t> DecodeOffset(std::string_view token) {
  if (token.size() != kOffsetWidth || token[16] != '_') return std::nullopt;
  uint64_t reserved, position;
  if (!ParseField(token.substr(0, 16), &reserved) ||
      !ParseField(token.substr(17), &position)) {
    return std::nullopt;
  }
  if (reserved != 0) return UINT64_MAX;  // well-formed, but never ours
  return position;
}

}  // namespace ds
