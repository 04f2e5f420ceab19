// A stream's own bytes on disk: data_dir/segments/<stream id>/<base>.seg,
// each file holding the raw bytes of positions [base, next file's base)
// with no framing, so a read is a pread straight from the page cache.
//
// The log never decides what is durable: bytes past the stream's recorded
// tail (in LMDB) are unacknowledged and Recover cuts them off. That is why a
// segment needs no checksums or record framing of its own: the LMDB commit
// is the only commit point, and a torn write can only affect bytes past it.
//
// Open files are a shared, capped resource: 100,000 streams cannot each keep
// a descriptor. Every log of a store draws descriptors from one LRU
// (SegmentFdCache); a log's active file may be closed and reopened at will.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "file_util.h"
#include "status.h"
#include "stream_log.h"

namespace ds {

// Names one segment file: stream ids are never reused, so (stream, base) is
// unique for the life of the data directory.
struct SegmentKey {
  uint64_t stream_id = 0;
  uint64_t base = 0;
  bool operator==(const SegmentKey&) const = default;
};

struct SegmentKeyHash {
  size_t operator()(const SegmentKey& k) const {
    return std::hash<uint64_t>()(k.stream_id * 0x9e3779b97f4a7c15ull ^ k.base);
  }
};

// An LRU of open segment files, shared by every log of a store. Handles are
// shared_ptrs: evicting an entry only drops the cache's reference, so a
// pread in flight keeps its descriptor until it finishes. The cap is
// therefore exceeded by at most the number of I/O calls in flight.
class SegmentFdCache {
 public:
  using Handle = std::shared_ptr<const UniqueFd>;

  explicit SegmentFdCache(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  SegmentFdCache(const SegmentFdCache&) = delete;
  SegmentFdCache& operator=(const SegmentFdCache&) = delete;

  // The open file of `key`, opening `path` read-write on a miss.
  Status Get(const SegmentKey& key, const std::string& path, Handle* out);
  // Get's hit alone: false on a miss (then call Get with the path).
  bool Find(const SegmentKey& key, Handle* out);
  // Like Get, but a miss opens a descriptor that is not cached: for the
  // background syncer, which must not re-cache files being deleted.
  Status Peek(const SegmentKey& key, const std::string& path, Handle* out);
  // Adopts the descriptor of a file just created.
  Handle Put(const SegmentKey& key, UniqueFd fd);
  // Drops `key` (its file is being deleted or truncated away).
  void Forget(const SegmentKey& key);

  size_t size() const;
  size_t capacity() const { return capacity_; }

 private:
  struct Entry {
    SegmentKey key;
    Handle fd;
  };
  // Inserts under mu_; returns the handle now cached for `key` and moves
  // evicted handles to `evicted` so they are closed outside the lock.
  Handle InsertLocked(const SegmentKey& key, Handle fd, std::vector<Handle>* evicted);

  const size_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // guarded by mu_; front = most recently used
  std::unordered_map<SegmentKey, std::list<Entry>::iterator, SegmentKeyHash> index_;  // mu_
};

// Checksums (STORAGE_FORMAT.md, "Checksums"): a stream's positions are cut
// into blocks of this many, block b holding [b * size, (b + 1) * size), and
// the store keeps the CRC32C of each block's bytes below the committed tail
// (a fork's first block starts at its base). 64 KiB: a catch-up read
// (up to a few MiB) covers whole blocks, so checking a block costs no extra
// read; one small stored value per 64 KiB (0.05% of the bytes); and the
// block a small append extends stays cheap to checksum incrementally.
inline constexpr uint64_t kChecksumBlockBytes = 64 << 10;

struct BlockChecksum {
  uint64_t block = 0;
  uint32_t crc = 0;
};

// Reads the stored checksums of blocks [first, last] of a stream, in block
// order (missing blocks are simply absent).
using ChecksumSource = std::function<Status(uint64_t stream_id, uint64_t first, uint64_t last,
                                            std::vector<std::pair<uint64_t, uint32_t>>* out)>;

// Inline streams (STORAGE_FORMAT.md, "Inline streams"): a new stream's
// first kInlineStreamBytes bytes are kept in the store's LMDB environment
// (in the stream's record), committed in the same transaction as the tail
// that covers them, instead of in a segment file. The first append of a
// stream then costs no mkdir, no file create and no directory fsync, and
// 100,000 small streams cost 100,000 LMDB values instead of 200,000 inodes.
// The append that would take a stream past this starts its first segment
// file, named by the position where the inline bytes end; inline bytes are
// never moved.
//
// 1 KiB, not more: the inline bytes stay in the stream's record for good,
// and every commit that raises the stream's tail rewrites that record. A
// record over LMDB's largest leaf node (about 2 KB with 4 KiB pages) goes
// to overflow pages, so a stream grown past 4 KiB of inline bytes cost two
// overflow pages (8 KiB) per commit that touched it; at 1 KiB a record
// stays in its leaf, a few to a page (64 streams: +16% durable appends, 13%
// less CPU per append; docs/large-reads-and-durable-appends.md).
inline constexpr uint64_t kInlineStreamBytes = 1024;
// Appends bytes [from, from + len) of stream `stream_id`'s committed inline
// value to `out`.
using InlineSource = std::function<Status(uint64_t stream_id, uint64_t from, size_t len, std::string* out)>;

struct SegmentFilesOptions {
  std::string segments_dir;  // data_dir/segments
  uint64_t segment_bytes = 64ull << 20;
  size_t max_open_files = 4096;
  // Remember every file and directory with unsynced changes, for
  // SyncUnsynced (the INTERVAL and OFF policies). With ALWAYS the commit
  // path syncs each log itself and nothing is tracked.
  bool track_unsynced = false;
  // When an erased stream's files and a trim's dropped segments may be
  // unlinked (STORAGE_FORMAT.md, "Commit protocol", step 4): only once the
  // LMDB commit that stops pointing at them is durable, or a power loss
  // brings the record back without its bytes.
  enum class Removal {
    kImmediate,    // ALWAYS: the commit is durable when it returns
    kAfterBarrier, // OFF: call `removal_barrier` (an environment sync) first
    kDeferred,     // INTERVAL: queue them; the store's next Flush removes them
  };
  Removal removal = Removal::kImmediate;
  std::function<Status()> removal_barrier;  // kAfterBarrier only
  // New logs keep up to this many bytes inline (kInlineStreamBytes; 0: never).
  uint64_t inline_stream_bytes = 0;
};

// What every log of a store shares: the segments directory, the roll size,
// the descriptor cache and the set of unsynced files. Logs hold it by
// shared_ptr, so a log outliving its store stays safe.
class SegmentFiles {
 public:
  explicit SegmentFiles(SegmentFilesOptions options)
      : options_(std::move(options)), fds_(options_.max_open_files) {}
  SegmentFiles(const SegmentFiles&) = delete;
  SegmentFiles& operator=(const SegmentFiles&) = delete;

