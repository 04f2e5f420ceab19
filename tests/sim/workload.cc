// The seeded workload (see workload.h). Deterministic for a seed: the
// clock is a ManualClock, expiry sweeps, retention passes, INTERVAL syncs
// and WAL checkpoints happen when the workload says so (timers are set out
// of reach), and every request blocks until answered, so the same seed
// issues the same file operations in the same order (up to the order of
// concurrent fdatasyncs inside one commit).
#include "workload.h"

#include <random>

#include "engine_client.h"
#include "lmdb_store.h"

namespace dssim {
namespace {

constexpr int64_t kFar = int64_t{1} << 40;  // timers that never fire

class Driver {
 public:
  Driver(const WorkloadConfig& c, const Recorder& rec, Model* m)
      : config_(c), rec_(rec), m_(*m), rng_(c.seed * 0x9E3779B97F4A7C15ull + c.fsync) {}

  uint64_t R(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool P(int percent) { return static_cast<int>(R(100)) < percent; }

  int Begin(Event::Kind kind, int stream) {
    Event e{kind, stream};
    e.now_ms = clock_->NowMs();
    int idx = static_cast<int>(m_.events.size());
    std::string text = "b" + std::to_string(idx);
    e.begin = rec_.ack(text.data(), text.size());
    m_.events.push_back(e);
    return idx;
  }
  void Ack(int idx) {
    std::string text = "a" + std::to_string(idx);
    m_.events[idx].ack = rec_.ack(text.data(), text.size());
  }

  std::string RandomBytes(size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>('a' + R(26));
    return s;
  }
  // JSON messages are compact objects with a unique number: no whitespace,
  // so their stored form is the text plus '\n'.
  std::string Message(size_t pad) {
    return "{\"n\":" + std::to_string(++messages_) + ",\"p\":\"" + RandomBytes(pad) + "\"}";
  }

  std::vector<int> Live(bool open_only) {
    std::vector<int> out;
    for (size_t i = 0; i < m_.streams.size(); ++i) {
      const StreamModel& s = m_.streams[i];
      if (s.del >= 0 || (open_only && s.close >= 0)) continue;
      if (s.earliest_expiry_ms && *s.earliest_expiry_ms <= clock_->NowMs() + 1000) continue;
      out.push_back(static_cast<int>(i));
    }
    return out;
  }

  void Unexpected(const char* what, int status, const std::string& body) {
    ++m_.unexpected_answers;
    fprintf(stderr, "workload: unexpected %s answer %d: %s\n", what, status, body.c_str());
  }

  // Appends the stored form of `body` to the stream's model; returns the bytes.
  std::string Stored(const StreamModel& s, const std::string& body, bool array) {
    if (!s.json) return body;
    if (!array) return body + "\n";
    std::string out;  // body is "[m1,m2,...]" of compact objects
    size_t depth = 0, from = 1;
    for (size_t i = 1; i + 1 < body.size(); ++i) {
      if (body[i] == '{') ++depth;
      if (body[i] == '}') --depth;
      if (depth == 0 && body[i] == ',') {
        out += body.substr(from, i - from) + "\n";
        from = i + 1;
      }
    }
    out += body.substr(from, body.size() - 1 - from) + "\n";
    return out;
  }

  std::string Body(const StreamModel& s, bool* array) {
    *array = false;
    if (!s.json) {
      uint64_t seg = m_.segment_bytes;
      size_t n = P(5) ? 65536 + R(8192) : 1 + R(P(30) ? 2 * seg : 200);
      return RandomBytes(n);
    }
    if (P(25)) {
      *array = true;
      std::string b = "[";
      int k = 1 + static_cast<int>(R(3));
      for (int i = 0; i < k; ++i) b += (i ? "," : "") + Message(R(60));
      return b + "]";
    }
    return Message(R(P(20) ? m_.segment_bytes : 60));
  }

  void Create() {
    StreamModel s;
    s.path = std::string(kRoot) + "/s" + std::to_string(m_.streams.size());
    Headers h;
    int kind = static_cast<int>(R(10));
    s.json = kind < 3;
    s.content_type = s.json ? "application/json" : kind < 7 ? "text/plain" : "application/octet-stream";
    h[DS_FIELD_CONTENT_TYPE] = s.content_type;
    if (P(15)) {
      uint64_t ttl = 5 + R(40);
      h[DS_FIELD_STREAM_TTL] = std::to_string(ttl);
      s.earliest_expiry_ms = clock_->NowMs() + static_cast<int64_t>(ttl) * 1000;
    }
    bool closed = P(5);
    if (closed) h[DS_FIELD_STREAM_CLOSED] = "true";
    std::string body;
    bool array = false;
    if (P(50)) body = Body(s, &array);
    const int idx = static_cast<int>(m_.streams.size());
    m_.streams.push_back(s);
    int ev = Begin(Event::kCreate, idx);
    ds::Response r = Call(*engine_, "PUT", s.path, h, body);
    Ack(ev);
    StreamModel& sm = m_.streams[idx];
    if (r.status != 201) {
      Unexpected("create", r.status, r.body);
      sm.del = ev;  // never existed: the oracle expects 404
      sm.create = -1;
      return;
    }
    sm.create = ev;
    if (!body.empty()) {
      sm.bytes = Stored(sm, body, array);
      sm.chunks.push_back({sm.bytes.size(), ev});
    }
    if (closed) sm.close = ev;
  }

  void Fork() {
    auto live = Live(false);
    if (live.empty()) return Create();
    int src = live[R(live.size())];
    StreamModel s;
    const StreamModel& from = m_.streams[src];
    s.path = std::string(kRoot) + "/s" + std::to_string(m_.streams.size());
    s.json = from.json;
    s.content_type = from.content_type;
    s.source = src;
    // Any position for bytes; a message boundary for JSON.
    std::vector<uint64_t> points{0};
    if (from.json) {
      for (size_t i = 0; i < from.bytes.size(); ++i)
        if (from.bytes[i] == '\n') points.push_back(i + 1);
    } else {
      points.push_back(from.bytes.size());
      points.push_back(R(from.bytes.size() + 1));
    }
    s.earliest_expiry_ms = from.earliest_expiry_ms;  // a fork may inherit it
    s.fork_offset = points[R(points.size())];
    if (from.bytes.size() > 0 && P(40)) s.fork_offset = from.json ? points.back() : from.bytes.size();
    Headers h{{DS_FIELD_STREAM_FORKED_FROM, from.path},
              {DS_FIELD_STREAM_FORK_OFFSET, ds::EncodeOffset(s.fork_offset)}};
    s.bytes = from.bytes.substr(0, s.fork_offset);
    const int idx = static_cast<int>(m_.streams.size());
    m_.streams.push_back(s);
    int ev = Begin(Event::kCreate, idx);
    ds::Response r = Call(*engine_, "PUT", s.path, h);
    Ack(ev);
    StreamModel& sm = m_.streams[idx];
    if (r.status != 201) {
      // 410: the offset fell below what retention keeps of the source.
      if (r.status != 410) Unexpected("fork", r.status, r.body);
      sm.del = ev;
      return;
    }
    sm.create = ev;
    m_.streams[src].has_forks = true;
  }

  void Append() {
    auto live = Live(true);
    if (live.empty()) return Create();
    int idx = live[R(live.size())];
    StreamModel& s = m_.streams[idx];
    bool array = false;
    std::string body = Body(s, &array);
    Headers h{{DS_FIELD_CONTENT_TYPE, s.content_type}};
    bool producer = P(40);
    ProducerAppend pa;
    if (producer) {
      pa.producer = "p" + std::to_string(R(2));
      uint64_t next = 0;
      for (const auto& q : s.producer_appends)
        if (q.producer == pa.producer) next = q.seq + 1;
      pa.seq = next;
      pa.body = body;
      h[DS_FIELD_PRODUCER_ID] = pa.producer;
      h[DS_FIELD_PRODUCER_EPOCH] = std::to_string(pa.epoch);
      h[DS_FIELD_PRODUCER_SEQ] = std::to_string(pa.seq);
    }
    bool closing = P(4);
    if (closing) h[DS_FIELD_STREAM_CLOSED] = "true";
    int ev = Begin(Event::kAppend, idx);
    ds::Response r = Call(*engine_, "POST", s.path, h, body);
    Ack(ev);
    StreamModel& sm = m_.streams[idx];
    if (r.status != 200 && r.status != 204) return Unexpected("append", r.status, r.body);
    pa.from = sm.bytes.size();
    sm.bytes += Stored(sm, body, array);
    sm.chunks.push_back({sm.bytes.size(), ev});
    pa.to = sm.bytes.size();
    pa.event = ev;
    if (producer) sm.producer_appends.push_back(pa);
    if (closing) sm.close = ev;
  }

  // A producer retries its last append: deduplicated, nothing written.
  void Retry() {
    std::vector<int> with;
    for (int i : Live(false))
      if (!m_.streams[i].producer_appends.empty()) with.push_back(i);
    if (with.empty()) return Append();
    int idx = with[R(with.size())];
    StreamModel& s = m_.streams[idx];
    const ProducerAppend& pa = s.producer_appends.back();
    Headers h{{DS_FIELD_CONTENT_TYPE, s.content_type},
              {DS_FIELD_PRODUCER_ID, pa.producer},
              {DS_FIELD_PRODUCER_EPOCH, std::to_string(pa.epoch)},
              {DS_FIELD_PRODUCER_SEQ, std::to_string(pa.seq)}};
    int ev = Begin(Event::kRetry, idx);
    ds::Response r = Call(*engine_, "POST", s.path, h, pa.body);
    Ack(ev);
    if (r.status != 204) Unexpected("retry", r.status, r.body);
  }

  void CloseStream() {
    auto live = Live(true);
    if (live.empty()) return;
    int idx = live[R(live.size())];
    int ev = Begin(Event::kClose, idx);
    ds::Response r = Call(*engine_, "POST", m_.streams[idx].path, {{DS_FIELD_STREAM_CLOSED, "true"}});
    Ack(ev);
    if (r.status != 204) return Unexpected("close", r.status, r.body);
    m_.streams[idx].close = ev;
  }

  void Delete() {
    auto live = Live(false);
    if (live.empty()) return;
    int idx = live[R(live.size())];
    int ev = Begin(Event::kDelete, idx);
    ds::Response r = Call(*engine_, "DELETE", m_.streams[idx].path);
    Ack(ev);
    if (r.status != 204) return Unexpected("delete", r.status, r.body);
    m_.streams[idx].del = ev;
  }

  void Sweep() {
    clock_->Advance(static_cast<int64_t>(1000 + R(15000)));
    int ev = Begin(Event::kSweep, -1);
    engine_->SweepExpired();
    Ack(ev);
    // Which streams the sweep removed (a TTL may have slid with appends,
    // a fork may carry its source's expiry): ask.
    for (auto& s : m_.streams) {
      if (s.del >= 0 || s.create < 0) continue;
      int status = Call(*engine_, "HEAD", s.path).status;
      if (status == 404 || status == 410) s.del = ev;
    }
  }

  void Retention() {
    int ev = Begin(Event::kRetention, -1);
    engine_->ApplyRetention();
    Ack(ev);
  }

  void Flush() {
    int ev = Begin(Event::kFlush, -1);
    ds::Status s = store_->Flush();
    Ack(ev);
    if (!s.ok()) fprintf(stderr, "workload: flush failed: %s\n", s.message().c_str());
  }

  // Opens the store and the engine over data_dir and recovers.
  bool OpenEngine(std::string* error) {
    ds::LmdbStoreOptions so;
    so.data_dir = data_dir_;
    so.fsync = config_.fsync;
    so.fsync_interval_ms = kFar;
    so.segment_bytes = m_.segment_bytes;
    so.initial_map_bytes = 64ull << 20;
    so.wal_checkpoint_bytes = m_.wal_checkpoint_bytes;
    so.wal_checkpoint_interval_ms = kFar;
    std::unique_ptr<ds::LmdbStore> store;
    ds::Status s = ds::LmdbStore::Open(so, &store);
    if (!s.ok()) {
      *error = "open: " + s.message();
      return false;
    }
    store_ = store.get();
    ds::EngineOptions eo;
    eo.sweep_interval_ms = 0;
    eo.retention_bytes = m_.retention_bytes;
    eo.max_read_bytes = 64ull << 20;
    eo.sse_fanout_thread = false;
    engine_ = std::make_unique<ds::Engine>(eo, clock_, [](const std::vector<uint64_t>&) {},
                                           std::move(store));
    s = engine_->Recover();
    if (!s.ok()) {
      *error = "recover: " + s.message();
      return false;
    }
    return true;
  }

  // A clean restart: close (syncs everything) and recover.
  bool Restart(std::string* error) {
    int ev = Begin(Event::kRestart, -1);
    engine_.reset();
    store_ = nullptr;
    bool ok = OpenEngine(error);
    Ack(ev);
    return ok;
  }

  // ds_backup into <root>/backup<N> while the engine is open.
  void Backup() {
    std::string name = "backup" + std::to_string(m_.backups.size());
    std::string dest = data_dir_.substr(0, data_dir_.rfind('/')) + "/" + name;
    int ev = Begin(Event::kBackup, -1);
    ds_error err;
    ds_code code = ds_backup(data_dir_.c_str(), dest.c_str(), &err);
    Ack(ev);
    if (code != DS_OK) {
      ++m_.unexpected_answers;
      fprintf(stderr, "workload: backup failed: %s\n", err.message);
      return;
    }
    m_.backups.push_back({ev, name});
  }

  bool Run(const std::string& data_dir, std::string* error) {
    data_dir_ = data_dir;
    m_.fsync = config_.fsync;
    const uint64_t segs[] = {256, 1024, 4096, 65536};
    m_.segment_bytes = segs[R(4)];
    m_.retention_bytes = P(40) ? 2 * m_.segment_bytes : 0;
    const uint64_t ckpt[] = {2048, 16384, 1 << 20};
    m_.wal_checkpoint_bytes = ckpt[R(3)];

    rec_.set_active(1);
    if (!OpenEngine(error)) return false;
    for (int i = 0; i < config_.operations; ++i) {
      int dice = static_cast<int>(R(100));
      if (dice < 14) Create();
      else if (dice < 22) Fork();
      else if (dice < 64) Append();
      else if (dice < 70) Retry();
      else if (dice < 74) CloseStream();
      else if (dice < 80) Delete();
      else if (dice < 85) Sweep();
      else if (dice < 92) { if (m_.retention_bytes) Retention(); else Append(); }
      else if (dice < 95) { if (config_.fsync == DS_FSYNC_INTERVAL) Flush(); else Append(); }
      else if (dice < 97) Backup();
      else if (dice < 98) { if (!Restart(error)) return false; }
      else clock_->Advance(static_cast<int64_t>(R(3000)));
    }
    // A clean close syncs everything under every policy.
    int ev = Begin(Event::kCloseEngine, -1);
    engine_.reset();
    Ack(ev);
    rec_.set_active(0);
    return true;
  }

 private:
  const WorkloadConfig& config_;
  const Recorder& rec_;
  Model& m_;
  std::mt19937_64 rng_;
  std::shared_ptr<ds::ManualClock> clock_ = std::make_shared<ds::ManualClock>(kStartMs);
  std::unique_ptr<ds::Engine> engine_;
  ds::LmdbStore* store_ = nullptr;
  std::string data_dir_;
  uint64_t messages_ = 0;
};

}  // namespace

bool RunWorkload(const WorkloadConfig& config, const std::string& data_dir, const Recorder& rec,
                 Model* model, std::string* error) {
  Driver d(config, rec, model);
  return d.Run(data_dir, error);
}

}  // namespace dssim
