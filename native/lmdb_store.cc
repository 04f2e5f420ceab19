#include "lmdb_store.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <unordered_map>
#include <system_error>
#include <unordered_set>

#include "content_type.h"
#include "crc32c.h"
#include "record_codec.h"

namespace ds {
namespace {

constexpr const char* kLockFile = "LOCK";
constexpr const char* kEnvDir = "streams.db";
constexpr const char* kSegmentsDir = "segments";
// Far beyond any disk we expect, far below the 128 TiB of x86-64 user
// address space the map must fit in.
constexpr uint64_t kMaxMapBytes = 1ull << 44;

void Warn(const std::string& message) {
  std::fprintf(stderr, "durable-streams storage: %s\n", message.c_str());
}

// Stores open in this process, by realpath(data_dir). The flock on LOCK
// already refuses a second open; the registry lets a backup find the open
// environment instead of opening it twice (which LMDB forbids), and its
// mutex orders backups against opens and closes.
std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}
std::unordered_map<std::string, LmdbStore*>& Registry() {
  // Never destroyed: stores closed by static destructors may still look.
  static auto* registry = new std::unordered_map<std::string, LmdbStore*>();
  return *registry;
}

Status CanonicalPath(const std::string& path, std::string* out) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return ErrnoStatus("realpath", path, errno);
  *out = buf;
  return Status::OK();
}

// Threads that sync a commit's logs at once, and that recover logs at
// startup. fdatasync waits on the disk, not the CPU, so the count does not
// follow the core count.
constexpr size_t kSyncThreads = 8;
// From this many distinct logs in one commit, one syncfs(2) replaces their
// fdatasyncs (see LmdbStore::SyncLogs; measured in bench/results).
constexpr size_t kSyncfsMinLogs = 4;

// The write-ahead path (LmdbStore::Commit). A log whose unsynced range is at
// most this long puts it in the transaction instead of syncing its file...
constexpr size_t kWalMaxLogBytes = 64 << 10;
// ... while the batch's entries stay under this (large appends are cheaper
// to sync in place than to write twice).
constexpr size_t kWalMaxBatchBytes = 4 << 20;
// A checkpoint (one syncfs, then the wal database emptied in the same
// transaction) comes every LmdbStoreOptions::wal_checkpoint_bytes or
// _interval_ms, bounding both the database's growth and the replay at
// startup.

struct WalWrite {
  uint64_t stream_id = 0;
  uint64_t from = 0;
  uint64_t to = 0;
  SegmentLog* log = nullptr;
  std::string bytes;
};

}  // namespace

// Runs StreamLog::Sync on many logs at once: ext4 and XFS fold concurrent
// fsyncs into one journal commit, so a batch touching 64 streams costs a
// few fsyncs, not 64 (STORAGE_FORMAT.md has the measurements). The
// committing thread works too. Not reentrant: Commit is serialised.
class LogSyncPool {
 public:
  explicit LogSyncPool(size_t workers) {
    for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { WorkerLoop(); });
  }
  ~LogSyncPool() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  LogSyncPool(const LogSyncPool&) = delete;
  LogSyncPool& operator=(const LogSyncPool&) = delete;

  // Syncs every log; returns the first failure (all are attempted).
  Status SyncAll(const std::vector<StreamLog*>& logs) {
    if (logs.size() == 1 || threads_.empty()) {
      Status first;
      for (StreamLog* log : logs) {
        Status s = log->Sync();
        if (first.ok()) first = s;
      }
      return first;
    }
    {
      std::lock_guard lock(mu_);
      job_ = &logs;
      next_.store(0);
      error_ = Status::OK();
      busy_ = threads_.size();
      ++generation_;
    }
    work_cv_.notify_all();
    Run(logs);
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [this] { return busy_ == 0; });
    job_ = nullptr;
    return error_;
  }

 private:
  void Run(const std::vector<StreamLog*>& logs) {
    for (size_t i = next_.fetch_add(1); i < logs.size(); i = next_.fetch_add(1)) {
      Status s = logs[i]->Sync();
      if (!s.ok()) {
        std::lock_guard lock(mu_);
        if (error_.ok()) error_ = s;
      }
    }
  }

  void WorkerLoop() {
    uint64_t seen = 0;
    std::unique_lock lock(mu_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      const std::vector<StreamLog*>* job = job_;
      lock.unlock();
      Run(*job);
      lock.lock();
      if (--busy_ == 0) done_cv_.notify_one();
    }
  }

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::vector<StreamLog*>* job_ = nullptr;  // guarded by mu_
  uint64_t generation_ = 0;                       // guarded by mu_
  size_t busy_ = 0;                               // guarded by mu_: workers in this job
  bool stopping_ = false;                         // guarded by mu_
  Status error_;                                  // guarded by mu_
  std::atomic<size_t> next_{0};                   // next log to claim
  std::vector<std::thread> threads_;
};

// The last JSON message boundary at or below `tail` in [lo, tail]: the
// position after the last '\n' (json_mode.h), or `lo` (the stream's own
// first position, or its retained start: both boundaries) if none.
static Status LastJsonBoundary(const SegmentLog& log, uint64_t lo, uint64_t tail, uint64_t* boundary) {
  constexpr uint64_t kWindow = 64 << 10;
  uint64_t end = tail;
  while (end > lo) {
    const uint64_t from = end - std::min(kWindow, end - lo);
    std::string window;
    Status s = log.Read(from, static_cast<size_t>(end - from), &window);
    if (!s.ok()) return s;
    const size_t nl = window.rfind('\n');
    if (nl != std::string::npos) {
      *boundary = from + nl + 1;
      return Status::OK();
    }
    end = from;
  }
  *boundary = lo;
  return Status::OK();
}

LmdbStore::LmdbStore(const LmdbStoreOptions& options) : options_(options) {}

Status LmdbStore::Open(const LmdbStoreOptions& options, std::unique_ptr<LmdbStore>* out) {
  if (options.data_dir.empty()) return Status::InvalidArgument("data_dir is empty");
  if (options.segment_bytes == 0) return Status::InvalidArgument("segment_bytes must be positive");
  if (options.max_open_files == 0) return Status::InvalidArgument("max_open_files must be positive");
  if (options.fsync == DS_FSYNC_INTERVAL && options.fsync_interval_ms <= 0) {
    return Status::InvalidArgument("fsync_interval_ms must be positive");
  }
  if (options.fsync != DS_FSYNC_ALWAYS && options.fsync != DS_FSYNC_INTERVAL &&
      options.fsync != DS_FSYNC_OFF) {
    return Status::InvalidArgument("unknown fsync policy");
  }
  Status s = CreateDirsDurably(options.data_dir);
  if (!s.ok()) return s;

  std::unique_ptr<LmdbStore> store(new LmdbStore(options));
  s = CanonicalPath(options.data_dir, &store->canonical_dir_);
  if (!s.ok()) return s;
  {
    std::lock_guard lock(RegistryMutex());
    s = store->AcquireLock();
    if (s.ok()) s = store->CreateEnvironmentIfMissing();
    if (s.ok()) s = CreateDirsDurably(JoinPath(options.data_dir, kSegmentsDir));
    if (s.ok()) s = store->OpenEnvironment();
    if (!s.ok()) return s;  // ~LmdbStore closes what was opened
    Registry()[store->canonical_dir_] = store.get();
    store->registered_ = true;
  }
  SegmentFilesOptions files;
  files.segments_dir = JoinPath(options.data_dir, kSegmentsDir);
  files.segment_bytes = options.segment_bytes;
  files.max_open_files = options.max_open_files;
  files.track_unsynced = options.fsync != DS_FSYNC_ALWAYS;
  files.inline_stream_bytes = options.inline_stream_bytes;  // in the records (format 6)
  // Unlinks wait for the commit that stops pointing at the files to be
  // durable (STORAGE_FORMAT.md, "Commit protocol", step 4). INTERVAL: until
  // the next periodic sync (a DELETE frees its space within about one
  // interval). OFF: an environment sync first, so a DELETE still frees its
  // space at once; erases and trims are rare next to appends, and OFF's
  // clean close would come too late for a disk that is full now.
  // ALWAYS: at once; Commit syncs the environment before an erase's
  // unlinks (its meta page is otherwise synced only by the next flush),
  // and retention trims only after the commit queue acknowledged the new
  // start, which is after that flush.
  if (options.fsync == DS_FSYNC_INTERVAL) {
    files.removal = SegmentFilesOptions::Removal::kDeferred;
  } else if (options.fsync == DS_FSYNC_OFF) {
    files.removal = SegmentFilesOptions::Removal::kAfterBarrier;
    files.removal_barrier = [s = store.get()] {
      Status synced = s->SyncEnvironment();
      if (!synced.ok()) s->Fail(synced);  // as a failed periodic sync
      return synced;
    };
  }
  store->files_ = std::make_shared<SegmentFiles>(std::move(files));
  store->files_->SetChecksumSource([s = store.get()](uint64_t id, uint64_t first, uint64_t last,
                                                     std::vector<std::pair<uint64_t, uint32_t>>* out) {
    return s->LoadChecksums(id, first, last, out);
  });
  store->files_->SetInlineSource([s = store.get()](uint64_t id, uint64_t from, size_t len, std::string* out) {
    return s->LoadInline(id, from, len, out);
  });
  try {
    if (options.fsync == DS_FSYNC_ALWAYS) store->sync_pool_ = std::make_unique<LogSyncPool>(kSyncThreads - 1);
    if (options.fsync == DS_FSYNC_INTERVAL) {
      store->syncer_ = std::thread([s = store.get()] { s->SyncerLoop(); });
    }
  } catch (const std::system_error& e) {
    return Status::IoError(std::string("cannot start storage threads: ") + e.what());
  }
  *out = std::move(store);
  return Status::OK();
}

