#include "engine.h"

#include <algorithm>

#include "content_type.h"
#include "cursor.h"
#include "json_mode.h"
#include "session.h"

namespace ds {

Engine::Engine(EngineOptions options, std::shared_ptr<const Clock> clock, WakeFn wake)
    : options_(std::move(options)), clock_(std::move(clock)), wake_(std::move(wake)) {
  if (options_.sweep_interval_ms > 0) {
    sweeper_ = std::thread([this] { SweeperLoop(); });
  }
}

Engine::~Engine() {
  {
    std::lock_guard lock(sweeper_mu_);
    stopping_ = true;
  }
  sweeper_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
}

Response Engine::Handle(const Request& request, uint64_t session_id) {
  Response response;
  if (!IsSafeStreamPath(request.path)) {
    response = ErrorResponse(400, "invalid stream path");
  } else if (IsReservedPath(request.path)) {
    response = ErrorResponse(501, "the reserved __ds subscription API is not implemented");
  } else if (request.method == "GET") {
    response = Read(request, session_id);
  } else if (request.method == "POST") {
    response = Append(request);
  } else if (request.method == "PUT") {
    response = Create(request);
  } else if (request.method == "HEAD") {
    response = Head(request);
  } else if (request.method == "DELETE") {
    response = Delete(request);
  } else if (request.method == "OPTIONS") {
    response = Preflight(request);
  } else {
    response = ErrorResponse(405, "method not allowed");
    response.Set(header::kAllow, "GET, HEAD, POST, PUT, DELETE, OPTIONS");
  }
  AddCommonHeaders(request, &response);
  return response;
}

bool Engine::IsReservedPath(std::string_view path) const {
  std::string_view root = options_.stream_root;
  if (path.substr(0, root.size()) != root) return false;
  std::string_view rest = path.substr(root.size());
  if (rest.empty() || rest.front() != '/') return false;
  rest.remove_prefix(1);
  return rest == "__ds" || rest.substr(0, 5) == "__ds/";
}

void Engine::AddCommonHeaders(const Request& request, Response* response) const {
  (void)request;
  // Browser security headers (§12.7) and CORS on every response, so fetch()
  // from any origin can read the protocol headers.
  response->Set(header::kNoSniff, "nosniff");
  response->Set(header::kCorp, "cross-origin");
  response->Set(header::kAllowOrigin, "*");
  response->Set(header::kExposeHeaders,
                "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, "
                "Stream-TTL, Stream-Expires-At, Stream-SSE-Data-Encoding, Producer-Epoch, "
                "Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, ETag, "
                "Location, Content-Type");
}

std::string Engine::Cursor(const std::string& client_cursor) const {
  return NextCursor(clock_->NowMs(), client_cursor, RandomCursorJitterSeconds());
}

uint64_t Engine::ChunkEnd(const Stream& stream, uint64_t from, uint64_t tail) const {
  uint64_t cap = std::max<uint64_t>(options_.max_read_bytes, 1);
  if (tail - from <= cap) return tail;
  if (!stream.json) return from + cap;
  // Cut on the last message boundary within the cap; a single message larger
  // than the cap is sent whole.
  std::string window;
  stream.ReadRange(from, from + cap, &window);
  size_t cut = window.rfind('\n');
  if (cut != std::string::npos) return from + cut + 1;
  uint64_t pos = from + cap;
  while (pos < tail) {
    uint64_t step_end = std::min(tail, pos + cap);
    window.clear();
    stream.ReadRange(pos, step_end, &window);
    size_t nl = window.find('\n');
    if (nl != std::string::npos) return pos + nl + 1;
    pos = step_end;
  }
  return tail;
}

void Engine::AppendBody(const Stream& stream, uint64_t from, uint64_t to,
                        std::string* body) const {
  if (!stream.json) {
    stream.ReadRange(from, to, body);
    return;
  }
  std::string stored;
  stream.ReadRange(from, to, &stored);
  AppendJsonArray(stored, body);
}

Engine::StreamPtr Engine::Lookup(const std::string& path) {
  StreamPtr stream;
  {
    std::shared_lock lock(registry_mu_);
    auto it = streams_.find(path);
    if (it == streams_.end()) return nullptr;
    stream = it->second;
  }
  bool expired;
  {
    std::lock_guard lock(stream->mu);
    if (stream->deleted) return nullptr;
    expired = !stream->soft_deleted && stream->ExpiredAt(clock_->NowMs());
  }
  if (expired) {
    Remove(stream);
    return nullptr;
  }
  return stream;
}

void Engine::Remove(const StreamPtr& stream) {
  std::vector<uint64_t> woken;
  bool release_source = false;
  {
    std::unique_lock registry(registry_mu_);
    std::lock_guard lock(stream->mu);
    if (stream->deleted || stream->soft_deleted) return;
    woken = stream->TakeWaiters();
    if (stream->fork_refs > 0) {
      stream->soft_deleted = true;
    } else {
      auto it = streams_.find(stream->path);
      if (it != streams_.end() && it->second == stream) streams_.erase(it);
      stream->deleted = true;
      release_source = stream->source != nullptr;
    }
  }
  if (release_source) ReleaseSource(stream, &woken);
  Wake(std::move(woken));
}

void Engine::ReleaseSource(const StreamPtr& fork, std::vector<uint64_t>* woken) {
  std::unique_lock registry(registry_mu_);
  StreamPtr source = fork->source;
  while (source) {
    StreamPtr next;
    {
      std::lock_guard lock(source->mu);
      if (source->fork_refs > 0) --source->fork_refs;
      if (source->fork_refs > 0 || !source->soft_deleted || source->deleted) return;
      // Last fork gone from a soft-deleted stream: collect it, then its source.
      auto it = streams_.find(source->path);
      if (it != streams_.end() && it->second == source) streams_.erase(it);
      source->deleted = true;
      auto taken = source->TakeWaiters();
      woken->insert(woken->end(), taken.begin(), taken.end());
      next = source->source;
    }
    source = std::move(next);
  }
}

void Engine::Wake(std::vector<uint64_t> sessions) {
  if (!sessions.empty() && wake_) wake_(sessions);
}

void Engine::SweepExpired() {
  std::vector<StreamPtr> candidates;
  {
    std::shared_lock lock(registry_mu_);
    for (const auto& [path, stream] : streams_) {
      if (stream->config.ttl_seconds || stream->config.expires_at_ms) {
        candidates.push_back(stream);
      }
    }
  }
  int64_t now = clock_->NowMs();
  for (const StreamPtr& stream : candidates) {
    bool expired;
    {
      std::lock_guard lock(stream->mu);
      expired = !stream->deleted && !stream->soft_deleted && stream->ExpiredAt(now);
    }
    if (expired) Remove(stream);
  }
}

void Engine::SweeperLoop() {
  std::unique_lock lock(sweeper_mu_);
  while (!stopping_) {
    sweeper_cv_.wait_for(lock, std::chrono::milliseconds(options_.sweep_interval_ms));
    if (stopping_) break;
    lock.unlock();
    SweepExpired();
    lock.lock();
  }
}

EngineStats Engine::Stats() const {
  EngineStats stats;
  {
    std::shared_lock lock(registry_mu_);
    stats.streams = streams_.size();
  }
  {
    std::lock_guard lock(sessions_mu_);
    stats.parked_sessions = sessions_.size();
  }
  stats.appends = appends_.load();
  stats.bytes_appended = bytes_appended_.load();
  return stats;
}

}  // namespace ds
