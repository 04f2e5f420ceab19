// GET: catch-up reads (§5.6) and the entry to live reads (§5.7, §5.8).
#include "engine.h"
#include "offset.h"
#include "read_response.h"

namespace ds {
namespace {

enum class LiveMode { kNone, kLongPoll, kSse };

// A plain EventSource reconnects with its original URL and sends the id of
// the last event it saw, which is the streamNextOffset of the last control
// event (sse.cc). Resuming there gives it neither duplicates nor gaps. The
// id wins only when it is a valid offset of this stream at or after the
// URL's offset (at `now`, the URL's start was the tail of an earlier
// connection, so any retained offset is); anything else is ignored, so the
// header cannot move a reader before the offset its URL asked for.
uint64_t SseResumeOffset(std::optional<std::string_view> last_event_id, uint64_t url_offset,
                         bool url_at_now, uint64_t earliest, uint64_t tail) {
  if (!last_event_id) return url_offset;
  std::optional<uint64_t> id = DecodeOffset(*last_event_id);
  uint64_t floor = url_at_now ? earliest : url_offset;
  if (!id || *id < floor || *id > tail) return url_offset;
  return *id;
}

}  // namespace

Response Engine::Read(const Request& request, uint64_t session_id) {
  ReadParams params = ParseReadParams(request.query);
  LiveMode live = LiveMode::kNone;
  if (params.live) {
    if (*params.live == "long-poll") {
      live = LiveMode::kLongPoll;
    } else if (*params.live == "sse") {
      live = LiveMode::kSse;
    } else {
      return ErrorResponse(400, "live must be long-poll or sse");
    }
  }
  if (params.offset_repeated) return ErrorResponse(400, "offset given more than once");
  if (live != LiveMode::kNone && !params.offset) {
    return ErrorResponse(400, "live reads need an offset");
  }

  StreamPtr stream = Lookup(std::string(request.path));
  if (stream == nullptr) return ErrorResponse(404, "stream not found");
  uint64_t tail;
  bool closed;
  {
    std::lock_guard lock(stream->mu);
    if (stream->soft_deleted) return ErrorResponse(410, "stream was deleted");
    if (stream->deleted) return ErrorResponse(404, "stream not found");
    stream->last_access_ms = clock_->NowMs();  // reads reset a sliding TTL
    tail = stream->tail.load();
    closed = stream->closed_visible;
    NoteAccess(stream);
  }

  // Retention may have dropped the oldest bytes: "-1" (the start) is then
  // the earliest retained offset, and an offset below it is gone (§5.6).
  const uint64_t earliest = stream->EarliestOffset();
  uint64_t offset = earliest;
  bool at_now = false;
  if (params.offset && *params.offset != "-1") {
    if (*params.offset == "now") {
      offset = tail;
      at_now = true;
    } else {
      auto decoded = DecodeOffset(*params.offset);
      if (!decoded) return ErrorResponse(400, "malformed offset");
      if (*decoded > tail) return ErrorResponse(400, "offset is beyond the stream's tail");
      if (*decoded < earliest) {
        return ErrorResponse(410, "offset is before the earliest retained offset");
      }
      offset = *decoded;
    }
  }

  if (live == LiveMode::kSse) {
    offset = SseResumeOffset(request.header(DS_FIELD_LAST_EVENT_ID), offset, at_now,
                             earliest, tail);
  }

  std::string cursor = params.cursor.value_or(std::string());
  if (live == LiveMode::kLongPoll) return StartLongPoll(stream, offset, cursor, session_id);
  if (live == LiveMode::kSse) return StartSse(stream, offset, cursor, session_id);

  if (at_now) {
    Response r;
    r.Set(header::kContentType, stream->config.content_type);
    r.Set(header::kStreamNextOffset, EncodeOffset(tail));
    r.Set(header::kStreamUpToDate, "true");
    if (closed) r.Set(header::kStreamClosed, "true");
    r.Set(header::kCacheControl, std::string(kCacheNoStore));
    if (stream->json) r.body = "[]";
    return r;
  }
  ChunkRead chunk{offset, CatchUpChunkEnd(*stream, offset, tail), tail, closed};
  std::string etag = ChunkETag(*stream, chunk);
  if (auto inm = request.header(DS_FIELD_IF_NONE_MATCH); inm && ETagMatches(*inm, etag)) {
    Response r;
    r.status = 304;
    r.Set(header::kETag, etag);
    r.Set(header::kCacheControl, std::string(kCachePublicChunk));
    r.Set(header::kStreamNextOffset, EncodeOffset(chunk.end));
    return r;
  }
  Response r = ChunkResponse(*stream, chunk);
  r.Set(header::kETag, std::move(etag));
  // Bytes in segment files go out with sendfile and bytes in memory blocks
  // are written from the blocks themselves, never through a buffer; JSON
  // mode frames its messages, so it is always copied.
  if (!stream->json && chunk.end - chunk.from >= kSendfileMinBytes) {
    if (stream->OpenFiles(chunk.from, chunk.end, &r.files).ok()) return r;
    r.files.clear();
    if (stream->PinRange(chunk.from, chunk.end, &r.pieces).ok()) return r;
    r.pieces.clear();
    // Segment blocks not checked since the start: check them a cap at a
    // time (the copying read does), then send the range from the files,
    // so a far chunk never needs a buffer of its size.
    if (chunk.end - chunk.from > options_.max_read_bytes) {
      Status s = CheckRange(*stream, chunk.from, chunk.end);
      if (!s.ok()) return StorageFailure(s);
      if (stream->OpenFiles(chunk.from, chunk.end, &r.files).ok()) return r;
      r.files.clear();
    }
  }
  Status s = AppendBody(*stream, chunk.from, chunk.end, &r.body);
  if (!s.ok()) return StorageFailure(s);
  return r;
}

}  // namespace ds
