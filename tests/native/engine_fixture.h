// A test harness that drives the engine through its C++ interface, as the
// HTTP layer would, with an injected clock and a recording wake callback.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine.h"

namespace ds::testing {

using Headers = std::map<ds_field_id, std::string>;

class EngineTest : public ::testing::Test {
 protected:
  static constexpr int64_t kStart = 1767225600000;  // 2026-01-01T00:00:00Z

  void SetUp() override { Open(EngineOptions{}); }
  // The engine's threads (committer, fan-out) call RecordWakes' callback
  // until it is gone: drop it before the members that callback writes.
  ~EngineTest() override { engine_.reset(); }

  void Open(EngineOptions options) {
    options.sweep_interval_ms = 0;  // tests sweep explicitly
    engine_.reset();
    engine_ = std::make_unique<Engine>(options, clock_, RecordWakes());
  }

  // Drops the engine (a crash: nothing is flushed on the way out) and opens
  // a new one over `store`, recovering what it holds.
  void OpenOver(EngineOptions options, std::unique_ptr<Store> store) {
    options.sweep_interval_ms = 0;
    engine_.reset();
    TakeWoken();
    engine_ = std::make_unique<Engine>(options, clock_, RecordWakes(), std::move(store));
    Status s = engine_->Recover();
    ASSERT_TRUE(s.ok()) << s.message();
  }

  Response Call(std::string method, std::string path, Headers headers = {},
                std::string body = {}, std::string query = {}, uint64_t session = 0) {
    // Keep the strings alive for the call: the request holds views.
    method_ = std::move(method);
    path_ = std::move(path);
    query_ = std::move(query);
    headers_ = std::move(headers);
    body_ = std::move(body);
    Request r;
    r.method = method_;
    r.path = path_;
    r.query = query_;
    for (const auto& [id, value] : headers_) r.fields[id] = value;
    r.body = body_;
    Response out = engine_->Handle(r, session == 0 ? ++next_session_ : session);
    // A durable append parks until its group commit; answer it as the HTTP
    // layer would once woken (DurabilityTest checks the wake itself).
    if (out.live == DS_LIVE_COMMIT) out = engine_->Resume(out.session, DS_RESUME_WAKE);
    return out;
  }

  Response Put(const std::string& path, Headers h = {}, std::string body = {}) {
    return Call("PUT", path, std::move(h), std::move(body));
  }
  Response Post(const std::string& path, Headers h, std::string body = {}) {
    return Call("POST", path, std::move(h), std::move(body));
  }
  Response Get(const std::string& path, std::string query = {}, Headers h = {}) {
    return Call("GET", path, std::move(h), {}, std::move(query));
  }
  Response Head(const std::string& path) { return Call("HEAD", path); }
  Response Delete(const std::string& path) { return Call("DELETE", path); }

  WakeFn RecordWakes() {
    return [this](const std::vector<uint64_t>& ids) {
      std::lock_guard lock(woken_mu_);
      woken_.insert(woken_.end(), ids.begin(), ids.end());
    };
  }

  std::vector<uint64_t> TakeWoken() {
    std::lock_guard lock(woken_mu_);
    std::vector<uint64_t> out;
    out.swap(woken_);
    return out;
  }

  // A response's body bytes held in memory: `body`, then the pinned
  // pieces a catch-up read of a memory stream sends instead of a copy.
  static std::string BodyOf(const Response& r) {
    std::string out = r.body;
    for (const MemoryRange& m : r.pieces) out.append(m.data, m.length);
    return out;
  }

  static std::string HeaderOf(const Response& r, std::string_view name) {
    for (const auto& [n, v] : r.headers) {
      if (n == name) return v;
    }
    return "<absent>";
  }

  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>(kStart);
  std::unique_ptr<Engine> engine_;
  uint64_t next_session_ = 1000;

 private:
  std::string method_, path_, query_, body_;
  Headers headers_;
  std::mutex woken_mu_;
  std::vector<uint64_t> woken_;
};

inline Headers Text() { return {{DS_FIELD_CONTENT_TYPE, "text/plain"}}; }
inline Headers Json() { return {{DS_FIELD_CONTENT_TYPE, "application/json"}}; }
inline Headers Bin() { return {{DS_FIELD_CONTENT_TYPE, "application/octet-stream"}}; }
inline Headers With(Headers h, ds_field_id id, std::string value) {
  h[id] = std::move(value);
  return h;
}

}  // namespace ds::testing
