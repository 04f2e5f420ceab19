// A response as the engine decides it: status, headers, body, and for live
// reads what the caller should do next (see ds_live in durable_streams.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "durable_streams.h"
#include "stream_log.h"

namespace ds {

// Header names in Go's canonical form (what net/http would produce), so the
// Go side can store them without re-canonicalising.
namespace header {
inline constexpr std::string_view kContentType = "Content-Type";
inline constexpr std::string_view kCacheControl = "Cache-Control";
inline constexpr std::string_view kETag = "Etag";
inline constexpr std::string_view kLocation = "Location";
inline constexpr std::string_view kAllow = "Allow";
inline constexpr std::string_view kRetryAfter = "Retry-After";
inline constexpr std::string_view kStreamNextOffset = "Stream-Next-Offset";
inline constexpr std::string_view kStreamUpToDate = "Stream-Up-To-Date";
inline constexpr std::string_view kStreamClosed = "Stream-Closed";
inline constexpr std::string_view kStreamCursor = "Stream-Cursor";
inline constexpr std::string_view kStreamTtl = "Stream-Ttl";
inline constexpr std::string_view kStreamExpiresAt = "Stream-Expires-At";
inline constexpr std::string_view kSseDataEncoding = "Stream-Sse-Data-Encoding";
inline constexpr std::string_view kProducerEpoch = "Producer-Epoch";
inline constexpr std::string_view kProducerSeq = "Producer-Seq";
inline constexpr std::string_view kProducerExpectedSeq = "Producer-Expected-Seq";
inline constexpr std::string_view kProducerReceivedSeq = "Producer-Received-Seq";
inline constexpr std::string_view kNoSniff = "X-Content-Type-Options";
inline constexpr std::string_view kCorp = "Cross-Origin-Resource-Policy";
inline constexpr std::string_view kAllowOrigin = "Access-Control-Allow-Origin";
inline constexpr std::string_view kAllowMethods = "Access-Control-Allow-Methods";
inline constexpr std::string_view kAllowHeaders = "Access-Control-Allow-Headers";
inline constexpr std::string_view kExposeHeaders = "Access-Control-Expose-Headers";
inline constexpr std::string_view kMaxAge = "Access-Control-Max-Age";
inline constexpr std::string_view kContentDisposition = "Content-Disposition";
}  // namespace header

// Cache-Control values (§5.5, §10.1, §12.7).
inline constexpr std::string_view kCacheNoStore = "no-store";
inline constexpr std::string_view kCachePublicChunk =
    "public, max-age=60, stale-while-revalidate=300";

struct Response {
  int status = 200;
  std::vector<std::pair<std::string_view, std::string>> headers;
  std::string body;
  // Sent after `body`, straight from files (sendfile): a catch-up read of
  // bytes in segment files. Part of the body for Content-Length.
  std::vector<FileRange> files;
  // Sent after `body` and before `files`, straight from pinned engine
  // memory (a catch-up read of a memory log). Part of the body too.
  std::vector<MemoryRange> pieces;
  ds_live live = DS_LIVE_NONE;
  uint64_t session = 0;
  uint64_t wait_ms = 0;
  bool done = false;

  // A read answers with about a dozen headers: room for them at the first,
  // not five reallocations on the way there.
  static constexpr size_t kReservedHeaders = 16;

  Response& Set(std::string_view name, std::string value) {
    if (headers.capacity() == 0) headers.reserve(kReservedHeaders);
    headers.emplace_back(name, std::move(value));
    return *this;
  }
};

// A protocol error: `status` with a one-line text/plain message.
Response ErrorResponse(int status, std::string_view message);

// Serialises headers as "Name\0value\0..." for ds_response.
std::string EncodeHeaders(const Response& response);

}  // namespace ds
