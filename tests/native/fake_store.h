// A durable-looking Store kept in memory, for testing the engine's commit
// path: it remembers only what was committed (records, producers, and the
// bytes below each committed tail), can be told to fail, and "restarts" by
// handing back exactly the committed state.
#pragma once

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "store.h"

namespace ds::testing {

class FakeDurableStore final : public Store {
 public:
  struct State {
    std::mutex mu;
    std::map<uint64_t, StreamRecord> records;
    std::map<uint64_t, std::map<std::string, ProducerRecord>> producers;
    std::map<uint64_t, std::shared_ptr<MemoryStreamLog>> logs;
    uint64_t next_id = 1;
    Status fail_next;  // the next Commit returns this if not OK
    size_t commits = 0;
    int64_t written_ms = 0;  // the write time recovered logs report
    // When set, Commit waits for this mutex after counting itself in
    // commits_entered: a test holds it to keep the committer busy.
    std::mutex* commit_gate = nullptr;
    std::atomic<int> commits_entered{0};
    // Late durability (Store::commits_durable_late): commits and syncs are
    // logged in `events` ("commit 1,2", "commit 3 failed", "sync"), on the
    // committer thread. fail_commit_at: the commit with this 1-based number
    // fails with NoSpace.
    bool late_durability = false;
    size_t fail_commit_at = 0;
    std::vector<std::string> events;
  };

  explicit FakeDurableStore(std::shared_ptr<State> state) : state_(std::move(state)) {}

  Status Recover(std::vector<RecoveredStream>* streams, uint64_t* next_stream_id) override {
    std::lock_guard lock(state_->mu);
    streams->clear();
    for (const auto& [id, rec] : state_->records) {
      RecoveredStream r;
      r.record = rec;
      const int64_t written_ms = state_->written_ms;
      for (const auto& [pid, p] : state_->producers[id]) r.producers.push_back(p);
      // Bytes past the committed tail were never acknowledged: drop them.
      // Positions below the recorded start were trimmed: stand-in zeros,
      // trimmed again, keep the log's positions right.
      auto log = std::make_unique<MemoryStreamLog>(rec.fork_offset);
      const uint64_t start = std::max(rec.start, rec.fork_offset);
      std::string bytes(start - rec.fork_offset, '\0');
      if (auto it = state_->logs.find(id); it != state_->logs.end() && rec.tail > start) {
        it->second->Read(start, rec.tail - start, &bytes);
      }
      log->Append(bytes, written_ms);
      log->Trim(start);
      r.log = std::move(log);
      streams->push_back(std::move(r));
    }
    *next_stream_id = state_->next_id;
    return Status::OK();
  }

  Status CreateLog(uint64_t stream_id, uint64_t base, std::unique_ptr<StreamLog>* log) override {
    auto shared = std::make_shared<MemoryStreamLog>(base);
    {
      std::lock_guard lock(state_->mu);
      state_->logs[stream_id] = shared;
    }
    *log = std::make_unique<SharedLog>(shared);
    return Status::OK();
  }

  Status Commit(const std::vector<StreamMutation>& batch) override {
    ++state_->commits_entered;
    if (state_->commit_gate != nullptr) std::lock_guard pass(*state_->commit_gate);
    std::lock_guard lock(state_->mu);
    ++state_->commits;
    if (state_->late_durability) {
      std::string ids;
      for (const StreamMutation& m : batch) ids += (ids.empty() ? "" : ",") + std::to_string(m.record.id);
      const bool fail = state_->commits == state_->fail_commit_at;
      state_->events.push_back("commit " + ids + (fail ? " failed" : ""));
      if (fail) return Status::NoSpace("disk full");
    }
    if (!state_->fail_next.ok()) {
      Status s = state_->fail_next;
      state_->fail_next = Status::OK();
      return s;
    }
    for (const StreamMutation& m : batch) {
      uint64_t id = m.record.id;
      state_->next_id = std::max(state_->next_id, id + 1);
      if (m.kind == StreamMutation::Kind::kErase) {
        state_->records.erase(id);
        state_->producers.erase(id);
        state_->logs.erase(id);
        continue;
      }
      state_->records[id] = m.record;
      for (const ProducerRecord& p : m.producers) state_->producers[id][p.producer_id] = p;
    }
    return Status::OK();
  }

  Status LoadStream(uint64_t stream_id, bool* found, StreamRecord* record,
                    std::vector<ProducerRecord>* producers) override {
    std::lock_guard lock(state_->mu);
    producers->clear();
    auto it = state_->records.find(stream_id);
    *found = it != state_->records.end();
    if (!*found) return Status::OK();
    *record = it->second;
    for (const auto& [pid, p] : state_->producers[stream_id]) producers->push_back(p);
    return Status::OK();
  }

  bool durable() const override { return true; }
  bool commits_durable_late() const override { return state_->late_durability; }
  Status SyncCommits() override {
    std::lock_guard lock(state_->mu);
    state_->events.push_back("sync");
    return Status::OK();
  }

 private:
  // A log whose bytes the store keeps after the engine lets go of it.
  class SharedLog final : public StreamLog {
   public:
    explicit SharedLog(std::shared_ptr<MemoryStreamLog> log) : log_(std::move(log)) {}
    uint64_t base() const override { return log_->base(); }
    uint64_t start() const override { return log_->start(); }
    uint64_t tail() const override { return log_->tail(); }
    Status Read(uint64_t from, size_t len, std::string* out) const override {
      return log_->Read(from, len, out);
    }
    Status Append(std::string_view bytes, int64_t now_ms) override {
      return log_->Append(bytes, now_ms);
    }
    Status Sync() override { return Status::OK(); }
    Status Rewind(uint64_t to) override { return log_->Rewind(to); }
    size_t memory_bytes() const override { return log_->memory_bytes(); }
    std::vector<LogSegment> Segments() const override { return log_->Segments(); }
    size_t segment_count() const override { return log_->segment_count(); }
    Status Trim(uint64_t new_start) override { return log_->Trim(new_start); }

   private:
    std::shared_ptr<MemoryStreamLog> log_;
  };

  std::shared_ptr<State> state_;
};

}  // namespace ds::testing