LmdbStore::~LmdbStore() {
  // Logs may outlive the store; their reads must stop looking in our
  // environment before it closes.
  if (files_ != nullptr) files_->SetChecksumSource(nullptr);
  if (files_ != nullptr) files_->SetInlineSource(nullptr);
  if (syncer_.joinable()) {
    {
      std::lock_guard lock(syncer_mu_);
      stopping_ = true;
    }
    syncer_cv_.notify_all();
    syncer_.join();
  }
  if (env_ != nullptr && files_ != nullptr && options_.fsync != DS_FSYNC_ALWAYS &&
      !failed_.load()) {
    Status s = Flush();
    if (!s.ok()) Warn("final sync of " + options_.data_dir + " failed: " + s.message());
  }
  if (registered_) {
    // Waits for a backup copying our environment to finish.
    std::lock_guard lock(RegistryMutex());
    Registry().erase(canonical_dir_);
  }
  env_.reset();
  lock_fd_.Reset();
}

Status LmdbStore::AcquireLock() {
  const std::string path = JoinPath(options_.data_dir, kLockFile);
  const bool existed = PathExists(path);
  Status s = OpenFile(path, O_RDWR | O_CREAT, 0644, &lock_fd_);
  if (!s.ok()) return s;
  if (::flock(lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) return ErrnoStatus("flock", path, err);
    char holder[32] = {0};
    ssize_t n = ::pread(lock_fd_.get(), holder, sizeof holder - 1, 0);
    std::string who = n > 0 ? std::string(holder, static_cast<size_t>(n)) : std::string();
    while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
    lock_fd_.Reset();
    return Status::Locked("data_dir " + options_.data_dir + " is in use: another server (" +
                          (who.empty() ? std::string("unknown pid") : who) +
                          ") holds the lock on " + path +
                          "; stop it or give this server its own data_dir");
  }
  // Diagnostics only (named in the Locked message above), so not synced.
  const std::string pid = "pid " + std::to_string(::getpid()) + "\n";
  if (Truncate(lock_fd_.get(), 0, path).ok()) WriteAt(lock_fd_.get(), pid, 0, path);
  if (!existed) return SyncDir(options_.data_dir);
  return Status::OK();
}

// A new environment is built in streams.db.new/ and renamed into place
// complete and synced. A power loss while LMDB creates data.mdb in place
// (its first pages written, none synced) could leave a streams.db/ that
// never opens again (MDB_INVALID), whatever the policy; a leftover
// streams.db.new/ is only an interrupted creation, and nothing was
// committed before it completed.
Status LmdbStore::CreateEnvironmentIfMissing() {
  const std::string env_dir = JoinPath(options_.data_dir, kEnvDir);
  if (PathExists(JoinPath(env_dir, "data.mdb"))) return Status::OK();
  const std::string tmp = env_dir + ".new";
  Status s = RemoveTree(tmp);
  if (s.ok()) s = CreateDirsDurably(tmp);
  if (!s.ok()) return s;
  {
    MDB_env* raw = nullptr;
    int rc = mdb_env_create(&raw);
    if (rc != 0) return lmdb::ToStatus("mdb_env_create", rc);
    lmdb::Env env(raw);
    rc = mdb_env_set_maxdbs(raw, lmdb::kMaxDbs);
    if (rc == 0) rc = mdb_env_set_mapsize(raw, options_.initial_map_bytes);
    // Without MDB_NOSYNC: the commit below syncs the pages and the meta.
    if (rc == 0) rc = mdb_env_open(raw, tmp.c_str(), MDB_NOTLS, 0644);
    lmdb::Txn txn;
    if (rc == 0) rc = txn.Begin(raw, 0);
    lmdb::Dbs dbs;
    if (rc == 0) rc = lmdb::OpenDbs(txn.get(), /*create=*/true, &dbs);
    if (rc == 0) rc = lmdb::PutU64(txn.get(), dbs.meta, lmdb::kFormatVersionKey, lmdb::kFormatVersion);
    if (rc == 0) rc = txn.Commit();
    if (rc != 0) return lmdb::ToStatus("create LMDB environment " + tmp, rc);
  }
  s = SyncDir(tmp);
  if (s.ok()) s = RemoveTree(env_dir);  // at most an empty directory or a stale lock.mdb
  if (s.ok() && ::rename(tmp.c_str(), env_dir.c_str()) != 0) s = ErrnoStatus("rename", tmp, errno);
  if (s.ok()) s = SyncDir(options_.data_dir);
  return s;
}

