// The oracle (see oracle.h and STORAGE_FORMAT.md, "Fault model and
// simulation"). For a crash at log position `point`:
//   P(e): event e had begun (its begin marker is before the point): its
//         effects MAY be on disk;
//   G(e): the fsync policy guarantees e survived: always — e was
//         acknowledged before the point; interval — e was acknowledged
//         before a Flush (the INTERVAL syncer's work) that completed before
//         the point began; off — before a clean close that completed.
// Every stream must then be in a state between "all G events applied" and
// "all P events applied", its bytes a piece of exactly the bytes issued to
// it, and every answer the recovered engine gives consistent with them.
#include "oracle.h"

#include <algorithm>

#include "engine_client.h"
#include "lmdb_store.h"
#include "workload.h"

namespace dssim {
namespace {

class Checker {
 public:
  // The data directory at crash point `point`.
  Checker(const Model& m, uint64_t point) : m_(m), point_(point), label_("data") {
    guaranteed_ = 0;
    now_ = kStartMs;
    for (const Event& e : m.events) {
      if (e.begin < point) now_ = std::max(now_, e.now_ms);
      // A clean close (also the one in a restart) syncs everything.
      bool syncs_all = e.kind == Event::kCloseEngine || e.kind == Event::kRestart ||
                       (e.kind == Event::kFlush && m.fsync == DS_FSYNC_INTERVAL);
      if (syncs_all && e.ack < point) guaranteed_ = std::max(guaranteed_, e.begin);
    }
    strict_ = m.fsync == DS_FSYNC_ALWAYS;
    if (strict_) guaranteed_ = point;
  }
  // A completed backup (event `b`): it holds everything acknowledged before
  // it began and nothing begun after it ended, whatever the fsync policy.
  Checker(const Model& m, uint64_t point, int b, const std::string& label)
      : Checker(m, point) {
    point_ = m.events[b].ack;
    guaranteed_ = m.events[b].begin;
    strict_ = true;
    label_ = label;
  }

  bool P(int e) const { return e >= 0 && m_.events[e].begin < point_; }
  bool G(int e) const { return e >= 0 && m_.events[e].ack < guaranteed_; }

  static std::string OneLine(std::string text) {
    for (char& c : text)
      if (c == '\n' || c == '\t' || c == '\r') c = ' ';
    return text;
  }
  void Violation(const std::string& kind, const std::string& text) {
    out_.push_back({true, kind, OneLine(text)});
  }
  void Note(const std::string& kind, const std::string& text) {
    out_.push_back({false, kind, OneLine(text)});
  }
  // A finding that is a violation under `always` (and in backups) and a
  // documented loss otherwise. (Losing what G covers is a violation in
  // every mode: G already says what each mode promises.)
  void Strict(const std::string& kind, const std::string& text) {
    if (strict_) Violation(kind, text);
    else Note(kind, text);
  }

  std::vector<Finding> Run(const std::string& data_dir) {
    ds::LmdbStoreOptions so;
    so.data_dir = data_dir;
    so.fsync = m_.fsync;
    so.fsync_interval_ms = int64_t{1} << 40;
    so.segment_bytes = m_.segment_bytes;
    so.initial_map_bytes = 64ull << 20;
    so.wal_checkpoint_bytes = m_.wal_checkpoint_bytes;
    so.wal_checkpoint_interval_ms = int64_t{1} << 40;
    std::unique_ptr<ds::LmdbStore> store;
    ds::Status s = ds::LmdbStore::Open(so, &store);
    if (s.ok()) {
      ds::EngineOptions eo;
      eo.sweep_interval_ms = 0;
      eo.retention_bytes = m_.retention_bytes;
      eo.max_read_bytes = 64ull << 20;
      eo.sse_fanout_thread = false;
      engine_ = std::make_unique<ds::Engine>(eo, std::make_shared<ds::ManualClock>(now_),
                                             [](const std::vector<uint64_t>&) {}, std::move(store));
      s = engine_->Recover();
    }
    if (!s.ok()) {
      // OFF documents that a power loss may damage streams.db.
      if (!strict_ && m_.fsync == DS_FSYNC_OFF) Note("refused", "recovery refused: " + s.message());
      else Violation("recovery-failed", s.message());
      return out_;
    }
    // Every stream the policy guarantees gone at once: the environment
    // itself did not survive (one finding, not one per stream).
    size_t required = 0, missing = 0;
    for (const StreamModel& st : m_.streams) {
      bool may_expire = st.earliest_expiry_ms && now_ >= *st.earliest_expiry_ms;
      if (!G(st.create) || P(st.del) || may_expire) continue;
      ++required;
      int head = Call(*engine_, "HEAD", st.path).status;
      if (head == 404 || head == 410) ++missing;
    }
    if (required > 0 && missing == required) {
      Violation("store-lost", label_ + " store: all " + std::to_string(required) +
                                  " streams guaranteed durable are gone (the store came back empty)");
      store_lost_ = true;
    }
    for (size_t i = 0; i < m_.streams.size(); ++i) CheckStream(static_cast<int>(i));
    engine_.reset();
    return out_;
  }

