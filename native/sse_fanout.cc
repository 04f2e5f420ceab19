#include "sse_fanout.h"

// epoll and eventfd: Linux only. Elsewhere sse_fanout_unsupported.cc
// defines a fan-out that refuses every adoption (the HTTP layer does not
// offer one there: caddymodule/takeover_other.go).
#if defined(__linux__)

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <system_error>
#include <utility>

#include "http1_answer.h"
#include "response.h"
#include "sse.h"

namespace ds {
namespace {

// The loop looks at the (wall) clock at least this often, so timers follow
// a clock that jumps forward within a second.
constexpr int kMaxWaitMs = 1000;
constexpr int kMaxEvents = 256;
constexpr uint64_t kInboxToken = 0;  // epoll data of the eventfd
// While connections keep arriving (a long-poll fan-out's re-polls, a wave
// of SSE subscribers), the loop looks for new ones this often instead of
// being woken for each, until none has arrived for kAdoptWaveQuiet: see
// SseFanout::adopting_.
constexpr int kAdoptBatchMs = 1;
constexpr std::chrono::milliseconds kAdoptWaveQuiet{4};
// After a long-poll's answer the socket is shut for writing and kept this
// long for the client to close its side (it was told Connection: close), so
// that closing never resets a connection whose answer is still in flight.
constexpr int64_t kLingerMs = 1000;

// One HTTP/1.1 chunk carrying `payload` (RFC 9112 §7.1), hex size in lower
// case as net/http writes it.
std::shared_ptr<const std::string> Chunk(std::string_view payload) {
  char size[24];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
  auto chunk = std::make_shared<std::string>();
  chunk->reserve(static_cast<size_t>(n) + payload.size() + 2);
  chunk->append(size, static_cast<size_t>(n));
  chunk->append(payload);
  chunk->append("\r\n");
  return chunk;
}

std::shared_ptr<const std::string> KeepaliveChunk() {
  std::string comment;
  AppendSseKeepalive(&comment);
  return Chunk(comment);
}

Status Errno(const char* what) {
  return Status::IoError(std::string(what) + ": " + std::strerror(errno));
}

}  // namespace

struct SseFanout::Subscriber {
  enum class State {
    kLive,         // gets events
    kEnding,       // gets nothing more; the terminating chunk follows what
                   // is unsent
    kTerminating,  // the terminating chunk is (being) written; then closed
    kAnswered,     // long-poll: the answer is (being) written
    kLingering,    // long-poll: answered and shut for writing; closed when
                   // the client closes, or at cut_off_ms
  };

  uint64_t id = 0;
  AdoptedSocket socket;
  Group* group = nullptr;
  size_t index = 0;  // in group->members
  uint64_t offset = 0;
  std::string client_cursor;
  uint64_t owner = 0;
  int64_t deadline_ms = 0;
  int64_t next_keepalive_ms = 0;
  State state = State::kLive;
  int64_t cut_off_ms = 0;  // once not live: closed then, written or not
  bool due = false;        // listed in group->due
  Piece unsent;            // the piece being written ...
  size_t unsent_from = 0;  // ... and how much of it went out
  bool long_poll = false;  // a long-poll's connection (SseAdoption)
  std::string headers;     // long-poll: the HTTP layer's headers
  uint64_t return_tag = 0;  // long-poll: see SseAdoption
};

struct SseFanout::Group {
  std::shared_ptr<Stream> stream;
  uint64_t waiter = 0;  // the id parked on the stream for all members
  WaiterRegistration registration;
  std::vector<Subscriber*> members;
  bool all_due = false;        // a wake: every member is due a look
  std::vector<uint64_t> due;   // subscribers due a look
  bool queued = false;         // in queued_
  bool listed_empty = false;   // in maybe_empty_
};

SseFanout::SseFanout(SseSource* source, std::shared_ptr<const Clock> clock, Options options)
    : source_(source),
      clock_(std::move(clock)),
      options_(options),
      keepalive_(KeepaliveChunk()),
      terminator_(std::make_shared<const std::string>("0\r\n\r\n")) {
  epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) {
    init_ = Errno("epoll_create1");
    return;
  }
  event_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!event_.valid()) {
    init_ = Errno("eventfd");
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kInboxToken;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, event_.get(), &ev) != 0) {
    init_ = Errno("epoll_ctl eventfd");
  }
}

