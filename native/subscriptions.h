// Subscriptions (PROTOCOL.md §6–§7): durable cursors over sets of streams
// that wake a webhook or a pool of pull-wake workers when any of them has
// data past its acknowledged offset.
//
// State machine (§7, §7.3), per subscription:
//   idle ──pending work──▶ wake in flight ──claim (pull-wake)──▶ lease held
//     ▲                      │ webhook: the lease starts with the wake
//     └── done / release / lease expiry / delivery failure ◀──────┘
// Every wake takes the next `generation` and a fresh `wake_id`; callbacks,
// acks and releases must name both, with a token bound to both, or they are
// fenced (409 FENCED). Acks are inclusive and never move a cursor back. A
// webhook answering {"done":true} acks the wake's snapshot. After any
// release the subscription is looked at again: data past the cursors makes
// a new wake. A failed webhook delivery is retried with exponential backoff
// (1 s doubling to 60 s, ±20% jitter); the subscription reports
// `status: failed` until a delivery succeeds.
//
// Membership: a glob `pattern` and explicit `streams`. Streams matching the
// pattern when the subscription is created are linked at their tail (no
// replay); streams created later are linked at their start, so the data
// that created them is pending. Deleting a stream removes its links.
//
// Cost on the append path: with no subscription at all, or with every
// subscription busy (a wake in flight or a lease held: it will look at all
// its links when released), NoteAppend is two atomic loads and a fence;
// otherwise it adds the stream's path to a set of appended streams (no copy
// if it is queued already) and signals the dispatcher only when the queue
// was empty: O(1) in the number of subscriptions either way. The
// dispatcher matches each appended path against the pattern index (by
// literal first segment, plus the few patterns that start with a wildcard)
// and the explicit links, and does everything else (cursor comparisons,
// wakes, persistence); a subscription with a wake in flight or a lease held
// costs it one look.
//
// Durability: every change is written to the Store (LMDB with data_dir,
// STORAGE_FORMAT.md "Subscriptions") before the request that made it is
// answered. After a crash, cursors are where the last answered ack left
// them; wakes in flight are delivered again (at-least-once).
//
// Tokens: callback and claim tokens are HMAC-SHA256(secret, kind ‖ id ‖
// generation ‖ wake_id). They need no storage and verify without state;
// they are accepted only while their wake is the current one and its lease
// has not expired, which is how they expire with the lease. The secret
// comes from the caller (kept with the webhook keys in data_dir) or is
// random per process.
//
// Locks: registry_mu_ (the map and the indexes) is never held while a
// subscription's mutex is taken or while the host is called; a
// subscription's mutex may be held while calling the host (the engine) and
// the store. NoteAppend/NoteRemoved take registry_mu_ shared and the
// dispatcher's queue mutex only, so the engine may call them with a stream
// lock held.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "clock.h"
#include "request.h"
#include "response.h"
#include "status.h"
#include "store.h"

namespace ds {

// What subscriptions need from the engine. Paths are stream-root-relative.
class SubscriptionHost {
 public:
  virtual ~SubscriptionHost() = default;
  // The committed tail of the stream, or nullopt if there is none.
  virtual std::optional<uint64_t> StreamTail(const std::string& path) = 0;
  // Every live stream with its committed tail.
  virtual void ForEachStream(const std::function<void(const std::string& path, uint64_t tail)>& fn) = 0;
  // Appends the wake events (JSON objects) to the stream through the normal
  // append path; the HTTP status the append got.
  virtual int AppendWakeEvents(const std::string& path, const std::vector<std::string>& events) = 0;
};

struct SubscriptionOptions {
  std::string stream_root = "/v1/stream";
  // The HMAC key for tokens; random per process when empty.
  std::string token_secret;
  // Run the dispatcher thread (tests drive RunOnce themselves).
  bool thread = true;
  // Called with no lock held when webhook deliveries were queued.
  std::function<void()> notify_webhooks;
  // Seeds the retry jitter (0: random).
  uint64_t jitter_seed = 0;
};

// One webhook request for the caller to send (§7.1).
struct WebhookJob {
  std::string subscription_id;
  std::string url;
  std::string body;  // exact bytes to POST (and sign)
  uint64_t generation = 0;
  std::string wake_id;
};

struct SubscriptionStats {
  uint64_t subscriptions = 0;
  uint64_t leases_held = 0;
  uint64_t wakes_webhook = 0;
  uint64_t wakes_pull = 0;
  uint64_t webhooks_queued = 0;  // waiting for TakeWebhooks
};

// Retry delay after `attempts` failed deliveries (1 s, 2 s, 4 s, ... 60 s),
// scaled by `jitter` in [-0.2, 0.2].
int64_t WebhookBackoffMs(uint32_t attempts, double jitter);

class Subscriptions {
 public:
  Subscriptions(SubscriptionOptions options, std::shared_ptr<const Clock> clock,
                SubscriptionHost* host, Store* store);
  ~Subscriptions();
  Subscriptions(const Subscriptions&) = delete;
  Subscriptions& operator=(const Subscriptions&) = delete;

