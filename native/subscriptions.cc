// The subscription registry, its state machine, persistence and dispatcher
// (subscriptions.h). The HTTP control API is in subscription_api.cc.
#include "subscriptions.h"

#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "glob.h"
#include "hmac_sha256.h"
#include "json_text.h"
#include "offset.h"

namespace ds {

std::string IsoTimeMs(int64_t ms) {
  // Civil date from days since the epoch (H. Hinnant's algorithm), so no
  // platform's gmtime is needed.
  int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
  const int millis = static_cast<int>(ms - secs * 1000);
  int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  const int64_t rem = secs - days * 86400;
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  char buf[96];
  snprintf(buf, sizeof(buf), "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03dZ",
           static_cast<long long>(y), static_cast<long long>(m), static_cast<long long>(d),
           static_cast<long long>(rem / 3600), static_cast<long long>(rem / 60 % 60),
           static_cast<long long>(rem % 60), millis);
  return buf;
}

int64_t WebhookBackoffMs(uint32_t attempts, double jitter) {
  if (attempts == 0) return 0;
  int64_t base = 1000;
  for (uint32_t i = 1; i < attempts && base < 60000; ++i) base *= 2;
  base = std::min<int64_t>(base, 60000);
  jitter = std::clamp(jitter, -0.2, 0.2);
  return static_cast<int64_t>(std::llround(static_cast<double>(base) * (1.0 + jitter)));
}

namespace {

std::string Hex(const uint8_t* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 15]);
  }
  return out;
}

}  // namespace

Subscriptions::Subscriptions(SubscriptionOptions options, std::shared_ptr<const Clock> clock,
                             SubscriptionHost* host, Store* store)
    : options_(std::move(options)), clock_(std::move(clock)), host_(host), store_(store) {
  std::random_device rd;
  const uint64_t seed = options_.jitter_seed != 0
                            ? options_.jitter_seed
                            : (static_cast<uint64_t>(rd()) << 32) ^ rd();
  rng_.seed(seed);
  secret_ = options_.token_secret;
  if (secret_.empty()) {
    // Per process: tokens handed out before a restart stop verifying, and
    // their wakes are fenced anyway once their lease runs out.
    secret_.resize(32);
    for (char& c : secret_) c = static_cast<char>(rd());
  }
}

Subscriptions::~Subscriptions() { Stop(); }

void Subscriptions::Start() {
  if (!options_.thread || thread_.joinable()) return;
  thread_ = std::thread([this] { DispatcherLoop(); });
}

void Subscriptions::Stop() {
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string Subscriptions::Token(std::string_view kind, std::string_view id, uint64_t generation,
                                 std::string_view wake_id) const {
  std::string message;
  message.append(kind).push_back('\0');
  message.append(id).push_back('\0');
  message.append(std::to_string(generation)).push_back('\0');
  message.append(wake_id);
  Sha256Digest mac = HmacSha256(secret_, message);
  return "dst1." + Hex(mac.data(), mac.size());
}

std::string Subscriptions::NewWakeId() {
  std::lock_guard lock(rng_mu_);
  uint64_t a = rng_(), b = rng_();
  uint8_t bytes[16];
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<uint8_t>(a >> (8 * i));
    bytes[8 + i] = static_cast<uint8_t>(b >> (8 * i));
  }
  return "w_" + Hex(bytes, sizeof(bytes));
}

Subscriptions::SubPtr Subscriptions::Find(const std::string& id) const {
  std::shared_lock lock(registry_mu_);
  auto it = subs_.find(id);
  return it == subs_.end() ? nullptr : it->second;
}

void Subscriptions::IndexAdd(const Sub& sub) {
  if (sub.pattern) {
    std::string_view first = GlobFirstLiteral(*sub.pattern);
    if (first.empty()) {
      wildcard_first_.insert(sub.id);
    } else {
      by_first_segment_[std::string(first)].insert(sub.id);
    }
  }
  for (const auto& [path, link] : sub.links) {
    if (link.explicit_link) explicit_by_path_[path].insert(sub.id);
  }
}

