// A live read (long-poll or SSE) parked between engine calls. Only the one
// goroutine serving the request touches a session, so it needs no lock of
// its own; the engine's session map is locked only to find it.
#pragma once

#include <cstdint>
#include <string>

#include "engine.h"

namespace ds {

struct Engine::Session {
  enum class Mode { kLongPoll, kSse };

  uint64_t id = 0;
  Mode mode = Mode::kLongPoll;
  StreamPtr stream;
  uint64_t offset = 0;        // next position to deliver
  std::string client_cursor;  // the request's `cursor`, for Stream-Cursor
  int64_t deadline_ms = 0;    // long-poll: 204 after; SSE: reconnect after
  int64_t next_keepalive_ms = 0;  // SSE only
  WaiterRegistration registration;  // in stream->waiters, as of which wake
  bool sent_control = false;       // SSE: a control event went out
};

}  // namespace ds