  // Loads the stored subscriptions (before the first request). Wakes in
  // flight are queued again; unclaimed pull-wakes are issued again.
  Status Recover();
  // Starts the dispatcher thread (if options.thread).
  void Start();
  // Stops it; later notes are queued and never processed.
  void Stop();

  // One control request; `rel` is the path after "<root>/__ds/".
  Response Handle(const Request& request, std::string_view rel);

  // Engine hooks (no lock of ours held by the caller; the engine may hold a
  // stream lock). `path` is stream-root-relative.
  void NoteAppend(std::string_view path);
  // A stream was created (with or without data): patterns link it.
  void NoteCreated(std::string_view path);
  void NoteRemoved(std::string_view path);

  // Up to `max` queued webhook deliveries, oldest first.
  std::vector<WebhookJob> TakeWebhooks(size_t max);
  // The outcome of sending a job: an HTTP status and body, or
  // transport_error (no answer). Stale results (another wake is current)
  // are ignored.
  void WebhookResult(const std::string& id, uint64_t generation, const std::string& wake_id,
                     int status, std::string_view body, bool transport_error);

  // One dispatcher pass: queued notes, due timers, wakes. Public for tests.
  void RunOnce();
  SubscriptionStats Stats() const;

  // Token for a wake (exposed for tests).
  std::string Token(std::string_view kind, std::string_view id, uint64_t generation,
                    std::string_view wake_id) const;

 private:
  enum class Type { kWebhook, kPullWake };
  enum class Phase { kIdle = 0, kWakeInFlight = 1, kLeased = 2 };
  struct Link {
    bool glob = false;
    bool explicit_link = false;
    uint64_t acked = 0;
  };
  struct Sub {
    std::mutex mu;
    // Configuration (hashed for idempotent re-confirmation).
    std::string id;
    Type type = Type::kWebhook;
    std::optional<std::string> pattern;
    std::vector<std::string> streams;  // normalized: sorted, unique
    std::string webhook_url;
    std::string wake_stream;
    int64_t lease_ttl_ms = 30000;
    std::optional<std::string> description;
    std::string config_hash;
    int64_t created_at_ms = 0;
    std::string callback_base;  // "scheme://host" of the creating request
    // State.
    std::map<std::string, Link> links;
    uint64_t generation = 0;
    std::string wake_id;
    Phase phase = Phase::kIdle;
    std::string holder;
    int64_t lease_expires_ms = 0;
    std::vector<std::pair<std::string, uint64_t>> snapshot;  // tails at the wake
    uint32_t attempts = 0;       // failed deliveries in a row
    int64_t next_attempt_ms = 0; // no wake before this (retry backoff)
  int64_t armed_ms = 0;        // a timer queued by Evaluate for this time
    bool deleted = false;
  };
  using SubPtr = std::shared_ptr<Sub>;
  struct Note {
    std::string id;
    std::string path;
    bool removed = false;
  };
  struct Timer {
    int64_t at_ms;
    std::string id;
    bool operator>(const Timer& o) const { return at_ms > o.at_ms; }
  };

  // Control API (subscription_api.cc).
  Response Put(const Request& request, const std::string& id);
  Response Get(const Request& request, const std::string& id);
  Response Delete(const std::string& id);
  Response AddStreams(const Request& request, const std::string& id);
  Response RemoveStream(const std::string& id, const std::string& path);
  Response Claim(const Request& request, const std::string& id);
  // callback (webhook), ack and release (pull-wake).
  enum class Completion { kCallback, kAck, kRelease };
  Response Complete(const Request& request, const std::string& id, Completion kind);