Status LmdbStore::OpenEnvironment() {
  MDB_env* raw = nullptr;
  int rc = mdb_env_create(&raw);
  if (rc != 0) return lmdb::ToStatus("mdb_env_create", rc);
  env_.reset(raw);
  rc = mdb_env_set_maxdbs(raw, lmdb::kMaxDbs);
  if (rc == 0) rc = mdb_env_set_mapsize(raw, options_.initial_map_bytes);
  if (rc != 0) return lmdb::ToStatus("configure " + options_.data_dir + "/streams.db", rc);
  // MDB_NOTLS: read transactions are not tied to an OS thread's TLS slot
  // (cgo moves goroutines between threads). MDB_NOSYNC: INTERVAL and OFF
  // sync the environment themselves, after the segments.
  // MDB_NOMETASYNC (always): a commit fdatasyncs its data pages, then
  // writes its meta page without a second flush; the next commit's flush
  // (or SyncCommits) makes that meta durable, and nothing is acknowledged
  // before (commit_queue.cc). LMDB keeps the environment consistent: a
  // power loss can only undo transactions whose meta was not yet synced.
  unsigned flags = MDB_NOTLS;
  if (options_.fsync != DS_FSYNC_ALWAYS) flags |= MDB_NOSYNC;
  if (options_.fsync == DS_FSYNC_ALWAYS) flags |= MDB_NOMETASYNC;
  const std::string path = JoinPath(options_.data_dir, kEnvDir);
  rc = mdb_env_open(raw, path.c_str(), flags, 0644);
  if (rc != 0) return lmdb::ToStatus("open LMDB environment " + path, rc);
  MDB_envinfo info;
  mdb_env_info(raw, &info);
  map_bytes_ = info.me_mapsize;  // at least what the file already uses

  uint64_t next = 1;
  uint64_t found_version = 0;
  bool unknown_format = false;
  Status s = Write("initialise streams.db", [&](MDB_txn* txn) -> int {
    int err = lmdb::OpenDbs(txn, /*create=*/true, &dbs_);
    if (err != 0) return err;
    bool found = false;
    err = lmdb::GetU64(txn, dbs_.meta, lmdb::kFormatVersionKey, &found_version, &found);
    if (err != 0) return err;
    if (found && (found_version < lmdb::kOldestReadableFormatVersion ||
                  found_version > lmdb::kFormatVersion)) {
      unknown_format = true;
      return MDB_INCOMPATIBLE;  // aborts the transaction
    }
    if (!found) {
      // New: no segments, so no checksums to compute.
      found_version = lmdb::kFormatVersion;
      err = lmdb::PutU64(txn, dbs_.meta, lmdb::kFormatVersionKey, lmdb::kFormatVersion);
      if (err != 0) return err;
    } else if (found_version >= lmdb::kFirstFormatWithChecksums && found_version < lmdb::kFormatVersion) {
      // Version 4 had no inline bytes (every stream's bytes are in its
      // segment files, read in place); version 5 kept them in the `inline`
      // database, whose values move into their records here, in the
      // transaction that writes the version.
      upgraded_from_ = found_version;
      err = lmdb::MoveInlineIntoRecords(txn, &dbs_, &upgraded_inline_streams_);
      if (err != 0) return err;
      err = lmdb::PutU64(txn, dbs_.meta, lmdb::kFormatVersionKey, lmdb::kFormatVersion);
      if (err != 0) return err;
    } else if (found_version < lmdb::kFormatVersion) {
      // An older layout this code upgrades (OpenDbs made the databases).
      // The checksums are computed by Recover, which then writes the
      // version: until then the directory stays readable as version 3.
      upgrade_checksums_ = true;
      if (found_version < lmdb::kLastFormatWithoutChecksums) {
        err = lmdb::PutU64(txn, dbs_.meta, lmdb::kFormatVersionKey, lmdb::kLastFormatWithoutChecksums);
        if (err != 0) return err;
      }
    }
    err = lmdb::GetU64(txn, dbs_.meta, lmdb::kNextStreamIdKey, &next, &found);
    if (!found) next = 1;
    return err;
  });
  if (unknown_format) {
    return Status::NotSupported(path + " has storage format version " + std::to_string(found_version) +
                                "; this server reads version " + std::to_string(lmdb::kFormatVersion) +
                                " (was it written by a newer server?)");
  }
  if (!s.ok()) return s;
  if (upgraded_from_ != 0) {
    Warn("upgraded " + options_.data_dir + " from storage format " + std::to_string(upgraded_from_) + " to " +
         std::to_string(lmdb::kFormatVersion) + " (inline bytes of " + std::to_string(upgraded_inline_streams_) +
         " streams moved into their records; segment files are read in place)");
  }
  next_stream_id_ = next;
  // Make the environment itself durable, once per open, in every mode:
  // under INTERVAL and OFF (MDB_NOSYNC) the initialising transaction is
  // synced here, and under every mode the names LMDB created in
  // streams.db/ (data.mdb, lock.mdb) get their directory fsync. Without it,
  // under OFF nothing ever fsyncs streams.db/, and a power loss even after
  // a clean close could bring back an empty store (the simulator's
  // store-lost). The other new names (LOCK, streams.db/, segments/) are
  // synced by AcquireLock and CreateDirsDurably.
  if (options_.fsync != DS_FSYNC_ALWAYS) {
    rc = mdb_env_sync(raw, 1);
    if (rc != 0) return lmdb::ToStatus("sync " + path, rc);
  }
  return SyncDir(path);
}

uint64_t LmdbStore::map_bytes() const {
  std::shared_lock lock(env_mu_);
  return map_bytes_;
}

Status LmdbStore::GrowMap() {
  std::unique_lock lock(env_mu_);
  if (map_bytes_ >= kMaxMapBytes) {
    return Status::NoSpace("streams.db has reached the largest map this server allows (" +
                           std::to_string(kMaxMapBytes) + " bytes)");
  }
  const uint64_t target = std::min(map_bytes_ * 2, kMaxMapBytes);
  int rc = mdb_env_set_mapsize(env_.get(), target);
  if (rc != 0) {
    return Status::NoSpace("cannot grow the streams.db map to " + std::to_string(target) +
                           " bytes: " + mdb_strerror(rc));
  }
  MDB_envinfo info;
  mdb_env_info(env_.get(), &info);
  map_bytes_ = info.me_mapsize;
  return Status::OK();
}

Status LmdbStore::Write(const char* what, const std::function<int(MDB_txn*)>& body,
                        bool late_durability) {
  for (;;) {
    lmdb::Txn txn;
    int rc = txn.Begin(env_.get(), 0);
    if (rc == MDB_MAP_RESIZED) {
      // Another process grew the map (we are the only writer, so this is
      // not expected); adopt its size and retry.
      std::unique_lock lock(env_mu_);
      rc = mdb_env_set_mapsize(env_.get(), 0);
      if (rc != 0) return lmdb::ToStatus(what, rc);
      MDB_envinfo info;
      mdb_env_info(env_.get(), &info);
      map_bytes_ = info.me_mapsize;
      continue;
    }
    if (rc == 0) rc = body(txn.get());
    int commit_errno = 0;
    if (rc == 0) {
      errno = 0;
      rc = txn.Commit();
      commit_errno = errno;
    }
    if (rc == EIO || rc == ENOSPC || rc == EDQUOT) return CommitIoFailure(what, rc, commit_errno);
    if (rc == MDB_MAP_FULL) {
      txn.Abort();  // no transaction may be open while the map is resized
      Status s = GrowMap();
      if (!s.ok()) return s;
      continue;
    }
    if (rc != 0) return lmdb::ToStatus(what, rc);
    if (options_.fsync == DS_FSYNC_ALWAYS && !late_durability) return SyncEnvironment();
    return Status::OK();
  }
}

Status LmdbStore::CommitIoFailure(const char* what, int rc, int commit_errno) {
  // mdb_txn_commit (LMDB 0.9: mdb_page_flush, mdb_env_sync0,
  // mdb_env_write_meta) returns a failed syscall's errno as it is, but EIO
  // for a write that came back short. Only a failed syscall sets errno (and
  // nothing else on the failure path does), so EIO with errno still 0 is a
  // short write. A short write to a regular file means the filesystem ran
  // out of room mid-write (a quota or RLIMIT_FSIZE behave alike).
  //
  // The data pages are written, and (fsync always) fdatasync'ed, before the
  // meta page moves: a failure there leaves the previous meta naming a
  // consistent tree, and the pages this transaction wrote are free again
  // and are written whole before any later meta names them. So a full disk
  // there is recoverable: the next commit may succeed. A failed meta write
  // is not: LMDB flags the environment (MDB_FATAL_ERROR) and every later
  // transaction fails with MDB_PANIC, so probe for that. EIO from the
  // syscall itself is a device error: fatal.
  std::string msg = std::string(what) + ": " + mdb_strerror(rc);
  if (rc == EIO && commit_errno != 0) return Status::IoError(std::move(msg));
  lmdb::Txn probe;
  const int probe_rc = probe.Begin(env_.get(), MDB_RDONLY);
  if (probe_rc != 0) return Status::IoError(msg + " (then " + mdb_strerror(probe_rc) + ")");
  if (rc == EIO) msg = std::string(what) + ": short write to streams.db (the filesystem is full)";
  return Status::NoSpace(std::move(msg));
}

void LmdbStore::Fail(const Status& s) {
  std::lock_guard lock(failure_mu_);
  if (failure_.ok()) failure_ = s.code() == Status::Code::kIoError ? s : Status::IoError(s.message());
  failed_.store(true);
}

