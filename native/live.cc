// Live reads: long-poll (§5.7) and SSE (§5.8) sessions. A session that has
// nothing to deliver is parked: its id goes into the stream's waiter list
// and the caller waits outside the engine until the wake callback names it
// or its wait_ms runs out. Nothing here blocks. An SSE session may instead
// be adopted, connection and all, by the fan-out (sse_fanout.h), which asks
// for its events through the same NextSseEvents.
#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>

#include "engine.h"
#include "offset.h"
#include "read_response.h"
#include "session.h"
#include "sse.h"

namespace ds {
namespace {

// How many capped chunks one SSE crossing may carry before handing control
// back, so a long catch-up streams out without one huge buffer.
constexpr int kSseChunksPerCall = 4;

uint64_t Remaining(int64_t deadline_ms, int64_t now_ms) {
  return deadline_ms > now_ms ? static_cast<uint64_t>(deadline_ms - now_ms) : 0;
}

}  // namespace

std::unique_ptr<Engine::Session> Engine::NewSession(bool sse, const StreamPtr& stream,
                                                    uint64_t offset, std::string cursor,
                                                    uint64_t session_id) {
  auto session = std::make_unique<Session>();
  session->id = session_id;
  session->mode = sse ? Session::Mode::kSse : Session::Mode::kLongPoll;
  session->stream = stream;
  session->offset = offset;
  session->client_cursor = std::move(cursor);
  return session;
}

// ---- long-poll ------------------------------------------------------------

namespace {

Response LongPollTimeout(uint64_t tail, bool closed, std::string cursor) {
  Response r;
  r.status = 204;
  r.Set(header::kStreamNextOffset, EncodeOffset(tail));
  r.Set(header::kStreamUpToDate, "true");
  if (closed) {
    r.Set(header::kStreamClosed, "true");
  } else {
    r.Set(header::kStreamCursor, std::move(cursor));
  }
  r.Set(header::kCacheControl, std::string(kCacheNoStore));
  return r;
}

}  // namespace

Response Engine::StartLongPoll(const StreamPtr& stream, uint64_t offset, std::string cursor,
                               uint64_t session_id) {
  auto session = NewSession(/*sse=*/false, stream, offset, std::move(cursor),
                            session_id);
  session->deadline_ms = clock_->NowMs() + long_poll_timeout_ms_.load(std::memory_order_relaxed);
  Response r = ResumeLongPoll(*session, DS_RESUME_WAKE);
  if (r.live == DS_LIVE_WAIT) {
    std::lock_guard lock(sessions_mu_);
    sessions_[session_id] = std::move(session);
  }
  return r;
}

Response Engine::ResumeLongPoll(Session& session, ds_resume_reason reason) {
  Stream& stream = *session.stream;
  std::unique_lock lock(stream.mu);
  int64_t now = clock_->NowMs();
  bool give_up = reason != DS_RESUME_WAKE || now >= session.deadline_ms;
  if (std::optional<Response> answer =
          LongPollAnswerLocked(stream, lock, session.offset, session.client_cursor, give_up)) {
    return std::move(*answer);
  }
  if (!session.registration.parked ||
      session.registration.generation != stream.wake_generation) {
    stream.waiters.push_back(session.id);
    session.registration.parked = true;
    session.registration.generation = stream.wake_generation;
  }
  Response r;
  r.status = 0;
  r.live = DS_LIVE_WAIT;
  r.session = session.id;
  r.wait_ms = Remaining(session.deadline_ms, now);
  return r;
}

std::optional<Response> Engine::LongPollAnswerLocked(Stream& stream,
                                                     std::unique_lock<std::mutex>& lock,
                                                     uint64_t offset,
                                                     std::string_view client_cursor,
                                                     bool give_up) {
  if (stream.deleted) return ErrorResponse(404, "stream not found");
  if (stream.soft_deleted) return ErrorResponse(410, "stream was deleted");
  uint64_t tail = stream.tail.load();
  bool closed = stream.closed_visible;
  if (offset < tail) {
    lock.unlock();
    ChunkRead chunk{offset, ChunkEnd(stream, offset, tail), tail, closed};
    Response r = ChunkResponse(stream, chunk);
    r.Set(header::kETag, ChunkETag(stream, chunk));
    if (!chunk.reaches_closed_tail()) r.Set(header::kStreamCursor, Cursor(client_cursor));
    Status s = AppendBody(stream, chunk.from, chunk.end, &r.body);
    if (!s.ok()) return StorageFailure(s);
    return r;
  }
  if (closed || give_up) {
    return LongPollTimeout(tail, closed, closed ? std::string() : Cursor(client_cursor));
  }
  return std::nullopt;
}

bool Engine::AnswerLongPoll(Stream& stream, uint64_t offset, std::string_view client_cursor,
                            bool give_up, Response* out) {
  std::unique_lock lock(stream.mu);
  std::optional<Response> answer =
      LongPollAnswerLocked(stream, lock, offset, client_cursor, give_up);
  if (!answer) return false;
  *out = std::move(*answer);
  // As Resume does for a status line.
  AddCommonHeaders(out);
  return true;
}

// ---- SSE ------------------------------------------------------------------

Response Engine::StartSse(const StreamPtr& stream, uint64_t offset, std::string cursor,
                          uint64_t session_id) {
  auto session = NewSession(/*sse=*/true, stream, offset, std::move(cursor), session_id);
  int64_t now = clock_->NowMs();
  session->deadline_ms = now + sse_reconnect_interval_ms_.load(std::memory_order_relaxed);
  session->next_keepalive_ms = now + options_.sse_keepalive_interval_ms;

  Response r = ResumeSse(*session, DS_RESUME_WAKE);
  r.status = 200;
  r.Set(header::kContentType, "text/event-stream");
  // no-transform: nothing between us and the client may re-encode the
  // events (compression would hold them back; and once the fan-out has
  // taken the connection over, it writes them past any such middleware).
  r.Set(header::kCacheControl, "no-cache, no-transform");
  if (!stream->sse_text) r.Set(header::kSseDataEncoding, "base64");
  if (!r.done) {
    std::lock_guard lock(sessions_mu_);
    sessions_[session_id] = std::move(session);
  }
  return r;
}

Response Engine::ResumeSse(Session& session, ds_resume_reason reason) {
  Stream& stream = *session.stream;
  Response r;
  r.status = 0;
  r.live = DS_LIVE_STREAM;
  r.session = session.id;
  int64_t now = clock_->NowMs();
  if (now >= session.deadline_ms) {
    // Time to reconnect (§5.8 connection lifecycle): the client resumes from
    // the last control event's offset.
    r.done = true;
    return r;
  }
  // Ending (DS_RESUME_END): send what is there, then end on a control
  // event that names where to resume, whatever this call wrote before.
  const bool ending = reason == DS_RESUME_END;
  bool wrote = false;
  for (int i = 0; i < kSseChunksPerCall; ++i) {
    SseStep step = NextSseEvents(stream, session.offset, session.client_cursor, &r.body);
    session.offset = step.next_offset;
    if (step.wrote) {
      wrote = true;
      session.sent_control = true;
      session.next_keepalive_ms = now + options_.sse_keepalive_interval_ms;
    }
    if (step.ends) {
      r.done = true;
      return r;
    }
    if (step.wrote) continue;
    if (ending) {
      if (!wrote) {
        SseControl control;
        control.next_offset = EncodeOffset(session.offset);
        control.up_to_date = true;
        control.cursor = Cursor(session.client_cursor);
        AppendSseControl(control, &r.body);
      }
      r.done = true;
      return r;
    }
    // Caught up: park until the next append, closure or deletion (unless
    // one came in since NextSseEvents looked).
    if (!ParkSseWaiter(stream, session.id, session.offset, &session.registration)) continue;
    if (!session.sent_control) {
      // The first event of a connection at the tail says where the tail is.
      SseControl control;
      control.next_offset = EncodeOffset(session.offset);
      control.up_to_date = true;
      control.cursor = Cursor(session.client_cursor);
      AppendSseControl(control, &r.body);
      session.sent_control = true;
      session.next_keepalive_ms = now + options_.sse_keepalive_interval_ms;
    }
    if (r.body.empty() && reason == DS_RESUME_TIMEOUT && now >= session.next_keepalive_ms) {
      AppendSseKeepalive(&r.body);
      session.next_keepalive_ms = now + options_.sse_keepalive_interval_ms;
    }
    r.wait_ms = Remaining(std::min(session.deadline_ms, session.next_keepalive_ms), now);
    return r;
  }
  // More data remains: come straight back for the next piece (or, ending,
  // leave it to the next connection: the last event was a control event).
  r.done = ending;
  r.wait_ms = 0;
  return r;
}

SseStep Engine::NextSseEvents(Stream& stream, uint64_t offset, std::string_view client_cursor,
                              std::string* out) {
  SseStep step;
  step.next_offset = offset;
  std::unique_lock lock(stream.mu);
  if (stream.deleted || stream.soft_deleted) {
    step.ends = true;
    return step;
  }
  uint64_t tail = stream.tail.load();
  bool closed = stream.closed_visible;
  SseControl control;
  if (offset < tail) {
    lock.unlock();
    ChunkRead chunk{offset, ChunkEnd(stream, offset, tail), tail, closed};
    std::string payload;
    if (!AppendBody(stream, chunk.from, chunk.end, &payload).ok()) {
      step.ends = true;  // the client reconnects from its last control event
      return step;
    }
    SseDataEncoding encoding =
        stream.sse_text ? SseDataEncoding::kText : SseDataEncoding::kBase64;
    AppendSseData(payload, encoding, out);
    control.next_offset = EncodeOffset(chunk.end);
    control.up_to_date = chunk.up_to_date();
    control.closed = chunk.reaches_closed_tail();
    if (!control.closed) control.cursor = Cursor(client_cursor);
    step.caught_up = chunk.up_to_date();
    step.next_offset = chunk.end;
  } else if (closed) {
    control.next_offset = EncodeOffset(tail);
    control.up_to_date = true;
    control.closed = true;
    step.caught_up = true;
  } else {
    return step;  // at an open tail: nothing to say
  }
  AppendSseControl(control, out);
  step.wrote = true;
  step.ends = control.closed;  // §5.8: the connection closes after it
  return step;
}

bool Engine::ParkSseWaiter(Stream& stream, uint64_t waiter, uint64_t offset,
                           WaiterRegistration* registration) {
  std::lock_guard lock(stream.mu);
  if (stream.deleted || stream.soft_deleted || stream.closed_visible ||
      offset < stream.tail.load()) {
    return false;
  }
  if (!registration->parked || registration->generation != stream.wake_generation) {
    stream.waiters.push_back(waiter);
    registration->parked = true;
    registration->generation = stream.wake_generation;
  }
  return true;
}

void Engine::UnparkSseWaiter(Stream& stream, uint64_t waiter,
                             const WaiterRegistration& registration) {
  std::lock_guard lock(stream.mu);
  Unpark(stream, waiter, registration);
}

void Engine::Unpark(Stream& stream, uint64_t waiter, const WaiterRegistration& registration) {
  if (!registration.parked || registration.generation != stream.wake_generation) return;
  auto& w = stream.waiters;
  auto it = std::find(w.begin(), w.end(), waiter);
  if (it != w.end()) {
    *it = w.back();
    w.pop_back();
  }
}

// ---- session lifecycle ----------------------------------------------------

Response Engine::Resume(uint64_t session_id, ds_resume_reason reason) {
  if (durable_) {
    if (std::optional<Response> answer = ResumeAppend(session_id)) return std::move(*answer);
  }
  Session* session;
  {
    std::lock_guard lock(sessions_mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) {
      Response r = ErrorResponse(404, "unknown live session");
      r.done = true;
      return r;
    }
    session = it->second.get();
  }
  Response r = session->mode == Session::Mode::kLongPoll ? ResumeLongPoll(*session, reason)
                                                         : ResumeSse(*session, reason);
  bool finished = session->mode == Session::Mode::kLongPoll ? r.live == DS_LIVE_NONE : r.done;
  if (finished) Cancel(session_id);
  // A new status line (a long-poll's answer) needs the headers Handle adds.
  if (r.status != 0) AddCommonHeaders(&r);
  return r;
}

void Engine::Cancel(uint64_t session_id) {
  if (durable_) {
    // The append itself goes on: it is queued and will be committed and
    // published; only its answer has nobody to go to.
    std::lock_guard lock(pending_appends_mu_);
    if (pending_appends_.erase(session_id) > 0) return;
  }
  TakeSession(session_id, std::nullopt);
}

std::unique_ptr<Engine::Session> Engine::TakeSession(uint64_t session_id,
                                                     std::optional<int> mode) {
  std::unique_ptr<Session> session;
  {
    std::lock_guard lock(sessions_mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return nullptr;
    if (mode && static_cast<int>(it->second->mode) != *mode) return nullptr;
    session = std::move(it->second);
    sessions_.erase(it);
  }
  Stream& stream = *session->stream;
  std::lock_guard lock(stream.mu);
  Unpark(stream, session_id, session->registration);
  return session;
}

namespace {

// The HTTP layer set its socket non-blocking, but say so: one blocking
// write would stall every subscriber of the loop.
bool UsableSocket(const AdoptedSocket& socket) {
  int fd = socket.get();
  if (socket.borrowed()) {
    // The HTTP layer's own connection: a stream socket it already polls
    // without blocking (one check instead of three system calls per poll).
    int flags = ::fcntl(fd, F_GETFL);
    return flags >= 0 && (flags & O_NONBLOCK) != 0;
  }
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
    return false;
  }
  int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

}  // namespace

Engine::Adoption Engine::AdoptSse(uint64_t session_id, UniqueFd socket, uint64_t owner,
                                  std::string* message) {
  SseAdoption adoption;
  Adoption taken = TakeForAdoption(session_id, static_cast<int>(Session::Mode::kSse),
                                   std::move(socket), owner, &adoption);
  if (taken != Adoption::kAdopted) return taken;
  return Hand(std::move(adoption), message);
}

Engine::Adoption Engine::AdoptLongPoll(uint64_t session_id, AdoptedSocket socket, uint64_t owner,
                                       std::string middleware_headers, uint64_t return_tag,
                                       std::string* message) {
  if (socket.borrowed() && return_tag == 0) return Adoption::kBadSocket;  // never given back
  SseAdoption adoption;
  Adoption taken = TakeForAdoption(session_id, static_cast<int>(Session::Mode::kLongPoll),
                                   std::move(socket), owner, &adoption);
  if (taken != Adoption::kAdopted) return taken;
  adoption.long_poll = true;
  adoption.headers = std::move(middleware_headers);
  adoption.return_tag = return_tag;
  return Hand(std::move(adoption), message);
}

// What both kinds of adoption carry over from the parked session: the
// socket, the stream and reader position, the owner and the timers.
// kAdopted means `adoption` is filled; anything else leaves it empty.
Engine::Adoption Engine::TakeForAdoption(uint64_t session_id, int mode, AdoptedSocket socket,
                                         uint64_t owner, SseAdoption* adoption) {
  if (!UsableSocket(socket)) return Adoption::kBadSocket;
  std::unique_ptr<Session> session = TakeSession(session_id, mode);
  if (session == nullptr) return Adoption::kNoSession;
  adoption->socket = std::move(socket);
  adoption->stream = std::move(session->stream);
  adoption->offset = session->offset;
  adoption->client_cursor = std::move(session->client_cursor);
  adoption->owner = owner;
  adoption->deadline_ms = session->deadline_ms;
  adoption->next_keepalive_ms = session->next_keepalive_ms;
  return Adoption::kAdopted;
}

Engine::Adoption Engine::Hand(SseAdoption adoption, std::string* message) {
  // A borrowed socket goes to the loop its number names, every time: that
  // loop may still have it registered from its last poll
  // (SseFanout::kept_registered_). Others are dealt round-robin.
  size_t loop = adoption.socket.borrowed()
                    ? static_cast<size_t>(adoption.socket.get()) % fanouts_.size()
                    : next_fanout_.fetch_add(1, std::memory_order_relaxed) % fanouts_.size();
  Status s = fanouts_[loop]->Adopt(std::move(adoption));
  if (!s.ok()) {
    *message = s.message();
    return Adoption::kFailed;
  }
  return Adoption::kAdopted;
}

void Engine::WaveBegins(uint32_t loop) {
  std::lock_guard lock(returns_mu_);
  waves_on_ |= uint64_t{1} << loop;
}

// Serve pending answers before new requests: on a fan-out every loop is
// woken at once, and the first to finish would otherwise hand its
// connections to the HTTP layer, whose next requests (a net/http
// connection, Caddy's handler chain, a takeover each) compete for the CPU
// with the loops still writing that append's answers and with the clients
// reading them. So connections a loop answers while other loops have a
// wave on wait until those waves end (each at the end of that loop's turn
// that took the wake), then go back, in the order they were answered. They
// wait only for the waves on when they were answered, so waves that keep
// starting elsewhere (a busy stream) never hold them longer than a turn,
// and never longer than kMaxReturnHoldMs.
void Engine::ReturnConnections(uint32_t loop, const std::vector<uint64_t>& tags, bool wave_ends) {
  const uint64_t self = uint64_t{1} << loop;
  const int64_t now = clock_->NowMs();
  std::vector<uint64_t> out;
  {
    std::lock_guard lock(returns_mu_);
    if (wave_ends) {
      waves_on_ &= ~self;
      for (HeldReturns& held : held_returns_) held.waiting_for &= ~self;
    }
    size_t kept = 0;
    for (size_t i = 0; i < held_returns_.size(); ++i) {
      HeldReturns& held = held_returns_[i];
      if (held.waiting_for == 0 || now - held.since_ms >= kMaxReturnHoldMs) {
        out.insert(out.end(), held.tags.begin(), held.tags.end());
      } else if (kept++ != i) {
        // Never onto itself: a vector moved onto itself is left empty.
        held_returns_[kept - 1] = std::move(held);
      }
    }
    held_returns_.resize(kept);
    if (!tags.empty()) {
      if (uint64_t others = waves_on_ & ~self; others != 0) {
        held_returns_.push_back(HeldReturns{others, now, tags});
      } else {
        out.insert(out.end(), tags.begin(), tags.end());
      }
    }
    returns_held_.store(!held_returns_.empty(), std::memory_order_relaxed);
  }
  if (!out.empty() && wake_) wake_(out);
}

void Engine::EndAdopted(uint64_t owner) {
  for (const auto& fanout : fanouts_) fanout->EndOwner(owner);
}

void Engine::RunSseFanoutOnce(int max_wait_ms) {
  for (const auto& fanout : fanouts_) fanout->RunOnce(max_wait_ms);
}

void Engine::RunSseFanoutLoopOnce(size_t loop, int max_wait_ms) {
  if (loop < fanouts_.size()) fanouts_[loop]->RunOnce(max_wait_ms);
}

}  // namespace ds