  const std::string& dir() const { return options_.segments_dir; }
  uint64_t segment_bytes() const { return options_.segment_bytes; }
  uint64_t inline_stream_bytes() const { return options_.inline_stream_bytes; }
  SegmentFdCache& fds() { return fds_; }

  std::string StreamDir(uint64_t stream_id) const;
  std::string FilePath(const SegmentKey& key) const;

  bool tracks_unsynced() const { return options_.track_unsynced; }
  void NoteUnsyncedFile(const SegmentKey& key);
  void NoteUnsyncedStreamDir(uint64_t stream_id);
  void NoteUnsyncedSegmentsDir();
  size_t unsynced_files() const;
  // Makes every noted change durable: fdatasync of each file, fsync of each
  // directory. Above kSyncfsThreshold files one syncfs(2) replaces the
  // per-file calls. Files deleted in the meantime are skipped.
  Status SyncUnsynced();
  static constexpr size_t kSyncfsThreshold = 256;

  // Where reads find the stored checksums (the store's LMDB environment);
  // unset, reads check nothing. Reset before the source goes away.
  void SetChecksumSource(ChecksumSource source);
  // NotSupported when no source is set.
  Status LoadChecksums(uint64_t stream_id, uint64_t first, uint64_t last,
                       std::vector<std::pair<uint64_t, uint32_t>>* out) const;
  // Where reads find committed inline bytes (the store); reset before the
  // source goes away. Unset, inline bytes past the pending ones fail.
  void SetInlineSource(InlineSource source);
  Status LoadInline(uint64_t stream_id, uint64_t from, size_t len, std::string* out) const;
  // Synced checkpoints (STORAGE_FORMAT.md, "Synced checkpoints"): each
  // commit under INTERVAL/OFF notes, per stream, its committed tail and the
  // checksum of that tail's block prefix; the periodic sync takes them all
  // (before syncing the segments, so every byte they cover is synced by
  // it) and stores them before it syncs the environment.
  struct TailChecksum {
    uint64_t tail = 0;
    uint32_t crc = 0;  // of [start of tail's block, tail)
  };
  void NoteCommittedTail(uint64_t stream_id, const TailChecksum& at);
  std::unordered_map<uint64_t, TailChecksum> TakeCommittedTails();
  // Reads refused because bytes did not match their checksum.
  void NoteChecksumFailure() { checksum_failures_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t checksum_failures() const { return checksum_failures_.load(std::memory_order_relaxed); }

  // Deletes a stream's directory and every file in it, then syncs segments/
  // so the deletion is durable. Used after an erase commits, and for
  // orphans found by Recover.
  Status RemoveStream(uint64_t stream_id);

  // What the store calls once a commit erased a stream, and what
  // SegmentLog::Trim calls for a file wholly below the committed start:
  // removes it now, after the barrier, or queues it, per `removal`.
  Status RemoveCommittedStream(uint64_t stream_id);
  Status RemoveCommittedFile(const SegmentKey& key);
  // A queued removal: a stream's directory, or one of its files.
  struct PendingRemoval {
    uint64_t stream_id = 0;
    bool whole_stream = false;
    uint64_t base = 0;  // the file's, unless whole_stream
  };
  // The removals queued so far (kDeferred); the caller makes every commit
  // before this call durable, then passes them to RemovePending.
  std::vector<PendingRemoval> TakePendingRemovals();
  Status RemovePending(const std::vector<PendingRemoval>& removals);
  size_t pending_removals() const;

 private:
  const SegmentFilesOptions options_;
  SegmentFdCache fds_;

  mutable std::mutex unsynced_mu_;
  std::unordered_set<SegmentKey, SegmentKeyHash> unsynced_files_;  // unsynced_mu_
  std::unordered_set<uint64_t> unsynced_stream_dirs_;              // unsynced_mu_
  bool unsynced_segments_dir_ = false;                             // unsynced_mu_

  void ForgetStreamFds(uint64_t stream_id);
  mutable std::mutex removal_mu_;
  std::vector<PendingRemoval> pending_removals_;  // removal_mu_

  std::mutex committed_tails_mu_;
  std::unordered_map<uint64_t, TailChecksum> committed_tails_;  // committed_tails_mu_
  mutable std::shared_mutex checksum_mu_;
  ChecksumSource checksum_source_;  // guarded by checksum_mu_
  InlineSource inline_source_;      // guarded by checksum_mu_
  std::atomic<uint64_t> checksum_failures_{0};
};

// What SegmentLog::CheckChecksums found at recovery.
struct ChecksumRecovery {
  // Bytes [start, good_tail) match their checksums (or cannot be checked);
  // from good_tail on (a block start) they do not: the tail goes there.
  uint64_t good_tail = 0;
  // Checksums to store: blocks whose stored value no longer applies (the
  // tail was lowered inside them) or was missing.
  std::vector<BlockChecksum> puts;
  // The checksum of the block holding the tail, if it can be extended.
  bool last_known = false;
  uint32_t last_crc = 0;
  // Blocks checked (or not checkable): reads need not check them again.
  std::vector<uint64_t> verified;
};

// The stream's synced checkpoint, if the store has one (CheckChecksums).
struct SyncedTail {
  bool present = false;
  uint64_t tail = 0;
  uint32_t crc = 0;  // of [start of tail's block, tail)
};

// One stream's own bytes, [base, tail), in segment files named by their
// first position. The active (last) file grows until it holds
// segment_bytes, then the next append starts `<tail>.seg`; an append may
// span files.
//
// Thread safety (StreamLog's contract): one appender, any number of
// readers, and Sync from any thread (the commit path or the INTERVAL
// syncer). The file table is guarded by a shared_mutex that Append takes
// exclusively only to add or drop a file; reads hold it shared only to find
// their file, never across I/O, and never wait for an fsync.
class SegmentLog final : public StreamLog {
 public:
  // A new, empty log; its directory is made on the first append.
  SegmentLog(std::shared_ptr<SegmentFiles> files, uint64_t stream_id, uint64_t base);
  SegmentLog(const SegmentLog&) = delete;
  SegmentLog& operator=(const SegmentLog&) = delete;