Status LmdbStore::LoadStream(uint64_t stream_id, bool* found, StreamRecord* record,
                             std::vector<ProducerRecord>* producers) {
  std::shared_lock lock(env_mu_);
  lmdb::Txn txn;
  int rc = txn.Begin(env_.get(), MDB_RDONLY);
  if (rc != 0) return lmdb::ToStatus("read stream " + std::to_string(stream_id), rc);
  return lmdb::ReadStream(txn.get(), dbs_, stream_id, found, record, producers);
}

Status LmdbStore::failure() const {
  std::lock_guard lock(failure_mu_);
  return failure_;
}

Status LmdbStore::Recover(std::vector<RecoveredStream>* streams, uint64_t* next_stream_id) {
  streams->clear();
  std::vector<RecoveredStream> loaded;
  std::vector<std::string> orphan_producers;
  std::unordered_map<uint64_t, std::vector<SegmentLog::WalEntry>> wal;  // by stream
  uint64_t wal_max_seq = 0;
  uint64_t stored_next = 1;
  std::unordered_map<uint64_t, SyncedTail> synced;  // by stream
  std::unordered_map<uint64_t, uint64_t> inline_sizes;  // by stream
  {
    std::shared_lock lock(env_mu_);
    lmdb::Txn txn;
    int rc = txn.Begin(env_.get(), MDB_RDONLY);
    if (rc != 0) return lmdb::ToStatus("begin recovery read", rc);
    Status s = lmdb::ReadStreams(txn.get(), dbs_, &loaded, &orphan_producers);
    if (!s.ok()) return s;
    s = ReadWal(txn.get(), &wal, &wal_max_seq);
    if (!s.ok()) return s;
    std::vector<std::pair<uint64_t, lmdb::SyncedCheckpoint>> checkpoints;
    rc = lmdb::ReadSynced(txn.get(), dbs_, &checkpoints);
    if (rc != 0) return lmdb::ToStatus("read the synced checkpoints", rc);
    for (const auto& [id, cp] : checkpoints) synced[id] = SyncedTail{true, cp.tail, cp.crc};
    std::vector<std::pair<uint64_t, uint64_t>> sizes;
    rc = lmdb::ReadInlineSizes(txn.get(), dbs_, &sizes);
    if (rc != 0) return lmdb::ToStatus("read the inline streams", rc);
    for (const auto& [id, size] : sizes) inline_sizes[id] = size;
    bool found = false;
    rc = lmdb::GetU64(txn.get(), dbs_.meta, lmdb::kNextStreamIdKey, &stored_next, &found);
    if (rc != 0) return lmdb::ToStatus("read next_stream_id", rc);
    if (!found) stored_next = 1;
  }

  // Segment directories without a record: a crash between an erase's
  // commit and its file deletion, or a stream created and never committed.
  std::vector<std::string> names;
  Status s = ListDir(files_->dir(), &names);
  if (!s.ok()) return s;
  bool removed_orphans = false;
  for (const std::string& name : names) {
    uint64_t id = 0;
    if (!ParseZeroPadded(name, &id)) {
      Warn("ignoring unexpected entry " + JoinPath(files_->dir(), name));
      continue;
    }
    auto it = std::lower_bound(loaded.begin(), loaded.end(), id,
                               [](const RecoveredStream& r, uint64_t v) { return r.record.id < v; });
    if (it != loaded.end() && it->record.id == id) continue;
    s = RemoveTree(JoinPath(files_->dir(), name));
    if (!s.ok()) return s;
    removed_orphans = true;
  }
  if (removed_orphans) {
    s = SyncDir(files_->dir());
    if (!s.ok()) return s;
  }

  // Open every log, cutting it to its recorded tail. Streams are
  // independent (one directory each), so this runs on several threads: at
  // 100,000 streams it is a few hundred thousand directory syscalls.
  std::vector<Status> results(loaded.size());
  std::vector<ChecksumRecovery> checksums(loaded.size());
  auto recover_range = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      StreamRecord& rec = loaded[i].record;
      const uint64_t base = rec.fork_offset;
      uint64_t tail = rec.tail;
      if (tail < base) {
        Warn("stream " + std::to_string(rec.id) + ": recorded tail " + std::to_string(tail) +
             " is below its fork offset " + std::to_string(base) + "; treating it as empty");
        tail = base;
      }
      uint64_t inline_bytes = 0;
      if (auto it = inline_sizes.find(rec.id); it != inline_sizes.end()) inline_bytes = it->second;
      std::vector<std::pair<uint64_t, uint64_t>> replayed;
      if (auto it = wal.find(rec.id); it != wal.end()) {
        // Committed bytes a power loss may have kept from the files, which
        // begin where the inline bytes end.
        results[i] = SegmentLog::ReplayWal(files_, rec.id, std::max({rec.start, base, base + inline_bytes}), tail,
                                           it->second, &replayed);
        if (!results[i].ok()) return;
      }
      const uint64_t recorded = tail;
      std::unique_ptr<SegmentLog> log;
      results[i] = SegmentLog::Recover(files_, rec.id, base, rec.start, &tail, &log, inline_bytes);
      if (!results[i].ok()) return;
      // Every byte kept must be one that was written: the checksums of the
      // tail region and of what the wal wrote back must match.
      ChecksumRecovery& found = checksums[i];
      if (upgrade_checksums_) {
        results[i] = log->ComputeChecksums(&found);
      } else {
        SyncedTail checkpoint;
        if (auto it = synced.find(rec.id); it != synced.end()) checkpoint = it->second;
        results[i] = log->CheckChecksums(recorded, replayed, &found, checkpoint);
        if (results[i].ok() && found.good_tail < tail) {
          Warn("stream " + std::to_string(rec.id) + " (" + files_->StreamDir(rec.id) + "): bytes [" +
               std::to_string(found.good_tail) + ", " + std::to_string(tail) +
               ") do not match their checksums; lowering the tail to " + std::to_string(found.good_tail) +
               " (acknowledged bytes were lost or damaged)");
          tail = found.good_tail;
          results[i] = SegmentLog::Recover(files_, rec.id, base, rec.start, &tail, &log, inline_bytes);
        }
      }
      if (!results[i].ok()) return;
      if (tail < recorded && IsJsonMediaType(rec.content_type)) {
        // A JSON stream's offsets are message boundaries (json_mode.h:
        // every stored message ends with '\n'); a tail lowered for lost
        // bytes must not cut a message in two.
        uint64_t boundary = tail;
        results[i] = LastJsonBoundary(*log, log->start(), tail, &boundary);
        if (!results[i].ok()) return;
        if (boundary < tail) {
          Warn("stream " + std::to_string(rec.id) + ": lowering the tail of this JSON stream from " +
               std::to_string(tail) + " to " + std::to_string(boundary) +
               ", the end of its last whole message");
          tail = boundary;
          results[i] = SegmentLog::Recover(files_, rec.id, base, rec.start, &tail, &log, inline_bytes);
          // The block now holding the tail needs its checksum recomputed
          // from the bytes kept, as for any lowering.
          if (results[i].ok() && !upgrade_checksums_) {
            results[i] = log->CheckChecksums(recorded, replayed, &found);
          } else if (results[i].ok()) {
            results[i] = log->ComputeChecksums(&found);
          }
          if (!results[i].ok()) return;
        }
      }
      log->InitChecksums(found);
      rec.tail = tail;  // lowered if bytes were missing
      rec.start = log->start();
      loaded[i].log = std::move(log);
    }
  };
  std::vector<uint64_t> recorded_tails(loaded.size());
  for (size_t i = 0; i < loaded.size(); ++i) recorded_tails[i] = loaded[i].record.tail;
  const size_t threads = loaded.size() < 1024 ? 1 : kSyncThreads;
  const size_t chunk = (loaded.size() + threads - 1) / threads;
  {
    std::vector<std::thread> workers;
    try {
      for (size_t t = 1; t < threads; ++t) {
        const size_t begin = std::min(loaded.size(), t * chunk);
        workers.emplace_back(recover_range, begin, std::min(loaded.size(), begin + chunk));
      }
    } catch (const std::system_error&) {
      // No thread to spare: the ranges not started are done below.
    }
    recover_range(0, std::min(loaded.size(), chunk));
    for (std::thread& w : workers) w.join();
    for (size_t t = 1 + workers.size(); t < threads; ++t) {
      const size_t begin = std::min(loaded.size(), t * chunk);
      recover_range(begin, std::min(loaded.size(), begin + chunk));
    }
  }
  std::vector<StreamRecord> lowered;
  uint64_t max_id = 0;
  bool checksum_repairs = false;
  for (size_t i = 0; i < loaded.size(); ++i) {
    if (!results[i].ok()) return results[i];
    max_id = std::max(max_id, loaded[i].record.id);
    if (loaded[i].record.tail != recorded_tails[i]) lowered.push_back(loaded[i].record);
    if (!upgrade_checksums_ && !checksums[i].puts.empty()) checksum_repairs = true;
  }

  // Record what recovery found, so the next start does not warn again.
  if (!lowered.empty() || !orphan_producers.empty() || checksum_repairs) {
    std::lock_guard lock(commit_mu_);
    s = Write("record recovery repairs", [&](MDB_txn* txn) -> int {
      for (const StreamRecord& record : lowered) {
        int rc = lmdb::PutStream(txn, dbs_, record);
        if (rc != 0) return rc;
        // Inline bytes past the lowered tail are gone too (new appends will
        // rewrite those positions).
        rc = lmdb::TruncateInline(txn, dbs_, record.id, record.tail - std::min(record.tail, record.fork_offset));
        if (rc != 0) return rc;
        // Checksums of blocks wholly past the lowered tail describe bytes
        // that are gone.
        const uint64_t b = record.tail / kChecksumBlockBytes;
        const bool empty = std::max(b * kChecksumBlockBytes, record.fork_offset) >= record.tail;
        rc = lmdb::DeleteCrcs(txn, dbs_, record.id, empty ? b : b + 1, UINT64_MAX);
        if (rc != 0) return rc;
        // A synced checkpoint past the lowered tail no longer describes
        // bytes that will stay (new appends will rewrite those positions).
        if (auto it = synced.find(record.id); it != synced.end() && it->second.tail > record.tail) {
          rc = lmdb::DeleteSynced(txn, dbs_, record.id);
          if (rc != 0) return rc;
        }
      }
      for (size_t i = 0; !upgrade_checksums_ && i < loaded.size(); ++i) {
        for (const BlockChecksum& c : checksums[i].puts) {
          int rc = lmdb::PutCrc(txn, dbs_, loaded[i].record.id, c.block, c.crc);
          if (rc != 0) return rc;
        }
        if (!checksums[i].last_known) {
          // No valid checksum for the block holding the tail: drop the
          // stale one, the block goes unchecked.
          const uint64_t b = loaded[i].record.tail / kChecksumBlockBytes;
          int rc = lmdb::DeleteCrcs(txn, dbs_, loaded[i].record.id, b, b + 1);
          if (rc != 0) return rc;
        }
      }
      for (const std::string& key : orphan_producers) {
        MDB_val k = lmdb::Val(key);
        int rc = mdb_del(txn, dbs_.producers, &k, nullptr);
        if (rc != 0 && rc != MDB_NOTFOUND) return rc;
      }
      return 0;
    });
    if (!s.ok()) return s;
  }

  if (upgrade_checksums_) {
    s = StoreUpgradeChecksums(loaded, checksums);
    if (!s.ok()) return s;
  }

  // A previous run under OFF (or a crash under INTERVAL) may have left
  // recovered bytes only in the page cache. New commits will point past
  // them, so make them durable now: one syncfs instead of a sync per file.
  if (options_.fsync != DS_FSYNC_OFF || !wal.empty()) {
    s = SyncFileSystem(files_->dir());
    if (s.ok()) s = SyncEnvironment();
    if (!s.ok()) return s;
  }
  // Replayed and synced: the write-ahead entries are spent. On a full disk
  // the server must still start (reads go on), so they may stay: replaying
  // them again is harmless, and the first commit checkpoints them away.
  if (!wal.empty()) {
    std::lock_guard lock(commit_mu_);
    s = Write("empty the wal after replay",
              [&](MDB_txn* txn) -> int { return mdb_drop(txn, dbs_.wal, 0); });
    if (s.ok()) s = SyncEnvironment();
    if (s.code() == Status::Code::kNoSpace) {
      Warn("keeping the replayed write-ahead entries until the next commit: " + s.message());
      wal_bytes_ = options_.wal_checkpoint_bytes;  // due at once
      s = Status::OK();
    }
    if (!s.ok()) return s;
  }

  {
    std::lock_guard lock(commit_mu_);
    next_stream_id_ = std::max({stored_next, max_id + 1, next_stream_id_});
    *next_stream_id = next_stream_id_;
    wal_seq_ = std::max(wal_seq_, wal_max_seq + 1);  // entries kept on a full disk sort first
  }
  *streams = std::move(loaded);
  return Status::OK();
}

