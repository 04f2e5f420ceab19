// libFuzzer target: arbitrary requests against an in-memory engine. The
// input is split into fields (method choice, path, query, headers, body) so
// the fuzzer reaches the parsers behind them: offsets, TTLs, RFC 3339 times,
// producer numbers, JSON bodies, fork headers, query strings. Any crash,
// sanitizer report or leak is a bug; so is an exception escaping.
//
//   make fuzz            (needs clang: apt-get install clang-14)
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine.h"

namespace {

constexpr const char* kMethods[] = {"PUT", "POST", "GET", "HEAD", "DELETE", "OPTIONS"};

// Splits `data` on 0xFF bytes into at most `n` pieces.
std::vector<std::string_view> Split(std::string_view data, size_t n) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < n) {
    size_t cut = data.find('\xff');
    if (cut == std::string_view::npos) break;
    out.push_back(data.substr(0, cut));
    data.remove_prefix(cut + 1);
  }
  out.push_back(data);
  return out;
}

ds::Engine& SharedEngine() {
  // One engine across inputs: state built by earlier inputs (streams,
  // producers, forks) makes later inputs reach deeper code.
  static auto* engine = [] {
    ds::EngineOptions options;
    options.sweep_interval_ms = 0;
    options.max_read_bytes = 64;
    return new ds::Engine(options, std::make_shared<ds::SystemClock>(),
                          [](const std::vector<uint64_t>&) {});
  }();
  return *engine;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ds::Engine& engine = SharedEngine();
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto parts = Split(input, 3 + DS_FIELD_COUNT);
  ds::Request request;
  request.method = kMethods[data[0] % 6];
  // Paths stay within a few names so requests meet the same streams.
  static const std::string kPaths[] = {"/v1/stream/a", "/v1/stream/b", "/v1/stream/c/d",
                                       "/v1/stream/__ds/x"};
  request.path = kPaths[(data[0] / 6) % 4];
  request.fields[DS_FIELD_PATH] = request.path;
  request.query = parts.size() > 0 ? parts[0] : std::string_view();
  request.body = parts.size() > 1 ? parts[1] : std::string_view();
  for (size_t i = 2; i < parts.size(); ++i) {
    int field = static_cast<int>(DS_FIELD_CONTENT_TYPE) + static_cast<int>(i - 2);
    if (field >= DS_FIELD_COUNT) break;
    if (!parts[i].empty()) request.fields[field] = parts[i];
  }
  uint64_t session = 1 + (data[0] & 0x3f);
  ds::Response r = engine.Handle(request, session);
  if (r.live != DS_LIVE_NONE) {
    ds::Response next = engine.Resume(r.session, DS_RESUME_TIMEOUT);
    if (!(next.live == DS_LIVE_NONE || next.done)) engine.Cancel(r.session);
  }
  return 0;
}
