// SSE fan-out to adopted connections ("takeover", PROTOCOL.md §5.8).
//
// Once the HTTP layer has written an SSE response's status line, headers
// (Transfer-Encoding: chunked) and first piece, it may hand the connection's
// socket to the engine (ds_session_adopt). From then on a fan-out loop
// serves it, together with every other subscriber adopted by that loop,
// from one thread with epoll: when a stream changes, the next SSE events are
// built ONCE per distinct (offset, client cursor) among the loop's
// subscribers of the stream and written, chunk-framed, to each socket
// without blocking. Per subscriber that costs a small record here instead of
// a goroutine, its buffers and an engine call per wake, and one send(2) per
// delivery instead of a trip through net/http.
//
// The engine runs one loop per CPU (at most four) and deals adopted
// sessions out round-robin: the kernel's work for a send on loopback or a
// LAN (most of a delivery's cost) then spreads over every core, and a
// thread competing for CPU with busy clients gets its fair share per loop.
//
// Flow control: a subscriber gets its next piece only once the previous one
// is fully written, so what it holds unsent is at most one piece, shared
// with every subscriber that got the same bytes. A slow reader falls behind
// and catches up in capped chunks (max_read_bytes each), as a long catch-up
// does; nothing piles up per subscriber. One that has not taken what it was
// sent one keepalive interval after its connection's end (reconnect
// interval, closure, deletion) is cut off without the terminating chunk; it
// reconnects from its last control event, as after any network failure.
//
// The response ends as the goroutine path ends it: at the reconnect
// interval, after the closing control event of a closed stream, or at once
// when the stream is deleted, with the terminating chunk "0\r\n\r\n"; then
// the socket is closed. Keepalive comments go out after a keepalive interval
// without writes. A peer that hangs up (EPOLLRDHUP/HUP/ERR) or a failed
// write frees the subscriber at once.
//
// Threading: Adopt, Wake, EndOwner and subscribers() may be called from any
// thread; they only queue work and signal an eventfd. Sockets, subscribers,
// groups and timers belong to the thread that runs RunOnce: the loop's own
// thread ("ds-sse-fanout"), or (Options::run_thread false) the test that
// drives it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "clock.h"
#include "file_util.h"
#include "status.h"

namespace ds {

struct Stream;
struct Response;

// The next SSE events for one reader position; see SseSource.
struct SseStep {
  bool wrote = false;      // events were appended to the output
  bool ends = false;       // the response ends after them (closure, deletion,
                           // unreadable bytes)
  bool caught_up = false;  // with wrote: the events reach the tail
  uint64_t next_offset = 0;
};

// Whether a waiter id is registered on a stream, and as of which wake
// generation (a wake empties the stream's waiter list and bumps it).
struct WaiterRegistration {
  bool parked = false;
  uint64_t generation = 0;
};

// What the fan-out needs from the engine: the protocol's SSE events and
// registration for wakes. Implemented by Engine (live.cc); every method may
// lock the stream and must be called with no engine lock held.
class SseSource {
 public:
  virtual ~SseSource() = default;
  // Appends to `out` the events for a reader of `stream` at `offset`: one
  // capped chunk of data and its control event, or the closing control
  // event at a closed tail, or nothing (open tail, or the stream is gone).
  virtual SseStep NextSseEvents(Stream& stream, uint64_t offset,
                                std::string_view client_cursor, std::string* out) = 0;
  // Registers `waiter` for the stream's next change unless the stream
  // already has news for a reader at `offset` (bytes past it, closure,
  // deletion); returns whether it is registered.
  virtual bool ParkSseWaiter(Stream& stream, uint64_t waiter, uint64_t offset,
                             WaiterRegistration* registration) = 0;
  // Removes a registration ParkSseWaiter made, if a wake has not already.
  virtual void UnparkSseWaiter(Stream& stream, uint64_t waiter,
                               const WaiterRegistration& registration) = 0;
  // A long-poll's whole answer for a reader at `offset`, as Resume gives
  // it: bytes past it (200), with `give_up` or at a closed tail the timeout
  // answer (204), 404/410 for a deleted stream. False, leaving `out`
  // alone, while the reader must wait.
  virtual bool AnswerLongPoll(Stream& stream, uint64_t offset, std::string_view client_cursor,
                              bool give_up, Response* out) = 0;
  // Connections the fan-out is done with, by return_tag: each with
  // SseFanout::kServeNext when the answer went out whole and the HTTP layer
  // should read the next request on it, without when it should close it
  // (the client left, was cut off, or the engine is closing).
  // From loop `loop`. With wave_ends, the turn that took the loop's last
  // wake (WaveBegins) has written what was due; it may return no
  // connection.
  virtual void ReturnConnections(uint32_t loop, const std::vector<uint64_t>& tags,
                                 bool wave_ends) = 0;
  // Delivery waves: a loop woken for stream changes calls WaveBegins (from
  // the waking thread) once per wake it has not yet taken, and ends the wave
  // with the ReturnConnections call of the turn that took it. Connections
  // one loop answers while other loops have a wave on may be held back
  // until those waves end (Engine::ReturnConnections).
  virtual void WaveBegins(uint32_t loop) { (void)loop; }
  // Whether connections are held back: every loop then calls
  // ReturnConnections at the end of each turn, and turns at least every
  // kHeldReturnsCheckMs, so a hold ends by time if no wave end ends it.
  virtual bool ReturnsHeld() const { return false; }
  static constexpr int kHeldReturnsCheckMs = 10;
};

// An adopted connection's socket: the fan-out's own descriptor (closed
// with it), or one it borrows from the HTTP layer, which keeps it open
// until the fan-out gives the connection back and closes it itself. A
// kept-alive long-poll borrows: no dup(2) and close(2) per poll.
class AdoptedSocket {
 public:
  AdoptedSocket() = default;
  AdoptedSocket(UniqueFd fd) : fd_(std::move(fd)) {}  // NOLINT: owned
  static AdoptedSocket Borrowed(int fd) {
    AdoptedSocket s;
    s.fd_ = UniqueFd(fd);
    s.borrowed_ = true;
    return s;
  }
  ~AdoptedSocket() { Drop(); }
  AdoptedSocket(AdoptedSocket&& o) noexcept
      : fd_(std::move(o.fd_)), borrowed_(std::exchange(o.borrowed_, false)) {}
  AdoptedSocket& operator=(AdoptedSocket&& o) noexcept {
    if (this != &o) {
      Drop();
      fd_ = std::move(o.fd_);
      borrowed_ = std::exchange(o.borrowed_, false);
    }
    return *this;
  }
  int get() const { return fd_.get(); }
  bool borrowed() const { return borrowed_; }

