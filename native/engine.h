// The protocol engine: decides every status code, header and body of the
// Durable Streams protocol for requests handed over by the HTTP layer.
//
// Concurrency: Handle/Resume/Cancel may run concurrently. The stream
// registry is guarded by a reader/writer lock, each stream by its own mutex
// (appends and producer checks are serialised per stream), sessions by
// their own mutex. Lock order: registry -> stream -> source stream ->
// sessions; the wake callback runs with no lock held. Adopted SSE sessions
// belong to the fan-out (sse_fanout.h), which calls back into the engine
// with no lock held.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "clock.h"
#include "commit_queue.h"
#include "expiry_queue.h"
#include "request.h"
#include "response.h"
#include "sse_fanout.h"
#include "store.h"
#include "stream.h"
#include "subscriptions.h"
#include "usage.h"
#include "wake_relay.h"

namespace ds {

struct EngineOptions {
  std::string stream_root = "/v1/stream";
  int64_t long_poll_timeout_ms = 30000;
  int64_t sse_reconnect_interval_ms = 60000;
  int64_t sse_keepalive_interval_ms = 15000;
  uint64_t max_append_bytes = 64ull << 20;
  uint64_t max_read_bytes = 1ull << 20;
  // How often the background sweeper looks for expired streams and applies
  // retention; 0 turns the sweeper off (tests drive SweepExpired and
  // ApplyRetention themselves).
  int64_t sweep_interval_ms = 1000;
  // Retention (0 = off): whole old segments of a stream are dropped once
  // their newest byte is older than retention_age_ms, or while the bytes
  // after them still number at least retention_bytes. The active segment
  // and streams that forks read from are never trimmed.
  int64_t retention_age_ms = 0;
  uint64_t retention_bytes = 0;
  // How many fan-out loops share the adopted SSE sessions, each with its
  // own writer thread (started at its first adoption), so that writing to
  // many sockets can use every core; 0: one per CPU, at most 4. Tests turn
  // the threads off and call RunSseFanoutOnce.
  int sse_fanout_loops = 0;
  bool sse_fanout_thread = true;
  // Stream data limits (usage.h; 0 = none). max_memory_bytes caps the
  // bytes all streams hold in memory mode (ignored with a durable store);
  // the quotas apply per placement group, the first group_depth path
  // segments under stream_root.
  uint64_t max_memory_bytes = 0;
  uint64_t max_streams_per_group = 0;
  uint64_t max_bytes_per_group = 0;
  int group_depth = 1;
  // Subscriptions (subscriptions.h): the HMAC key for callback and claim
  // tokens (random per process when empty), whether the dispatcher runs
  // its own thread (tests turn it off and call RunSubscriptionsOnce), and
  // what to call when webhook deliveries are queued.
  std::string subscription_token_secret;
  bool subscription_thread = true;
  std::function<void()> webhook_notify;
};

using WakeFn = std::function<void(const std::vector<uint64_t>& sessions)>;

struct EngineStats {
  uint64_t streams = 0;
  uint64_t parked_sessions = 0;   // including adopted ones
  uint64_t adopted_sessions = 0;  // SSE sessions the fan-out writes itself
  uint64_t appends = 0;
  uint64_t bytes_appended = 0;
  // Group commits to a durable store (all zero in memory): how many, the
  // writes they carried, and the wall time they took.
  uint64_t submitted_writes = 0;  // handed to the committer, done or not
  uint64_t commits = 0;
  uint64_t committed_writes = 0;
  uint64_t commit_nanos = 0;
  // The store's flushes (commits and syncs; under fsync always one device
  // flush each) and the sum over acknowledged writes of the flushes each
  // waited for (CommitQueue::Counters).
  uint64_t commit_flushes = 0;
  uint64_t commit_flushes_waited = 0;
  uint64_t expiring_streams = 0;  // queued for the expiry sweep
  // Storage: whether the last commit failed for a full disk (writes answer
  // 507 until one succeeds), whether a fatal storage error stopped writes
  // until restart, and the answers given for each reason.
  bool no_space = false;
  bool writes_failed = false;
  uint64_t answered_no_space = 0;  // 507s
  uint64_t answered_io_error = 0;  // 500s for storage errors, refusals included
  // Reads refused because stored bytes did not match their checksum.
  uint64_t checksum_failures = 0;
  // Stream data held (every stream's own bytes) and the writes refused by
  // the memory budget and the group quotas (usage.h).
  uint64_t stream_bytes = 0;
  uint64_t refused_memory_budget = 0;
  uint64_t refused_quota_streams = 0;
  uint64_t refused_quota_bytes = 0;
  SubscriptionStats subscriptions;
};

class Engine : private SseSource, private SubscriptionHost {
 public:
  // An engine over `store` (MemoryStore when null). Call Recover before use
  // when the store may hold streams.
  Engine(EngineOptions options, std::shared_ptr<const Clock> clock, WakeFn wake,
         std::unique_ptr<Store> store = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Loads the store's streams into memory (forks linked to their sources,
  // soft-deleted streams no fork needs any more collected).
  Status Recover();

  // One HTTP request. `session_id` (non-zero) names the live session if the
  // request parks.
  Response Handle(const Request& request, uint64_t session_id);
  Response Resume(uint64_t session_id, ds_resume_reason reason);
  void Cancel(uint64_t session_id);

  // Takes over a parked SSE session together with its connection: the
  // fan-out writes the rest of the response to `socket` (sse_fanout.h).
  // The socket is the engine's whatever the outcome.
  enum class Adoption {
    kAdopted,
    kNoSession,  // not a live session of the kind (unknown, finished, other mode)
    kBadSocket,  // not a connected stream socket
    kFailed,     // the fan-out could not start; see the message
  };
  Adoption AdoptSse(uint64_t session_id, UniqueFd socket, uint64_t owner,
                    std::string* message);
  // Takes over a parked long-poll session together with its connection,
  // on which nothing has been written: the fan-out answers it (200 with
  // data, 204 at its timeout, 404/410) as Resume would, rendered as
  // net/http renders it with `middleware_headers` ("Name\0value\0...",
  // what the handler's header map held) and Connection: close, then
  // closes the socket (http1_answer.h). kNoSession when it is not a parked
  // long-poll.
  // With a non-zero `return_tag` the connection is kept alive: the answer
  // has no Connection: close and the connection goes back to the HTTP
  // layer through the wake callback, as `return_tag` (with
  // SseFanout::kServeNext when it is to serve its next request, without
  // when it is to be closed); the tags must have bit 62 set and bits 63
  // and 61 clear, which no session id has.
  // The socket may be borrowed (AdoptedSocket::Borrowed, with a
  // return_tag only): the fan-out then never closes it, and the HTTP layer
  // keeps it open until it gets the connection back.
  Adoption AdoptLongPoll(uint64_t session_id, AdoptedSocket socket, uint64_t owner,
                         std::string middleware_headers, uint64_t return_tag,
                         std::string* message);
  // Ends every adopted session tagged `owner` as its reconnect interval
  // would. Returns at once; the fan-out's thread does the writing.
  void EndAdopted(uint64_t owner);
  // One turn of every fan-out loop, for tests that turned the threads off.
  void RunSseFanoutOnce(int max_wait_ms);
  // One turn of one loop (tests: a wave in one loop and not yet another).
  void RunSseFanoutLoopOnce(size_t loop, int max_wait_ms);

  // Removes every stream whose TTL or Expires-At has passed and wakes its
  // readers. Runs on the sweeper thread; public for tests.
  void SweepExpired();
  // Stores last_access_ms of the TTL streams read since the last call
  // (sliding TTLs survive restarts). Runs on the sweeper thread; public for
  // tests.
  void FlushAccessTimes();
  // Drops the segments retention no longer keeps, for every stream; the new
  // first offset is recorded before any file goes. Runs on the sweeper
  // thread; public for tests.
  void ApplyRetention();

  // Placement group moves (group_move.cc; README, Scaling). ExportGroup
  // writes the group's committed streams; the caller keeps writes to the
  // group out meanwhile. ImportStreams adds an export's streams, none of
  // whose paths may exist here. ForgetGroup deletes the group's streams.
  Status ExportGroup(const std::string& group, std::string* out);
  Status ImportStreams(std::string_view data, uint64_t* imported_count);
  Status ForgetGroup(const std::string& group, uint64_t* forgotten);

  EngineStats Stats() const;

  // Webhook deliveries the engine decided on, for the caller to send, and
  // their outcomes (subscriptions.h).
  std::vector<WebhookJob> TakeWebhooks(size_t max) { return subscriptions_->TakeWebhooks(max); }

  // From now on, wakes made by the group committer are queued for
  // TakeRelayedWakes and signalled on the returned descriptor (the caller
  // owns it) and in RelayReady, instead of calling the wake function on
  // that thread (wake_relay.h says why). -1: unsupported here.
  int EnableWakeRelay() { return wake_relay_.Enable(); }
  size_t TakeRelayedWakes(uint64_t* out, size_t cap) { return wake_relay_.Take(out, cap); }
  const std::atomic<uint32_t>* RelayReady() const { return wake_relay_.ready(); }
  void WebhookResult(const std::string& id, uint64_t generation, const std::string& wake_id,
                     int status, std::string_view body, bool transport_error) {
    subscriptions_->WebhookResult(id, generation, wake_id, status, body, transport_error);
  }
  // One subscription dispatcher pass, for tests that turned its thread off.
  void RunSubscriptionsOnce() { subscriptions_->RunOnce(); }
  // The placement groups holding the most bytes (see Usage::TopGroups).
  std::vector<GroupSnapshot> TopGroups(size_t n, GroupSnapshot* rest) const {
    return usage_.TopGroups(n, rest);
  }
  // The options as opened; the tunable ones below may have changed since.
  const EngineOptions& options() const { return options_; }

  // The options a configuration reload may change while the engine runs.
  // Each takes effect for the requests, sessions and retention passes that
  // start after the call; sessions already parked keep their deadlines.
  struct Tunables {
    int64_t long_poll_timeout_ms = 30000;
    int64_t sse_reconnect_interval_ms = 60000;
    uint64_t max_append_bytes = 64ull << 20;
    int64_t retention_age_ms = 0;
    uint64_t retention_bytes = 0;
    UsageLimits limits;
  };
  void SetTunables(const Tunables& tunables);
  Tunables tunables() const;

 private:
  struct Session;
  using StreamPtr = std::shared_ptr<Stream>;

  // Handlers, one per method (create.cc, append.cc, read.cc, metadata.cc).
  Response Create(const Request& request);
  Response CreateFork(const Request& request, StreamConfig config, bool closed);
  // A create in two steps: Begin (registry lock held, and the source's for
  // a fork) makes the stream, registers it locked, and queues its record;
  // Finish (no registry lock) waits for the commit and publishes it.
  struct PendingCreate {
    StreamPtr stream;
    CommitQueue::Ticket ticket;
    std::unique_lock<std::mutex> lock;
    bool closed = false;
  };
  std::optional<Response> BeginCreate(const std::string& path, StreamConfig config,
                                      const StreamPtr& source, uint64_t fork_offset,
                                      std::string_view initial, bool closed,
                                      PendingCreate* out);
  Response FinishCreate(const Request& request, PendingCreate& pending);
  // A durable append with a session parks (DS_LIVE_COMMIT) until its group
  // commit is done; ResumeAppend then answers it.
  Response Append(const Request& request, uint64_t session_id);
  Response ParkAppend(uint64_t session_id, CommitQueue::Ticket ticket, Response response);
  // The parked append's answer, or nullopt if `session_id` is not one.
  std::optional<Response> ResumeAppend(uint64_t session_id);
  Response Read(const Request& request, uint64_t session_id);
  Response Head(const Request& request);
  Response Delete(const Request& request);
  Response Preflight(const Request& request);

  // Live reads (live.cc).
  static std::unique_ptr<Session> NewSession(bool sse, const StreamPtr& stream, uint64_t offset,
                                             std::string cursor, uint64_t session_id);
  Response StartLongPoll(const StreamPtr& stream, uint64_t offset,
                         std::string cursor, uint64_t session_id);
  Response StartSse(const StreamPtr& stream, uint64_t offset,
                    std::string cursor, uint64_t session_id);
  Response ResumeLongPoll(Session& session, ds_resume_reason reason);
  // A long-poll's answer for a reader at `offset` (data, or with `give_up`
  // or at a closed tail the timeout answer, or 404/410), or nothing while it
  // must wait. Requires `lock` on stream.mu; may release it.
  std::optional<Response> LongPollAnswerLocked(Stream& stream, std::unique_lock<std::mutex>& lock,
                                               uint64_t offset, std::string_view client_cursor,
                                               bool give_up);
  Response ResumeSse(Session& session, ds_resume_reason reason);
  // Takes a session out of the map and off its stream's waiter list; null
  // if there is none or it is not of `mode`.
  std::unique_ptr<Session> TakeSession(uint64_t session_id, std::optional<int> mode);
  // The part of an adoption both kinds share (live.cc).
  Adoption TakeForAdoption(uint64_t session_id, int mode, AdoptedSocket socket,
                           uint64_t owner, SseAdoption* adoption);
  // Gives an adopted session to the next fan-out loop.
  Adoption Hand(SseAdoption adoption, std::string* message);

  // SseSource, shared by ResumeSse and the fan-out (live.cc).
  SseStep NextSseEvents(Stream& stream, uint64_t offset, std::string_view client_cursor,
                        std::string* out) override;
  bool ParkSseWaiter(Stream& stream, uint64_t waiter, uint64_t offset,
                     WaiterRegistration* registration) override;
  void UnparkSseWaiter(Stream& stream, uint64_t waiter,
                       const WaiterRegistration& registration) override;
  bool AnswerLongPoll(Stream& stream, uint64_t offset, std::string_view client_cursor,
                      bool give_up, Response* out) override;
  void ReturnConnections(uint32_t loop, const std::vector<uint64_t>& tags, bool wave_ends) override;
  void WaveBegins(uint32_t loop) override;
  bool ReturnsHeld() const override { return returns_held_.load(std::memory_order_relaxed); }
  // Removes `waiter` from the stream's list if `registration` is current.
  // Requires stream.mu.
  static void Unpark(Stream& stream, uint64_t waiter, const WaiterRegistration& registration);

  std::vector<std::shared_ptr<Stream>> GroupStreams(const std::string& group) const;

  // Registry access. Lookup returns the stream at `path` unless it is absent
  // or expired (an expired stream is removed on the way).
  StreamPtr Lookup(const std::string& path);
  // Removes `stream` from the registry, or soft-deletes it while forks
  // reference it; collects soft-deleted sources no fork needs any more, up
  // the chain, in the same commit; wakes the readers of all of them.
  Status Remove(const StreamPtr& stream);
  // Remove in two halves, so that many removals can share commits: the
  // first takes the streams out under the locks and queues their commit,
  // the second waits for it and wakes their readers.
  struct Removal {
    CommitQueue::Ticket ticket;   // none in memory, or if already removed
    std::vector<uint64_t> woken;
    std::vector<std::string> paths;  // gone for good: their subscription links go
  };
  Removal BeginRemoval(const StreamPtr& stream);
  Status FinishRemoval(Removal removal);
  // relay: called on the committer, which queues for the caller when it
  // enabled the wake relay.
  void Wake(std::vector<uint64_t> sessions, bool relay = false);

  // Durability (see commit_queue.h). Submit queues mutations (call it with
  // the stream lock held, so a stream's commits keep its write order);
  // Await waits for them and records the outcome. on_commit and valid run
  // on the committer thread (commit_queue.h).
  CommitQueue::Ticket Submit(std::vector<StreamMutation> mutations,
                             CommitQueue::OnCommit on_commit = nullptr,
                             CommitQueue::Valid valid = nullptr);
  Status Await(const CommitQueue::Ticket& ticket);
  // A failed commit: NoSpace (a full disk or map) is soft, every write is
  // still tried and the next commit that succeeds clears it (NoteCommitted);
  // anything else stops the engine taking writes until restart (a failed
  // fsync leaves the page cache untrustworthy: STORAGE_FORMAT.md).
  void RecordFailure(const Status& status);
  void NoteCommitted();
  // Non-null once a fatal storage error happened: every later write is
  // refused with it.
  std::optional<Response> RefuseWrites() const;
  // The answer for a failed storage operation (507, 500, or 410), counted.
  Response StorageFailure(const Status& status) const;
  // The answer for a segment write that failed (and was undone): an I/O
  // error other than a full disk is fatal, as a failed commit's is.
  Response WriteFailure(const Status& status);
  // The pending state of `stream` is committed as long as its
  // undo_generation stays as it is now. Requires stream.mu.
  static CommitQueue::Valid Unchanged(const StreamPtr& stream);
  // The same without owning `stream` (small enough for std::function to
  // hold without allocating, on the append path): the entry's OnCommit must
  // keep the stream alive.
  static CommitQueue::Valid UnchangedWhileHeld(const Stream& stream);
  // Undoes in memory what the failed commits of `stream` wrote ahead
  // (log bytes, producers, Stream-Seq, closure) back to its committed state
  // and bumps its undo_generation, unless that is no longer `generation`
  // (undone already). Runs on the committer thread, from an OnCommit.
  void RollBack(const StreamPtr& stream, uint64_t generation);

  // Shared response pieces.
  // On every response with a status line: Handle's, and a resumed session's
  // final answer (a long-poll that waited).
  void AddCommonHeaders(Response* response) const;
  std::string Cursor(std::string_view client_cursor) const;
  bool IsReservedPath(std::string_view path) const;
  // Bytes [from, end) for a read response starting at `from` (at most
  // max_read_bytes, cut on a message boundary in JSON mode).
  uint64_t ChunkEnd(const Stream& stream, uint64_t from, uint64_t tail) const;
  // A catch-up read's chunk: ChunkEnd, except that a byte stream's chunk
  // that would still end at least one max_read_bytes before the tail is
  // kFarChunkFactor times larger when its bytes go out without a copy
  // (memory blocks, segment files), else kMidChunkFactor times, the same
  // while that much lies before the tail. Such chunks are immutable and
  // cacheable like any other; readers near the tail keep small ones.
  uint64_t CatchUpChunkEnd(const Stream& stream, uint64_t from, uint64_t tail) const;
  static constexpr uint64_t kFarChunkFactor = 16;
  static constexpr uint64_t kMidChunkFactor = 4;
  // Catch-up chunks at least this long go out with sendfile when their
  // bytes are in segment files; shorter ones are copied (an open and a
  // close per file cost more than copying a few pages).
  static constexpr uint64_t kSendfileMinBytes = 64 << 10;
  Status AppendBody(const Stream& stream, uint64_t from, uint64_t to,
                    std::string* body) const;
  // Reads [from, to) a max_read_bytes window at a time into a scratch
  // buffer: the copying read checks every segment block it touches, so
  // OpenFiles serves them afterwards. Fails as that read would (Gone,
  // Corruption).
  Status CheckRange(const Stream& stream, uint64_t from, uint64_t to) const;
  // Queues a stream that has a TTL or Expires-At for SweepExpired at its
  // current deadline. Requires stream.mu.
  void QueueExpiry(const StreamPtr& stream);
  // A read moved a TTL stream's last access: queue it for FlushAccessTimes
  // (durable engines; once per flush). Requires stream.mu.
  void NoteAccess(const StreamPtr& stream);
  // Bytes went into the stream's log: list it for ApplyRetention once it
  // has more than one segment (when retention is on). Requires stream.mu.
  void NoteSegments(const StreamPtr& stream);
  bool retention_on() const {
    return retention_age_ms_.load(std::memory_order_relaxed) > 0 ||
           retention_bytes_.load(std::memory_order_relaxed) > 0;
  }

  void SweeperLoop();

  // SubscriptionHost (subscription_host.cc); paths relative to stream_root.
  std::optional<uint64_t> StreamTail(const std::string& path) override;
  void ForEachStream(const std::function<void(const std::string& path, uint64_t tail)>& fn) override;
  int AppendWakeEvents(const std::string& path, const std::vector<std::string>& events) override;
  // A stream's data became visible (create, append): tell subscriptions.
  // `created`: the stream is new (patterns link it).
  void NoteSubscriptionData(const std::string& path, bool created = false);

  // Usage accounting (usage.h). Charges `stream` what its log holds now
  // (after a rewind or trim); gives back its whole charge and its place in
  // its group (it is deleted). Both require stream.mu.
  void Recharge(Stream& stream);
  void Uncharge(Stream& stream);

  // Retention (retention.cc). The first offset `stream` should keep at
  // `now_ms` (its current one if nothing is due). Requires stream.mu.
  uint64_t RetentionStart(const Stream& stream, int64_t now_ms) const;
  // A trim in two halves, so that many streams share commits: the first
  // records the new start (queues its commit), the second waits for it and
  // only then drops the files.
  struct PendingTrim {
    StreamPtr stream;  // none: nothing was due
    uint64_t new_start = 0;
    uint64_t old_start = 0;  // put back if the commit fails
    CommitQueue::Ticket ticket;
  };
  PendingTrim BeginTrim(const StreamPtr& stream, int64_t now_ms);
  Status FinishTrim(const PendingTrim& trim);

  const EngineOptions options_;
  // The Tunables, read without a lock on every request that uses them (each
  // is read once per use, so a request sees one value).
  std::atomic<int64_t> long_poll_timeout_ms_;
  std::atomic<int64_t> sse_reconnect_interval_ms_;
  std::atomic<uint64_t> max_append_bytes_;
  std::atomic<int64_t> retention_age_ms_;
  std::atomic<uint64_t> retention_bytes_;
  const std::shared_ptr<const Clock> clock_;
  const WakeFn wake_;
  const std::unique_ptr<Store> store_;
  const bool durable_;  // store_ makes commits durable (so they cost I/O)
  // Stopped first in ~Engine: its dispatcher appends wake events.
  std::unique_ptr<Subscriptions> subscriptions_;
  Usage usage_;
  WakeRelay wake_relay_;  // before commit_queue_: outlives its last wakes
  std::unique_ptr<CommitQueue> commit_queue_;  // durable engines only
  mutable std::mutex failure_mu_;
  Status failure_;  // the first fatal storage failure, if any
  std::atomic<bool> no_space_{false};  // the last commit failed for a full disk
  mutable std::atomic<uint64_t> answered_no_space_{0};
  mutable std::atomic<uint64_t> answered_io_error_{0};

  mutable std::shared_mutex registry_mu_;
  std::unordered_map<std::string, StreamPtr> streams_;
  uint64_t next_stream_id_ = 1;  // guarded by registry_mu_

  // The streams with a TTL or Expires-At (SweepExpired), the TTL streams
  // read since the last FlushAccessTimes and the streams with more than one
  // segment (ApplyRetention): they spare the sweeper a scan of every
  // stream. Lock order: registry_mu_, Stream::mu, then these.
  ExpiryQueue expiry_;
  std::mutex accessed_mu_;
  std::vector<StreamPtr> accessed_;
  std::mutex segmented_mu_;
  std::vector<StreamPtr> segmented_;

  mutable std::mutex sessions_mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;

  // Appends waiting for their group commit, by session (not live reads: they
  // are not counted as parked).
  struct PendingAppend {
    CommitQueue::Ticket ticket;
    Response response;  // the answer once the commit succeeded
    bool answered_at_park = false;  // that answer went out with the park
  };
  std::mutex pending_appends_mu_;
  std::unordered_map<uint64_t, PendingAppend> pending_appends_;

  std::atomic<uint64_t> appends_{0};
  std::atomic<uint64_t> bytes_appended_{0};

  std::mutex sweeper_mu_;
  std::condition_variable sweeper_cv_;
  bool stopping_ = false;
  std::thread sweeper_;

  // Long-poll connections one loop answered while other loops had a
  // delivery wave on wait here until those waves are written
  // (ReturnConnections): the HTTP layer's work for their next requests
  // would otherwise compete for the CPU with the writing of the waves'
  // remaining answers. Each loop ends its wave before it goes (~SseFanout),
  // so nothing stays held. Declared before fanouts_, whose loops use them
  // to the end.
  // A hold also ends after kMaxReturnHoldMs (by the engine's clock), so a
  // loop that does not get to end its wave (starved of CPU) delays the
  // others' connections by no more than that.
  static constexpr int64_t kMaxReturnHoldMs = 100;
  struct HeldReturns {
    uint64_t waiting_for = 0;  // loops (bits) whose current waves are not written yet
    int64_t since_ms = 0;
    std::vector<uint64_t> tags;
  };
  std::atomic<bool> returns_held_{false};  // held_returns_ is not empty
  std::mutex returns_mu_;
  uint64_t waves_on_ = 0;  // loops (bits) with a wave begun and not ended
  std::vector<HeldReturns> held_returns_;  // in the order the loops gave them

  // Adopted SSE sessions, spread over the loops round-robin. ~Engine
  // destroys them first: their threads call back into the engine.
  std::vector<std::unique_ptr<SseFanout>> fanouts_;
  std::atomic<uint64_t> next_fanout_{0};
};

}  // namespace ds