Status LmdbStore::CreateLog(uint64_t stream_id, uint64_t base, std::unique_ptr<StreamLog>* log) {
  if (stream_id == 0) return Status::InvalidArgument("stream id 0 is reserved");
  *log = std::make_unique<SegmentLog>(files_, stream_id, base);
  return Status::OK();
}

Status LmdbStore::LoadChecksums(uint64_t stream_id, uint64_t first, uint64_t last,
                                std::vector<std::pair<uint64_t, uint32_t>>* out) {
  std::lock_guard one_at_a_time(checksum_read_mu_);
  std::shared_lock lock(env_mu_);
  lmdb::Txn txn;
  int rc = txn.Begin(env_.get(), MDB_RDONLY);
  if (rc == 0) rc = lmdb::GetCrcs(txn.get(), dbs_, stream_id, first, last, out);
  if (rc != 0) return lmdb::ToStatus("read the checksums of stream " + std::to_string(stream_id), rc);
  return Status::OK();
}

Status LmdbStore::LoadInline(uint64_t stream_id, uint64_t from, size_t len, std::string* out) {
  std::lock_guard one_at_a_time(inline_read_mu_);
  std::shared_lock lock(env_mu_);
  lmdb::Txn txn;
  int rc = txn.Begin(env_.get(), MDB_RDONLY);
  std::string_view value;
  if (rc == 0) rc = lmdb::GetInline(txn.get(), dbs_, stream_id, &value);
  if (rc != 0) return lmdb::ToStatus("read the inline bytes of stream " + std::to_string(stream_id), rc);
  if (from > value.size() || len > value.size() - from) {
    return Status::Corruption("stream " + std::to_string(stream_id) + " has " + std::to_string(value.size()) +
                              " inline bytes, not [" + std::to_string(from) + ", " + std::to_string(from + len) + ")");
  }
  out->append(value.substr(static_cast<size_t>(from), len));
  return Status::OK();
}

Status LmdbStore::StoreUpgradeChecksums(const std::vector<RecoveredStream>& streams,
                                        const std::vector<ChecksumRecovery>& checksums) {
  // In slices (one transaction for a whole large directory could outgrow
  // LMDB's dirty-page limit); the version goes last, so a crash part way
  // leaves a version 3 directory whose next open starts over.
  constexpr size_t kPerTxn = 16384;
  std::lock_guard lock(commit_mu_);
  Status s = Write("start the checksum upgrade",
                   [&](MDB_txn* txn) -> int { return mdb_drop(txn, dbs_.crc, 0); });
  size_t i = 0, j = 0;
  uint64_t blocks = 0;
  while (s.ok() && i < streams.size()) {
    const size_t from_i = i, from_j = j;
    s = Write("store checksums computed for the upgrade", [&](MDB_txn* txn) -> int {
      i = from_i;
      j = from_j;
      for (size_t n = 0; n < kPerTxn && i < streams.size();) {
        const std::vector<BlockChecksum>& puts = checksums[i].puts;
        for (; j < puts.size() && n < kPerTxn; ++j, ++n) {
          int rc = lmdb::PutCrc(txn, dbs_, streams[i].record.id, puts[j].block, puts[j].crc);
          if (rc != 0) return rc;
        }
        if (j == puts.size()) {
          ++i;
          j = 0;
        }
      }
      return 0;
    });
  }
  for (const ChecksumRecovery& c : checksums) blocks += c.puts.size();
  if (s.ok()) {
    s = Write("record storage format 4", [&](MDB_txn* txn) -> int {
      return lmdb::PutU64(txn, dbs_.meta, lmdb::kFormatVersionKey, lmdb::kFormatVersion);
    });
  }
  if (!s.ok()) return s;
  upgrade_checksums_ = false;
  Warn("upgraded " + options_.data_dir + " to storage format " + std::to_string(lmdb::kFormatVersion) +
       ": computed checksums of " + std::to_string(blocks) + " blocks of " + std::to_string(streams.size()) +
       " streams");
  return Status::OK();
}