 private:
  void Drop() {
    if (borrowed_) (void)fd_.Release();  // the HTTP layer's to close
    fd_.Reset();
    borrowed_ = false;
  }
  UniqueFd fd_;
  bool borrowed_ = false;
};

// A live session handed over with its connection: an SSE response whose
// headers are out, or (long_poll) a parked long-poll with nothing written.
struct SseAdoption {
  AdoptedSocket socket;  // connected stream socket; response headers already sent
  std::shared_ptr<Stream> stream;
  uint64_t offset = 0;  // next stream position to deliver
  std::string client_cursor;
  uint64_t owner = 0;  // caller's tag for EndOwner
  int64_t deadline_ms = 0;  // the reconnect interval ends; long-poll: 204
  int64_t next_keepalive_ms = 0;
  // Long-poll takeover: the fan-out writes the whole answer (status line,
  // `headers` from the HTTP layer merged with the engine's, body) once
  // there is one, then closes (http1_answer.h).
  bool long_poll = false;
  std::string headers;  // "Name\0value\0..."
  // Long-poll with keep-alive: non-zero, the HTTP layer's tag for the
  // connection, which it keeps open. The answer then carries no
  // Connection: close, and once it is written the fan-out gives the
  // connection back (SseSource::ReturnConnections) for the client's next
  // request, closing only its own descriptor. Zero: Connection: close, and
  // the fan-out closes the socket after the answer.
  uint64_t return_tag = 0;
};

class SseFanout {
 public:
  struct Options {
    int64_t keepalive_interval_ms = 15000;
    // false: no thread; the caller drives RunOnce (tests).
    bool run_thread = true;
    // Which of the engine's loops this is; it is part of every waiter id.
    uint32_t loop = 0;
  };

  // Waiter ids the fan-out registers on streams carry this bit, so the
  // engine can tell them from the HTTP layer's session ids, which never do,
  // and the loop's number in the next 15 bits.
  static constexpr uint64_t kWaiterBit = uint64_t{1} << 63;
  // Set in a returned tag (ReturnConnections) when the connection is to
  // serve its next request; the HTTP layer's tags never have it.
  static constexpr uint64_t kServeNext = uint64_t{1} << 61;
  static bool IsWaiter(uint64_t id) { return (id & kWaiterBit) != 0; }
  static uint32_t LoopOf(uint64_t waiter) { return (waiter >> 48) & 0x7fff; }

  SseFanout(SseSource* source, std::shared_ptr<const Clock> clock, Options options);
  // Stops the thread, ends every subscriber (the terminating chunk if it
  // fits in the socket at once) and closes its socket.
  ~SseFanout();
  SseFanout(const SseFanout&) = delete;
  SseFanout& operator=(const SseFanout&) = delete;

  // Takes over a subscriber; its socket is the fan-out's whatever happens.
  // Fails only when the fan-out could not start (epoll, eventfd, thread).
  Status Adopt(SseAdoption adoption);
  // The engine's wake for waiter ids (IsWaiter) it took from streams.
  void Wake(const std::vector<uint64_t>& waiters);
  // Ends every subscriber adopted with `owner`, as its reconnect interval
  // would.
  void EndOwner(uint64_t owner);
  // Subscribers adopted and not yet ended (including those still queued).
  uint64_t subscribers() const { return count_.load(std::memory_order_relaxed); }

