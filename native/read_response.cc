#include "read_response.h"

#include "offset.h"

namespace ds {
namespace {

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view Opaque(std::string_view tag) {
  if (tag.substr(0, 2) == "W/") tag.remove_prefix(2);
  return tag;
}

}  // namespace

std::string ChunkETag(const Stream& stream, const ChunkRead& chunk) {
  std::string etag = "\"";
  etag += std::to_string(stream.id);
  etag += ':';
  etag += std::to_string(chunk.from);
  etag += ':';
  etag += std::to_string(chunk.end);
  if (chunk.reaches_closed_tail()) etag += ":c";
  etag += '"';
  return etag;
}

bool ETagMatches(std::string_view if_none_match, std::string_view etag) {
  std::string_view wanted = Opaque(etag);
  while (!if_none_match.empty()) {
    size_t comma = if_none_match.find(',');
    std::string_view candidate = TrimSpaces(if_none_match.substr(0, comma));
    if (candidate == "*" || Opaque(candidate) == wanted) return true;
    if (comma == std::string_view::npos) break;
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

Response ChunkResponse(const Stream& stream, const ChunkRead& chunk) {
  Response r;
  r.Set(header::kContentType, stream.config.content_type);
  r.Set(header::kStreamNextOffset, EncodeOffset(chunk.end));
  if (chunk.up_to_date()) r.Set(header::kStreamUpToDate, "true");
  if (chunk.reaches_closed_tail()) r.Set(header::kStreamClosed, "true");
  r.Set(header::kCacheControl, std::string(kCachePublicChunk));
  return r;
}

}  // namespace ds
