// Never serving bytes that were not durably written (issue 19, items 1
// and 2): recovery against truncated and damaged segments with write-ahead
// entries left behind, and the CRC32C checksums over segment bytes.
// Hermetic: each test works in its own mkdtemp directory; no sleeps.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "crc32c.h"
#include "durable_streams.h"
#include "file_util.h"
#include "lmdb_env.h"
#include "lmdb_store.h"
#include "segment_log.h"
#include "temp_dir.h"

namespace ds {
namespace {

using testing::TempDir;

std::string Bytes(uint64_t id, uint64_t from, uint64_t to) {
  std::string s;
  for (uint64_t p = from; p < to; ++p) s.push_back(static_cast<char>('a' + (p * 7 + id * 3 + p / 11) % 26));
  return s;
}

class IntegrityTest : public ::testing::Test {
 protected:
  LmdbStoreOptions Options() const {
    LmdbStoreOptions o;
    o.data_dir = JoinPath(tmp_.path(), "data");
    o.segment_bytes = 1 << 20;
    o.initial_map_bytes = 1 << 20;
    // No checkpoint in a test's lifetime: the wal keeps every entry, as a
    // clean SIGTERM between checkpoints leaves it.
    o.wal_checkpoint_bytes = 1ull << 40;
    o.wal_checkpoint_interval_ms = 3600 * 1000;
    return o;
  }

  std::unique_ptr<LmdbStore> Open(const LmdbStoreOptions& o) {
    std::unique_ptr<LmdbStore> store;
    Status s = LmdbStore::Open(o, &store);
    EXPECT_TRUE(s.ok()) << s.message();
    return store;
  }

  std::vector<RecoveredStream> Recover(LmdbStore* store) {
    std::vector<RecoveredStream> streams;
    uint64_t next = 0;
    Status s = store->Recover(&streams, &next);
    EXPECT_TRUE(s.ok()) << s.message();
    return streams;
  }

  StreamRecord Record(uint64_t id) {
    StreamRecord r;
    r.id = id;
    r.path = "/v1/stream/s" + std::to_string(id);
    r.content_type = "application/octet-stream";
    return r;
  }

  // Creates stream `id` and commits its bytes [0, to) in appends of
  // `step` bytes (after the first, each small enough for the wal).
  void WriteStream(LmdbStore* store, uint64_t id, uint64_t to, uint64_t step,
                   std::unique_ptr<StreamLog>* keep = nullptr) {
    std::unique_ptr<StreamLog> log;
    ASSERT_TRUE(store->CreateLog(id, 0, &log).ok());
    StreamRecord r = Record(id);
    for (uint64_t from = 0; from < to; from += step) {
      ASSERT_TRUE(log->Append(Bytes(id, from, std::min(to, from + step)), 0).ok());
      r.tail = log->tail();
      Status s = store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, r, {}, log.get()}});
      ASSERT_TRUE(s.ok()) << s.message();
    }
    if (keep != nullptr) *keep = std::move(log);
  }

  std::string SegmentPath(uint64_t id, uint64_t base) const {
    return JoinPath(JoinPath(JoinPath(Options().data_dir, "segments"), ZeroPadded(id)),
                    SegmentFileName(base));
  }

  void CutFile(const std::string& path, uint64_t size) {
    UniqueFd fd;
    ASSERT_TRUE(OpenFile(path, O_RDWR, 0, &fd).ok());
    ASSERT_TRUE(Truncate(fd.get(), size, path).ok());
  }

  void Overwrite(const std::string& path, uint64_t offset, const std::string& bytes) {
    UniqueFd fd;
    ASSERT_TRUE(OpenFile(path, O_RDWR, 0, &fd).ok());
    ASSERT_TRUE(WriteAt(fd.get(), bytes, offset, path).ok());
  }

  // Runs `body` in a transaction on the closed store's environment.
  void InEnvironment(bool read_only, const std::function<void(MDB_txn*, const lmdb::Dbs&)>& body) {
    MDB_env* raw = nullptr;
    ASSERT_EQ(mdb_env_create(&raw), 0);
    lmdb::Env env(raw);
    ASSERT_EQ(mdb_env_set_maxdbs(raw, lmdb::kMaxDbs), 0);
    const std::string dir = JoinPath(Options().data_dir, "streams.db");
    ASSERT_EQ(mdb_env_open(raw, dir.c_str(), read_only ? MDB_RDONLY : 0, 0644), 0);
    lmdb::Txn txn;
    ASSERT_EQ(txn.Begin(raw, read_only ? MDB_RDONLY : 0), 0);
    lmdb::Dbs dbs;
    ASSERT_EQ(lmdb::OpenDbs(txn.get(), false, &dbs), 0);
    body(txn.get(), dbs);
    if (!read_only) ASSERT_EQ(txn.Commit(), 0);
  }

  std::vector<std::pair<uint64_t, uint32_t>> StoredChecksums(uint64_t id, uint64_t* format = nullptr) {
    std::vector<std::pair<uint64_t, uint32_t>> out;
    InEnvironment(true, [&](MDB_txn* txn, const lmdb::Dbs& dbs) {
      EXPECT_EQ(lmdb::GetCrcs(txn, dbs, id, 0, UINT64_MAX, &out), 0);
      bool found = false;
      if (format != nullptr) EXPECT_EQ(lmdb::GetU64(txn, dbs.meta, lmdb::kFormatVersionKey, format, &found), 0);
    });
    return out;
  }

  // The checksums stream `id`'s bytes [0, tail) must have.
  std::vector<std::pair<uint64_t, uint32_t>> ExpectedChecksums(uint64_t id, uint64_t tail) {
    std::vector<std::pair<uint64_t, uint32_t>> out;
    for (uint64_t b = 0; b * kChecksumBlockBytes < tail; ++b) {
      out.emplace_back(b, crc32c::Value(Bytes(id, b * kChecksumBlockBytes,
                                              std::min(tail, (b + 1) * kChecksumBlockBytes))));
    }
    return out;
  }

  TempDir tmp_;
};