SseFanout::~SseFanout() {
  {
    std::lock_guard lock(inbox_mu_);
    stopping_ = true;
  }
  Signal();
  if (thread_.joinable()) thread_.join();
  // The engine is going away: a clean end where the socket takes it at
  // once, then close. Sockets still queued close with their UniqueFd.
  for (auto& [id, s] : subscribers_) {
    if (!s->long_poll && !s->unsent && s->state != Subscriber::State::kTerminating) {
      (void)::send(s->socket.get(), terminator_->data(), terminator_->size(),
                   MSG_NOSIGNAL | MSG_DONTWAIT);
    }
  }
  for (auto& [stream, group] : groups_) {
    source_->UnparkSseWaiter(*group->stream, group->waiter, group->registration);
  }
  // Kept-alive long-polls' connections are the HTTP layer's to close.
  for (auto& [id, s] : subscribers_) {
    if (s->return_tag != 0) returned_.push_back(s->return_tag);
  }
  bool wave;
  {
    std::lock_guard lock(inbox_mu_);
    wave = std::exchange(wave_, false);
  }
  if (!returned_.empty() || wave) source_->ReturnConnections(options_.loop, returned_, wave);
}

Status SseFanout::Adopt(SseAdoption adoption) {
  if (!init_.ok()) return init_;
  bool signal;
  {
    std::lock_guard lock(inbox_mu_);
    if (stopping_) return Status::IoError("the engine is closing");
    if (options_.run_thread && !thread_started_) {
      Status s = StartThread();
      if (!s.ok()) return s;
    }
    count_.fetch_add(1, std::memory_order_relaxed);
    adopted_.push_back(std::move(adoption));
    // In a wave of adoptions the loop comes back for them within
    // kAdoptBatchMs without a signal.
    signal = !adopting_ && NeedsSignal();
  }
  if (signal) Signal();
  return Status::OK();
}

Status SseFanout::StartThread() {
  try {
    thread_ = std::thread([this] { Loop(); });
  } catch (const std::system_error& e) {
    return Status::IoError(std::string("starting the SSE writer thread: ") + e.what());
  }
  thread_started_ = true;
  return Status::OK();
}

void SseFanout::Wake(const std::vector<uint64_t>& waiters) {
  bool signal;
  {
    std::lock_guard lock(inbox_mu_);
    woken_.insert(woken_.end(), waiters.begin(), waiters.end());
    if (!wave_) {
      wave_ = true;
      source_->WaveBegins(options_.loop);  // under inbox_mu_: before the turn can end it
    }
    signal = NeedsSignal();
  }
  if (signal) Signal();
}

void SseFanout::EndOwner(uint64_t owner) {
  bool signal;
  {
    std::lock_guard lock(inbox_mu_);
    ended_owners_.push_back(owner);
    signal = NeedsSignal();
  }
  if (signal) Signal();
}

bool SseFanout::NeedsSignal() {
  // One write per batch: the loop clears signalled_ when it takes the
  // inbox, so whatever is queued after that signals again.
  if (signalled_) return false;
  signalled_ = true;
  return true;
}

void SseFanout::Signal() {
  // Outside inbox_mu_: the write wakes the loop, which takes that mutex
  // first thing, and callers are often cgo calls that the Go runtime
  // replaces with a new thread when they block.
  if (!event_.valid()) return;
  uint64_t one = 1;
  (void)::write(event_.get(), &one, sizeof one);
}

void SseFanout::Loop() {
  // Named for top -H and the like (at most 15 characters).
  pthread_setname_np(pthread_self(), "ds-sse-fanout");
  for (;;) {
    {
      std::lock_guard lock(inbox_mu_);
      if (stopping_) return;
    }
    RunOnce(kMaxWaitMs);
  }
}

// ---- the loop -------------------------------------------------------------