  // One turn of the loop: waits for socket events or queued work for at
  // most `max_wait_ms` (less if a timer is due sooner; 0 polls), then writes
  // what is due. Only one thread may run it.
  void RunOnce(int max_wait_ms);

 private:
  struct Subscriber;
  struct Group;
  enum class Flushed { kDone, kBlocked, kClosed };
  using Piece = std::shared_ptr<const std::string>;
  struct Timer {
    int64_t due_ms;
    uint64_t subscriber;
    bool operator>(const Timer& o) const { return due_ms > o.due_ms; }
  };

  Status StartThread();  // requires inbox_mu_
  void Loop();
  bool NeedsSignal();  // requires inbox_mu_
  void Signal();
  // Joins the adopted, queues the woken; returns the owners to end, and in
  // `wave` whether it took a wave's wake.
  std::vector<uint64_t> TakeInbox(bool* wave);
  void Join(SseAdoption adoption);
  void ServiceGroup(Group& group, int64_t now);
  void OnSocketEvent(uint64_t id, uint32_t events);
  void FireTimers(int64_t now);
  void Send(Subscriber& s, Piece piece, bool caught_up);
  Flushed Flush(Subscriber& s);
  void End(Subscriber& s, int64_t now);
  // Long-poll subscribers at one position: answers those that have an
  // answer (all of them with give_up); returns whether some must wait.
  bool AnswerLongPolls(Group& group, uint64_t offset, const std::string& cursor,
                       const std::vector<Subscriber*>& subscribers, int64_t now, bool give_up);
  void Answer(Subscriber& s, Piece answer, int64_t now);
  // Gives a keep-alive long-poll's connection back to the HTTP layer
  // (serve_next: for its next request; else to be closed) and forgets it.
  void GiveBack(Subscriber& s, bool serve_next);
  // Drops s and its socket; with keep_registered its descriptor stays in
  // epoll_ (kept_registered_).
  void Forget(Subscriber& s, bool keep_registered = false);
  // Registers s's socket in epoll_ under its id.
  bool Register(Subscriber& s);
  void Close(Subscriber& s);
  void MarkDue(Subscriber& s);
  void Queue(Group& group);
  void RemoveEmptyGroups();
  int64_t NextTimerDelay(int64_t now) const;

  SseSource* const source_;
  const std::shared_ptr<const Clock> clock_;
  const Options options_;
  const Piece keepalive_;   // a keepalive comment, chunk-framed
  const Piece terminator_;  // the terminating chunk

  std::atomic<uint64_t> count_{0};

  // Made by the constructor; a failure is reported by every Adopt.
  Status init_;
  UniqueFd epoll_;
  UniqueFd event_;  // eventfd: the inbox has work

  // Queued by other threads; guarded by inbox_mu_.
  std::mutex inbox_mu_;
  bool thread_started_ = false;
  bool stopping_ = false;
  bool signalled_ = false;  // the eventfd was written since the last TakeInbox
  // Adoptions are arriving (the last one less than kAdoptWaveQuiet ago):
  // Adopt does not signal and the loop waits at most kAdoptBatchMs
  // (sse_fanout.cc). In a 5,000-waiter long-poll fan-out a signal per
  // re-poll's adoption (an eventfd write in the request's engine call and a
  // wake-up of the loop) was 5–7% of the server's CPU. Written by the loop
  // only, under inbox_mu_.
  bool adopting_ = false;
  std::chrono::steady_clock::time_point last_adoption_;
  std::vector<SseAdoption> adopted_;
  std::vector<uint64_t> woken_;
  std::vector<uint64_t> ended_owners_;
  // A wake is queued that the loop has not taken: WaveBegins was called and
  // the turn that takes it ends the wave (SseSource::ReturnConnections).
  bool wave_ = false;
  std::thread thread_;

  // The loop's own state.
  std::unordered_map<uint64_t, std::unique_ptr<Subscriber>> subscribers_;
  std::unordered_map<const Stream*, std::unique_ptr<Group>> groups_;
  std::unordered_map<uint64_t, Group*> groups_by_waiter_;
  std::vector<Group*> queued_;         // groups with subscribers due a look
  std::vector<Group*> maybe_empty_;    // groups that lost a member
  std::vector<uint64_t> returned_;     // for ReturnConnections, per turn
  // By descriptor: a borrowed socket given back for its next request and
  // left in epoll_. A kept-alive long-poll's client polls again at once and
  // the engine lends the same socket to the same loop (Engine::Hand), so
  // its next Join modifies the registration instead of adding one: no
  // EPOLL_CTL_DEL in the answer's path and no ADD at the next adoption.
  // Meanwhile its events name no subscriber and are ignored; once the HTTP
  // layer closes it the kernel drops the registration, and a later socket
  // with that number is added afresh (MOD fails with ENOENT).
  std::vector<bool> kept_registered_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  uint64_t next_subscriber_ = 1;  // 0 names the eventfd in epoll
  uint64_t next_waiter_ = 1;
};

}  // namespace ds