// The bug of issue 19: a segment truncated to nothing (damage, or a power
// loss under fsync interval/off) with the wal still holding the last
// commits' bytes. Replay used to write them back at their positions, which
// recreated the file as a sparse one whose hole then read as NUL bytes.
TEST_F(IntegrityTest, ATruncatedSegmentWithWalEntriesIsNeverServedAsNulBytes) {
  const LmdbStoreOptions o = Options();
  {
    auto store = Open(o);
    Recover(store.get());
    WriteStream(store.get(), 1, 130000, 5000);
    WriteStream(store.get(), 2, 3000, 1000);
  }
  CutFile(SegmentPath(1, 0), 0);
  ::testing::internal::CaptureStderr();
  auto store = Open(o);
  auto streams = Recover(store.get());
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(streams.size(), 2u);
  // Nothing of stream 1 is left to serve: its tail is lowered, with a
  // warning that names the stream and the range lost.
  EXPECT_EQ(streams[0].record.tail, 0u);
  EXPECT_EQ(streams[0].log->tail(), 0u);
  EXPECT_NE(log.find("stream 1 "), std::string::npos) << log;
  EXPECT_NE(log.find("[0, 130000)"), std::string::npos) << log;
  // The other stream is whole.
  std::string out;
  ASSERT_TRUE(streams[1].log->Read(0, 3000, &out).ok());
  EXPECT_TRUE(out == Bytes(2, 0, 3000));
}

// Truncated inside what the wal holds: the entries repair the file.
TEST_F(IntegrityTest, TheWalRepairsASegmentCutInsideItsEntries) {
  const LmdbStoreOptions o = Options();
  {
    auto store = Open(o);
    Recover(store.get());
    WriteStream(store.get(), 1, 130000, 5000);
  }
  CutFile(SegmentPath(1, 0), 52500);
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(streams[0].record.tail, 130000u);
  std::string out;
  ASSERT_TRUE(streams[0].log->Read(0, 130000, &out).ok());
  EXPECT_TRUE(out == Bytes(1, 0, 130000));
}

