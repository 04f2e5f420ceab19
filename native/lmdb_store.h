// The durable Store for data_dir: stream records and producer state in an
// LMDB environment, stream bytes in segment files (SegmentLog). The on-disk
// layout, encodings, commit protocol and recovery rules are in
// STORAGE_FORMAT.md.
//
//   data_dir/LOCK                 flock'ed exclusively while a store is open
//   data_dir/streams.db/          LMDB: data.mdb, lock.mdb
//   data_dir/segments/<id>/<base>.seg
//
// Commit point: a batch's segment bytes are made durable first (fsync
// ALWAYS), then ONE LMDB write transaction records the new tails and
// producer states. On Recover, bytes past a recorded tail are cut off.
//
// Threading: Commit must not run concurrently with itself (the engine's
// group-commit queue serialises it; the store relies on that and also
// takes a mutex so a violation is safe). Recover runs once, before the
// first Commit. CreateLog and the logs it returns may be used from any
// thread. The store opens no long-lived read transaction, which is what
// makes growing the map (mdb_env_set_mapsize) safe between transactions.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "durable_streams.h"
#include "file_util.h"
#include "lmdb_env.h"
#include "segment_log.h"
#include "store.h"

namespace ds {

class LogSyncPool;

struct LmdbStoreOptions {
  std::string data_dir;
  ds_fsync fsync = DS_FSYNC_ALWAYS;
  int64_t fsync_interval_ms = 1000;  // DS_FSYNC_INTERVAL's period
  uint64_t segment_bytes = 64ull << 20;
  // The LMDB map starts here and doubles whenever a commit fills it. On
  // Windows LMDB extends data.mdb to the whole map at once (a file mapping
  // cannot reach past the file's end), so the map starts small there.
#if defined(_WIN32)
  uint64_t initial_map_bytes = 16ull << 20;
#else
  uint64_t initial_map_bytes = 1ull << 30;
#endif
  // Open segment files across all streams (an LRU); LMDB's own two
  // descriptors and LOCK come on top.
  size_t max_open_files = 4096;
  // DS_FSYNC_ALWAYS's write-ahead entries are checkpointed (one syncfs, the
  // wal database emptied) once this many bytes are in it, or this long
  // after the last checkpoint, at the next commit.
  uint64_t wal_checkpoint_bytes = 64ull << 20;
  int64_t wal_checkpoint_interval_ms = 1000;
  // A new stream's first bytes up to this many are kept in LMDB, not in a
  // segment file (STORAGE_FORMAT.md, "Inline streams"); 0 turns it off.
  uint64_t inline_stream_bytes = kInlineStreamBytes;
};

class LmdbStore final : public Store {
 public:
  // Creates data_dir and its layout if missing, takes data_dir/LOCK (a
  // second open, in this process or another, fails with Status::Locked),
  // and opens the environment. Call Recover before the first Commit.
  static Status Open(const LmdbStoreOptions& options, std::unique_ptr<LmdbStore>* out);
  // Stops the INTERVAL syncer; under INTERVAL and OFF, syncs everything
  // committed (a clean close loses nothing); then closes LMDB and unlocks.
  ~LmdbStore() override;
  LmdbStore(const LmdbStore&) = delete;
  LmdbStore& operator=(const LmdbStore&) = delete;

  Status Recover(std::vector<RecoveredStream>* streams, uint64_t* next_stream_id) override;
  Status CreateLog(uint64_t stream_id, uint64_t base, std::unique_ptr<StreamLog>* log) override;
  Status Commit(const std::vector<StreamMutation>& batch) override;
  Status LoadStream(uint64_t stream_id, bool* found, StreamRecord* record,
                    std::vector<ProducerRecord>* producers) override;
  // Subscriptions (lmdb_subscriptions.cc): one write transaction each,
  // serialised with Commit.
  Status CommitSubscription(const SubscriptionWrite& write) override;
  Status LoadSubscriptions(std::vector<StoredSubscription>* out) override;
  // Always: even without fsync, records must be committed to be kept.
  bool durable() const override { return true; }

  // Makes everything committed so far durable, whatever the policy: what
  // the INTERVAL syncer does each period and what close does under
  // INTERVAL and OFF. Thread-safe; briefly excludes Commit.
  Status Flush();

  // Reads refused since open because bytes did not match their checksum.
  uint64_t checksum_failures() const override { return files_->checksum_failures(); }

  // fsync always: the environment runs with MDB_NOMETASYNC (STORAGE_FORMAT.md,
  // "Commit protocol"): a Commit's meta page is made durable by the next
  // Commit's data-page flush, or by SyncCommits.
  bool commits_durable_late() const override { return options_.fsync == DS_FSYNC_ALWAYS; }
  Status SyncCommits() override;

  const LmdbStoreOptions& options() const { return options_; }
  uint64_t map_bytes() const;
  size_t open_segment_files() const { return files_->fds().size(); }

  // For backup.cc. Runs `copy` with the LMDB environment of `data_dir` if a
  // store in this process has it open (`open_env` non-null; map growth
  // waits meanwhile), or with nullptr if none has. Either way no store can
  // open or close `data_dir` in this process while `copy` runs, so a caller
  // handed nullptr may open the environment itself: LMDB forbids opening
  // one environment twice in a process (closing either handle drops the
  // other's locks).
  static Status WithEnvironment(const std::string& data_dir,
                                const std::function<Status(MDB_env* open_env)>& copy);

 private:
  explicit LmdbStore(const LmdbStoreOptions& options);