Status LmdbStore::ReadWal(MDB_txn* txn,
                         std::unordered_map<uint64_t, std::vector<SegmentLog::WalEntry>>* wal,
                         uint64_t* max_seq) {
  wal->clear();
  *max_seq = 0;
  if (!dbs_.has_wal) return Status::OK();
  lmdb::Cursor cursor;
  int rc = cursor.Open(txn, dbs_.wal);
  MDB_val k, v;
  for (rc = rc == 0 ? mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST) : rc; rc == 0;
       rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
    uint64_t seq = 0, id = 0, position = 0;
    if (!lmdb::ParseWalKey(lmdb::View(k), &seq, &id, &position)) {
      return Status::Corruption(options_.data_dir + "/streams.db: malformed wal key");
    }
    (*wal)[id].push_back(SegmentLog::WalEntry{position, std::string(lmdb::View(v))});
    *max_seq = std::max(*max_seq, seq);
  }
  if (rc != MDB_NOTFOUND) return lmdb::ToStatus("read the wal", rc);
  return Status::OK();
}

bool LmdbStore::WalCheckpointDue() const {
  if (wal_bytes_ == 0) return false;
  return wal_bytes_ >= options_.wal_checkpoint_bytes ||
         std::chrono::steady_clock::now() - last_checkpoint_ >=
             std::chrono::milliseconds(options_.wal_checkpoint_interval_ms);
}

Status LmdbStore::SyncLogs(const std::vector<StreamLog*>& logs, bool whole_filesystem) {
  if (!whole_filesystem && logs.size() < kSyncfsMinLogs) return sync_pool_->SyncAll(logs);
  // Many files: one journal commit for all of them beats one fdatasync per
  // file, even run concurrently (each waits for its own journal commit).
  std::vector<SegmentLog*> segment_logs;
  std::vector<uint64_t> tails;
  segment_logs.reserve(logs.size());
  tails.reserve(logs.size());
  for (StreamLog* log : logs) {
    auto* segment_log = dynamic_cast<SegmentLog*>(log);
    if (segment_log == nullptr) {  // not ours: no shortcut
      Status s = sync_pool_->SyncAll(logs);
      if (s.ok() && whole_filesystem) s = SyncFileSystem(files_->dir());
      return s;
    }
    uint64_t tail = 0;
    Status s = segment_log->BeginFilesystemSync(&tail);
    if (!s.ok()) return s;
    segment_logs.push_back(segment_log);
    tails.push_back(tail);
  }
  Status synced = SyncFileSystem(files_->dir());
  for (size_t i = 0; i < segment_logs.size(); ++i) segment_logs[i]->EndFilesystemSync(tails[i], synced);
  return synced;
}