void SseFanout::RunOnce(int max_wait_ms) {
  if (!init_.ok()) return;
  int64_t now = clock_->NowMs();
  int wait = queued_.empty() ? static_cast<int>(std::min<int64_t>(
                                   std::max(max_wait_ms, 0), NextTimerDelay(now)))
                             : 0;
  if (adopting_) wait = std::min(wait, kAdoptBatchMs);
  const bool held = source_->ReturnsHeld();
  if (held) wait = std::min(wait, SseSource::kHeldReturnsCheckMs);
  epoll_event events[kMaxEvents];
  int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, wait);
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u64 == kInboxToken) {
      uint64_t count;
      (void)::read(event_.get(), &count, sizeof count);
      continue;
    }
    OnSocketEvent(events[i].data.u64, events[i].events);
  }
  now = clock_->NowMs();
  bool wave = false;
  std::vector<uint64_t> ended_owners = TakeInbox(&wave);
  FireTimers(now);
  std::vector<Group*> queued;
  queued.swap(queued_);
  for (Group* group : queued) ServiceGroup(*group, now);
  // After the writes: what was appended before the end still goes out.
  if (!ended_owners.empty()) {
    std::vector<Subscriber*> ending;
    for (auto& [id, s] : subscribers_) {
      if (std::find(ended_owners.begin(), ended_owners.end(), s->owner) != ended_owners.end()) {
        ending.push_back(s.get());
      }
    }
    for (Subscriber* s : ending) End(*s, now);
  }
  RemoveEmptyGroups();
  if (!returned_.empty() || wave || held) {
    std::vector<uint64_t> returned;
    returned.swap(returned_);
    source_->ReturnConnections(options_.loop, returned, wave);
  }
}

int64_t SseFanout::NextTimerDelay(int64_t now) const {
  if (timers_.empty()) return std::numeric_limits<int>::max();
  return std::max<int64_t>(timers_.top().due_ms - now, 0);
}

std::vector<uint64_t> SseFanout::TakeInbox(bool* wave) {
  std::vector<SseAdoption> adopted;
  std::vector<uint64_t> woken, ended;
  {
    std::lock_guard lock(inbox_mu_);
    adopted.swap(adopted_);
    woken.swap(woken_);
    ended.swap(ended_owners_);
    signalled_ = false;
    *wave = std::exchange(wave_, false);
    // Adoptions arriving: more are likely, so the next ones wait for the
    // loop's next turn (at most kAdoptBatchMs) instead of each writing the
    // eventfd and waking the loop. The wave ends after kAdoptWaveQuiet
    // without one (real time: turns come as often as socket events do).
    auto now = std::chrono::steady_clock::now();
    if (!adopted.empty()) {
      adopting_ = true;
      last_adoption_ = now;
    } else if (adopting_ && now - last_adoption_ >= kAdoptWaveQuiet) {
      adopting_ = false;
    }
  }
  for (SseAdoption& a : adopted) Join(std::move(a));
  for (uint64_t waiter : woken) {
    auto it = groups_by_waiter_.find(waiter);
    if (it == groups_by_waiter_.end()) continue;  // the group is gone
    it->second->all_due = true;
    Queue(*it->second);
  }
  return ended;
}

void SseFanout::Join(SseAdoption a) {
  auto owned = std::make_unique<Subscriber>();
  Subscriber& s = *owned;
  s.id = next_subscriber_++;
  s.socket = std::move(a.socket);
  s.offset = a.offset;
  s.client_cursor = std::move(a.client_cursor);
  s.owner = a.owner;
  s.deadline_ms = a.deadline_ms;
  s.next_keepalive_ms = a.long_poll ? a.deadline_ms : a.next_keepalive_ms;
  s.long_poll = a.long_poll;
  s.headers = std::move(a.headers);
  s.return_tag = a.return_tag;

  if (!Register(s)) {
    count_.fetch_sub(1, std::memory_order_relaxed);
    if (s.return_tag != 0) returned_.push_back(s.return_tag);  // to be closed
    return;  // the socket closes with `owned`
  }

  auto& group = groups_[a.stream.get()];
  if (!group) {
    group = std::make_unique<Group>();
    group->stream = std::move(a.stream);
    group->waiter = kWaiterBit | (uint64_t{options_.loop} << 48) | next_waiter_++;
    groups_by_waiter_[group->waiter] = group.get();
  }
  s.group = group.get();
  s.index = group->members.size();
  group->members.push_back(&s);
  timers_.push({std::min(s.deadline_ms, s.next_keepalive_ms), s.id});
  subscribers_[s.id] = std::move(owned);
  MarkDue(s);
}