  // Opens a stream's existing files and cuts them to `*tail` (its recorded
  // tail): the file holding the tail is truncated, files starting at or past
  // it are deleted. `start` is the recorded first retained position (base
  // unless retention trimmed the log): files wholly below it are deleted (a
  // crash came between the trim's commit and its unlinks). If bytes in
  // [start, tail) are missing (a missing or short file), a warning goes to
  // stderr and `*tail` is lowered to the end of the contiguous bytes from
  // `start`; unusable files after the gap are renamed to `<name>.lost` for
  // inspection. Every change but the deletion of trimmed files is synced
  // before return.
  // `inline_bytes` is the size of the stream's committed inline value:
  // positions [base, base + inline_bytes) are there, not in files (a file
  // below that end is deleted), and a log whose bytes all are, with no
  // file, keeps appending inline.
  static Status Recover(std::shared_ptr<SegmentFiles> files, uint64_t stream_id, uint64_t base,
                        uint64_t start, uint64_t* tail, std::unique_ptr<SegmentLog>* out,
                        uint64_t inline_bytes = 0);

  uint64_t base() const override { return base_; }
  uint64_t start() const override { return start_.load(std::memory_order_acquire); }
  uint64_t tail() const override { return tail_.load(std::memory_order_acquire); }
  // Checks every block of [from, from + len) not yet checked since open
  // against its stored checksum (blocks appended by this process count as
  // checked); a mismatch fails the read with Corruption naming the stream
  // and range, is logged and counted, and serves nothing.
  Status Read(uint64_t from, size_t len, std::string* out) const override;
  // The bytes as they are on disk, unchecked (recovery, verification).
  Status ReadUnchecked(uint64_t from, size_t len, std::string* out) const;
  // sendfile path (segment_open_files.cc): one read-only descriptor per
  // file holding [from, from + len), opened by name. NotSupported unless
  // every block of the range has been checked against its checksum (a
  // Read does that), so no unchecked byte is ever sent; Gone if retention
  // dropped the range meanwhile.
  Status OpenFiles(uint64_t from, size_t len, std::vector<FileRange>* out) const override;
#if defined(_WIN32)
  bool zero_copy() const override { return false; }
#else
  bool zero_copy() const override { return true; }
#endif

