#include "cursor.h"

#include <random>

namespace ds {

std::string NextCursor(int64_t now_ms, std::string_view client_cursor,
                       uint32_t jitter_seconds) {
  int64_t interval = (now_ms - kCursorEpochMs) / kCursorIntervalMs;
  if (interval < 0) interval = 0;
  uint64_t client = 0;
  bool client_valid = !client_cursor.empty() && client_cursor.size() <= 18;
  for (char c : client_cursor) {
    if (c < '0' || c > '9') {
      client_valid = false;
      break;
    }
    client = client * 10 + static_cast<uint64_t>(c - '0');
  }
  uint64_t cursor = static_cast<uint64_t>(interval);
  if (client_valid && client >= cursor) {
    // Same (or a future) interval: move past the client's value by the jitter,
    // rounded up to whole intervals and never less than one.
    uint64_t step = (uint64_t{jitter_seconds} * 1000 + kCursorIntervalMs - 1) /
                    kCursorIntervalMs;
    cursor = client + (step == 0 ? 1 : step);
  }
  return std::to_string(cursor);
}

uint32_t RandomCursorJitterSeconds() {
  thread_local std::mt19937 rng{std::random_device{}()};
  return std::uniform_int_distribution<uint32_t>(1, 3600)(rng);
}

}  // namespace ds
