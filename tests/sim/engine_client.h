// Calls into the engine as the HTTP layer does (one Request per call; a
// durable append with session 0 blocks until its group commit is done).
#pragma once

#include <unistd.h>

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
  ds::Response out = engine.Handle(r, 0);
  // A catch-up read may answer with file ranges (sendfile): the bytes the
  // HTTP layer would send follow the body, so the oracle checks them too.
  for (const ds::FileRange& f : out.files) {
    std::string piece(f.length, '\0');
    const ssize_t got = ::pread(f.fd->get(), piece.data(), piece.size(), static_cast<off_t>(f.offset));
    piece.resize(got < 0 ? 0 : static_cast<size_t>(got));  // short: the oracle sees wrong bytes
    out.body += piece;
  }
  out.files.clear();
  return out;
}

inline std::string HeaderOf(const ds::Response& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return {};
}

}  // namespace dssim