  // ---- Checksums (STORAGE_FORMAT.md, "Checksums") ----
  // The checksums a commit recording tail `to` must store: for each block
  // that appends below `to` changed since the last ChecksumsCommitted, its
  // CRC32C as of `to`. Computed as the bytes were appended, never re-read.
  void PendingChecksums(uint64_t to, std::vector<BlockChecksum>* out) const;
  // The commit recording `to` succeeded.
  void ChecksumsCommitted(uint64_t to);
  // Forgets the checksums of bytes past `to`, the last committed tail, and
  // makes the next append extend the checksum as of `to`: for a log whose
  // uncommitted bytes are dropped again (a commit failed; the caller holds
  // append_mu_ and cuts the files). A no-op when nothing is past `to`.
  void RewindChecksumsLocked(uint64_t to);
  // Recovery, on a log just opened by Recover with the stream's recorded
  // tail `recorded_tail`: checks the block holding the tail, the blocks
  // before it back to the first one that matches (a power loss leaves a
  // damaged suffix), and the blocks holding `replayed` ranges.
  // With a synced checkpoint, a block at or past the checkpoint's that
  // does not verify is never kept in part: the tail goes to the checkpoint
  // if its prefix checksum matches (those bytes were durable), otherwise to
  // the block's start, and the search goes on backwards.
  Status CheckChecksums(uint64_t recorded_tail,
                        const std::vector<std::pair<uint64_t, uint64_t>>& replayed,
                        ChecksumRecovery* out, const SyncedTail& synced = SyncedTail{}) const;
  // Upgrade: the checksum of every block, read from the files once.
  Status ComputeChecksums(ChecksumRecovery* out) const;
  // Installs what recovery learnt: the last block's running checksum and
  // the blocks already checked (the others are checked on first read).
  void InitChecksums(const ChecksumRecovery& found);
  Status Append(std::string_view bytes, int64_t now_ms) override;
  // fdatasync of every file that got bytes since the last Sync, and fsync
  // of the directories that got new names. Once an fsync fails the log
  // stays failed: the kernel may have dropped the dirty pages, so a later
  // "successful" fsync would prove nothing.
  Status Sync() override;
  // Truncates the file holding `to` and deletes the files past it (best
  // effort: Recover cuts past the recorded tail anyway); what was synced
  // or put in the WAL past `to` no longer counts. Fails only if the file
  // holding `to` cannot be truncated.
  Status Rewind(uint64_t to) override;
  // Write-ahead commit (LmdbStore, fsync always): instead of syncing the
  // file, the store puts the bytes a commit needs, [*from, to), into its
  // LMDB transaction. WalRange says which bytes those are (none when they
  // are durable already) and reads them; it returns false when the log must
  // be synced instead: a new file or directory name is not durable yet (a
  // WAL entry cannot bring a name back), or more than max_bytes are due.
  // After the transaction commits, WalCommitted(to) records the coverage.
  bool WalRange(uint64_t to, size_t max_bytes, uint64_t* from, std::string* bytes);
  void WalCommitted(uint64_t to);
  // Inline bytes a commit recording tail `to` must put in its transaction:
  // [*from, min(to, inline end)) (none once they are committed), where
  // *from is the end of the committed inline value (base + its size).
  void InlineRange(uint64_t to, uint64_t* from, std::string* bytes) const;
  // The transaction holding inline bytes up to `to` committed.
  void InlineCommitted(uint64_t to);
  // Where the inline bytes end and the segment files begin.
  uint64_t inline_end() const { return inline_end_.load(std::memory_order_acquire); }
  // Writes committed WAL entries back into a stream's files at startup,
  // before Recover: each entry's bytes within [start, tail) go to the file
  // holding their positions, in position order, and the touched files are
  // fdatasync'ed. Nothing is written past a gap (a missing file or a file
  // shorter than the entry's position): that would make a hole that reads
  // as NUL bytes. Bytes left out make Recover lower the tail. The ranges
  // written are added to `replayed` (if not null), for checksum checks.
  struct WalEntry {
    uint64_t position = 0;
    std::string bytes;
  };
  static Status ReplayWal(const std::shared_ptr<SegmentFiles>& files, uint64_t stream_id,
                          uint64_t start, uint64_t tail, const std::vector<WalEntry>& entries,
                          std::vector<std::pair<uint64_t, uint64_t>>* replayed = nullptr);
  // The same guarantee through one syncfs(2) for a whole batch of logs:
  // BeginFilesystemSync (before the syncfs) returns the tail it will cover,
  // EndFilesystemSync records the outcome (a failure is sticky, as in Sync).
  Status BeginFilesystemSync(uint64_t* tail);
  void EndFilesystemSync(uint64_t tail, const Status& synced);
  size_t memory_bytes() const override;
  std::vector<LogSegment> Segments() const override;
  size_t segment_count() const override;
  // Deletes the files wholly below `new_start` (after the commit of the
  // new start is durable: SegmentFiles::RemoveCommittedFile). Their unlinks
  // are not synced: if a power loss brings one back, Recover deletes it
  // again.
  Status Trim(uint64_t new_start) override;

