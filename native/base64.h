// Standard base64 (RFC 4648, with padding) for SSE data events on binary
// streams (PROTOCOL.md §5.8).
#pragma once

#include <string>
#include <string_view>

namespace ds {

void AppendBase64(std::string_view bytes, std::string* out);

}  // namespace ds
