// The product version, shown by `durable-streams-server version`.
#pragma once

namespace ds {
inline constexpr char kVersion[] = "0.1.0";
}  // namespace ds
