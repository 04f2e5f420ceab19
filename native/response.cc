#include "response.h"

namespace ds {

Response ErrorResponse(int status, std::string_view message) {
  Response r;
  r.status = status;
  r.Set(header::kContentType, "text/plain; charset=utf-8");
  r.Set(header::kCacheControl, std::string(kCacheNoStore));
  r.body.assign(message);
  r.body.push_back('\n');
  return r;
}

std::string EncodeHeaders(const Response& response) {
  size_t size = 0;
  for (const auto& [name, value] : response.headers) {
    size += name.size() + value.size() + 2;
  }
  std::string out;
  out.reserve(size);
  for (const auto& [name, value] : response.headers) {
    out.append(name);
    out.push_back('\0');
    out.append(value);
    out.push_back('\0');
  }
  return out;
}

}  // namespace ds
