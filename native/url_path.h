// Percent-encoding a decoded URL path for headers that echo it (Location).
#pragma once

#include <string>
#include <string_view>

namespace ds {

// Appends `path` (decoded, as the engine keeps stream paths) to `out` with
// every byte that RFC 3986 does not allow raw in a path segment written as
// %XX (upper-case hex): '%', '?', '#', space, controls (CR, LF, NUL), '"',
// '<', '>', '\', '^', '`', '{', '|', '}', DEL and every non-ASCII byte (so
// UTF-8 goes out as its encoded bytes). '/' and the rest of pchar
// (unreserved, sub-delims, ':' and '@') stay as they are. Decoding the
// result gives `path` back, so a client that follows the header reaches the
// same stream, and no byte of it can end a header line.
void AppendEncodedPath(std::string_view path, std::string* out);

// AppendEncodedPath into a new string.
std::string EncodePath(std::string_view path);

}  // namespace ds
