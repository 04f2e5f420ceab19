// Never serving bytes that were not durably written (issue 19, items 1
// and 2): recovery against truncated and damaged segments with write-ahead
// entries left behind, and the CRC32C checksums over segment bytes.
// Hermetic: each test works in its own mkdtemp directory; no sleeps.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "durable_streams.h"
#include "file_util.h"
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
  EXPECT_EQ(out, Bytes(2, 0, 3000));
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

}  // namespace
}  // namespace ds