TEST_F(IntegrityTest, CommitsStoreTheChecksumOfEachBlockUpToTheTail) {
  const LmdbStoreOptions o = Options();
  {
    auto store = Open(o);
    Recover(store.get());
    // Odd-sized appends straddle block boundaries; the last block is
    // partial and its checksum grows with each commit.
    WriteStream(store.get(), 1, 150001, 7777);
  }
  EXPECT_EQ(StoredChecksums(1), ExpectedChecksums(1, 150001));
  // Appends after a restart extend the recovered block's checksum.
  {
    auto store = Open(o);
    auto streams = Recover(store.get());
    StreamRecord r = streams[0].record;
    ASSERT_TRUE(streams[0].log->Append(Bytes(1, 150001, 200000), 0).ok());
    r.tail = 200000;
    ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, r, {}, streams[0].log.get()}}).ok());
  }
  EXPECT_EQ(StoredChecksums(1), ExpectedChecksums(1, 200000));
}

// One flipped byte in a block below the tail region: recovery does not
// look there, the first read does, and refuses to serve it.
TEST_F(IntegrityTest, AFlippedByteIsNeverServedAndOtherStreamsKeepWorking) {
  LmdbStoreOptions o = Options();
  o.fsync = DS_FSYNC_INTERVAL;  // no wal entries to repair the block with
  {
    auto store = Open(o);
    Recover(store.get());
    WriteStream(store.get(), 1, 200000, 50000);
    WriteStream(store.get(), 2, 100000, 50000);
  }
  Overwrite(SegmentPath(1, 0), 70000, std::string(1, static_cast<char>(Bytes(1, 70000, 70001)[0] ^ 1)));
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 2u);
  EXPECT_EQ(streams[0].record.tail, 200000u);  // not the tail region: kept
  ::testing::internal::CaptureStderr();
  std::string out = "kept";
  Status s = streams[0].log->Read(60000, 20000, &out);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("bytes [65536, 131072) of stream 1"), std::string::npos) << s.message();
  EXPECT_TRUE(out == "kept");  // nothing of the read was handed out
  EXPECT_NE(log.find("bytes [65536, 131072) of stream 1"), std::string::npos) << log;
  EXPECT_EQ(store->checksum_failures(), 1u);
  // Still refused on the next read; the blocks around it serve.
  out.clear();
  EXPECT_EQ(streams[0].log->Read(65536, 10, &out).code(), Status::Code::kCorruption);
  out.clear();
  ASSERT_TRUE(streams[0].log->Read(0, 65536, &out).ok());
  EXPECT_TRUE(out == Bytes(1, 0, 65536));
  out.clear();
  ASSERT_TRUE(streams[0].log->Read(131072, 200000 - 131072, &out).ok());
  EXPECT_TRUE(out == Bytes(1, 131072, 200000));
  out.clear();
  ASSERT_TRUE(streams[1].log->Read(0, 100000, &out).ok());
  EXPECT_TRUE(out == Bytes(2, 0, 100000));
  EXPECT_EQ(store->checksum_failures(), 2u);
}

// A damaged block the wal replay wrote into but could not repair (the
// damage is outside the entry): that range is lost, what follows is kept.
TEST_F(IntegrityTest, ADamagedBlockTheWalCannotRepairIsRefusedAndTheRestKept) {
  const LmdbStoreOptions o = Options();
  {
    auto store = Open(o);
    Recover(store.get());
    WriteStream(store.get(), 1, 200000, 50000);  // the wal holds [50000, 200000)
  }
  Overwrite(SegmentPath(1, 0), 10, "#");
  ::testing::internal::CaptureStderr();
  auto store = Open(o);
  auto streams = Recover(store.get());
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("bytes [0, 65536) do not match"), std::string::npos) << log;
  EXPECT_EQ(streams[0].record.tail, 200000u);
  std::string out;
  EXPECT_EQ(streams[0].log->Read(0, 100, &out).code(), Status::Code::kCorruption);
  out.clear();
  ASSERT_TRUE(streams[0].log->Read(65536, 200000 - 65536, &out).ok());
  EXPECT_TRUE(out == Bytes(1, 65536, 200000));
}

