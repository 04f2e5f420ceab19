// A complete HTTP/1.1 response, byte for byte as Go's net/http writes what
// the HTTP layer's writeResponse sets (caddymodule/serve.go), for a
// long-poll whose connection the engine took over (long_poll_takeover): the
// engine answers it itself, and the client must not be able to tell.
//
// What the Go side does, reproduced here:
//   - writeHeader: the engine's headers replace what earlier middleware set
//     under the same name, except an Access-Control-* header middleware set
//     (the user's CORS configuration wins); a name the engine repeats gets
//     every value; Content-Length (the body's size) unless a header set it,
//     for statuses that have a body.
//   - Connection: close unless keep_alive (the engine closes the connection
//     after the answer), where net/http puts it when it closes: after Date,
//     replacing a Connection header that does not already say close.
//   - net/http: "HTTP/1.1 <code> <text>", the header map sorted by name,
//     each value with CR/LF turned into spaces and surrounding blanks
//     trimmed, no Content-Length/Transfer-Encoding on 1xx/204/304 (nor
//     Content-Type on 304), then Date (unless set), an empty line, the body.
// Content-Type sniffing is not reproduced: every engine answer with a body
// names its type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "response.h"

namespace ds {

// `middleware_headers` is what the handler's header map held when the
// request parked, encoded "Name\0value\0..." (one pair per value, names as
// the map stores them). `now_unix_seconds` is the Date.
// With keep_alive the connection stays open for the next request (the
// HTTP layer reads it), so there is no Connection: close.
std::string RenderHttp1Answer(std::string_view middleware_headers, const Response& response,
                              int64_t now_unix_seconds, bool keep_alive = false);

}  // namespace ds
