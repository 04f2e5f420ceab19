// Writing JSON text by hand (the subscription API's responses, webhook
// bodies and stored records): strings escaped per RFC 8259.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ds {

inline void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[(c >> 4) & 0xf]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

inline std::string JsonString(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

// Milliseconds since the epoch as RFC 3339 UTC with milliseconds
// ("2026-05-09T00:00:00.000Z").
std::string IsoTimeMs(int64_t ms);

}  // namespace ds