// What ext4 can leave after a power loss: the file has its size but the
// last bytes read as zeros. The tail region's checksums catch it.
TEST_F(IntegrityTest, AZeroFilledTailIsCutAtRecovery) {
  LmdbStoreOptions o = Options();
  o.fsync = DS_FSYNC_INTERVAL;
  {
    auto store = Open(o);
    Recover(store.get());
    WriteStream(store.get(), 1, 200000, 50000);
  }
  Overwrite(SegmentPath(1, 0), 140000, std::string(60000, '\0'));
  ::testing::internal::CaptureStderr();
  {
    auto store = Open(o);
    auto streams = Recover(store.get());
    const std::string log = ::testing::internal::GetCapturedStderr();
    ASSERT_EQ(streams.size(), 1u);
    // Block 2 ([131072, 196608)) and block 3 hold zeros: the tail goes to
    // the start of the first bad block.
    EXPECT_EQ(streams[0].record.tail, 131072u);
    EXPECT_NE(log.find("stream 1 "), std::string::npos) << log;
    EXPECT_NE(log.find("bytes [131072, 200000)"), std::string::npos) << log;
    std::string out;
    ASSERT_TRUE(streams[0].log->Read(0, 131072, &out).ok());
    EXPECT_TRUE(out == Bytes(1, 0, 131072));
    // Appends continue from there, with fresh checksums.
    StreamRecord r = streams[0].record;
    ASSERT_TRUE(streams[0].log->Append(Bytes(1, 131072, 140000), 0).ok());
    r.tail = 140000;
    ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, r, {}, streams[0].log.get()}}).ok());
  }
  EXPECT_EQ(StoredChecksums(1), ExpectedChecksums(1, 140000));
  auto store = Open(o);
  auto streams = Recover(store.get());
  EXPECT_EQ(streams[0].record.tail, 140000u);
}

// A truncated file whose stored checksum covers bytes that are gone: the
// tail is lowered to the bytes present (as before checksums), and the
// block's checksum is recomputed from them so appends can go on.
TEST_F(IntegrityTest, AShortFileLowersTheTailAndRecomputesItsLastChecksum) {
  LmdbStoreOptions o = Options();
  o.fsync = DS_FSYNC_OFF;
  {
    auto store = Open(o);
    Recover(store.get());
    WriteStream(store.get(), 1, 100000, 30000);
  }
  CutFile(SegmentPath(1, 0), 90000);
  {
    auto store = Open(o);
    auto streams = Recover(store.get());
    EXPECT_EQ(streams[0].record.tail, 90000u);
  }
  EXPECT_EQ(StoredChecksums(1), ExpectedChecksums(1, 90000));
}

TEST_F(IntegrityTest, UpgradingAFormat3DirectoryComputesChecksums) {
  const LmdbStoreOptions o = Options();
  {
    auto store = Open(o);
    Recover(store.get());
    WriteStream(store.get(), 1, 150000, 50000);
  }
  // What a format 3 server leaves: no crc database.
  InEnvironment(false, [](MDB_txn* txn, const lmdb::Dbs& dbs) {
    ASSERT_TRUE(dbs.has_crc);
    ASSERT_EQ(mdb_drop(txn, dbs.crc, 1), 0);
    ASSERT_EQ(lmdb::PutU64(txn, dbs.meta, lmdb::kFormatVersionKey, 3), 0);
  });
  {
    auto store = Open(o);
    auto streams = Recover(store.get());
    EXPECT_EQ(streams[0].record.tail, 150000u);
  }
  uint64_t format = 0;
  EXPECT_EQ(StoredChecksums(1, &format), ExpectedChecksums(1, 150000));
  EXPECT_EQ(format, lmdb::kFormatVersion);  // checksums (4), then the inline database (5)
  // From now on the checksums guard the bytes.
  Overwrite(SegmentPath(1, 0), 10, "#");
  auto store = Open(o);
  auto streams = Recover(store.get());
  std::string out;
  EXPECT_EQ(streams[0].log->Read(0, 100, &out).code(), Status::Code::kCorruption);
}

