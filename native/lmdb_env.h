// LMDB plumbing shared by LmdbStore and the backup: RAII for environments,
// transactions and cursors, and the store's schema (three named databases,
// see STORAGE_FORMAT.md) as operations inside a transaction.
//
// Schema operations return LMDB's int codes rather than Status so the
// caller can tell MDB_MAP_FULL (grow the map, retry) from real failures.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"
#include "store.h"

namespace ds::lmdb {

struct EnvDeleter {
  void operator()(MDB_env* env) const { mdb_env_close(env); }
};
// Closing an environment requires that none of its transactions is open;
// every Txn lives inside one call, so that holds.
using Env = std::unique_ptr<MDB_env, EnvDeleter>;

// A Status for LMDB code `rc` (ENOSPC -> NoSpace, MDB_CORRUPTED and
// friends -> Corruption, MDB_BAD_VALSIZE -> InvalidArgument, else IoError).
Status ToStatus(std::string_view what, int rc);

// A transaction that aborts unless committed. Never outlives the call that
// began it (the environment is opened MDB_NOTLS, and the goroutine behind
// the call may move between OS threads, but one C++ call stays on one).
class Txn {
 public:
  Txn() = default;
  ~Txn() { Abort(); }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  int Begin(MDB_env* env, unsigned flags) {
    Abort();
    return mdb_txn_begin(env, nullptr, flags, &txn_);
  }
  // LMDB frees the transaction whether or not the commit succeeds.
  int Commit() {
    MDB_txn* t = txn_;
    txn_ = nullptr;
    return mdb_txn_commit(t);
  }
  void Abort() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    txn_ = nullptr;
  }
  MDB_txn* get() const { return txn_; }

 private:
  MDB_txn* txn_ = nullptr;
};

