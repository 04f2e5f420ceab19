// Subscription patterns (PROTOCOL.md §6.2): globs over stream-root-relative
// paths, matched segment by segment. `*` matches exactly one segment, `**`
// zero or more; any other segment matches itself literally.
#pragma once

#include <string>
#include <string_view>

namespace ds {

// Whether `path` matches `pattern`. Runs in O(segments(pattern) ×
// segments(path)) whatever the `**`s (no backtracking).
bool GlobMatch(std::string_view pattern, std::string_view path);

// A pattern the matcher accepts: non-empty, no empty, "." or ".." segment,
// no segment mixing `*` with other characters (we do not do partial-segment
// wildcards, so "a*" is refused rather than silently matched literally).
bool ValidGlob(std::string_view pattern);

// The literal first segment that every path matching `pattern` starts with,
// or "" when the first segment is a wildcard. Subscriptions index patterns
// by it so that an append looks at the few patterns that can match its
// stream, not at every pattern.
std::string_view GlobFirstLiteral(std::string_view pattern);

// The first segment of a path ("a" for "a/b/c", the whole path if it has
// no slash).
std::string_view FirstSegment(std::string_view path);

}  // namespace ds