 private:
  struct Read {
    int status = 0;
    std::string body;  // bytes, or for JSON the messages joined by ','
    uint64_t end = 0;  // Stream-Next-Offset
    std::string error;
  };

  Read ReadAll(const StreamModel& s) {
    Read r;
    std::string offset = "-1";
    bool first = true;
    for (int guard = 0; guard < 10000; ++guard) {
      ds::Response resp = Call(*engine_, "GET", s.path, {}, {}, "offset=" + offset);
      if (resp.status != 200) {
        r.status = resp.status;
        r.error = resp.body;
        return r;
      }
      r.status = 200;
      std::string next = HeaderOf(resp, "Stream-Next-Offset");
      auto pos = ds::DecodeOffset(next);
      if (!pos) {
        r.status = -1;
        r.error = "bad Stream-Next-Offset " + next;
        return r;
      }
      if (s.json) {
        if (resp.body.size() < 2 || resp.body.front() != '[' || resp.body.back() != ']') {
          r.status = -1;
          r.error = "JSON read is not an array: " + resp.body.substr(0, 80);
          return r;
        }
        std::string inner = resp.body.substr(1, resp.body.size() - 2);
        if (!inner.empty()) r.body += (r.body.empty() ? "" : ",") + inner;
      } else {
        r.body += resp.body;
      }
      r.end = *pos;
      bool up_to_date = HeaderOf(resp, "Stream-Up-To-Date") == "true";
      if (up_to_date || (resp.body.empty() && !first) || next == offset) break;
      first = false;
      offset = next;
    }
    return r;
  }

  static std::string Hex(uint64_t v) { return std::to_string(v); }