Status LmdbStore::Commit(const std::vector<StreamMutation>& batch) {
  if (failed_.load()) return failure();
  if (batch.empty()) return Status::OK();

  for (const StreamMutation& m : batch) {
    if (m.record.id == 0) return Status::InvalidArgument("commit of stream id 0");
    if (m.kind == StreamMutation::Kind::kUpsert && m.log != nullptr && m.record.tail > m.log->tail()) {
      // Recording a tail past the bytes would lose data at the next start.
      return Status::InvalidArgument("stream " + std::to_string(m.record.id) + ": record tail " +
                                     std::to_string(m.record.tail) + " is past its log's tail " +
                                     std::to_string(m.log->tail()));
    }
  }

  // (a) The bytes the new tails point at, durable before the records:
  // synced in place, or (small ranges) put in the transaction itself.
  std::vector<WalWrite> wal;
  bool checkpoint = false;
  size_t wal_total = 0;
  if (options_.fsync == DS_FSYNC_ALWAYS) {
    // Each log once, with the highest tail the batch records for it.
    std::vector<std::pair<StreamLog*, const StreamRecord*>> due;
    due.reserve(batch.size());
    for (const StreamMutation& m : batch) {
      if (m.log != nullptr && m.kind == StreamMutation::Kind::kUpsert) due.emplace_back(m.log, &m.record);
    }
    std::sort(due.begin(), due.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second->tail > b.second->tail;
    });
    due.erase(std::unique(due.begin(), due.end(),
                          [](const auto& a, const auto& b) { return a.first == b.first; }),
              due.end());
    {
      std::lock_guard lock(commit_mu_);
      checkpoint = dbs_.has_wal && WalCheckpointDue();
    }
    std::vector<StreamLog*> sync;
    for (const auto& [log, record] : due) {
      auto* segment_log = dynamic_cast<SegmentLog*>(log);
      WalWrite w;
      if (!checkpoint && dbs_.has_wal && segment_log != nullptr &&
          segment_log->WalRange(record->tail, kWalMaxLogBytes, &w.from, &w.bytes) &&
          wal_total + w.bytes.size() <= kWalMaxBatchBytes) {
        if (!w.bytes.empty()) {
          w.stream_id = record->id;
          w.to = record->tail;
          w.log = segment_log;
          wal_total += w.bytes.size();
          wal.push_back(std::move(w));
        }
        continue;
      }
      sync.push_back(log);
    }
    // A checkpoint's syncfs also covers every byte earlier entries hold.
    Status s = sync.empty() && !checkpoint ? Status::OK() : SyncLogs(sync, checkpoint);
    if (!s.ok()) {
      Fail(s);
      return failure();
    }
  }

  // The checksums of the bytes the new tails cover, stored with them.
  struct Checksums {
    uint64_t stream_id = 0;
    uint64_t to = 0;
    SegmentLog* log = nullptr;
    std::vector<BlockChecksum> blocks;
  };
  std::vector<Checksums> checksums;
  for (const StreamMutation& m : batch) {
    if (m.kind != StreamMutation::Kind::kUpsert || m.log == nullptr || !dbs_.has_crc) continue;
    auto* segment_log = dynamic_cast<SegmentLog*>(m.log);
    if (segment_log == nullptr) continue;
    auto same = std::find_if(checksums.begin(), checksums.end(),
                             [&](const Checksums& c) { return c.log == segment_log; });
    if (same == checksums.end()) {
      checksums.push_back(Checksums{m.record.id, m.record.tail, segment_log, {}});
    } else {
      same->to = std::max(same->to, m.record.tail);
    }
  }
  for (Checksums& c : checksums) c.log->PendingChecksums(c.to, &c.blocks);
  // New streams under INTERVAL/OFF: the synced checkpoint (base, 0), so
  // that until the first periodic sync none of their bytes is kept unless
  // it verifies (STORAGE_FORMAT.md, "Synced checkpoints").
  std::vector<std::pair<SegmentLog*, StreamRecord>> base_checkpoints;
  for (const StreamMutation& m : batch) {
    if (m.kind != StreamMutation::Kind::kUpsert || m.log == nullptr || !dbs_.has_synced) continue;
    auto* segment_log = dynamic_cast<SegmentLog*>(m.log);
    if (segment_log != nullptr && segment_log->TakeBaseCheckpoint()) base_checkpoints.emplace_back(segment_log, m.record);
  }

  // Inline bytes (STORAGE_FORMAT.md, "Inline streams"): each log once, up
  // to the highest tail the batch records for it, into this transaction.
  struct InlineWrite {
    uint64_t stream_id = 0;
    uint64_t expected_len = 0;  // the committed value's size now
    uint64_t to = 0;
    SegmentLog* log = nullptr;
    std::string bytes;
    bool applied = false;  // put with a record of this transaction (reset per try)
  };
  std::vector<InlineWrite> inline_writes;
  {
    for (const StreamMutation& m : batch) {
      if (m.kind != StreamMutation::Kind::kUpsert || m.log == nullptr) continue;
      auto* segment_log = dynamic_cast<SegmentLog*>(m.log);
      if (segment_log == nullptr || segment_log->inline_end() == segment_log->base()) continue;
      auto same = std::find_if(inline_writes.begin(), inline_writes.end(),
                               [&](const InlineWrite& w) { return w.log == segment_log; });
      if (same == inline_writes.end()) {
        inline_writes.push_back(InlineWrite{m.record.id, 0, m.record.tail, segment_log, {}});
      } else {
        same->to = std::max(same->to, m.record.tail);
      }
    }
    for (InlineWrite& w : inline_writes) {
      uint64_t from = 0;
      w.log->InlineRange(w.to, &from, &w.bytes);
      w.expected_len = from - w.log->base();
      w.to = from + w.bytes.size();
    }
    std::erase_if(inline_writes, [](const InlineWrite& w) { return w.bytes.empty(); });
  }

  // A stream upserted again later in the batch: its record is superseded
  // (records are whole snapshots, queued in the stream's write order), so
  // only the last is put. One put per stream and commit, not per append.
  std::vector<bool> superseded(batch.size(), false);
  if (batch.size() > 1) {
    std::unordered_set<uint64_t> later;
    later.reserve(batch.size());
    for (size_t i = batch.size(); i-- > 0;) {
      if (!later.insert(batch[i].record.id).second && batch[i].kind == StreamMutation::Kind::kUpsert) {
        superseded[i] = true;
      }
    }
  }

  // (b, c) One transaction for the whole batch.
  std::vector<uint64_t> erased;
  {
    std::lock_guard lock(commit_mu_);
    uint64_t next = next_stream_id_;
    for (const StreamMutation& m : batch) next = std::max(next, m.record.id + 1);
    Status s = Write("commit", [&](MDB_txn* txn) -> int {
      for (InlineWrite& w : inline_writes) w.applied = false;  // the body may run again (map growth)
      if (checkpoint) {
        int rc = mdb_drop(txn, dbs_.wal, 0);  // empty it, keep the database
        if (rc != 0) return rc;
      }
      for (const WalWrite& w : wal) {
        const std::string key = lmdb::WalKey(wal_seq_, w.stream_id, w.from);
        MDB_val k = lmdb::Val(key), v = lmdb::Val(w.bytes);
        int rc = mdb_put(txn, dbs_.wal, &k, &v, 0);
        if (rc != 0) return rc;
      }
      bool dirtied = !wal.empty();  // inline bytes count when put, with their record
      for (size_t j = 0; j < batch.size(); ++j) {
        const StreamMutation& m = batch[j];
        int rc = 0;
        if (m.kind == StreamMutation::Kind::kErase) {
          rc = lmdb::EraseStream(txn, dbs_, m.record.id);
        } else {
          // Only a stream's last upsert of the batch is put (the later
          // record's start is at least this one's, so its retention step
          // below covers this one's too), and its inline bytes go with it:
          // one value, one leaf page.
          if (!superseded[j]) {
            const lmdb::InlineAppend* append = nullptr;
            lmdb::InlineAppend a;
            for (InlineWrite& w : inline_writes) {
              if (w.stream_id != m.record.id || w.applied) continue;
              a = lmdb::InlineAppend{w.expected_len, w.bytes};
              append = &a;
              w.applied = true;
              break;
            }
            rc = lmdb::PutStream(txn, dbs_, m.record, append);
            dirtied = dirtied || rc == 0;
          }
          for (size_t i = 0; rc == 0 && i < m.producers.size(); ++i) {
            rc = lmdb::PutProducer(txn, dbs_, m.record.id, m.producers[i]);
          }
          if (rc == 0 && !superseded[j] && m.record.start > m.record.fork_offset && dbs_.has_crc) {
            // Retention: blocks wholly below the retained start are gone.
            rc = lmdb::DeleteCrcs(txn, dbs_, m.record.id, 0, m.record.start / kChecksumBlockBytes);
            if (rc == 0) rc = PutRetentionCheckpoint(txn, m);
          }
        }
        if (rc != 0) return rc;
      }
      for (const Checksums& c : checksums) {
        for (const BlockChecksum& b : c.blocks) {
          int rc = lmdb::PutCrc(txn, dbs_, c.stream_id, b.block, b.crc);
          if (rc != 0) return rc;
        }
      }
      for (const auto& [log, record] : base_checkpoints) {
        int rc = lmdb::PutSynced(txn, dbs_, record.id, lmdb::SyncedCheckpoint{log->base(), 0});
        if (rc != 0) return rc;
      }
      // Under late durability every commit must dirty a page, so that
      // LMDB flushes the file (and with it the previous commit's meta
      // page) rather than skip an empty transaction: the commit queue
      // counts on it (Store::commits_durable_late). A put above did that
      // already; only a transaction with none (erases alone, which may
      // find nothing) writes the counter for it, saving a leaf page per
      // commit otherwise.
      if (next != next_stream_id_ || (commits_durable_late() && !dirtied)) {
        return lmdb::PutU64(txn, dbs_.meta, lmdb::kNextStreamIdKey, next);
      }
      return 0;
    }, /*late_durability=*/true);
    if (!s.ok()) {
      for (const auto& [log, record] : base_checkpoints) log->RearmBaseCheckpoint();
      // An I/O failure inside the commit (LMDB's fsync, most likely) may
      // have lost pages the kernel will not write again; refuse from now on.
      // A full disk or map (NoSpace) is not: see CommitIoFailure.
      if (s.code() != Status::Code::kNoSpace) {
        Fail(s);
        return failure();
      }
      return s;
    }
    next_stream_id_ = next;
    if (!wal.empty()) ++wal_seq_;
    if (checkpoint) {
      wal_bytes_ = 0;
      last_checkpoint_ = std::chrono::steady_clock::now();
    }
    wal_bytes_ += wal_total;
  }
  for (const WalWrite& w : wal) w.log->WalCommitted(w.to);
  for (const InlineWrite& w : inline_writes) w.log->InlineCommitted(w.to);
  for (const Checksums& c : checksums) c.log->ChecksumsCommitted(c.to);

  // (d) Erased streams' bytes, now that no record points at them. A
  // failure leaves an orphan directory that the next Recover removes.
  for (const StreamMutation& m : batch) {
    if (m.kind == StreamMutation::Kind::kErase) erased.push_back(m.record.id);
  }
  if (!erased.empty() && commits_durable_late()) {
    // MDB_NOMETASYNC: this commit's meta page is not durable yet.
    Status s = SyncEnvironment();
    if (!s.ok()) {
      Fail(s);  // the files stay; the next Recover removes orphans
      return failure();
    }
  }
  for (uint64_t id : erased) {
    // Ids are never reused, but an erase followed by an upsert of the same
    // id in one batch would leave a live record: keep its files then.
    bool live = false;
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
      if (it->record.id != id) continue;
      live = it->kind == StreamMutation::Kind::kUpsert;
      break;
    }
    if (live) continue;
    Status s = files_->RemoveCommittedStream(id);
    if (!s.ok()) Warn("stream " + std::to_string(id) + " is erased but its files remain: " + s.message());
  }
  return Status::OK();
}

Status LmdbStore::SyncCommits() {
  if (failed_.load()) return failure();
  Status s = SyncEnvironment();
  if (!s.ok()) {
    Fail(s);  // fsync failed: pages may be lost; refuse from now on
    return failure();
  }
  return s;
}

Status LmdbStore::SyncEnvironment() {
  std::shared_lock lock(env_mu_);
  int rc = mdb_env_sync(env_.get(), 1);
  if (rc != 0) return lmdb::ToStatus("sync " + options_.data_dir + "/streams.db", rc);
  return Status::OK();
}