bool SseFanout::Register(Subscriber& s) {
  // Edge-triggered: EPOLLOUT reports when a full socket drains again, and
  // the hang-ups once; nothing is ever read from the socket.
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = s.id;
  const int fd = s.socket.get();
  const auto slot = static_cast<size_t>(fd);
  if (s.socket.borrowed() && slot < kept_registered_.size() && kept_registered_[slot]) {
    kept_registered_[slot] = false;
    // Re-arms the edge triggers as ADD does: a writable socket reports
    // EPOLLOUT once, a hung-up one its hang-up.
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) == 0) return true;
    // ENOENT: the HTTP layer closed that socket; this one has its number.
  }
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0) return true;
  return errno == EEXIST && ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) == 0;
}

void SseFanout::OnSocketEvent(uint64_t id, uint32_t events) {
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return;  // closed earlier in this turn
  Subscriber& s = *it->second;
  if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
    Close(s);
    return;
  }
  // Written out after a full socket: its next piece may be due.
  if ((events & EPOLLOUT) && s.unsent && Flush(s) == Flushed::kDone) MarkDue(s);
}

// Looks at the group's due subscribers that have nothing unsent: each one
// past its reconnect deadline ends; the others are grouped by position and
// cursor, and each position's events are built once and sent to all of its
// subscribers. Then the group waits for the stream's next change.
void SseFanout::ServiceGroup(Group& group, int64_t now) {
  group.queued = false;
  std::vector<Subscriber*> candidates;
  for (uint64_t id : group.due) {
    auto it = subscribers_.find(id);
    if (it == subscribers_.end()) continue;
    it->second->due = false;
    if (!group.all_due) candidates.push_back(it->second.get());
  }
  if (group.all_due) candidates = group.members;
  group.all_due = false;
  group.due.clear();

  std::map<std::pair<uint64_t, std::string>, std::vector<Subscriber*>> by_position;
  std::map<std::pair<uint64_t, std::string>, std::vector<Subscriber*>> long_polls;
  for (Subscriber* s : candidates) {
    if (s->state != Subscriber::State::kLive || s->unsent) continue;
    if (s->long_poll) {
      long_polls[{s->offset, s->client_cursor}].push_back(s);
      continue;
    }
    if (now >= s->deadline_ms) {
      End(*s, now);  // time to reconnect; the client resumes from its last control event
      continue;
    }
    by_position[{s->offset, s->client_cursor}].push_back(s);
  }

  bool park = false;
  uint64_t park_offset = std::numeric_limits<uint64_t>::max();
  for (auto& [position, subscribers] : by_position) {
    std::string events;
    SseStep step = source_->NextSseEvents(*group.stream, position.first, position.second, &events);
    if (!step.wrote && !step.ends) {  // at an open tail
      park = true;
      park_offset = std::min(park_offset, position.first);
      continue;
    }
    Piece piece = step.wrote ? Chunk(events) : nullptr;
    for (Subscriber* s : subscribers) {
      s->offset = step.next_offset;
      if (step.wrote) s->next_keepalive_ms = now + options_.keepalive_interval_ms;
      if (step.ends) {
        // Ending before sending: the terminating chunk follows the piece.
        s->state = Subscriber::State::kEnding;
        s->cut_off_ms = now + options_.keepalive_interval_ms;
      }
      if (piece) {
        Send(*s, piece, step.caught_up);
      } else {
        Flush(*s);  // writes the terminating chunk
      }
    }
    if (step.wrote && !step.ends && step.caught_up) {
      park = true;
      park_offset = std::min(park_offset, step.next_offset);
    }
  }
  for (auto& [position, subscribers] : long_polls) {
    if (AnswerLongPolls(group, position.first, position.second, subscribers, now,
                        /*give_up=*/false)) {
      park = true;
      park_offset = std::min(park_offset, position.first);
    }
  }
  if (park && !source_->ParkSseWaiter(*group.stream, group.waiter, park_offset,
                                      &group.registration)) {
    group.all_due = true;  // it changed meanwhile: look again
    Queue(group);
  }
}

