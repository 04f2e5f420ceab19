// The answers to a request whose body the HTTP layer refused to read
// (ds_request.body_too_large, ds_request.body_over_budget).
#pragma once

#include <cstdint>
#include <optional>

#include "request.h"
#include "response.h"

namespace ds {

// Seconds a shed client is asked to wait before retrying (Retry-After).
inline constexpr int kBodyRetryAfterSeconds = 1;

// 413 for a body over max_append_bytes, 503 with Retry-After for one the
// in-flight budget had no room for; nullopt when the body was read whole.
// An append or create checks this first: nothing else about the request
// matters when its bytes are missing.
std::optional<Response> RefuseUnreadBody(const Request& request, uint64_t max_append_bytes);

}  // namespace ds
