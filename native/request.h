// An HTTP request as the engine sees it: views into the caller's buffers,
// valid only for the duration of one engine call.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "durable_streams.h"

namespace ds {

struct Request {
  std::string_view method;
  std::string_view path;
  std::string_view query;
  std::optional<std::string_view> fields[DS_FIELD_COUNT];
  std::string_view body;
  bool body_too_large = false;
  bool body_over_budget = false;
  // A parked durable append answers at park time (ds_request.answer_at_park).
  bool answer_at_park = false;

  std::optional<std::string_view> header(ds_field_id id) const {
    return fields[id];
  }
  bool has(ds_field_id id) const { return fields[id].has_value(); }
};

// The query parameters the protocol defines (§5.6–5.8), percent-decoded.
// The first occurrence of a parameter wins.
struct ReadParams {
  std::optional<std::string> offset;
  bool offset_repeated = false;  // `offset` given more than once: ambiguous
  std::optional<std::string> live;
  std::optional<std::string> cursor;
};

ReadParams ParseReadParams(std::string_view query);

// `Stream-Closed` is present only when its value is `true`, compared
// case-insensitively (§4.1); any other value counts as absent.
bool HeaderIsTrue(const std::optional<std::string_view>& value);

// Paths we refuse to treat as stream names: NUL bytes, `.`/`..` segments.
bool IsSafeStreamPath(std::string_view path);

}  // namespace ds