  void CheckStream(int idx) {
    const StreamModel& s = m_.streams[idx];
    const std::string who = label_ + " " + s.path + " ";
    int head = Call(*engine_, "HEAD", s.path).status;
    bool created_p = P(s.create), created_g = G(s.create);
    bool deleted_p = P(s.del), deleted_g = G(s.del);
    bool may_expire = s.earliest_expiry_ms && now_ >= *s.earliest_expiry_ms;
    if (head == 404 || head == 410) {
      if (created_g && !deleted_p && !may_expire && !store_lost_) {
        Violation("stream-lost", who + "answers " + std::to_string(head) + " but its create was acknowledged (durable)");
      }
      return;
    }
    if (head != 200) {
      Violation("head-status", who + "HEAD answered " + std::to_string(head));
      return;
    }
    if (!created_p) {
      Violation("phantom-stream", who + "exists but was never created before the crash point");
      return;
    }
    if (deleted_g && !may_expire) {
      Violation("deleted-came-back", who + "was deleted (durably) but exists");
      return;
    }

    // Bytes.
    Read r = ReadAll(s);
    if (r.status != 200) {
      // An error instead of bytes is what a lost range must give.
      Strict("read-error", who + "read answered " + std::to_string(r.status) + ": " + r.error);
      return;
    }
    uint64_t low = created_g ? s.fork_offset : 0, high = s.fork_offset;
    std::vector<uint64_t> boundaries{s.fork_offset};
    for (const Chunk& c : s.chunks) {
      if (G(c.event)) low = std::max(low, c.to);
      if (P(c.event)) {
        high = std::max(high, c.to);
        boundaries.push_back(c.to);
      }
    }
    if (r.end > s.bytes.size() || r.end > high) {
      Violation("tail-beyond-issued", who + "tail " + Hex(r.end) + " beyond the " + Hex(high) +
                                          " bytes issued before the crash point");
      return;
    }
    if (r.end < low) {
      // With a delete begun, the stream's files went while its record
      // stayed: neither the state before the delete nor after it.
      // After a retention pass the same happens to the files below the
      // new start whose record did not survive.
      bool trimmed = false;
      for (const Event& e : m_.events)
        if (e.kind == Event::kRetention && e.begin < point_) trimmed = true;
      Violation(deleted_p ? "delete-not-atomic" : trimmed ? "trim-not-atomic" : "acked-bytes-lost", who + "tail " + Hex(r.end) + " below the " + Hex(low) +
                                     " bytes guaranteed durable");
    }
    if (strict_ &&
        std::find(boundaries.begin(), boundaries.end(), r.end) == boundaries.end()) {
      Violation("partial-append", who + "tail " + Hex(r.end) + " is inside an append");
    }
    uint64_t start = 0;
    if (!s.json) {
      if (r.body.size() > r.end) {
        Violation("wrong-bytes", who + "served " + Hex(r.body.size()) + " bytes ending at " + Hex(r.end));
        return;
      }
      start = r.end - r.body.size();
      const std::string want = s.bytes.substr(start, r.end - start);
      if (want != r.body) {
        size_t at = 0;
        while (at < want.size() && want[at] == r.body[at]) ++at;
        bool nul = r.body[at] == '\0';
        Violation(nul ? "nul-bytes-served" : "wrong-bytes",
                  who + "bytes differ from those issued at position " + Hex(start + at) + " (of [" +
                      Hex(start) + ", " + Hex(r.end) + "))" + (nul ? ": NUL served" : ""));
        return;
      }
    } else {
      if (r.end > 0 && s.bytes[r.end - 1] != '\n') {
        Violation("json-torn", who + "tail " + Hex(r.end) + " is inside a message");
        return;
      }
      bool matched = false;
      for (uint64_t from = r.end;; ) {
        // The messages of stored bytes [from, end), joined by ','.
        std::string joined;
        for (uint64_t a = from; a < r.end;) {
          uint64_t b = s.bytes.find('\n', a);
          joined += (joined.empty() ? "" : ",") + s.bytes.substr(a, b - a);
          a = b + 1;
        }
        if (joined == r.body) {
          matched = true;
          start = from;
          break;
        }
        if (from == 0) break;
        from = s.bytes.rfind('\n', from - 2) == std::string::npos ? 0 : s.bytes.rfind('\n', from - 2) + 1;
      }
      if (!matched) {
        bool nul = r.body.find('\0') != std::string::npos;
        Violation(nul ? "nul-bytes-served" : "wrong-bytes",
                  who + "JSON messages served are not a run of those issued ending at " + Hex(r.end));
        return;
      }
    }
    if (start > 0 && m_.retention_bytes == 0) {
      Violation("start-moved", who + "reads from -1 begin at " + Hex(start) + " without retention");
    }

    // Closed.
    bool closed = HeaderOf(Call(*engine_, "HEAD", s.path), "Stream-Closed") == "true";
    if (closed && !P(s.close)) Violation("phantom-close", who + "is closed but no close had begun");
    if (!closed && G(s.close)) Violation("close-lost", who + "is open but its close was acknowledged (durable)");
    if (closed) {
      int st = Call(*engine_, "POST", s.path, {{DS_FIELD_CONTENT_TYPE, s.content_type}},
                    s.json ? "{\"x\":1}" : "x").status;
      // 409 normally; a stream that must not reuse positions refuses with 500.
      if (st / 100 == 2) Violation("closed-accepts", who + "closed stream accepted an append: " + std::to_string(st));
      return;
    }
    if (deleted_p) return;  // a delete in flight: producer checks would race nothing, but say nothing

    // Producers: a retry is deduplicated iff its bytes are present; the
    // next sequence number continues.
    std::vector<std::string> producers;
    for (const auto& pa : s.producer_appends)
      if (std::find(producers.begin(), producers.end(), pa.producer) == producers.end())
        producers.push_back(pa.producer);
    for (const std::string& id : producers) {
      const ProducerAppend* present = nullptr;
      const ProducerAppend* next = nullptr;
      for (const auto& pa : s.producer_appends) {
        if (pa.producer != id || !P(pa.event)) continue;
        if (pa.to <= r.end) present = &pa;
        else if (!next) next = &pa;
      }
      auto retry = [&](const ProducerAppend& pa) {
        Headers h{{DS_FIELD_CONTENT_TYPE, s.content_type},
                  {DS_FIELD_PRODUCER_ID, pa.producer},
                  {DS_FIELD_PRODUCER_EPOCH, std::to_string(pa.epoch)},
                  {DS_FIELD_PRODUCER_SEQ, std::to_string(pa.seq)}};
        return Call(*engine_, "POST", s.path, h, pa.body).status;
      };
      if (present) {
        int st = retry(*present);
        if (st == 500) {
          // A stream whose lost bytes a fork inherits refuses appends, so
          // that their positions are never reused (lenient modes only).
          Strict("appends-refused", who + "refuses appends: " + std::to_string(st));
          break;
        }
        // 409 (a sequence gap) means the producer's recorded state is
        // older than its bytes: a retry would duplicate them.
        if (st != 204) {
          Strict("producer-behind", who + "retry of present " + id + " seq " +
                                        std::to_string(present->seq) + " answered " + std::to_string(st));
        }
      }
      if (next) {
        int st = retry(*next);
        if (st == 500) {
          Strict("appends-refused", who + "refuses appends: " + std::to_string(st));
        } else if (st == 204) {
          Strict("producer-ahead", who + id + " seq " + std::to_string(next->seq) +
                                       " deduplicated but its bytes are not there (lost for an exactly-once producer)");
        } else if (st != 200) {
          Strict("producer-stuck", who + id + " seq " + std::to_string(next->seq) + " answered " +
                                       std::to_string(st) + " after recovery");
        }
        break;  // the stream changed; later producers' positions no longer hold
      }
    }
  }

  const Model& m_;
  uint64_t point_;
  std::string label_;
  bool strict_ = false;
  bool store_lost_ = false;
  uint64_t guaranteed_;
  int64_t now_;
  std::unique_ptr<ds::Engine> engine_;
  std::vector<Finding> out_;
};

}  // namespace

std::vector<Finding> CheckCrashState(const Model& model, uint64_t point, const std::string& root) {
  std::vector<Finding> out = Checker(model, point).Run(root + "/data");
  for (const auto& [b, name] : model.backups) {
    if (model.events[b].ack >= point) continue;  // unfinished: promises nothing
    for (Finding& f : Checker(model, point, b, name).Run(root + "/" + name)) out.push_back(std::move(f));
  }
  return out;
}

}  // namespace dssim
