#include "engine.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <optional>

#include "content_type.h"
#include "cursor.h"
#include "json_mode.h"
#include "session.h"

namespace ds {

Engine::Engine(EngineOptions options, std::shared_ptr<const Clock> clock, WakeFn wake,
               std::unique_ptr<Store> store)
    : options_(std::move(options)),
      long_poll_timeout_ms_(options_.long_poll_timeout_ms),
      sse_reconnect_interval_ms_(options_.sse_reconnect_interval_ms),
      max_append_bytes_(options_.max_append_bytes),
      retention_age_ms_(options_.retention_age_ms),
      retention_bytes_(options_.retention_bytes),
      clock_(std::move(clock)),
      wake_(std::move(wake)),
      store_(store ? std::move(store) : std::make_unique<MemoryStore>()),
      durable_(store_->durable()),
      usage_(options_.stream_root, options_.group_depth, !durable_,
             UsageLimits{options_.max_memory_bytes, options_.max_streams_per_group,
                         options_.max_bytes_per_group}) {
  if (durable_) {
    commit_queue_ = std::make_unique<CommitQueue>(
        store_.get(), [this](std::vector<uint64_t> sessions) { Wake(std::move(sessions), /*relay=*/true); });
  }
  int loops = options_.sse_fanout_loops;
  if (loops <= 0) loops = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 4);
  loops = std::min(loops, 64);  // a bit each in the delivery-wave masks (ReturnConnections)
  for (int i = 0; i < loops; ++i) {
    SseFanout::Options fanout;
    fanout.keepalive_interval_ms = options_.sse_keepalive_interval_ms;
    fanout.run_thread = options_.sse_fanout_thread;
    fanout.loop = static_cast<uint32_t>(i);
    fanouts_.push_back(std::make_unique<SseFanout>(static_cast<SseSource*>(this), clock_, fanout));
  }
  if (options_.sweep_interval_ms > 0) {
    sweeper_ = std::thread([this] { SweeperLoop(); });
  }
  SubscriptionOptions sub_options;
  sub_options.stream_root = options_.stream_root;
  sub_options.token_secret = options_.subscription_token_secret;
  sub_options.thread = options_.subscription_thread;
  sub_options.notify_webhooks = options_.webhook_notify;
  subscriptions_ = std::make_unique<Subscriptions>(std::move(sub_options), clock_,
                                                   static_cast<SubscriptionHost*>(this), store_.get());
  subscriptions_->Start();
}

void Engine::SetTunables(const Tunables& t) {
  long_poll_timeout_ms_.store(t.long_poll_timeout_ms, std::memory_order_relaxed);
  sse_reconnect_interval_ms_.store(t.sse_reconnect_interval_ms, std::memory_order_relaxed);
  max_append_bytes_.store(t.max_append_bytes, std::memory_order_relaxed);
  retention_age_ms_.store(t.retention_age_ms, std::memory_order_relaxed);
  retention_bytes_.store(t.retention_bytes, std::memory_order_relaxed);
  usage_.SetLimits(t.limits);
}

Engine::Tunables Engine::tunables() const {
  Tunables t;
  t.long_poll_timeout_ms = long_poll_timeout_ms_.load(std::memory_order_relaxed);
  t.sse_reconnect_interval_ms = sse_reconnect_interval_ms_.load(std::memory_order_relaxed);
  t.max_append_bytes = max_append_bytes_.load(std::memory_order_relaxed);
  t.retention_age_ms = retention_age_ms_.load(std::memory_order_relaxed);
  t.retention_bytes = retention_bytes_.load(std::memory_order_relaxed);
  t.limits = usage_.limits();
  return t;
}