void SseFanout::FireTimers(int64_t now) {
  while (!timers_.empty() && timers_.top().due_ms <= now) {
    Timer timer = timers_.top();
    timers_.pop();
    auto it = subscribers_.find(timer.subscriber);
    if (it == subscribers_.end()) continue;
    Subscriber& s = *it->second;
    // Each subscriber has exactly one timer; it is set lazily, so it may be
    // early (a keepalive postponed by a write), never late: an end moves
    // cut_off_ms to one keepalive interval ahead, past any keepalive due.
    int64_t due = s.state == Subscriber::State::kLive ? std::min(s.deadline_ms, s.next_keepalive_ms)
                                                      : s.cut_off_ms;
    if (due > now) {
      timers_.push({due, s.id});
      continue;
    }
    if (s.state != Subscriber::State::kLive) {
      Close(s);  // did not take its last bytes in time
      continue;
    }
    if (s.long_poll) {  // its timeout: the engine's 204
      End(s, now);
      continue;
    }
    if (now >= s.deadline_ms) {
      End(s, now);
      if (subscribers_.count(timer.subscriber)) timers_.push({s.cut_off_ms, s.id});
      continue;
    }
    // Idle for a keepalive interval. One with bytes unsent is not idle, and
    // a comment would not get through either.
    s.next_keepalive_ms = now + options_.keepalive_interval_ms;
    timers_.push({std::min(s.deadline_ms, s.next_keepalive_ms), s.id});
    if (!s.unsent) Send(s, keepalive_, /*caught_up=*/true);
  }
}

// ---- writing --------------------------------------------------------------

void SseFanout::Send(Subscriber& s, Piece piece, bool caught_up) {
  s.unsent = std::move(piece);
  s.unsent_from = 0;
  // Written at once and more to come: keep catching up (next turn, so one
  // subscriber's catch-up does not hold up the others).
  if (Flush(s) == Flushed::kDone && !caught_up) MarkDue(s);
}

SseFanout::Flushed SseFanout::Flush(Subscriber& s) {
  for (;;) {
    while (s.unsent) {
      const std::string& bytes = *s.unsent;
      ssize_t n = ::send(s.socket.get(), bytes.data() + s.unsent_from,
                         bytes.size() - s.unsent_from, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Flushed::kBlocked;
        Close(s);
        return Flushed::kClosed;
      }
      s.unsent_from += static_cast<size_t>(n);
      if (s.unsent_from == bytes.size()) {
        s.unsent.reset();
        s.unsent_from = 0;
      }
    }
    switch (s.state) {
      case Subscriber::State::kLive:
        return Flushed::kDone;
      case Subscriber::State::kEnding:
        s.state = Subscriber::State::kTerminating;
        s.unsent = terminator_;
        continue;
      case Subscriber::State::kTerminating:
        Close(s);
        return Flushed::kClosed;
      case Subscriber::State::kAnswered:
        if (s.return_tag != 0) {
          GiveBack(s, /*serve_next=*/true);
          return Flushed::kClosed;
        }
        (void)::shutdown(s.socket.get(), SHUT_WR);
        s.state = Subscriber::State::kLingering;
        s.cut_off_ms = clock_->NowMs() + kLingerMs;
        timers_.push({s.cut_off_ms, s.id});
        return Flushed::kBlocked;
      case Subscriber::State::kLingering:
        return Flushed::kBlocked;
    }
  }
}

void SseFanout::End(Subscriber& s, int64_t now) {
  if (s.state != Subscriber::State::kLive) return;
  if (s.long_poll) {
    // Timed out, or its owner's config ended: the timeout answer (the
    // goroutine path's answer to both), so the client polls again.
    AnswerLongPolls(*s.group, s.offset, s.client_cursor, {&s}, now, /*give_up=*/true);
    return;
  }
  s.state = Subscriber::State::kEnding;
  s.cut_off_ms = now + options_.keepalive_interval_ms;
  Flush(s);
}