// A fork's log starts mid-block: its first block's checksum covers the
// fork's own bytes only, and is checked like any other.
TEST_F(IntegrityTest, AForksFirstBlockStartsAtItsForkOffset) {
  LmdbStoreOptions o = Options();
  o.fsync = DS_FSYNC_OFF;
  {
    auto store = Open(o);
    Recover(store.get());
    std::unique_ptr<StreamLog> log;
    ASSERT_TRUE(store->CreateLog(2, 100000, &log).ok());
    StreamRecord r = Record(2);
    r.fork_offset = r.start = 100000;
    r.source_id = 1;
    ASSERT_TRUE(log->Append(Bytes(2, 100000, 200000), 0).ok());
    r.tail = 200000;
    ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, r, {}, log.get()}}).ok());
  }
  std::vector<std::pair<uint64_t, uint32_t>> want{
      {1, crc32c::Value(Bytes(2, 100000, 131072))},
      {2, crc32c::Value(Bytes(2, 131072, 196608))},
      {3, crc32c::Value(Bytes(2, 196608, 200000))}};
  EXPECT_EQ(StoredChecksums(2), want);
  Overwrite(SegmentPath(2, 100000), 10, "#");
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(streams[0].record.tail, 200000u);
  std::string out;
  Status s = streams[0].log->Read(100000, 100, &out);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("bytes [100000, 131072) of stream 2"), std::string::npos) << s.message();
  out.clear();
  ASSERT_TRUE(streams[0].log->Read(131072, 200000 - 131072, &out).ok());
  EXPECT_TRUE(out == Bytes(2, 131072, 200000));
}

// Retention drops whole files from the front: checksums of blocks wholly
// below the new start go with them, and the block the start falls in
// (its first bytes gone) is no longer checked.
TEST_F(IntegrityTest, RetentionDropsTheChecksumsBelowTheStart) {
  LmdbStoreOptions o = Options();
  o.fsync = DS_FSYNC_OFF;
  o.segment_bytes = 100000;  // files do not line up with blocks
  {
    auto store = Open(o);
    Recover(store.get());
    std::unique_ptr<StreamLog> log;
    WriteStream(store.get(), 1, 300000, 60000, &log);
    StreamRecord r = Record(1);
    r.tail = 300000;
    r.start = 150000;
    ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, r, {}, nullptr}}).ok());
    ASSERT_TRUE(log->Trim(150000).ok());
  }
  auto stored = StoredChecksums(1);
  auto want = ExpectedChecksums(1, 300000);
  want.erase(want.begin(), want.begin() + 2);  // blocks 0 and 1 end below 150000
  EXPECT_EQ(stored, want);
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(streams[0].record.tail, 300000u);
  std::string out;
  ASSERT_TRUE(streams[0].log->Read(150000, 150000, &out).ok());
  EXPECT_TRUE(out == Bytes(1, 150000, 300000));
}

// A commit that fails leaves bytes past the committed tail that a rewind
// drops again (disk full): their checksums go with them, and the next
// append extends the checksum as of the committed tail.
TEST_F(IntegrityTest, RewindingForgetsTheChecksumsOfUncommittedBytes) {
  SegmentFilesOptions fo;
  fo.segments_dir = JoinPath(tmp_.path(), "segments");
  ASSERT_TRUE(CreateDirsDurably(fo.segments_dir).ok());
  auto files = std::make_shared<SegmentFiles>(fo);
  SegmentLog log(files, 1, 0);
  ASSERT_TRUE(log.Append("abc", 0).ok());
  std::vector<BlockChecksum> due;
  log.PendingChecksums(3, &due);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].crc, crc32c::Value("abc"));
  log.ChecksumsCommitted(3);
  ASSERT_TRUE(log.Append("defg", 0).ok());  // its commit fails
  log.RewindChecksumsLocked(3);
  due.clear();
  log.PendingChecksums(UINT64_MAX, &due);
  EXPECT_TRUE(due.empty());
  // (Rewind would also cut the file back to 3; the checksum state is
  // what this checks.)
  ASSERT_TRUE(log.Append("XY", 0).ok());
  log.PendingChecksums(UINT64_MAX, &due);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].crc, crc32c::Value("abcXY"));
}