  Status AcquireLock();
  Status CreateEnvironmentIfMissing();
  Status OpenEnvironment();
  // Runs `body` in a write transaction and commits it, doubling the map
  // and retrying on MDB_MAP_FULL. `body` must be repeatable. Under fsync
  // always the transaction is synced before Write returns unless
  // `late_durability` (Commit only: the commit queue syncs it later).
  Status Write(const char* what, const std::function<int(MDB_txn*)>& body,
               bool late_durability = false);
  // The periodic sync's checkpoints (STORAGE_FORMAT.md, "Synced
  // checkpoints"); caller holds commit_mu_.
  int PutRetentionCheckpoint(MDB_txn* txn, const StreamMutation& m);
  // Bytes [from, from + len) of stream `id` straight from its files.
  bool ReadSegmentBytes(uint64_t id, uint64_t from, size_t len, std::string* out);
  Status StoreSyncedCheckpoints(const std::unordered_map<uint64_t, SegmentFiles::TailChecksum>& tails);
  Status GrowMap();
  // Classifies mdb_txn_commit's EIO, ENOSPC and EDQUOT (see the .cc):
  // NoSpace when the disk is full and the environment is still usable,
  // IoError otherwise.
  Status CommitIoFailure(const char* what, int rc, int commit_errno);
  Status SyncEnvironment();
  void SyncerLoop();
  void Fail(const Status& s);
  Status failure() const;

  const LmdbStoreOptions options_;
  std::string canonical_dir_;  // realpath(data_dir): the registry key
  bool registered_ = false;

  // Declaration order is destruction order in reverse: the environment
  // closes before the lock that guards it is released.
  UniqueFd lock_fd_;
  lmdb::Env env_;
  lmdb::Dbs dbs_;
  std::shared_ptr<SegmentFiles> files_;

  // Exclusive: mdb_env_set_mapsize (LMDB requires that no transaction of
  // this process is open). Shared: read transactions, env syncs, backups.
  mutable std::shared_mutex env_mu_;
  uint64_t map_bytes_ = 0;  // guarded by env_mu_

  // One write transaction at a time; Flush's final phase holds it so that
  // no commit lands between its last segment sync and its env sync.
  std::mutex commit_mu_;
  uint64_t next_stream_id_ = 1;  // guarded by commit_mu_: the stored value

  // Set once an fsync or commit fails for another reason than a full disk:
  // the kernel may have dropped dirty pages, so every later Commit fails
  // too (the engine then refuses writes). Stored as an IoError whatever the
  // errno (an fsync's ENOSPC is as final as its EIO).
  std::atomic<bool> failed_{false};
  mutable std::mutex failure_mu_;
  Status failure_;  // guarded by failure_mu_

  // DS_FSYNC_ALWAYS: makes a batch's logs durable, by one syncfs(2) for
  // many logs (or always, with whole_filesystem: a WAL checkpoint), or by
  // their own fdatasyncs, concurrently, for a few.
  Status SyncLogs(const std::vector<StreamLog*>& logs, bool whole_filesystem = false);

  // The write-ahead path of DS_FSYNC_ALWAYS (STORAGE_FORMAT.md, "Commit
  // protocol"): a batch's small unsynced ranges go into its transaction, so
  // the commit costs LMDB's flushes alone. Guarded by commit_mu_.
  uint64_t wal_bytes_ = 0;  // put since the last checkpoint
  uint64_t wal_seq_ = 1;    // the next commit's wal key prefix: above every stored one
  std::chrono::steady_clock::time_point last_checkpoint_ = std::chrono::steady_clock::now();
  bool WalCheckpointDue() const;
  // Every wal entry, by stream (Recover replays them; each lands at its own
  // position, so order does not matter), and the highest commit sequence
  // among their keys.
  Status ReadWal(MDB_txn* txn,
                 std::unordered_map<uint64_t, std::vector<SegmentLog::WalEntry>>* wal,
                 uint64_t* max_seq);
  std::unique_ptr<LogSyncPool> sync_pool_;

  // Checksums (STORAGE_FORMAT.md, "Checksums"). The stored checksums of
  // blocks [first, last] of a stream, in one read transaction.
  Status LoadChecksums(uint64_t stream_id, uint64_t first, uint64_t last,
                       std::vector<std::pair<uint64_t, uint32_t>>* out);
  // A directory older than format 4 has none: Recover computes them from
  // the segments and stores them, then the format version.
  bool upgrade_checksums_ = false;
  // The version a format 4 directory had when Open upgraded it (0: none).
  uint64_t upgraded_from_ = 0;
  uint64_t upgraded_inline_streams_ = 0;  // format 5: streams whose inline bytes moved
  // Inline streams (STORAGE_FORMAT.md, "Inline streams"): a stream's
  // bytes kept in its record, for SegmentLog reads.
  std::mutex inline_read_mu_;  // one read transaction at a time, as checksums
  Status LoadInline(uint64_t stream_id, uint64_t from, size_t len, std::string* out);
  // One checksum lookup at a time: each is a short read transaction, and
  // many readers checking blocks at once after a start must not use up
  // LMDB's reader slots (MDB_READERS_FULL would fail their reads).
  std::mutex checksum_read_mu_;
  Status StoreUpgradeChecksums(const std::vector<RecoveredStream>& streams,
                               const std::vector<ChecksumRecovery>& checksums);

  std::mutex syncer_mu_;
  std::condition_variable syncer_cv_;
  bool stopping_ = false;  // guarded by syncer_mu_
  std::thread syncer_;     // DS_FSYNC_INTERVAL only
};

// Copies data_dir to dest (which must not exist, or be an empty directory)
// while a server may be writing to it: the LMDB environment with
// mdb_env_copyfd2 (a consistent snapshot), then each recorded stream's
// segment bytes up to its recorded tail (bytes below a committed tail never
// change), then fsyncs everything. A store opened on dest recovers every
// stream committed before the call began. Does not take data_dir/LOCK.
Status BackupDataDir(const std::string& data_dir, const std::string& dest);

}  // namespace ds
