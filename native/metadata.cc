// HEAD (§5.5), DELETE (§5.4) and CORS preflight.
#include "engine.h"
#include "expiry.h"
#include "offset.h"

namespace ds {

Response Engine::Head(const Request& request) {
  // HEAD must not reset a sliding TTL (§5.1), so it only looks.
  StreamPtr stream = Lookup(std::string(request.path));
  if (stream == nullptr) return ErrorResponse(404, "stream not found");
  Response r;
  std::lock_guard lock(stream->mu);
  if (stream->soft_deleted) return ErrorResponse(410, "stream was deleted");
  r.Set(header::kContentType, stream->config.content_type);
  r.Set(header::kStreamNextOffset, EncodeOffset(stream->tail.load()));
  if (stream->config.ttl_seconds) {
    r.Set(header::kStreamTtl, std::to_string(*stream->config.ttl_seconds));
  }
  if (stream->config.expires_at_ms) {
    r.Set(header::kStreamExpiresAt, FormatRfc3339Ms(*stream->config.expires_at_ms));
  }
  if (stream->closed_visible) r.Set(header::kStreamClosed, "true");
  r.Set(header::kCacheControl, std::string(kCacheNoStore));
  return r;
}

Response Engine::Delete(const Request& request) {
  StreamPtr stream = Lookup(std::string(request.path));
  if (stream == nullptr) return ErrorResponse(404, "stream not found");
  {
    std::lock_guard lock(stream->mu);
    if (stream->soft_deleted) return ErrorResponse(410, "stream was deleted");
  }
  if (auto refused = RefuseWrites()) return *refused;
  Status s = Remove(stream);
  if (!s.ok()) return StorageFailure(s);
  Response r;
  r.status = 204;
  return r;
}

Response Engine::Preflight(const Request& request) {
  Response r;
  r.status = 204;
  r.Set(header::kAllowMethods, "GET, HEAD, POST, PUT, DELETE, OPTIONS");
  auto requested = request.header(DS_FIELD_ACCESS_CONTROL_REQUEST_HEADERS);
  r.Set(header::kAllowHeaders,
        requested && !requested->empty()
            ? std::string(*requested)
            : std::string("Content-Type, Stream-TTL, Stream-Expires-At, Stream-Closed, "
                          "Stream-Seq, Producer-Id, Producer-Epoch, Producer-Seq, "
                          "If-None-Match, Stream-Forked-From, Stream-Fork-Offset, "
                          "Stream-Fork-Sub-Offset, Authorization"));
  r.Set(header::kMaxAge, "86400");
  return r;
}

}  // namespace ds
