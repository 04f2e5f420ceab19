// Calls into the engine as the HTTP layer does (one Request per call; a
// durable append with session 0 blocks until its group commit is done).
#pragma once

#include <map>
#include <string>

#include "engine.h"
#include "offset.h"

namespace dssim {

using Headers = std::map<ds_field_id, std::string>;

inline ds::Response Call(ds::Engine& engine, const std::string& method, const std::string& path,
                         const Headers& headers = {}, const std::string& body = {},
                         const std::string& query = {}) {
  ds::Request r;
  r.method = method;
  r.path = path;
  r.query = query;
  for (const auto& [id, value] : headers) r.fields[id] = value;
  r.body = body;
  return engine.Handle(r, 0);
}

inline std::string HeaderOf(const ds::Response& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return {};
}

}  // namespace dssim