// Synced checkpoints (STORAGE_FORMAT.md, "Synced checkpoints"): under
// fsync interval a power loss may keep a commit's record and its block
// checksum while losing the bytes written since the last periodic sync.
// The block holding the tail then fails its checksum (or is short), and
// recovery must cut exactly to the tail of the last completed sync: not
// keep bytes it cannot check (NULs of a lost write), and not drop the
// synced bytes of that block.
class SyncedCheckpointTest : public IntegrityTest {
 protected:
  // The stored checkpoint of stream `id`, read through the open store.
  bool StoredCheckpoint(const std::string& data_dir, uint64_t id, lmdb::SyncedCheckpoint* out) {
    bool found = false;
    Status s = LmdbStore::WithEnvironment(data_dir, [&](MDB_env* env) -> Status {
      if (env == nullptr) return Status::InvalidArgument("store not open");
      lmdb::Txn txn;
      if (txn.Begin(env, MDB_RDONLY) != 0) return Status::IoError("begin");
      lmdb::Dbs dbs;
      if (lmdb::OpenDbs(txn.get(), false, &dbs) != 0) return Status::IoError("open dbs");
      std::vector<std::pair<uint64_t, lmdb::SyncedCheckpoint>> all;
      if (lmdb::ReadSynced(txn.get(), dbs, &all) != 0) return Status::IoError("read");
      for (const auto& [i, cp] : all) {
        if (i == id) {
          *out = cp;
          found = true;
        }
      }
      return Status::OK();
    });
    EXPECT_TRUE(s.ok()) << s.message();
    return found;
  }

  // Stream 1: [0, 100000) committed and synced by a periodic sync, then
  // [100000, 120000) committed in the same block, not synced. The closed
  // directory then holds the record and checksums as of 120000 with the
  // checkpoint as of the sync (the close's own sync is undone).
  void SyncThenAppendUnsynced() {
    LmdbStoreOptions o = Options();
    o.fsync = DS_FSYNC_INTERVAL;
    o.fsync_interval_ms = 3600 * 1000;  // only the explicit Flush below
    lmdb::SyncedCheckpoint synced;
    {
      auto store = Open(o);
      Recover(store.get());
      std::unique_ptr<StreamLog> log;
      WriteStream(store.get(), 1, 100000, 25000, &log);
      // A new stream's first commit stores the checkpoint (base, 0).
      lmdb::SyncedCheckpoint first;
      ASSERT_TRUE(StoredCheckpoint(o.data_dir, 1, &first));
      EXPECT_EQ(first.tail, 0u);
      EXPECT_EQ(first.crc, 0u);
      ASSERT_TRUE(store->Flush().ok());
      ASSERT_TRUE(StoredCheckpoint(o.data_dir, 1, &synced));
      EXPECT_EQ(synced.tail, 100000u);
      EXPECT_EQ(synced.crc, crc32c::Value(Bytes(1, 65536, 100000)));
      StreamRecord r = Record(1);
      ASSERT_TRUE(log->Append(Bytes(1, 100000, 120000), 0).ok());
      r.tail = 120000;
      ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, r, {}, log.get()}}).ok());
      log.reset();
    }
    InEnvironment(false, [&](MDB_txn* txn, const lmdb::Dbs& dbs) {
      ASSERT_TRUE(dbs.has_synced);
      ASSERT_EQ(lmdb::PutSynced(txn, dbs, 1, synced), 0);
    });
    EXPECT_EQ(StoredChecksums(1), ExpectedChecksums(1, 120000));
  }

  void ExpectCutToTheSyncedTail() {
    LmdbStoreOptions o = Options();
    o.fsync = DS_FSYNC_INTERVAL;
    {
      auto store = Open(o);
      auto streams = Recover(store.get());
      ASSERT_EQ(streams.size(), 1u);
      EXPECT_EQ(streams[0].record.tail, 100000u);
      std::string out;
      ASSERT_TRUE(streams[0].log->Read(0, 100000, &out).ok());
      EXPECT_TRUE(out == Bytes(1, 0, 100000));
      // Appends go on from there with the right checksum for block 1.
      StreamRecord r = streams[0].record;
      ASSERT_TRUE(streams[0].log->Append(Bytes(1, 100000, 110000), 0).ok());
      r.tail = 110000;
      ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, r, {}, streams[0].log.get()}}).ok());
    }
    EXPECT_EQ(StoredChecksums(1), ExpectedChecksums(1, 110000));
    auto store = Open(o);
    auto streams = Recover(store.get());
    EXPECT_EQ(streams[0].record.tail, 110000u);
  }
};

