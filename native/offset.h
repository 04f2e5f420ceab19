// Offsets (PROTOCOL.md §8): opaque, fixed-width, lexicographically sortable,
// URL-safe tokens "RRRRRRRRRRRRRRRR_PPPPPPPPPPPPPPPP": two 16-digit
// zero-padded decimal fields. P is the position in the stream's logical byte
// log, so string order equals position order. R is reserved and always 0
// (it leaves room to renumber a stream's log without breaking ordering); a
// token with any other R is not one of ours. The all-zero token is the start
// of every stream, which clients and the conformance suite rely on. Forks
// share their source's offset space, so the same encoding serves both.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ds {

inline constexpr size_t kOffsetWidth = 33;
inline constexpr uint64_t kMaxOffsetPosition = 9999999999999999ull;

std::string EncodeOffset(uint64_t position);

// Parses a token of our format. Anything else (including the sentinels "-1"
// and "now", which callers handle first) is nullopt. A well-formed token
// whose reserved field is not zero decodes to a position past any tail.
std::optional<uint64_t> DecodeOffset(std::string_view token);

}  // namespace ds