  SubPtr Find(const std::string& id) const;
  // The only writer of Sub::phase once a subscription is registered (needs
  // sub.mu): keeps busy_ in step.
  void SetPhase(Sub& sub, Phase phase);
  // Index maintenance; require registry_mu_ exclusive.
  void IndexAdd(const Sub& sub);
  void IndexRemove(const Sub& sub);
  void IndexExplicit(const std::string& id, const std::string& path, bool add);
  // The ids of subscriptions that may link `path`. Takes registry_mu_ shared.
  std::vector<std::string> Candidates(std::string_view path) const;
  void Enqueue(std::vector<Note> notes);
  void AddTimer(int64_t at_ms, const std::string& id);

  // Require sub.mu.
  bool HasPending(const Sub& sub, std::vector<std::pair<std::string, uint64_t>>* tails);
  // Starts a wake (generation, wake_id; webhook: lease, job; pull-wake:
  // wake events unless `claiming`). Persists before any effect.
  Status IssueWake(Sub& sub, int64_t now, bool claiming);
  // Lease passed: clear holder, wake and token.
  bool ExpireIfDue(Sub& sub, int64_t now);
  void Evaluate(const SubPtr& sub, int64_t now);
  // Writes the record, `put` links and `erased` links.
  Status Persist(const Sub& sub, const std::vector<std::string>& put,
                 const std::vector<std::string>& erased);
  Status PersistRecord(const Sub& sub) { return Persist(sub, {}, {}); }
  std::string EncodeRecord(const Sub& sub) const;
  static bool DecodeRecord(std::string_view text, Sub* sub);
  static std::string EncodeLink(const Link& link);
  static bool DecodeLink(std::string_view text, Link* link);
  std::string SubscriptionJson(const Sub& sub, const Request& request) const;
  std::string StreamsJson(const Sub& sub, const std::vector<std::pair<std::string, uint64_t>>& tails,
                          bool with_tails) const;
  std::string NewWakeId();
  void QueueWebhook(const Sub& sub, const std::vector<std::pair<std::string, uint64_t>>& tails);
  void ScheduleRetry(Sub& sub, int64_t now);
  void DispatcherLoop();

  const SubscriptionOptions options_;
  const std::shared_ptr<const Clock> clock_;
  SubscriptionHost* const host_;
  Store* const store_;
  std::string secret_;

  mutable std::shared_mutex registry_mu_;
  std::unordered_map<std::string, SubPtr> subs_;
  // Pattern index: by literal first segment, and those starting with a
  // wildcard. Explicit links by path.
  std::unordered_map<std::string, std::unordered_set<std::string>> by_first_segment_;
  std::unordered_set<std::string> wildcard_first_;
  std::unordered_map<std::string, std::unordered_set<std::string>> explicit_by_path_;
  std::atomic<uint64_t> count_{0};
  // Subscriptions with a wake in flight or a lease held. When every one is
  // busy an append notes nothing: each of them looks at all its links when
  // it is released (HasPending after SetPhase(kIdle)), so the data is seen
  // then. Never above the number of busy subscriptions in subs_ (a deleted
  // one leaves busy_ before count_).
  std::atomic<uint64_t> busy_{0};

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::vector<Note> notes_;
  // Streams appended to since the dispatcher last looked (the append path
  // only adds the path here; matching it against subscriptions is the
  // dispatcher's work). Transparent so a queued path is found without a
  // copy.
  struct PathHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_set<std::string, PathHash, std::equal_to<>> appended_;
  // Streams created since the dispatcher last looked: linked by the
  // patterns that match them whether or not anyone is busy.
  std::unordered_set<std::string, PathHash, std::equal_to<>> created_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  bool stopping_ = false;
  std::thread thread_;

  std::mutex outbox_mu_;
  std::vector<WebhookJob> outbox_;

  std::mutex rng_mu_;
  std::mt19937_64 rng_;

  std::atomic<uint64_t> wakes_webhook_{0};
  std::atomic<uint64_t> wakes_pull_{0};
  std::atomic<uint64_t> leases_held_{0};
};

}  // namespace ds
