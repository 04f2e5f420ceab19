// PUT: create a stream, or confirm an identical one (§5.1), including forks
// (§4.2).
#include <optional>

#include "body_refusal.h"
#include "content_type.h"
#include "engine.h"
#include "expiry.h"
#include "json_mode.h"
#include "number.h"
#include "offset.h"
#include "url_path.h"

namespace ds {
namespace {

// Reads Stream-TTL and Stream-Expires-At into `config`; on a bad value
// returns the 400 to send.
std::optional<Response> ParseLifetime(const Request& request, StreamConfig* config) {
  auto ttl = request.header(DS_FIELD_STREAM_TTL);
  auto expires = request.header(DS_FIELD_STREAM_EXPIRES_AT);
  if (ttl && expires) {
    return ErrorResponse(400, "Stream-TTL and Stream-Expires-At are mutually exclusive");
  }
  if (ttl) {
    config->ttl_seconds = ParseTtlSeconds(*ttl);
    if (!config->ttl_seconds) {
      return ErrorResponse(400, "Stream-TTL must be a non-negative integer number of seconds");
    }
  }
  if (expires) {
    config->expires_at_ms = ParseRfc3339Ms(*expires);
    if (!config->expires_at_ms) {
      return ErrorResponse(400, "Stream-Expires-At must be an RFC 3339 timestamp");
    }
  }
  return std::nullopt;
}

bool SameConfig(const StreamConfig& a, const StreamConfig& b) {
  return SameMediaType(a.content_type, b.content_type) && a.ttl_seconds == b.ttl_seconds &&
         a.expires_at_ms == b.expires_at_ms;
}

// A PUT body in storage form, viewed in *out: JSON streams validate and
// frame it into *framed (an empty array creates an empty stream, §9.1.3);
// others keep the body's own bytes, not a copy (a large body would
// otherwise be held twice until it is stored).
std::optional<Response> InitialContent(const Request& request, bool json, std::string* framed,
                                       std::string_view* out) {
  if (!json || request.body.empty()) {
    *out = request.body;
    return std::nullopt;
  }
  size_t messages;
  std::string error =
      EncodeJsonMessages(request.body, JsonAppendKind::kCreate, framed, &messages);
  if (!error.empty()) return ErrorResponse(400, error);
  *out = *framed;
  return std::nullopt;
}

// The headers of a successful create or confirm.
Response CreatedResponse(const Request& request, int status, const Stream& stream,
                         uint64_t tail, bool closed) {
  Response r;
  r.status = status;
  if (status == 201) {
    // Absolute when the HTTP layer told us how the client reached us.
    // The path is percent-encoded again: following Location must reach
    // this stream, whatever bytes (?, #, %, space, CR/LF, UTF-8) it holds.
    std::string location(request.header(DS_FIELD_REQUEST_BASE).value_or(""));
    AppendEncodedPath(stream.path, &location);
    r.Set(header::kLocation, std::move(location));
  }
  r.Set(header::kContentType, stream.config.content_type);
  r.Set(header::kStreamNextOffset, EncodeOffset(tail));
  if (closed) r.Set(header::kStreamClosed, "true");
  return r;
}

}  // namespace

Response Engine::Create(const Request& request) {
  if (auto refused = RefuseUnreadBody(request, max_append_bytes_.load(std::memory_order_relaxed))) return *refused;
  StreamConfig config;
  if (auto error = ParseLifetime(request, &config)) return *error;
  bool closed = HeaderIsTrue(request.header(DS_FIELD_STREAM_CLOSED));
  if (request.has(DS_FIELD_STREAM_FORKED_FROM)) {
    return CreateFork(request, std::move(config), closed);
  }
  if (request.has(DS_FIELD_STREAM_FORK_OFFSET) || request.has(DS_FIELD_STREAM_FORK_SUB_OFFSET)) {
    return ErrorResponse(400, "Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From");
  }
  auto content_type = request.header(DS_FIELD_CONTENT_TYPE);
  config.content_type = content_type && !content_type->empty()
                            ? std::string(*content_type)
                            : std::string(kDefaultContentType);

  std::string framed;
  std::string_view initial;
  if (auto error = InitialContent(request, IsJsonMediaType(config.content_type), &framed,
                                  &initial)) {
    return *error;
  }

  if (auto refused = RefuseWrites()) return *refused;
  std::string path(request.path);
  Lookup(path);  // drops an expired stream at this path first
  PendingCreate pending;
  {
    std::unique_lock registry(registry_mu_);
    if (auto it = streams_.find(path); it != streams_.end()) {
      Stream& existing = *it->second;
      std::lock_guard lock(existing.mu);
      if (!existing.deleted) {
        if (existing.soft_deleted) {
          return ErrorResponse(409, "stream was deleted and its path is held by forks");
        }
        if (existing.source != nullptr || !SameConfig(existing.config, config) ||
            existing.closed != closed) {
          return ErrorResponse(409, "stream exists with a different configuration");
        }
        return CreatedResponse(request, 200, existing, existing.tail.load(), existing.closed);
      }
    }
    if (auto error = BeginCreate(path, std::move(config), nullptr, 0, initial, closed, &pending)) {
      return *error;
    }
  }
  return FinishCreate(request, pending);
}

std::optional<Response> Engine::BeginCreate(const std::string& path, StreamConfig config,
                                            const StreamPtr& source, uint64_t fork_offset,
                                            std::string_view initial, bool closed,
                                            PendingCreate* out) {
  // The group's stream quota, then the initial bytes' budget and quota.
  std::shared_ptr<GroupUsage> group;
  if (auto refused = usage_.AddStream(path, &group)) return refused;
  if (auto refused = usage_.Reserve(*group, initial.size())) {
    usage_.RemoveStream(group);
    return refused;
  }
  uint64_t id = next_stream_id_++;
  std::unique_ptr<StreamLog> log;
  const int64_t now_ms = clock_->NowMs();
  Status s = store_->CreateLog(id, fork_offset, &log);
  if (s.ok() && !initial.empty()) s = log->Append(initial, now_ms);
  if (!s.ok()) {
    usage_.Release(*group, initial.size());
    usage_.RemoveStream(group);
    return WriteFailure(s);
  }
  auto stream = std::make_shared<Stream>(path, id, std::move(config), source, fork_offset,
                                         std::move(log));
  stream->closed = closed;
  stream->last_access_ms = now_ms;
  stream->group = std::move(group);
  stream->charged = initial.size();
  if (source) ++source->fork_refs;  // the caller holds source->mu
  out->stream = stream;
  out->closed = closed;
  out->lock = std::unique_lock(stream->mu);
  streams_[path] = stream;
  QueueExpiry(stream);
  NoteSegments(stream);  // an initial body may fill more than one
  if (durable_) {
    out->ticket = Submit({{StreamMutation::Kind::kUpsert, stream->Record(), {}, stream->log.get()}});
  }
  if (!initial.empty()) {
    appends_.fetch_add(1, std::memory_order_relaxed);
    bytes_appended_.fetch_add(initial.size(), std::memory_order_relaxed);
  }
  return std::nullopt;
}

Response Engine::FinishCreate(const Request& request, PendingCreate& pending) {
  Stream& stream = *pending.stream;
  if (pending.ticket) {
    Status s = Await(pending.ticket);
    if (!s.ok()) {
      // Not recorded: the stream never existed. Lookups skip deleted
      // streams and the next create at this path replaces it.
      stream.deleted = true;
      expiry_.Erase(stream);
      Uncharge(stream);
      // Its bytes take room the disk may be short of; Recover would remove
      // them anyway (no record names them).
      stream.log->Rewind(stream.log->start());
      if (stream.source) {
        std::lock_guard source_lock(stream.source->mu);
        if (stream.source->fork_refs > 0) --stream.source->fork_refs;
      }
      return StorageFailure(s);
    }
  }
  stream.tail.store(stream.log->tail(), std::memory_order_release);
  stream.closed_visible = pending.closed;
  uint64_t tail = stream.tail.load();
  pending.lock.unlock();
  // Subscriptions whose pattern matches link it now, at its start (§6.2).
  NoteSubscriptionData(stream.path, /*created=*/true);
  return CreatedResponse(request, 201, stream, tail, pending.closed);
}

Response Engine::CreateFork(const Request& request, StreamConfig config, bool closed) {
  std::string source_path(*request.header(DS_FIELD_STREAM_FORKED_FROM));
  std::optional<uint64_t> requested_offset;
  if (auto text = request.header(DS_FIELD_STREAM_FORK_OFFSET)) {
    requested_offset = DecodeOffset(*text);
    if (!requested_offset) return ErrorResponse(400, "malformed Stream-Fork-Offset");
  }
  uint64_t sub_offset = 0;
  if (auto text = request.header(DS_FIELD_STREAM_FORK_SUB_OFFSET)) {
    auto parsed = ParseCanonicalUint(*text, kMaxOffsetPosition);
    if (!parsed) return ErrorResponse(400, "malformed Stream-Fork-Sub-Offset");
    sub_offset = *parsed;
    if (sub_offset > 0 && !requested_offset) {
      return ErrorResponse(400, "Stream-Fork-Sub-Offset needs Stream-Fork-Offset");
    }
  }

  if (auto refused = RefuseWrites()) return *refused;
  StreamPtr source = Lookup(source_path);
  if (source == nullptr) return ErrorResponse(404, "fork source stream not found");
  std::string path(request.path);
  Lookup(path);
  PendingCreate pending;
  {
    std::unique_lock registry(registry_mu_);
    std::unique_lock source_lock(source->mu);
    if (source->deleted) return ErrorResponse(404, "fork source stream not found");
    if (source->soft_deleted) return ErrorResponse(409, "fork source stream was deleted");
    auto content_type = request.header(DS_FIELD_CONTENT_TYPE);
    if (content_type && !content_type->empty() &&
        !SameMediaType(*content_type, source->config.content_type)) {
      return ErrorResponse(409, "Content-Type differs from the fork source's");
    }
    config.content_type = source->config.content_type;
    // Lifetime inheritance (§4.2 table): a fork that asks for nothing keeps
    // its source's TTL or Expires-At; one that asks gets what it asked for.
    if (!config.ttl_seconds && !config.expires_at_ms) {
      config.ttl_seconds = source->config.ttl_seconds;
      config.expires_at_ms = source->config.expires_at_ms;
    }

    // Forks branch from committed data only.
    uint64_t source_tail = source->tail.load();
    uint64_t fork_offset = requested_offset.value_or(source_tail);
    if (fork_offset > source_tail) {
      return ErrorResponse(400, "Stream-Fork-Offset is beyond the source's tail");
    }
    if (fork_offset < source->EarliestOffset()) {
      return ErrorResponse(410, "Stream-Fork-Offset is before the source's earliest retained offset");
    }
    if (sub_offset > 0) {
      if (source->json) {
        // Count whole messages past the anchor.
        std::string stored;
        Status s = source->ReadRange(fork_offset, source_tail, &stored);
        if (!s.ok()) return StorageFailure(s);
        size_t pos = 0;
        for (uint64_t i = 0; i < sub_offset; ++i) {
          size_t nl = stored.find('\n', pos);
          if (nl == std::string::npos) {
            return ErrorResponse(400, "Stream-Fork-Sub-Offset is past the source's data");
          }
          pos = nl + 1;
        }
        fork_offset += pos;
      } else {
        if (sub_offset > source_tail - fork_offset) {
          return ErrorResponse(400, "Stream-Fork-Sub-Offset is past the source's data");
        }
        fork_offset += sub_offset;
      }
    }

    std::string framed;
    std::string_view initial;
    if (auto error = InitialContent(request, source->json, &framed, &initial)) return *error;

    if (auto it = streams_.find(path); it != streams_.end()) {
      Stream& existing = *it->second;
      if (&existing == source.get()) return ErrorResponse(409, "a stream cannot fork itself");
      std::lock_guard lock(existing.mu);
      if (!existing.deleted) {
        if (existing.soft_deleted) {
          return ErrorResponse(409, "stream was deleted and its path is held by forks");
        }
        if (existing.source != source || existing.fork_offset != fork_offset ||
            !SameConfig(existing.config, config) || existing.closed != closed) {
          return ErrorResponse(409, "stream exists with a different configuration");
        }
        return CreatedResponse(request, 200, existing, existing.tail.load(), existing.closed);
      }
    }
    if (auto error = BeginCreate(path, std::move(config), source, fork_offset, initial, closed,
                                 &pending)) {
      return *error;
    }
  }
  return FinishCreate(request, pending);
}

}  // namespace ds