Status Engine::Recover() {
  std::vector<RecoveredStream> recovered;
  uint64_t next_id = 1;
  Status s = store_->Recover(&recovered, &next_id);
  if (!s.ok()) return s;
  std::unordered_map<uint64_t, StreamPtr> by_id;
  std::vector<StreamPtr> orphans;  // soft-deleted with no fork left
  {
    std::unique_lock registry(registry_mu_);
    for (RecoveredStream& r : recovered) {
      const StreamRecord& rec = r.record;
      StreamPtr source;
      if (rec.source_id != 0) {
        auto it = by_id.find(rec.source_id);
        if (it == by_id.end()) {
          std::fprintf(stderr,
                       "durable-streams: stream %s forks missing stream #%llu; skipped\n",
                       rec.path.c_str(), static_cast<unsigned long long>(rec.source_id));
          continue;
        }
        source = it->second;
      }
      StreamConfig config{rec.content_type, rec.ttl_seconds, rec.expires_at_ms};
      auto stream = std::make_shared<Stream>(rec.path, rec.id, std::move(config), source,
                                             rec.fork_offset, std::move(r.log));
      stream->closed = stream->closed_visible = rec.closed;
      stream->soft_deleted = rec.soft_deleted;
      stream->last_stream_seq = rec.last_stream_seq;
      stream->last_access_ms = rec.last_access_ms;
      for (const ProducerRecord& p : r.producers) {
        stream->producers[p.producer_id] = ProducerState{p.epoch, p.last_seq};
      }
      if (source) {
        ++source->fork_refs;
        if (rec.fork_offset > source->log->tail()) {
          std::fprintf(stderr,
                       "durable-streams: stream %s lost bytes that fork %s inherits; it will "
                       "refuse appends so that their positions are never reused\n",
                       source->path.c_str(), rec.path.c_str());
          source->lost_forked_bytes = true;
        }
      }
      // What is stored stays served: recovered streams count towards the
      // quotas without a check (a lowered quota refuses new writes only).
      stream->group = usage_.AdoptStream(rec.path);
      stream->charged = stream->log->tail() - stream->log->start();
      usage_.Charge(*stream->group, stream->charged);
      by_id[rec.id] = stream;
      streams_[rec.path] = stream;
    }
    next_stream_id_ = std::max(next_id, next_stream_id_);
    for (const auto& [path, stream] : streams_) {
      if (stream->soft_deleted && stream->fork_refs == 0) orphans.push_back(stream);
      std::lock_guard lock(stream->mu);
      NoteSegments(stream);
      if (!stream->soft_deleted) QueueExpiry(stream);
    }
  }
  // A crash between a fork's deletion and its source's collection leaves a
  // soft-deleted stream nobody reads: finish the job.
  for (const StreamPtr& stream : orphans) {
    {
      std::lock_guard lock(stream->mu);
      stream->soft_deleted = false;
    }
    s = Remove(stream);
    if (!s.ok()) return s;
  }
  // After the streams: wakes in flight are looked at against their tails.
  return subscriptions_->Recover();
}

