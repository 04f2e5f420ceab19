// Server-Sent Events framing for live reads (PROTOCOL.md §5.8).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ds {

enum class SseDataEncoding {
  kText,    // text/* and application/json: UTF-8 carried as is
  kBase64,  // every other content type
};

// Appends an `event: data` block. Text payloads are split on line breaks
// into `data:` lines (SSE joins them back with '\n'); base64 payloads are
// written as lines of at most 76 characters.
void AppendSseData(std::string_view payload, SseDataEncoding encoding,
                   std::string* out);

struct SseControl {
  std::string next_offset;
  std::string cursor;  // omitted when empty
  bool up_to_date = false;
  bool closed = false;
};

// Appends an `event: control` block carrying the JSON object
// {"streamNextOffset":…,"streamCursor":…,"upToDate":true,"streamClosed":true}
// and then `id: <streamNextOffset>`.
void AppendSseControl(const SseControl& control, std::string* out);

// A comment line that keeps idle connections alive through proxies.
void AppendSseKeepalive(std::string* out);

}  // namespace ds
