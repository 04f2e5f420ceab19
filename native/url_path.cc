#include "url_path.h"

namespace ds {
namespace {

// pchar (RFC 3986 §3.3) plus '/', minus pct-encoded: the bytes kept raw.
constexpr bool KeepRaw(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-': case '.': case '_': case '~':                        // unreserved
    case '!': case '$': case '&': case '\'': case '(': case ')':  // sub-delims
    case '*': case '+': case ',': case ';': case '=':
    case ':': case '@': case '/':
      return true;
    default:
      return false;
  }
}

}  // namespace

void AppendEncodedPath(std::string_view path, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out->reserve(out->size() + path.size());
  for (char ch : path) {
    auto c = static_cast<unsigned char>(ch);
    if (KeepRaw(c)) {
      out->push_back(ch);
    } else {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 0xF]);
    }
  }
}

std::string EncodePath(std::string_view path) {
  std::string out;
  AppendEncodedPath(path, &out);
  return out;
}

}  // namespace ds