Engine::~Engine() {
  // The dispatcher appends wake events: it stops before anything else.
  subscriptions_->Stop();
  // The committer finishes what is queued and wakes its sessions through the
  // fan-out, so it stops first.
  commit_queue_.reset();
  // Wakes still relayed (nobody takes them after the close) go to the wake
  // function now, so every committed append is told so.
  if (wake_relay_.enabled() && wake_) {
    std::vector<uint64_t> ids(256);
    for (size_t n; (n = wake_relay_.Take(ids.data(), ids.size())) > 0;) {
      wake_(std::vector<uint64_t>(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n)));
    }
  }
  fanouts_.clear();  // their threads call back into the engine
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
    // §6: routed before any stream operation.
    if (request.method == "OPTIONS") {
      response = Preflight(request);
    } else {
      std::string_view rel = request.path.substr(options_.stream_root.size() + 1);
      rel = rel.size() > 5 ? rel.substr(5) : std::string_view();  // after "__ds/"
      response = subscriptions_->Handle(request, rel);
    }
  } else if (request.method == "GET") {
    response = Read(request, session_id);
  } else if (request.method == "POST") {
    response = Append(request, session_id);
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
  // A parked session's placeholder has no status line; its final answer
  // gets these when it is resumed.
  if (response.status != 0) AddCommonHeaders(&response);
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

void Engine::AddCommonHeaders(Response* response) const {
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

std::string Engine::Cursor(std::string_view client_cursor) const {
  return NextCursor(clock_->NowMs(), client_cursor, RandomCursorJitterSeconds());
}

uint64_t Engine::ChunkEnd(const Stream& stream, uint64_t from, uint64_t tail) const {
  uint64_t cap = std::max<uint64_t>(options_.max_read_bytes, 1);
  if (tail - from <= cap) return tail;
  if (!stream.json) return from + cap;
  // Cut on the last message boundary within the cap; a single message larger
  // than the cap is sent whole.
  std::string window;
  if (!stream.ReadRange(from, from + cap, &window).ok()) return from + cap;
  size_t cut = window.rfind('\n');
  if (cut != std::string::npos) return from + cut + 1;
  uint64_t pos = from + cap;
  while (pos < tail) {
    uint64_t step_end = std::min(tail, pos + cap);
    window.clear();
    if (!stream.ReadRange(pos, step_end, &window).ok()) return step_end;
    size_t nl = window.find('\n');
    if (nl != std::string::npos) return pos + nl + 1;
    pos = step_end;
  }
  return tail;
}

uint64_t Engine::CatchUpChunkEnd(const Stream& stream, uint64_t from, uint64_t tail) const {
  const uint64_t cap = std::max<uint64_t>(options_.max_read_bytes, 1);
  if (!stream.json) {
    // The largest chunk that still leaves at least a cap before the tail.
    // Every size depends only on `from` and how far the tail is, so readers
    // that start at the same offset page through the same cacheable chunks.
    for (uint64_t factor : {kFarChunkFactor, kMidChunkFactor}) {
      if (factor == kFarChunkFactor && !stream.ZeroCopyReads()) continue;
      if (cap > std::numeric_limits<uint64_t>::max() / (factor + 1)) continue;
      if (tail - from >= cap * (factor + 1)) return from + cap * factor;
    }
  }
  return ChunkEnd(stream, from, tail);
}

Status Engine::AppendBody(const Stream& stream, uint64_t from, uint64_t to,
                          std::string* body) const {
  if (!stream.json) return stream.ReadRange(from, to, body);
  std::string stored;
  Status s = stream.ReadRange(from, to, &stored);
  if (s.ok()) AppendJsonArray(stored, body);
  return s;
}

Status Engine::CheckRange(const Stream& stream, uint64_t from, uint64_t to) const {
  const uint64_t window = std::max<uint64_t>(options_.max_read_bytes, 1);
  std::string scratch;
  while (from < to) {
    const uint64_t end = from + std::min(window, to - from);
    scratch.clear();
    Status s = stream.ReadRange(from, end, &scratch);
    if (!s.ok()) return s;
    from = end;
  }
  return Status::OK();
}

CommitQueue::Ticket Engine::Submit(std::vector<StreamMutation> mutations,
                                   CommitQueue::OnCommit on_commit, CommitQueue::Valid valid) {
  return commit_queue_->Enqueue(std::move(mutations), std::move(on_commit), std::move(valid));
}

CommitQueue::Valid Engine::Unchanged(const StreamPtr& stream) {
  const uint64_t generation = stream->undo_generation.load();
  return [stream, generation] { return stream->undo_generation.load() == generation; };
}

CommitQueue::Valid Engine::UnchangedWhileHeld(const Stream& stream) {
  const Stream* held = &stream;
  const uint64_t generation = stream.undo_generation.load();
  return [held, generation] { return held->undo_generation.load() == generation; };
}

Status Engine::Await(const CommitQueue::Ticket& ticket) {
  Status s = commit_queue_->Wait(ticket);
  if (!s.ok()) {
    RecordFailure(s);
  } else {
    NoteCommitted();
  }
  return s;
}

void Engine::RecordFailure(const Status& s) {
  if (s.code() == Status::Code::kNoSpace) {
    if (!no_space_.exchange(true)) {
      std::fprintf(stderr,
                   "durable-streams: storage is full; writes answer 507 until a commit "
                   "succeeds again (delete streams or free space): %s\n",
                   s.message().c_str());
    }
    return;
  }
  std::lock_guard lock(failure_mu_);
  if (failure_.ok()) {
    failure_ = s;
    std::fprintf(stderr, "durable-streams: commit failed, refusing writes until restart: %s\n",
                 s.message().c_str());
  }
}

void Engine::NoteCommitted() {
  if (no_space_.load(std::memory_order_relaxed) && no_space_.exchange(false)) {
    std::fprintf(stderr, "durable-streams: commits succeed again; writes resume\n");
  }
}

std::optional<Response> Engine::RefuseWrites() const {
  std::lock_guard lock(failure_mu_);
  if (failure_.ok()) return std::nullopt;
  Response r = StorageFailure(failure_);
  r.body.insert(0, "storage failed earlier; writes are refused until the server restarts: ");
  return r;
}

Response Engine::StorageFailure(const Status& status) const {
  if (status.code() == Status::Code::kGone) {
    // Retention dropped the bytes while the request was on its way (§5.6).
    return ErrorResponse(410, "offset is before the earliest retained offset");
  }
  if (status.code() == Status::Code::kNoSpace) {
    answered_no_space_.fetch_add(1, std::memory_order_relaxed);
    return ErrorResponse(507, "insufficient storage: " + status.message());
  }
  answered_io_error_.fetch_add(1, std::memory_order_relaxed);
  return ErrorResponse(500, "storage error: " + status.message());
}

Response Engine::WriteFailure(const Status& status) {
  if (status.code() == Status::Code::kIoError || status.code() == Status::Code::kCorruption) {
    RecordFailure(status);
  }
  return StorageFailure(status);
}

void Engine::RollBack(const StreamPtr& stream, uint64_t generation) {
  std::lock_guard lock(stream->mu);
  if (stream->deleted || stream->undo_generation.load() != generation) return;
  // From here on, queued commits built on the pending state are dropped.
  stream->undo_generation.fetch_add(1);
  // Every earlier commit's OnCommit has run (this thread runs them in
  // order), so the published tail is the committed one.
  Status s = stream->log->Rewind(stream->tail.load());
  Recharge(*stream);
  bool found = false;
  StreamRecord record;
  std::vector<ProducerRecord> producers;
  if (s.ok()) s = store_->LoadStream(stream->id, &found, &record, &producers);
  if (s.ok() && !found) s = Status::Corruption("it has no record");
  if (!s.ok()) {
    RecordFailure(Status::IoError("cannot undo a failed commit of stream " + stream->path + ": " +
                                  s.message()));
    return;
  }
  stream->closed = stream->closed_visible;
  stream->last_stream_seq = record.last_stream_seq;
  stream->producers.clear();
  for (const ProducerRecord& p : producers) {
    stream->producers[p.producer_id] = ProducerState{p.epoch, p.last_seq};
  }
}

void Engine::Recharge(Stream& stream) {
  if (stream.group == nullptr) return;
  const uint64_t held = stream.log->tail() - stream.log->start();
  if (held < stream.charged) {
    usage_.Release(*stream.group, stream.charged - held);
  } else {
    usage_.Charge(*stream.group, held - stream.charged);
  }
  stream.charged = held;
}

void Engine::Uncharge(Stream& stream) {
  if (stream.group == nullptr) return;
  usage_.Release(*stream.group, stream.charged);
  stream.charged = 0;
  usage_.RemoveStream(stream.group);
  stream.group.reset();
}

void Engine::QueueExpiry(const StreamPtr& stream) {
  if (std::optional<int64_t> deadline = stream->ExpiryDeadline()) {
    expiry_.Schedule(stream, *deadline);
  }
}

void Engine::NoteAccess(const StreamPtr& stream) {
  if (!durable_ || !stream->config.ttl_seconds || stream->access_dirty) return;
  stream->access_dirty = true;
  std::lock_guard lock(accessed_mu_);
  accessed_.push_back(stream);
}

void Engine::FlushAccessTimes() {
  if (!durable_) return;
  std::vector<StreamPtr> accessed;
  {
    std::lock_guard lock(accessed_mu_);
    accessed.swap(accessed_);
  }
  // Queue them all, then wait: they share commits.
  std::vector<CommitQueue::Ticket> tickets;
  for (const StreamPtr& stream : accessed) {
    std::lock_guard lock(stream->mu);
    if (!stream->access_dirty || stream->deleted) continue;
    stream->access_dirty = false;
    tickets.push_back(Submit({{StreamMutation::Kind::kUpsert, stream->Record(), {}, nullptr}},
                             nullptr, Unchanged(stream)));
  }
  for (const auto& ticket : tickets) Await(ticket);
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
    Remove(stream);  // a failed commit is recorded by Await
    return nullptr;
  }
  return stream;
}

Status Engine::Remove(const StreamPtr& stream) { return FinishRemoval(BeginRemoval(stream)); }

Engine::Removal Engine::BeginRemoval(const StreamPtr& stream) {
  Removal removal;
  std::vector<uint64_t>& woken = removal.woken;
  std::vector<StreamMutation> mutations;
  {
    std::unique_lock registry(registry_mu_);
    std::unique_lock lock(stream->mu);
    if (stream->deleted || stream->soft_deleted) return removal;
    woken = stream->TakeWaiters();
    removal.paths.push_back(stream->path);
    expiry_.Erase(*stream);  // gone either way: soft-deleted streams do not expire
    if (stream->fork_refs > 0) {
      // Forks still read its bytes: keep them, refuse direct access (§4.2).
      stream->soft_deleted = true;
      mutations.push_back({StreamMutation::Kind::kUpsert, stream->Record(), {}, nullptr});
    } else {
      auto it = streams_.find(stream->path);
      if (it != streams_.end() && it->second == stream) streams_.erase(it);
      stream->deleted = true;
      Uncharge(*stream);
      mutations.push_back({StreamMutation::Kind::kErase, stream->Record(), {}, nullptr});
      // Release the fork's hold on its source; a soft-deleted source that
      // no fork needs any more goes too, and so on up the chain.
      StreamPtr source = stream->source;
      while (source) {
        StreamPtr next;
        {
          std::lock_guard source_lock(source->mu);
          if (source->fork_refs > 0) --source->fork_refs;
          if (source->fork_refs == 0 && source->soft_deleted && !source->deleted) {
            auto sit = streams_.find(source->path);
            if (sit != streams_.end() && sit->second == source) streams_.erase(sit);
            source->deleted = true;
            Uncharge(*source);
            auto taken = source->TakeWaiters();
            woken.insert(woken.end(), taken.begin(), taken.end());
            mutations.push_back({StreamMutation::Kind::kErase, source->Record(), {}, nullptr});
            next = source->source;
          }
        }
        source = std::move(next);
      }
    }
    if (durable_) {
      // A soft delete records the pending state; an erase needs none.
      removal.ticket = Submit(std::move(mutations), nullptr,
                              stream->soft_deleted ? Unchanged(stream) : nullptr);
    }
  }
  return removal;
}

Status Engine::FinishRemoval(Removal removal) {
  Status s = removal.ticket ? Await(removal.ticket) : Status::OK();
  Wake(std::move(removal.woken));
  const std::string_view root = options_.stream_root;
  for (const std::string& path : removal.paths) {
    if (path.size() > root.size() + 1 && path.compare(0, root.size(), root) == 0 && path[root.size()] == '/') {
      subscriptions_->NoteRemoved(std::string_view(path).substr(root.size() + 1));
    }
  }
  return s;
}

void Engine::Wake(std::vector<uint64_t> sessions, bool relay) {
  // The fan-out parks one waiter per stream for all its subscribers; the
  // HTTP layer's sessions go to the wake callback.
  auto adopted = std::partition(sessions.begin(), sessions.end(),
                                [](uint64_t id) { return !SseFanout::IsWaiter(id); });
  if (adopted != sessions.end()) {
    std::vector<std::vector<uint64_t>> by_loop(fanouts_.size());
    for (auto it = adopted; it != sessions.end(); ++it) {
      uint32_t loop = SseFanout::LoopOf(*it);
      if (loop < by_loop.size()) by_loop[loop].push_back(*it);
    }
    for (size_t i = 0; i < by_loop.size(); ++i) {
      if (!by_loop[i].empty()) fanouts_[i]->Wake(by_loop[i]);
    }
    sessions.erase(adopted, sessions.end());
  }
  if (sessions.empty()) return;
  if (relay && wake_relay_.enabled()) {
    wake_relay_.Push(sessions);
  } else if (wake_) {
    wake_(sessions);
  }
}

void Engine::SweepExpired() {
  const int64_t now = clock_->NowMs();
  // Queue every removal, then wait: streams that expire together share
  // group commits instead of paying one flush each.
  std::vector<Removal> removals;
  for (const StreamPtr& stream : expiry_.TakeDue(now)) {
    bool expired = false;
    {
      std::lock_guard lock(stream->mu);
      if (stream->deleted || stream->soft_deleted) continue;
      const std::optional<int64_t> deadline = stream->ExpiryDeadline();
      expired = deadline && now >= *deadline;
      // Read or written since it was queued: due later.
      if (deadline && !expired) expiry_.Schedule(stream, *deadline);
    }
    if (expired) removals.push_back(BeginRemoval(stream));
  }
  for (Removal& removal : removals) FinishRemoval(std::move(removal));
}

void Engine::SweeperLoop() {
  std::unique_lock lock(sweeper_mu_);
  while (!stopping_) {
    sweeper_cv_.wait_for(lock, std::chrono::milliseconds(options_.sweep_interval_ms));
    if (stopping_) break;
    lock.unlock();
    SweepExpired();
    ApplyRetention();
    FlushAccessTimes();
    lock.lock();
  }
}

EngineStats Engine::Stats() const {
  EngineStats stats;
  stats.subscriptions = subscriptions_->Stats();
  {
    std::shared_lock lock(registry_mu_);
    stats.streams = streams_.size();
  }
  {
    std::lock_guard lock(sessions_mu_);
    stats.parked_sessions = sessions_.size();
  }
  for (const auto& fanout : fanouts_) stats.adopted_sessions += fanout->subscribers();
  stats.parked_sessions += stats.adopted_sessions;
  stats.expiring_streams = expiry_.size();
  stats.appends = appends_.load();
  stats.bytes_appended = bytes_appended_.load();
  stats.no_space = no_space_.load();
  {
    std::lock_guard lock(failure_mu_);
    stats.writes_failed = !failure_.ok();
  }
  stats.answered_no_space = answered_no_space_.load();
  stats.answered_io_error = answered_io_error_.load();
  stats.checksum_failures = store_->checksum_failures();
  stats.stream_bytes = usage_.total_bytes();
  stats.refused_memory_budget = usage_.refused_memory();
  stats.refused_quota_streams = usage_.refused_streams();
  stats.refused_quota_bytes = usage_.refused_bytes();
  if (commit_queue_) {
    const CommitQueue::Counters c = commit_queue_->counters();
    stats.submitted_writes = c.enqueued;
    stats.commits = c.commits;
    stats.committed_writes = c.entries;
    stats.commit_nanos = static_cast<uint64_t>(c.time.count());
    stats.commit_flushes = c.flushes;
    stats.commit_flushes_waited = c.flushes_waited;
  }
  return stats;
}

}  // namespace ds