// The unsynced write was lost (zeros): block 1 fails its checksum. Before
// checkpoints the tail went to 65536, dropping synced bytes.
TEST_F(SyncedCheckpointTest, ALostUnsyncedWriteCutsToTheSyncedTailNotTheBlockStart) {
  SyncThenAppendUnsynced();
  Overwrite(SegmentPath(1, 0), 100000, std::string(20000, '\0'));
  ExpectCutToTheSyncedTail();
}

// An earlier unsynced write lost under a later one that survived, and the
// file short: the tail was lowered inside block 1 to the bytes present and
// its checksum recomputed from them, serving the hole's NULs.
TEST_F(SyncedCheckpointTest, AHoleInUnsyncedBytesIsNeverServed) {
  SyncThenAppendUnsynced();
  Overwrite(SegmentPath(1, 0), 100000, std::string(8192, '\0'));
  CutFile(SegmentPath(1, 0), 115000);
  ExpectCutToTheSyncedTail();
}

// Retention dropped the first bytes of the block holding the tail, so the
// block cannot be checked whole. The commit that raised `start` stored
// the checkpoint (start, checksum of the dropped head); the periodic sync
// then moved it to its tail; recovery extends its checksum with the bytes
// after it and, when they do not match, cuts exactly to it.
TEST_F(SyncedCheckpointTest, ABlockRetentionCutIntoIsCheckedFromTheCheckpoint) {
  LmdbStoreOptions o = Options();
  o.fsync = DS_FSYNC_INTERVAL;
  o.fsync_interval_ms = 3600 * 1000;
  lmdb::SyncedCheckpoint synced;
  {
    auto store = Open(o);
    Recover(store.get());
    std::unique_ptr<StreamLog> log;
    WriteStream(store.get(), 1, 100000, 25000, &log);
    StreamRecord r = Record(1);
    r.tail = 100000;
    r.start = 70000;  // retention: the commit of the new start (without a log, as the engine's)
    ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, r, {}, nullptr}}).ok());
    lmdb::SyncedCheckpoint head;
    ASSERT_TRUE(StoredCheckpoint(o.data_dir, 1, &head));
    EXPECT_EQ(head.tail, 70000u);
    EXPECT_EQ(head.crc, crc32c::Value(Bytes(1, 65536, 70000)));
    ASSERT_TRUE(store->Flush().ok());
    ASSERT_TRUE(StoredCheckpoint(o.data_dir, 1, &synced));
    EXPECT_EQ(synced.tail, 100000u);
    EXPECT_EQ(synced.crc, crc32c::Value(Bytes(1, 65536, 100000)));
    ASSERT_TRUE(log->Append(Bytes(1, 100000, 120000), 0).ok());
    r.tail = 120000;
    ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, r, {}, log.get()}}).ok());
    log.reset();
  }
  InEnvironment(false, [&](MDB_txn* txn, const lmdb::Dbs& dbs) { ASSERT_EQ(lmdb::PutSynced(txn, dbs, 1, synced), 0); });
  {
    // Intact: the extended checksum matches, nothing is cut.
    auto store = Open(o);
    auto streams = Recover(store.get());
    EXPECT_EQ(streams[0].record.tail, 120000u);
  }
  InEnvironment(false, [&](MDB_txn* txn, const lmdb::Dbs& dbs) { ASSERT_EQ(lmdb::PutSynced(txn, dbs, 1, synced), 0); });
  Overwrite(SegmentPath(1, 0), 100000, std::string(8192, '\0'));
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(streams[0].record.tail, 100000u);
  std::string out;
  ASSERT_TRUE(streams[0].log->Read(70000, 30000, &out).ok());
  EXPECT_TRUE(out == Bytes(1, 70000, 100000));
}

}  // namespace
}  // namespace ds