bool SseFanout::AnswerLongPolls(Group& group, uint64_t offset, const std::string& cursor,
                                const std::vector<Subscriber*>& subscribers, int64_t now,
                                bool give_up) {
  std::vector<Subscriber*> due, waiting;
  for (Subscriber* s : subscribers) (give_up || now >= s->deadline_ms ? due : waiting).push_back(s);
  Response answer;
  if (source_->AnswerLongPoll(*group.stream, offset, cursor, /*give_up=*/false, &answer)) {
    due.insert(due.end(), waiting.begin(), waiting.end());
    waiting.clear();
  } else if (due.empty() ||
             !source_->AnswerLongPoll(*group.stream, offset, cursor, /*give_up=*/true, &answer)) {
    return !waiting.empty();
  }
  // One rendering per distinct set of HTTP-layer headers (usually one).
  // (Copies of the headers: Answer may close its subscriber.)
  std::vector<std::pair<std::string, Piece>> rendered;
  for (Subscriber* s : due) {
    Piece piece;
    std::string key = s->headers;
    if (s->return_tag != 0) key.push_back('\1');  // keep-alive renders differently
    for (const auto& [headers, p] : rendered) {
      if (headers == key) piece = p;
    }
    if (!piece) {
      piece = std::make_shared<const std::string>(
          RenderHttp1Answer(s->headers, answer, now / 1000, s->return_tag != 0));
      rendered.emplace_back(key, piece);
    }
    Answer(*s, std::move(piece), now);
  }
  return !waiting.empty();
}

void SseFanout::Answer(Subscriber& s, Piece answer, int64_t now) {
  s.state = Subscriber::State::kAnswered;
  // A client that does not take its answer is cut off as an SSE one is.
  s.cut_off_ms = now + options_.keepalive_interval_ms;
  timers_.push({s.cut_off_ms, s.id});
  s.unsent = std::move(answer);
  s.unsent_from = 0;
  Flush(s);  // may close s
}

void SseFanout::GiveBack(Subscriber& s, bool serve_next) {
  returned_.push_back(s.return_tag | (serve_next ? kServeNext : 0));
  s.return_tag = 0;
  // Closes only the fan-out's descriptor. A borrowed socket going back for
  // its next request stays registered (kept_registered_).
  Forget(s, /*keep_registered=*/serve_next && s.socket.borrowed());
}

void SseFanout::Close(Subscriber& s) {
  if (s.return_tag != 0) {
    GiveBack(s, /*serve_next=*/false);
    return;
  }
  Forget(s);
}

void SseFanout::Forget(Subscriber& s, bool keep_registered) {
  if (keep_registered) {
    const auto slot = static_cast<size_t>(s.socket.get());
    if (slot >= kept_registered_.size()) kept_registered_.resize(slot + 1);
    kept_registered_[slot] = true;
  } else {
    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, s.socket.get(), nullptr);
  }
  Group& group = *s.group;
  Subscriber* last = group.members.back();
  last->index = s.index;
  group.members[s.index] = last;
  group.members.pop_back();
  if (group.members.empty() && !group.listed_empty) {
    group.listed_empty = true;
    maybe_empty_.push_back(&group);
  }
  count_.fetch_sub(1, std::memory_order_relaxed);
  subscribers_.erase(s.id);  // closes the socket
}

void SseFanout::MarkDue(Subscriber& s) {
  if (s.due) return;
  s.due = true;
  s.group->due.push_back(s.id);
  Queue(*s.group);
}

void SseFanout::Queue(Group& group) {
  if (group.queued) return;
  group.queued = true;
  queued_.push_back(&group);
}

void SseFanout::RemoveEmptyGroups() {
  std::vector<Group*> candidates;
  candidates.swap(maybe_empty_);
  for (Group* group : candidates) {
    group->listed_empty = false;
    if (!group->members.empty()) continue;  // someone joined meanwhile
    if (group->queued) {
      // queued_ points at it: it goes once that turn has serviced it.
      group->listed_empty = true;
      maybe_empty_.push_back(group);
      continue;
    }
    source_->UnparkSseWaiter(*group->stream, group->waiter, group->registration);
    groups_by_waiter_.erase(group->waiter);
    groups_.erase(group->stream.get());
  }
}

}  // namespace ds

#endif  // __linux__