void Subscriptions::IndexRemove(const Sub& sub) {
  if (sub.pattern) {
    std::string_view first = GlobFirstLiteral(*sub.pattern);
    if (first.empty()) {
      wildcard_first_.erase(sub.id);
    } else if (auto it = by_first_segment_.find(std::string(first)); it != by_first_segment_.end()) {
      it->second.erase(sub.id);
      if (it->second.empty()) by_first_segment_.erase(it);
    }
  }
  for (auto it = explicit_by_path_.begin(); it != explicit_by_path_.end();) {
    it->second.erase(sub.id);
    it = it->second.empty() ? explicit_by_path_.erase(it) : std::next(it);
  }
}

void Subscriptions::IndexExplicit(const std::string& id, const std::string& path, bool add) {
  if (add) {
    explicit_by_path_[path].insert(id);
  } else if (auto it = explicit_by_path_.find(path); it != explicit_by_path_.end()) {
    it->second.erase(id);
    if (it->second.empty()) explicit_by_path_.erase(it);
  }
}

std::vector<std::string> Subscriptions::Candidates(std::string_view path) const {
  std::vector<std::string> out;
  std::shared_lock lock(registry_mu_);
  auto consider = [&](const std::string& id) {
    auto it = subs_.find(id);
    if (it == subs_.end()) return;
    // The pattern is immutable once the subscription exists.
    const std::optional<std::string>& pattern = it->second->pattern;
    if (pattern && GlobMatch(*pattern, path)) out.push_back(id);
  };
  if (auto it = by_first_segment_.find(std::string(FirstSegment(path))); it != by_first_segment_.end()) {
    for (const std::string& id : it->second) consider(id);
  }
  for (const std::string& id : wildcard_first_) consider(id);
  if (auto it = explicit_by_path_.find(std::string(path)); it != explicit_by_path_.end()) {
    for (const std::string& id : it->second) {
      if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
    }
  }
  return out;
}

