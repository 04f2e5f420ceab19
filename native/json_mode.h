// JSON mode (PROTOCOL.md §9.1): validation, one-level array flattening and
// the array framing of reads.
//
// Storage form: each message is kept as its own JSON text, with raw CR and LF
// bytes (which valid JSON can only contain as insignificant whitespace)
// replaced by spaces, followed by one '\n'. So '\n' marks every message
// boundary, a read can be cut at a message boundary by looking for '\n', and
// byte offsets stay the stream's offsets.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ds {

enum class JsonAppendKind {
  kAppend,  // POST: an empty array is an error (§9.1.3)
  kCreate,  // PUT: an empty array creates an empty stream
};

// Validates `body` and appends its messages in storage form to `out`.
// Returns an empty string on success, else a one-line error message (and
// `out` is unchanged). `*messages` receives the number of messages.
std::string EncodeJsonMessages(std::string_view body, JsonAppendKind kind,
                               std::string* out, size_t* messages);

// Appends the JSON array holding the stored messages in `stored` (a whole
// number of messages in storage form) to `out`: "[m1,m2]" or "[]".
void AppendJsonArray(std::string_view stored, std::string* out);

// Length of the longest prefix of `stored` that ends on a message boundary
// and is at most `cap` bytes, except that at least one whole message is taken
// when `stored` is not empty (a message larger than the cap is never split).
size_t JsonChunkLength(std::string_view stored, size_t cap);

}  // namespace ds
