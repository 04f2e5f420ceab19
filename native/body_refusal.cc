#include "body_refusal.h"

#include <string>

namespace ds {

std::optional<Response> RefuseUnreadBody(const Request& request, uint64_t max_append_bytes) {
  if (request.body_too_large) {
    return ErrorResponse(413, "request body exceeds the server's append size limit (" +
                                  std::to_string(max_append_bytes) + " bytes)");
  }
  if (request.body_over_budget) {
    Response r = ErrorResponse(
        503, "the server is receiving too many request bodies at once; retry later");
    r.Set(header::kRetryAfter, std::to_string(kBodyRetryAfterSeconds));
    return r;
  }
  return std::nullopt;
}

}  // namespace ds