void Subscriptions::SetPhase(Sub& sub, Phase phase) {
  const bool was_busy = sub.phase != Phase::kIdle;
  const bool busy = phase != Phase::kIdle;
  sub.phase = phase;
  if (was_busy == busy) return;
  if (busy) {
    busy_.fetch_add(1);
  } else {
    busy_.fetch_sub(1);
    // Pairs with the fence in NoteAppend: either that append sees this
    // subscription idle and notes the stream, or the HasPending that
    // follows a release here sees the append's tail.
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

void Subscriptions::NoteAppend(std::string_view path) {
  const uint64_t count = count_.load(std::memory_order_acquire);
  if (count == 0) return;
  // The tail was published before this call; see SetPhase.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (busy_.load(std::memory_order_relaxed) >= count) return;
  bool was_empty;
  {
    std::lock_guard lock(queue_mu_);
    if (appended_.find(path) != appended_.end()) return;  // coalesced
    was_empty = notes_.empty() && appended_.empty() && created_.empty();
    appended_.emplace(path);
  }
  // The dispatcher checks the queue under the lock before it waits: it
  // needs a signal only when the queue was empty, not once per append.
  if (was_empty) queue_cv_.notify_one();
}

void Subscriptions::NoteCreated(std::string_view path) {
  if (count_.load(std::memory_order_acquire) == 0) return;
  bool was_empty;
  {
    std::lock_guard lock(queue_mu_);
    was_empty = notes_.empty() && appended_.empty() && created_.empty();
    created_.emplace(path);
  }
  if (was_empty) queue_cv_.notify_one();
}

void Subscriptions::NoteRemoved(std::string_view path) {
  if (count_.load(std::memory_order_acquire) == 0) return;
  std::vector<std::string> ids = Candidates(path);
  if (ids.empty()) return;
  std::vector<Note> notes;
  for (std::string& id : ids) notes.push_back(Note{std::move(id), std::string(path), true});
  Enqueue(std::move(notes));
}

void Subscriptions::Enqueue(std::vector<Note> notes) {
  bool was_empty;
  {
    std::lock_guard lock(queue_mu_);
    was_empty = notes_.empty() && appended_.empty() && created_.empty();
    for (Note& note : notes) notes_.push_back(std::move(note));
  }
  // The dispatcher checks the queue under the lock before it waits: it
  // needs a signal only when the queue was empty, not once per append.
  if (was_empty) queue_cv_.notify_one();
}

void Subscriptions::AddTimer(int64_t at_ms, const std::string& id) {
  {
    std::lock_guard lock(queue_mu_);
    timers_.push(Timer{at_ms, id});
  }
  queue_cv_.notify_one();
}

void Subscriptions::DispatcherLoop() {
  for (;;) {
    {
      std::unique_lock lock(queue_mu_);
      for (;;) {
        if (stopping_) return;
        if (!notes_.empty() || !appended_.empty() || !created_.empty()) break;
        const int64_t now = clock_->NowMs();
        if (!timers_.empty() && timers_.top().at_ms <= now) break;
        // Timers are on the engine clock; wait in real time, at most a
        // second, so that a clock that jumps is noticed soon enough.
        int64_t wait = 1000;
        if (!timers_.empty()) wait = std::clamp<int64_t>(timers_.top().at_ms - now, 1, 1000);
        queue_cv_.wait_for(lock, std::chrono::milliseconds(wait));
      }
    }
    RunOnce();
  }
}

void Subscriptions::RunOnce() {
  std::vector<Note> notes;
  std::vector<std::string> due;
  decltype(appended_) appended;
  decltype(created_) created;
  const int64_t now = clock_->NowMs();
  {
    std::lock_guard lock(queue_mu_);
    notes.swap(notes_);
    appended.swap(appended_);
    created.swap(created_);
    while (!timers_.empty() && timers_.top().at_ms <= now) {
      due.push_back(timers_.top().id);
      timers_.pop();
    }
  }
  // Created and appended streams fan out to the subscriptions that may link
  // them. Appends queued before every subscription became busy need
  // nothing more (see busy_).
  for (const std::string& path : created) {
    appended.erase(path);
    for (std::string& id : Candidates(path)) notes.push_back(Note{std::move(id), path, false});
  }
  if (busy_.load() < count_.load()) {
    for (const std::string& path : appended) {
      for (std::string& id : Candidates(path)) notes.push_back(Note{std::move(id), path, false});
    }
  }
  // Membership changes first, then every subscription touched is looked at
  // once.
  std::vector<std::string> touched;
  for (const Note& note : notes) {
    SubPtr sub = Find(note.id);
    if (sub == nullptr) continue;
    bool explicit_removed = false;
    {
      std::lock_guard lock(sub->mu);
      if (sub->deleted) continue;
      auto it = sub->links.find(note.path);
      if (note.removed) {
        if (it != sub->links.end()) {
          explicit_removed = it->second.explicit_link;
          sub->links.erase(it);
          Persist(*sub, {}, {note.path});
        }
      } else if (it == sub->links.end() && !note.path.empty()) {
        // Removals are applied before appends of the same pass: a stream
        // appended to and then deleted is not there any more.
        if (sub->pattern && GlobMatch(*sub->pattern, note.path) && note.path != sub->wake_stream &&
            host_->StreamTail(note.path)) {
          // Discovered by its first data: linked before it (§6.2).
          sub->links[note.path] = Link{true, false, 0};
          Persist(*sub, {note.path}, {});
        }
      }
    }
    if (explicit_removed) {
      std::unique_lock lock(registry_mu_);
      IndexExplicit(note.id, note.path, false);
    }
    touched.push_back(note.id);
  }
  for (std::string& id : due) touched.push_back(std::move(id));
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  for (const std::string& id : touched) {
    if (SubPtr sub = Find(id)) Evaluate(sub, now);
  }
}

bool Subscriptions::ExpireIfDue(Sub& sub, int64_t now) {
  const bool leased = sub.phase == Phase::kLeased ||
                      (sub.phase == Phase::kWakeInFlight && sub.type == Type::kWebhook);
  if (!leased || sub.lease_expires_ms > now) return false;
  // §7.3: the holder and the wake's token are cleared; a new wake follows
  // if work is pending.
  SetPhase(sub, Phase::kIdle);
  sub.holder.clear();
  sub.wake_id.clear();
  sub.snapshot.clear();
  sub.lease_expires_ms = 0;
  PersistRecord(sub);
  return true;
}

bool Subscriptions::HasPending(const Sub& sub, std::vector<std::pair<std::string, uint64_t>>* tails) {
  bool pending = false;
  for (const auto& [path, link] : sub.links) {
    std::optional<uint64_t> tail = host_->StreamTail(path);
    const uint64_t t = tail.value_or(0);
    if (tails != nullptr) tails->emplace_back(path, t);
    if (tail && t > link.acked) pending = true;
  }
  return pending;
}

void Subscriptions::Evaluate(const SubPtr& sub, int64_t now) {
  bool notify = false;
  {
    std::lock_guard lock(sub->mu);
    if (sub->deleted) return;
    ExpireIfDue(*sub, now);
    if (sub->phase != Phase::kIdle) {
      // Re-arm the lease timer once per deadline (every append to a linked
      // stream lands here while a wake is out; a stale timer just finds
      // nothing to do).
      if (sub->lease_expires_ms > now && sub->armed_ms != sub->lease_expires_ms) {
        AddTimer(sub->lease_expires_ms, sub->id);
        sub->armed_ms = sub->lease_expires_ms;
      }
      return;
    }
    if (sub->next_attempt_ms > now) {
      if (sub->armed_ms != sub->next_attempt_ms) {
        AddTimer(sub->next_attempt_ms, sub->id);
        sub->armed_ms = sub->next_attempt_ms;
      }
      return;
    }
    if (!HasPending(*sub, nullptr)) return;
    Status s = IssueWake(*sub, now, false);
    notify = s.ok() && sub->type == Type::kWebhook;
  }
  if (notify && options_.notify_webhooks) options_.notify_webhooks();
}

Status Subscriptions::IssueWake(Sub& sub, int64_t now, bool claiming) {
  std::vector<std::pair<std::string, uint64_t>> tails;
  HasPending(sub, &tails);
  const uint64_t old_generation = sub.generation;
  const std::string old_wake = sub.wake_id;
  const Phase old_phase = sub.phase;
  sub.generation += 1;
  sub.wake_id = NewWakeId();
  sub.snapshot = tails;
  if (sub.type == Type::kWebhook) {
    SetPhase(sub, Phase::kWakeInFlight);
    sub.lease_expires_ms = now + sub.lease_ttl_ms;
  } else {
    SetPhase(sub, claiming ? Phase::kLeased : Phase::kWakeInFlight);
    sub.lease_expires_ms = claiming ? now + sub.lease_ttl_ms : 0;
  }
  // The generation is durable before anyone hears of it: a restart never
  // hands out the same generation twice.
  Status s = PersistRecord(sub);
  if (!s.ok()) {
    sub.generation = old_generation;
    sub.wake_id = old_wake;
    SetPhase(sub, old_phase);
    sub.snapshot.clear();
    return s;
  }
  if (sub.lease_expires_ms > 0) AddTimer(sub.lease_expires_ms, sub.id);
  if (sub.type == Type::kWebhook) {
    wakes_webhook_.fetch_add(1, std::memory_order_relaxed);
    QueueWebhook(sub, tails);
    return Status::OK();
  }
  wakes_pull_.fetch_add(1, std::memory_order_relaxed);
  if (claiming) return Status::OK();
  // §7.2: one wake event per stream with pending data (at most 100: a
  // worker claims the subscription, not a stream).
  std::vector<std::string> events;
  for (const auto& [path, tail] : tails) {
    auto it = sub.links.find(path);
    if (it == sub.links.end() || tail <= it->second.acked) continue;
    std::string e = "{\"type\":\"wake\",\"subscription_id\":";
    AppendJsonString(&e, sub.id);
    e += ",\"stream\":";
    AppendJsonString(&e, path);
    e += ",\"generation\":" + std::to_string(sub.generation) + ",\"ts\":" + std::to_string(now) + "}";
    events.push_back(std::move(e));
    if (events.size() == 100) break;
  }
  const int status = host_->AppendWakeEvents(sub.wake_stream, events);
  if (status < 200 || status > 299) {
    // No wake channel (deleted, closed, full): try again later, as a
    // failed webhook delivery would.
    SetPhase(sub, Phase::kIdle);
    sub.wake_id.clear();
    sub.snapshot.clear();
    ScheduleRetry(sub, now);
    return Status::IoError("wake stream append answered " + std::to_string(status));
  }
  if (sub.attempts != 0) {
    sub.attempts = 0;
    sub.next_attempt_ms = 0;
    PersistRecord(sub);
  }
  return Status::OK();
}

void Subscriptions::ScheduleRetry(Sub& sub, int64_t now) {
  double jitter;
  {
    std::lock_guard lock(rng_mu_);
    jitter = std::uniform_real_distribution<double>(-0.2, 0.2)(rng_);
  }
  sub.attempts += 1;
  sub.next_attempt_ms = now + WebhookBackoffMs(sub.attempts, jitter);
  PersistRecord(sub);
  AddTimer(sub.next_attempt_ms, sub.id);
}

std::string Subscriptions::StreamsJson(const Sub& sub,
                                       const std::vector<std::pair<std::string, uint64_t>>& tails,
                                       bool with_tails) const {
  std::string out = "[";
  bool first = true;
  auto one = [&](const std::string& path, const Link& link, const uint64_t* tail) {
    if (!first) out.push_back(',');
    first = false;
    out += "{\"path\":";
    AppendJsonString(&out, path);
    out += ",\"link_type\":";
    out += link.explicit_link ? "\"explicit\"" : "\"glob\"";
    out += ",\"acked_offset\":\"" + EncodeOffset(link.acked) + "\"";
    if (tail != nullptr) {
      out += ",\"tail_offset\":\"" + EncodeOffset(*tail) + "\"";
      out += *tail > link.acked ? ",\"has_pending\":true" : ",\"has_pending\":false";
    }
    out.push_back('}');
  };
  if (with_tails) {
    for (const auto& [path, tail] : tails) {
      auto it = sub.links.find(path);
      if (it != sub.links.end()) one(path, it->second, &tail);
    }
  } else {
    for (const auto& [path, link] : sub.links) one(path, link, nullptr);
  }
  out.push_back(']');
  return out;
}

void Subscriptions::QueueWebhook(const Sub& sub,
                                 const std::vector<std::pair<std::string, uint64_t>>& tails) {
  WebhookJob job;
  job.subscription_id = sub.id;
  job.url = sub.webhook_url;
  job.generation = sub.generation;
  job.wake_id = sub.wake_id;
  std::string& b = job.body;
  b = "{\"subscription_id\":";
  AppendJsonString(&b, sub.id);
  b += ",\"wake_id\":";
  AppendJsonString(&b, sub.wake_id);
  b += ",\"generation\":" + std::to_string(sub.generation);
  b += ",\"streams\":" + StreamsJson(sub, tails, true);
  b += ",\"callback_url\":";
  AppendJsonString(&b, sub.callback_base + options_.stream_root + "/__ds/subscriptions/" + sub.id +
                           "/callback");
  b += ",\"callback_token\":";
  AppendJsonString(&b, Token("cb", sub.id, sub.generation, sub.wake_id));
  b += "}";
  std::lock_guard lock(outbox_mu_);
  // One delivery per subscription waits at a time: a newer wake replaces an
  // older one not yet taken (its generation is fenced anyway).
  for (WebhookJob& queued : outbox_) {
    if (queued.subscription_id == job.subscription_id) {
      queued = std::move(job);
      return;
    }
  }
  outbox_.push_back(std::move(job));
}

std::vector<WebhookJob> Subscriptions::TakeWebhooks(size_t max) {
  std::lock_guard lock(outbox_mu_);
  std::vector<WebhookJob> out;
  const size_t n = std::min(max, outbox_.size());
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(std::move(outbox_[i]));
  outbox_.erase(outbox_.begin(), outbox_.begin() + static_cast<ptrdiff_t>(n));
  return out;
}

void Subscriptions::WebhookResult(const std::string& id, uint64_t generation,
                                  const std::string& wake_id, int status, std::string_view body,
                                  bool transport_error) {
  SubPtr sub = Find(id);
  if (sub == nullptr) return;
  const int64_t now = clock_->NowMs();
  bool reevaluate = false;
  {
    std::lock_guard lock(sub->mu);
    if (sub->deleted || sub->generation != generation || sub->wake_id != wake_id ||
        sub->phase != Phase::kWakeInFlight) {
      return;  // fenced: another wake is current
    }
    if (transport_error || status < 200 || status > 299) {
      SetPhase(*sub, Phase::kIdle);
      sub->wake_id.clear();
      sub->snapshot.clear();
      sub->lease_expires_ms = 0;
      ScheduleRetry(*sub, now);
      return;
    }
    sub->attempts = 0;
    sub->next_attempt_ms = 0;
    bool done = false;
    simdjson::dom::parser parser;
    simdjson::padded_string padded(body);
    simdjson::dom::element root;
    if (!body.empty() && !parser.parse(padded).get(root) && root.is_object()) {
      bool value = false;
      if (!root["done"].get(value)) done = value;
    }
    std::vector<std::string> put;
    if (done) {
      // §7.1: {"done": true} acks the wake's snapshot and releases.
      for (const auto& [path, tail] : sub->snapshot) {
        auto it = sub->links.find(path);
        if (it != sub->links.end() && tail > it->second.acked) {
          it->second.acked = tail;
          put.push_back(path);
        }
      }
      SetPhase(*sub, Phase::kIdle);
      sub->wake_id.clear();
      sub->snapshot.clear();
      sub->lease_expires_ms = 0;
      reevaluate = true;
    }
    Persist(*sub, put, {});
  }
  if (reevaluate) Evaluate(sub, now);
}

SubscriptionStats Subscriptions::Stats() const {
  SubscriptionStats stats;
  std::vector<SubPtr> all;
  {
    std::shared_lock lock(registry_mu_);
    for (const auto& [id, sub] : subs_) all.push_back(sub);
  }
  stats.subscriptions = all.size();
  const int64_t now = clock_->NowMs();
  for (const SubPtr& sub : all) {
    std::lock_guard lock(sub->mu);
    const bool leased = sub->phase == Phase::kLeased ||
                        (sub->phase == Phase::kWakeInFlight && sub->type == Type::kWebhook);
    if (leased && sub->lease_expires_ms > now) ++stats.leases_held;
  }
  stats.wakes_webhook = wakes_webhook_.load();
  stats.wakes_pull = wakes_pull_.load();
  {
    std::lock_guard lock(const_cast<std::mutex&>(outbox_mu_));
    stats.webhooks_queued = outbox_.size();
  }
  return stats;
}

// ---- Persistence ------------------------------------------------------------

std::string Subscriptions::EncodeLink(const Link& link) {
  const int flags = (link.glob ? 1 : 0) | (link.explicit_link ? 2 : 0);
  return std::to_string(flags) + ":" + std::to_string(link.acked);
}

bool Subscriptions::DecodeLink(std::string_view text, Link* link) {
  size_t colon = text.find(':');
  if (colon != 1 || text.size() < 3) return false;
  const int flags = text[0] - '0';
  if (flags < 1 || flags > 3) return false;
  uint64_t acked = 0;
  for (char c : text.substr(2)) {
    if (c < '0' || c > '9') return false;
    acked = acked * 10 + static_cast<uint64_t>(c - '0');
  }
  link->glob = (flags & 1) != 0;
  link->explicit_link = (flags & 2) != 0;
  link->acked = acked;
  return true;
}

std::string Subscriptions::EncodeRecord(const Sub& sub) const {
  std::string r = "{\"v\":1,\"id\":";
  AppendJsonString(&r, sub.id);
  r += sub.type == Type::kWebhook ? ",\"type\":\"webhook\"" : ",\"type\":\"pull-wake\"";
  if (sub.pattern) {
    r += ",\"pattern\":";
    AppendJsonString(&r, *sub.pattern);
  }
  r += ",\"streams\":[";
  for (size_t i = 0; i < sub.streams.size(); ++i) {
    if (i > 0) r.push_back(',');
    AppendJsonString(&r, sub.streams[i]);
  }
  r += "],\"webhook_url\":";
  AppendJsonString(&r, sub.webhook_url);
  r += ",\"wake_stream\":";
  AppendJsonString(&r, sub.wake_stream);
  r += ",\"lease_ttl_ms\":" + std::to_string(sub.lease_ttl_ms);
  if (sub.description) {
    r += ",\"description\":";
    AppendJsonString(&r, *sub.description);
  }
  r += ",\"config_hash\":";
  AppendJsonString(&r, sub.config_hash);
  r += ",\"created_at_ms\":" + std::to_string(sub.created_at_ms);
  r += ",\"callback_base\":";
  AppendJsonString(&r, sub.callback_base);
  r += ",\"generation\":" + std::to_string(sub.generation);
  r += ",\"wake_id\":";
  AppendJsonString(&r, sub.wake_id);
  r += ",\"phase\":" + std::to_string(static_cast<int>(sub.phase));
  r += ",\"holder\":";
  AppendJsonString(&r, sub.holder);
  r += ",\"lease_expires_ms\":" + std::to_string(sub.lease_expires_ms);
  r += ",\"snapshot\":[";
  for (size_t i = 0; i < sub.snapshot.size(); ++i) {
    if (i > 0) r.push_back(',');
    r.push_back('[');
    AppendJsonString(&r, sub.snapshot[i].first);
    r += "," + std::to_string(sub.snapshot[i].second) + "]";
  }
  r += "],\"attempts\":" + std::to_string(sub.attempts);
  r += ",\"next_attempt_ms\":" + std::to_string(sub.next_attempt_ms);
  r += "}";
  return r;
}

bool Subscriptions::DecodeRecord(std::string_view text, Sub* sub) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(text);
  simdjson::dom::element root;
  if (parser.parse(padded).get(root) || !root.is_object()) return false;
  std::string_view s;
  int64_t i = 0;
  uint64_t u = 0;
  if (root["id"].get(s)) return false;
  sub->id = std::string(s);
  if (root["type"].get(s)) return false;
  sub->type = s == "pull-wake" ? Type::kPullWake : Type::kWebhook;
  if (!root["pattern"].get(s)) sub->pattern = std::string(s);
  simdjson::dom::array arr;
  if (!root["streams"].get(arr)) {
    for (auto e : arr) {
      if (!e.get(s)) sub->streams.emplace_back(s);
    }
  }
  if (!root["webhook_url"].get(s)) sub->webhook_url = std::string(s);
  if (!root["wake_stream"].get(s)) sub->wake_stream = std::string(s);
  if (!root["lease_ttl_ms"].get(i)) sub->lease_ttl_ms = i;
  if (!root["description"].get(s)) sub->description = std::string(s);
  if (!root["config_hash"].get(s)) sub->config_hash = std::string(s);
  if (!root["created_at_ms"].get(i)) sub->created_at_ms = i;
  if (!root["callback_base"].get(s)) sub->callback_base = std::string(s);
  if (!root["generation"].get(u)) sub->generation = u;
  if (!root["wake_id"].get(s)) sub->wake_id = std::string(s);
  if (!root["phase"].get(i)) sub->phase = static_cast<Phase>(std::clamp<int64_t>(i, 0, 2));
  if (!root["holder"].get(s)) sub->holder = std::string(s);
  if (!root["lease_expires_ms"].get(i)) sub->lease_expires_ms = i;
  if (!root["snapshot"].get(arr)) {
    for (auto e : arr) {
      simdjson::dom::array pair;
      if (e.get(pair) || pair.size() != 2) continue;
      std::string_view p;
      uint64_t t = 0;
      if (!pair.at(0).get(p) && !pair.at(1).get(t)) sub->snapshot.emplace_back(std::string(p), t);
    }
  }
  if (!root["attempts"].get(u)) sub->attempts = static_cast<uint32_t>(u);
  if (!root["next_attempt_ms"].get(i)) sub->next_attempt_ms = i;
  return true;
}

Status Subscriptions::Persist(const Sub& sub, const std::vector<std::string>& put,
                              const std::vector<std::string>& erased) {
  if (store_ == nullptr || !store_->durable()) return Status::OK();
  SubscriptionWrite w;
  w.id = sub.id;
  w.record = EncodeRecord(sub);
  for (const std::string& path : put) {
    auto it = sub.links.find(path);
    if (it != sub.links.end()) w.put_links.emplace_back(path, EncodeLink(it->second));
  }
  w.erase_links = erased;
  return store_->CommitSubscription(w);
}

Status Subscriptions::Recover() {
  if (store_ == nullptr || !store_->durable()) return Status::OK();
  std::vector<StoredSubscription> stored;
  Status s = store_->LoadSubscriptions(&stored);
  if (!s.ok()) return s;
  const int64_t now = clock_->NowMs();
  std::vector<SubPtr> loaded;
  for (StoredSubscription& st : stored) {
    auto sub = std::make_shared<Sub>();
    if (!DecodeRecord(st.record, sub.get())) {
      return Status::Corruption("subscription " + st.id + ": unreadable record");
    }
    for (const auto& [path, value] : st.links) {
      Link link;
      if (!DecodeLink(value, &link)) {
        return Status::Corruption("subscription " + st.id + ": unreadable link " + path);
      }
      sub->links[path] = link;
    }
    loaded.push_back(std::move(sub));
  }
  {
    std::unique_lock lock(registry_mu_);
    for (const SubPtr& sub : loaded) {
      subs_[sub->id] = sub;
      IndexAdd(*sub);
    }
    count_.store(subs_.size(), std::memory_order_release);
  }
  bool notify = false;
  for (const SubPtr& sub : loaded) {
    std::lock_guard lock(sub->mu);
    if (sub->phase != Phase::kIdle) busy_.fetch_add(1);
    if (sub->type == Type::kWebhook && sub->phase == Phase::kWakeInFlight && sub->lease_expires_ms > now) {
      // The delivery may have been lost with the process: send it again
      // (same wake, so a receiver that did get it can still call back).
      std::vector<std::pair<std::string, uint64_t>> tails = sub->snapshot;
      QueueWebhook(*sub, tails);
      notify = true;
    } else if (sub->type == Type::kPullWake && sub->phase == Phase::kWakeInFlight) {
      // Whether its wake events were appended is unknown: wake again.
      SetPhase(*sub, Phase::kIdle);
      sub->wake_id.clear();
      sub->snapshot.clear();
      PersistRecord(*sub);
    }
    std::lock_guard queue(queue_mu_);
    if (sub->lease_expires_ms > 0) timers_.push(Timer{sub->lease_expires_ms, sub->id});
    if (sub->next_attempt_ms > 0) timers_.push(Timer{sub->next_attempt_ms, sub->id});
    // Everything is looked at once: pending work is woken again.
    notes_.push_back(Note{sub->id, std::string(), false});
  }
  queue_cv_.notify_one();
  if (notify && options_.notify_webhooks) options_.notify_webhooks();
  return Status::OK();
}

}  // namespace ds
