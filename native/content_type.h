// Content-Type handling: stream type matching (§5.2, §12.4) and the
// SSE/JSON-mode classifications (§5.8, §9).
#pragma once

#include <string>
#include <string_view>

namespace ds {

inline constexpr std::string_view kDefaultContentType = "application/octet-stream";

// The media type without parameters, trimmed and lower-cased:
// "Application/JSON; charset=utf-8" -> "application/json".
std::string MediaType(std::string_view content_type);

// Two content types name the same stream type when their media types match.
bool SameMediaType(std::string_view a, std::string_view b);

bool IsJsonMediaType(std::string_view content_type);

// text/* and application/json travel as text in SSE; all else as base64.
bool IsSseTextType(std::string_view content_type);

}  // namespace ds