  uint64_t stream_id() const { return stream_id_; }
  // True once, for a new log whose first commit must store the synced
  // checkpoint (base, 0); RearmBaseCheckpoint if that commit failed.
  bool TakeBaseCheckpoint() { return base_checkpoint_due_.exchange(false); }
  void RearmBaseCheckpoint() { base_checkpoint_due_.store(true); }

 private:
  // Where position `pos` lives: the file's base and the end of its range
  // (the next file's base, or UINT64_MAX for the active file).
  bool Locate(uint64_t pos, uint64_t* seg_base, uint64_t* seg_end) const;
  Status StartSegment(uint64_t base);
  // The first position of block `b` that belongs to this log.
  uint64_t BlockStart(uint64_t b) const { return std::max(b * kChecksumBlockBytes, base_); }
  Status CheckRead(uint64_t from, size_t len, const char* data) const;
  bool Verified(uint64_t block) const;
  void MarkVerified(uint64_t block) const;
  void RollBack(uint64_t old_tail, size_t old_count);
  SegmentKey Key(uint64_t seg_base) const { return SegmentKey{stream_id_, seg_base}; }

  // Bytes [from, from + len) of the inline region into dst.
  Status ReadInline(uint64_t from, size_t len, char* dst) const;

  const std::shared_ptr<SegmentFiles> files_;
  const uint64_t stream_id_;
  const uint64_t base_;
  std::atomic<uint64_t> start_;  // first readable position (Trim raises it)
  std::atomic<uint64_t> tail_;

