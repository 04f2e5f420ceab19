// The durable side of the engine. The engine keeps every stream's hot state
// in memory and decides everything; a Store makes that state and the
// streams' bytes survive restarts.
//
// The commit point (see ARCHITECTURE.md, Storage): an append first writes
// its bytes through the stream's StreamLog, then the engine submits a
// StreamMutation; Commit makes the logs' new bytes durable and then records
// the new tail together with the writer state in ONE transaction. Only after
// Commit returns OK is the append acknowledged or visible to readers. On
// Recover, bytes past a stream's recorded tail were never acknowledged and
// are cut off.
//
// Two implementations: MemoryStore (no data_dir: nothing survives) and
// LmdbStore (data_dir: LMDB for records, segment files for bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "status.h"
#include "stream_log.h"

namespace ds {

// Everything about a stream except its bytes and its producers.
struct StreamRecord {
  uint64_t id = 0;  // engine-assigned, never reused; names the segment dir
  std::string path;
  std::string content_type;
  std::optional<uint64_t> ttl_seconds;
  std::optional<int64_t> expires_at_ms;
  int64_t last_access_ms = 0;  // the sliding TTL counts from here
  uint64_t tail = 0;           // committed logical tail
  bool closed = false;
  bool soft_deleted = false;   // deleted while forks still read from it
  std::string last_stream_seq;
  uint64_t source_id = 0;      // 0 unless a fork: the source stream's id
  uint64_t fork_offset = 0;    // a fork's own log starts here
  // The first position of the stream's own log still held: fork_offset
  // until retention drops old segments (reads below it answer 410).
  uint64_t start = 0;
};

struct ProducerRecord {
  std::string producer_id;
  uint64_t epoch = 0;
  uint64_t last_seq = 0;
};

struct RecoveredStream {
  StreamRecord record;
  std::vector<ProducerRecord> producers;
  // Open, holding exactly [record.start, record.tail) (record.start is
  // raised to record.fork_offset if below it).
  std::unique_ptr<StreamLog> log;
};

// One stream's part of a commit.
struct StreamMutation {
  enum class Kind { kUpsert, kErase };
  Kind kind = Kind::kUpsert;
  // kUpsert: the complete new record. kErase: at least id and path; the
  // stream's record, producers and bytes are removed.
  StreamRecord record;
  // Producer states this commit changes (kUpsert only).
  std::vector<ProducerRecord> producers;
  // The log whose pending bytes must be durable before the record that
  // points past them. May be null (no new bytes).
  StreamLog* log = nullptr;
};

// One subscription's part of a write (subscriptions.h): its record (all
// configuration and state but the links) and the links that changed.
struct SubscriptionWrite {
  std::string id;
  bool erase = false;  // the subscription and every link of it go
  std::string record;  // unless erase
  std::vector<std::pair<std::string, std::string>> put_links;  // path -> value
  std::vector<std::string> erase_links;
};

struct StoredSubscription {
  std::string id;
  std::string record;
  std::vector<std::pair<std::string, std::string>> links;
};

class Store {
 public:
  virtual ~Store() = default;

  // Loads every stream (forks' sources included; soft-deleted ones too),
  // cutting each log to its recorded tail and removing data no record
  // refers to. `next_stream_id` is above every id ever handed out.
  virtual Status Recover(std::vector<RecoveredStream>* streams,
                         uint64_t* next_stream_id) = 0;

  // A new, empty log for stream `stream_id` whose first position is `base`.
  virtual Status CreateLog(uint64_t stream_id, uint64_t base,
                           std::unique_ptr<StreamLog>* log) = 0;

  // Applies `batch` in order, atomically and durably (as the fsync policy
  // promises): first every log's pending bytes, then one transaction. On
  // failure nothing of the batch is recorded. NoSpace: the disk (or the
  // map) is full and a later commit may succeed; any other failure is
  // sticky (every later Commit fails) and the engine refuses writes.
  virtual Status Commit(const std::vector<StreamMutation>& batch) = 0;

  // The committed state of stream `stream_id` (its record and every
  // producer), read back so that the engine can undo in memory what a failed
  // commit did not record; *found is false if it has no record.
  virtual Status LoadStream(uint64_t stream_id, bool* found, StreamRecord* record,
                            std::vector<ProducerRecord>* producers) {
    return Status::NotSupported("this store cannot read back one stream");
  }

  // Subscriptions: one write, atomic and durable as Commit's are, before
  // the request that made it is answered. Stores that keep nothing accept
  // and forget.
  virtual Status CommitSubscription(const SubscriptionWrite& write) { return Status::OK(); }
  // Every stored subscription with its links.
  virtual Status LoadSubscriptions(std::vector<StoredSubscription>* out) {
    out->clear();
    return Status::OK();
  }

  // Whether the store keeps anything: false means Commit would be a no-op,
  // and the engine skips the commit queue altogether (MemoryStore).
  virtual bool durable() const = 0;

  // Reads refused because stored bytes did not match their checksum.
  virtual uint64_t checksum_failures() const { return 0; }

  // Late durability (LmdbStore under fsync always: MDB_NOMETASYNC). True
  // means a successful Commit is atomic and consistent but may still be
  // undone by a power loss until the NEXT successful Commit returns (its
  // flush also makes the previous transaction's meta page durable) or
  // SyncCommits returns OK. The commit queue then acknowledges a batch only
  // after one of those: one device flush per group commit instead of two,
  // with the next batch's flush overlapping the previous one's wait.
  virtual bool commits_durable_late() const { return false; }
  // Makes every successful Commit so far durable.
  virtual Status SyncCommits() { return Status::OK(); }
};

// The store of an engine without data_dir: logs in memory, commits free.
class MemoryStore final : public Store {
 public:
  Status Recover(std::vector<RecoveredStream>* streams, uint64_t* next_stream_id) override {
    streams->clear();
    *next_stream_id = 1;
    return Status::OK();
  }
  Status CreateLog(uint64_t, uint64_t base, std::unique_ptr<StreamLog>* log) override {
    *log = std::make_unique<MemoryStreamLog>(base);
    return Status::OK();
  }
  Status Commit(const std::vector<StreamMutation>&) override { return Status::OK(); }
  bool durable() const override { return false; }
};

}  // namespace ds