// A cursor closed on destruction. Declare it after its Txn (so it is
// destroyed first), and let it go out of scope before committing: LMDB
// frees a write transaction's cursors itself at commit.
class Cursor {
 public:
  Cursor() = default;
  ~Cursor() {
    if (cursor_ != nullptr) mdb_cursor_close(cursor_);
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;

  int Open(MDB_txn* txn, MDB_dbi dbi) { return mdb_cursor_open(txn, dbi, &cursor_); }
  MDB_cursor* get() const { return cursor_; }

 private:
  MDB_cursor* cursor_ = nullptr;
};

inline MDB_val Val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline std::string_view View(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// The named databases. Handles stay valid for the environment's lifetime.
struct Dbs {
  MDB_dbi streams = 0;
  MDB_dbi producers = 0;
  MDB_dbi meta = 0;
  MDB_dbi wal = 0;  // valid when has_wal
  bool has_wal = false;
  MDB_dbi crc = 0;  // valid when has_crc (format 4)
  bool has_crc = false;
  MDB_dbi synced = 0;  // valid when has_synced (added within format 4)
  bool has_synced = false;
  // Subscriptions (added within format 4; see STORAGE_FORMAT.md): valid
  // when has_subscriptions.
  MDB_dbi subscriptions = 0;
  MDB_dbi subscription_links = 0;
  bool has_subscriptions = false;
  // Format 5's `inline` database, valid when has_inline: only a format 5
  // directory not yet upgraded has it (format 6 keeps inline bytes in the
  // stream records; OpenDbs never creates it).
  MDB_dbi inline_bytes = 0;
  bool has_inline = false;
};
inline constexpr unsigned kMaxDbs = 16;  // nine, and room for more
inline constexpr const char* kStreamsDb = "streams";
inline constexpr const char* kProducersDb = "producers";
inline constexpr const char* kMetaDb = "meta";
inline constexpr const char* kWalDb = "wal";
inline constexpr const char* kCrcDb = "crc";
inline constexpr const char* kSyncedDb = "synced";
inline constexpr const char* kSubscriptionsDb = "subscriptions";
inline constexpr const char* kSubscriptionLinksDb = "subscription_links";
inline constexpr const char* kInlineDb = "inline";
inline constexpr std::string_view kFormatVersionKey = "format_version";
inline constexpr std::string_view kNextStreamIdKey = "next_stream_id";
// The layout version this code writes (STORAGE_FORMAT.md). Version 2 added
// the `wal` database, version 3 led its keys with the commit sequence,
// version 4 added the `crc` database (checksums of segment bytes). Older
// environments are upgraded on open (version 1 has no wal entries to lose;
// version 2's are read as they are and replayed; before version 4 the
// checksums are computed from the segments once), and an older server
// refuses a newer version. Version 5 added the `inline` database (a small
// stream's bytes kept in LMDB until it grows): a version 4 directory has
// none, so it is upgraded by creating the database and writing the version
// (kFormatVersion) in one transaction; a version 4 server must refuse a
// version 5 directory, whose inline bytes it would not see. Version 6 moved
// the inline bytes into the stream's own record (version 3 value), so an
// append to a small stream dirties one leaf page instead of two; a version
// 5 directory is upgraded in one transaction (every value moved into its
// record, the `inline` database deleted, the version written), a version 4
// one by writing the version.
inline constexpr uint64_t kFormatVersion = 6;
// The format that had the separate `inline` database.
inline constexpr uint64_t kFormatWithInlineDb = 5;
// The first version with checksums: the layouts from it up to
// kFormatVersion differ only by databases OpenDbs creates.
inline constexpr uint64_t kFirstFormatWithChecksums = 4;
// The version whose layout the checksum upgrade starts from: an older
// directory is written as this until its checksums are in place.
inline constexpr uint64_t kLastFormatWithoutChecksums = 3;
inline constexpr uint64_t kOldestReadableFormatVersion = 1;

// Opens the databases; with `create`, in a write transaction, makes them.
// Without it, a missing `wal` (format version 1) or `crc` database (before
// version 4) is no error.
int OpenDbs(MDB_txn* txn, bool create, Dbs* dbs);

// `wal` database key (format 3): the commit's sequence number, the stream
// id and the position of the entry's first byte, each 8 bytes big-endian.
// The sequence leads so that a commit's entries, whatever streams they come
// from, land in the rightmost pages of the tree: a commit across 64 streams
// dirties a page or two there instead of one leaf per stream, and every
// dirty page is written and flushed before the commit is acknowledged.
std::string WalKey(uint64_t commit_seq, uint64_t stream_id, uint64_t position);
// Reads a format 3 key, or a format 2 one (stream id ‖ position, 16 bytes;
// *commit_seq is then 0).
bool ParseWalKey(std::string_view key, uint64_t* commit_seq, uint64_t* stream_id, uint64_t* position);

// `crc` database key: stream id ‖ block index, 8 bytes big-endian each, so
// a stream's checksums are one key range in block order. The value is the
// CRC32C (u32 little-endian) of the block's bytes below the stream's
// committed tail (see segment_log.h, kChecksumBlockBytes).
std::string CrcKey(uint64_t stream_id, uint64_t block);
int PutCrc(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, uint64_t block, uint32_t crc);
// The stored checksums of blocks [first, last] of a stream that has them,
// in block order.
int GetCrcs(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, uint64_t first, uint64_t last,
            std::vector<std::pair<uint64_t, uint32_t>>* out);
// Deletes a stream's checksums of blocks [first, last).
int DeleteCrcs(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, uint64_t first, uint64_t last);

// `synced` database (STORAGE_FORMAT.md, "Synced checkpoints"): key stream
// id (8 bytes big-endian), value the tail as of the last completed sync
// (u64 LE) ‖ CRC32C of the bytes [start of that tail's block, tail) (u32
// LE). Durable exactly when the bytes it covers are: only the periodic
// sync writes it, after syncing the segments and before syncing the
// environment. A format 4 directory written by an older server lacks the
// database; readers then behave as without checkpoints.
struct SyncedCheckpoint {
  uint64_t tail = 0;
  uint32_t crc = 0;
};
int PutSynced(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, const SyncedCheckpoint& cp);
int DeleteSynced(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id);
// Every checkpoint, by stream id. A value of the wrong size is MDB_CORRUPTED.
int ReadSynced(MDB_txn* txn, const Dbs& dbs, std::vector<std::pair<uint64_t, SyncedCheckpoint>>* out);

// Inline bytes (STORAGE_FORMAT.md, "Inline streams"): a stream's own bytes
// [base, base + size) exactly as a segment would hold them, kept at the end
// of its record's value (format 6; record version 3), so they are written
// with the tail that covers them and dirty no other page.
// Appends `bytes` to the stream's inline bytes, which must number
// `expected_len` now (anything else is MDB_CORRUPTED: a commit never skips
// bytes). No record (erased in this transaction): nothing is written.
int AppendInline(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, uint64_t expected_len,
                 std::string_view bytes);
// Cuts the stream's inline bytes to `len` (none at 0); a no-op if they are
// no longer.
int TruncateInline(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, uint64_t len);
// The stream's inline bytes (empty if none), from its record, or from format
// 5's database while a directory still has it. The view lives as long as
// `txn` and no write in it.
int GetInline(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, std::string_view* out);
// The number of inline bytes of every stream that has some, by stream id.
int ReadInlineSizes(MDB_txn* txn, const Dbs& dbs, std::vector<std::pair<uint64_t, uint64_t>>* out);
// The format 5 -> 6 upgrade: every value of the `inline` database goes into
// its stream's record, then the database is deleted (dbs->has_inline
// false). *moved counts the streams.
int MoveInlineIntoRecords(MDB_txn* txn, Dbs* dbs, uint64_t* moved);
int GetU64(MDB_txn* txn, MDB_dbi dbi, std::string_view key, uint64_t* value, bool* found);
int PutU64(MDB_txn* txn, MDB_dbi dbi, std::string_view key, uint64_t value);

// Bytes a commit adds to a stream's inline bytes with its record.
struct InlineAppend {
  uint64_t expected_len = 0;  // the stored inline bytes' size now
  std::string_view bytes;
};
// Inserts or replaces the record, keeping its stored inline bytes, and adds
// `append`'s (MDB_CORRUPTED if the stored ones are not expected_len long).
int PutStream(MDB_txn* txn, const Dbs& dbs, const StreamRecord& record, const InlineAppend* append = nullptr);
// Inserts or replaces one producer's state (bucketed for long ids).
int PutProducer(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, const ProducerRecord& producer);
// Deletes a stream's record (with its inline bytes), all its producers and
// its checksums. A missing record is fine.
int EraseStream(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id);

// Every stream record with its producers, in id order (log left null).
// Producer keys whose stream has no record are returned in `orphans`.
Status ReadStreams(MDB_txn* txn, const Dbs& dbs, std::vector<RecoveredStream>* streams,
                   std::vector<std::string>* orphans);

// One stream's record and producers; *found is false if it has no record.
Status ReadStream(MDB_txn* txn, const Dbs& dbs, uint64_t stream_id, bool* found,
                  StreamRecord* record, std::vector<ProducerRecord>* producers);

}  // namespace ds::lmdb
