// Stream-Cursor values (PROTOCOL.md §10.1): the number of 20-second
// intervals since 2024-10-09T00:00:00Z, pushed strictly past any cursor the
// client echoes so CDN cache keys always move forward.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ds {

inline constexpr int64_t kCursorEpochMs = 1728432000000;  // 2024-10-09T00:00Z
inline constexpr int64_t kCursorIntervalMs = 20000;

// `client_cursor` is the request's `cursor` query value (may be empty or not
// a number, in which case it is ignored). `jitter_seconds` must be in
// [1, 3600]; callers draw it at random.
std::string NextCursor(int64_t now_ms, std::string_view client_cursor,
                       uint32_t jitter_seconds);

// A random jitter in [1, 3600] seconds.
uint32_t RandomCursorJitterSeconds();

}  // namespace ds