Status LmdbStore::Flush() {
  if (failed_.load()) return failure();
  // Removals queued by commits that completed before this point: once the
  // env syncs below succeed, no durable record points at their files.
  const std::vector<SegmentFiles::PendingRemoval> removals = files_->TakePendingRemovals();
  // Phase 1, commits still flowing: write back the bulk of the dirty data.
  Status s = files_->SyncUnsynced();
  if (s.ok()) s = SyncEnvironment();
  // Phase 2, commits held: only what arrived during phase 1 is left, so
  // this is short. Holding commit_mu_ guarantees every tail the env sync
  // makes durable points at bytes already synced.
  if (s.ok()) {
    std::lock_guard lock(commit_mu_);
    // Tails committed so far: their bytes were written before their
    // commit, so the segment sync below covers them.
    const auto tails = files_->TakeCommittedTails();
    s = files_->SyncUnsynced();
    if (s.ok() && !tails.empty() && dbs_.has_synced) s = StoreSyncedCheckpoints(tails);
    if (s.ok()) s = SyncEnvironment();
  }
  if (!s.ok()) {
    // The files stay; the next Recover removes them (orphan directories,
    // files below a recorded start).
    Fail(s);
    return s;
  }
  if (!removals.empty()) {
    Status r = files_->RemovePending(removals);
    if (!r.ok()) Warn("removing erased or trimmed segment files failed (the next start retries): " + r.message());
  }
  return s;
}

bool LmdbStore::ReadSegmentBytes(uint64_t id, uint64_t from, size_t len, std::string* out) {
  out->clear();
  std::vector<std::string> names;
  const std::string dir = files_->StreamDir(id);
  if (!ListDir(dir, &names).ok()) return false;
  std::vector<uint64_t> bases;
  for (const std::string& name : names) {
    uint64_t base = 0;
    if (ParseSegmentFileName(name, &base)) bases.push_back(base);
  }
  std::sort(bases.begin(), bases.end());
  uint64_t pos = from;
  while (out->size() < len) {
    auto it = std::upper_bound(bases.begin(), bases.end(), pos);
    if (it == bases.begin()) return false;
    const uint64_t base = *(it - 1);
    const uint64_t end = it == bases.end() ? UINT64_MAX : *it;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len - out->size(), end - pos));
    const std::string path = JoinPath(dir, SegmentFileName(base));
    UniqueFd fd;
    if (!OpenFile(path, O_RDONLY, 0, &fd).ok()) return false;
    std::string piece(n, '\0');
    size_t got = 0;
    if (!ReadAt(fd.get(), piece.data(), n, pos - base, path, &got).ok() || got != n) return false;
    out->append(piece);
    pos += n;
  }
  return true;
}

int LmdbStore::PutRetentionCheckpoint(MDB_txn* txn, const StreamMutation& m) {
  // Retention raising `start` into a block makes that block uncheckable
  // whole (its first bytes go); a synced checkpoint at `start` with the
  // checksum of [block start, start) lets recovery check the rest of it
  // (Extend from there). Claiming bytes below `start` durable is vacuous:
  // they are never read again. Only when the stored checkpoint is below
  // `start` (a higher one says more).
  if (options_.fsync == DS_FSYNC_ALWAYS || !dbs_.has_synced) return 0;
  auto* log = dynamic_cast<SegmentLog*>(m.log);
  const uint64_t start = m.record.start, id = m.record.id;
  const std::string key = StreamKey(id);
  MDB_val k = lmdb::Val(key), v;
  int rc = mdb_get(txn, dbs_.synced, &k, &v);
  bool have = false;
  lmdb::SyncedCheckpoint cp;
  if (rc == 0 && v.mv_size == 12) {
    const auto* b = static_cast<const unsigned char*>(v.mv_data);
    for (int i = 0; i < 8; ++i) cp.tail |= static_cast<uint64_t>(b[i]) << (8 * i);
    for (int i = 0; i < 4; ++i) cp.crc |= static_cast<uint32_t>(b[8 + i]) << (8 * i);
    have = true;
  } else if (rc != 0 && rc != MDB_NOTFOUND) {
    return rc;
  }
  if (have && cp.tail >= start) return 0;
  const uint64_t block_start = std::max(start / kChecksumBlockBytes * kChecksumBlockBytes, m.record.fork_offset);
  lmdb::SyncedCheckpoint at{start, 0};
  if (block_start < start) {
    uint64_t from = block_start;
    uint32_t crc = 0;
    if (have && cp.tail > block_start) {
      from = cp.tail;  // [block start, cp.tail) may be gone already
      crc = cp.crc;
    }
    std::string bytes;
    // Inline bytes from this transaction (a log's read would open another).
    std::string_view inline_value;
    rc = lmdb::GetInline(txn, dbs_, id, &inline_value);
    if (rc != 0) return rc;
    const uint64_t inline_end = m.record.fork_offset + inline_value.size();
    if (from < inline_end) {
      const uint64_t n = std::min(start, inline_end) - from;
      bytes.assign(inline_value.substr(static_cast<size_t>(from - m.record.fork_offset), static_cast<size_t>(n)));
      from += n;
    }
    std::string rest;
    // Retention's commit carries no log: read the files, which stay until
    // this commit is durable.
    if (from < start && (log == nullptr || !log->ReadUnchecked(from, start - from, &rest).ok()) &&
        !ReadSegmentBytes(id, from, start - from, &rest)) {
      // Bytes already gone: the stored checkpoint (below `start`) stays,
      // true but of no help for this block (see STORAGE_FORMAT.md).
      return 0;
    }
    bytes += rest;
    at.crc = crc32c::Extend(crc, bytes);
  }
  return lmdb::PutSynced(txn, dbs_, id, at);
}

Status LmdbStore::StoreSyncedCheckpoints(const std::unordered_map<uint64_t, SegmentFiles::TailChecksum>& tails) {
  // Written after the segments' sync and before the environment's: the
  // checkpoint is durable exactly when the bytes it covers are.
  Status s = Write("store synced checkpoints", [&](MDB_txn* txn) -> int {
    for (const auto& [id, at] : tails) {
      const std::string key = StreamKey(id);
      MDB_val k = lmdb::Val(key), v;
      int rc = mdb_get(txn, dbs_.streams, &k, &v);
      if (rc == MDB_NOTFOUND) continue;  // erased since
      if (rc == 0) rc = lmdb::PutSynced(txn, dbs_, id, lmdb::SyncedCheckpoint{at.tail, at.crc});
      if (rc != 0) return rc;
    }
    return 0;
  });
  if (s.code() == Status::Code::kNoSpace) {
    // The stored checkpoints stay true (bytes below a committed tail never
    // change); recovery merely keeps less after a power loss.
    Warn("synced checkpoints not updated: " + s.message());
    return Status::OK();
  }
  return s;
}

void LmdbStore::SyncerLoop() {
  const auto period = std::chrono::milliseconds(options_.fsync_interval_ms);
  std::unique_lock lock(syncer_mu_);
  while (!stopping_) {
    if (syncer_cv_.wait_for(lock, period, [this] { return stopping_; })) break;
    lock.unlock();
    if (!failed_.load()) {
      Status s = Flush();
      if (!s.ok()) Warn("periodic sync of " + options_.data_dir + " failed; refusing writes: " + s.message());
    }
    lock.lock();
  }
}

Status LmdbStore::WithEnvironment(const std::string& data_dir,
                                  const std::function<Status(MDB_env* open_env)>& copy) {
  std::string canonical;
  Status s = CanonicalPath(data_dir, &canonical);
  if (!s.ok()) return s;
  std::lock_guard lock(RegistryMutex());
  auto it = Registry().find(canonical);
  if (it == Registry().end()) return copy(nullptr);
  LmdbStore* store = it->second;
  std::shared_lock env_lock(store->env_mu_);
  return copy(store->env_.get());
}

}  // namespace ds