  // Bases of the files, ascending; bases_[0] <= start_ once there is one.
  // Written only by the appender and Trim (both under append_mu_), under
  // the exclusive lock.
  mutable std::shared_mutex table_mu_;
  std::vector<uint64_t> bases_;  // guarded by table_mu_
  // When each file's newest byte was written, parallel to bases_; the
  // active (last) file's entry is stale: active_write_ms_ holds its time.
  std::vector<int64_t> write_ms_;  // guarded by table_mu_
  std::atomic<int64_t> active_write_ms_{0};
  int64_t inline_write_ms_ = 0;  // guarded by table_mu_: the inline bytes' newest, once sealed

  // Serialises appenders (the engine promises one; this makes a second one
  // safe rather than corrupting).
  std::mutex append_mu_;
  bool dir_exists_ = false;  // guarded by append_mu_

  // Inline bytes (kInlineStreamBytes): positions [base_, inline_end_) are in
  // the store's `inline` database up to inline_committed_, and the rest in
  // inline_pending_ until their commit. inline_end_ only moves while the
  // log has no file (and on Rewind); files start at it.
  std::atomic<uint64_t> inline_end_;
  bool inline_open_ = false;  // guarded by append_mu_: appends may go inline
  mutable std::mutex inline_mu_;
  uint64_t inline_committed_;    // guarded by inline_mu_
  std::string inline_pending_;   // guarded by inline_mu_: [inline_committed_, inline_end_)

  // New names not yet made durable by a directory fsync. Set by the
  // appender before it publishes the tail that depends on them.
  std::atomic<bool> stream_dir_unsynced_{false};    // our directory, in segments/
  std::atomic<bool> segment_name_unsynced_{false};  // a new file, in our directory

  // The bytes of the latest appends to the files, [wal_tail_from_,
  // wal_tail_from_ + wal_tail_.size()): what the files hold there, kept so
  // that WalRange copies them instead of reading back what the request
  // path just wrote. Kept only once WalRange was called (fsync always with
  // a WAL), dropped as they become durable or covered (Sync, WalCommitted,
  // EndFilesystemSync) and at kWalTailMaxBytes; WalRange reads the files
  // for any range it does not hold. Lock order: append_mu_ or sync_mu_,
  // then wal_tail_mu_.
  void KeepWalTail(uint64_t pos, std::string_view bytes);
  void DropWalTailBelow(uint64_t pos);
  std::atomic<bool> wal_tail_wanted_{false};
  mutable std::mutex wal_tail_mu_;
  uint64_t wal_tail_from_ = 0;  // guarded by wal_tail_mu_
  std::string wal_tail_;        // guarded by wal_tail_mu_

  std::mutex sync_mu_;
  uint64_t synced_;     // guarded by sync_mu_: bytes below are durable
  uint64_t wal_covered_ = 0;  // guarded by sync_mu_: bytes below are durable or in the WAL
  Status sync_error_;   // guarded by sync_mu_: sticky

  // The running checksum of the block holding the tail (guarded by
  // append_mu_); crc_known_ is false when recovery could not establish it
  // (that block then goes without a checksum).
  uint64_t crc_block_;
  uint32_t crc_value_ = 0;
  bool crc_known_ = true;
  // Per append and block touched: the block's checksum as of `end`. Taken
  // by the commit recording a tail >= end.
  struct PendingChecksum {
    uint64_t end = 0;
    uint64_t block = 0;
    uint32_t crc = 0;
  };
  mutable std::mutex crc_mu_;
  std::vector<PendingChecksum> pending_crcs_;  // guarded by crc_mu_
  // The running checksum as of the last committed tail (crc_mu_), what
  // RewindChecksumsLocked goes back to.
  uint64_t committed_crc_block_ = 0;
  uint32_t committed_crc_value_ = 0;
  uint64_t committed_crc_end_ = 0;  // the tail committed_crc_value_ is as of
  // A new log under INTERVAL/OFF: its first commit stores the checkpoint
  // (base, 0), so a stream never synced yet is never kept in part.
  std::atomic<bool> base_checkpoint_due_{false};
  bool committed_crc_known_ = true;
  // Blocks [verify_first_, verify_first_ + verify_count_) existed at open
  // and are checked on their first read (a set bit: checked). Fixed by
  // InitChecksums before the log is shared.
  uint64_t verify_first_ = 0;
  size_t verify_count_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> verified_;
};

// `<base>.seg` for a segment's first position.
std::string SegmentFileName(uint64_t base);
// Parses `<16+ digits>.seg`.
bool ParseSegmentFileName(std::string_view name, uint64_t* base);

}  // namespace ds
