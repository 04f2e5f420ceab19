// The headers shared by every response that carries a chunk of a stream:
// catch-up reads and long-poll deliveries (§5.6, §5.7, §10.1).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "response.h"
#include "stream.h"

namespace ds {

struct ChunkRead {
  uint64_t from;
  uint64_t end;   // exclusive; the response's Stream-Next-Offset
  uint64_t tail;  // the stream's tail when the response was generated
  bool closed;    // the stream's closure when the response was generated

  bool up_to_date() const { return end == tail; }
  // EOF is signalled only with the chunk that reaches a closed tail.
  bool reaches_closed_tail() const { return closed && end == tail; }
};

// `"<stream id>:<from>:<end>"`, with `:c` when the chunk reaches the tail of
// a closed stream, so closing a stream changes the ETag of its tail read.
std::string ChunkETag(const Stream& stream, const ChunkRead& chunk);

// Whether an If-None-Match value (a list of entity tags, or `*`) names
// `etag`. Weak comparison, as RFC 9110 prescribes for If-None-Match.
bool ETagMatches(std::string_view if_none_match, std::string_view etag);

// 200 with Content-Type, Stream-Next-Offset, Stream-Up-To-Date,
// Stream-Closed and Cache-Control for `chunk`; no body yet.
Response ChunkResponse(const Stream& stream, const ChunkRead& chunk);

}  // namespace ds
