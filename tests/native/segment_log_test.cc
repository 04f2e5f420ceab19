// SegmentLog: stream bytes in segment files. Hermetic: each test works in
// its own mkdtemp directory.
#include "segment_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "file_util.h"
#include "temp_dir.h"

namespace ds {
namespace {

using testing::TempDir;

// Deterministic test bytes: position p holds Pattern(p).
char Pattern(uint64_t p) { return static_cast<char>('a' + (p * 7 + p / 13) % 26); }
std::string Bytes(uint64_t from, uint64_t to) {
  std::string s;
  for (uint64_t p = from; p < to; ++p) s.push_back(Pattern(p));
  return s;
}

uint64_t SizeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return UINT64_MAX;
  return static_cast<uint64_t>(st.st_size);
}

class SegmentLogTest : public ::testing::Test {
 protected:
  std::shared_ptr<SegmentFiles> Files(uint64_t segment_bytes, size_t max_open = 64,
                                      bool track = false) {
    SegmentFilesOptions o;
    o.segments_dir = dir_.path();
    o.segment_bytes = segment_bytes;
    o.max_open_files = max_open;
    o.track_unsynced = track;
    return std::make_shared<SegmentFiles>(o);
  }
  std::string Read(const StreamLog& log, uint64_t from, uint64_t len) {
    std::string out;
    Status s = log.Read(from, static_cast<size_t>(len), &out);
    EXPECT_TRUE(s.ok()) << s.message();
    return out;
  }
  std::string FilePath(uint64_t id, uint64_t base) const {
    return JoinPath(JoinPath(dir_.path(), ZeroPadded(id)), SegmentFileName(base));
  }

  TempDir dir_;
};

TEST_F(SegmentLogTest, NamesAreZeroPaddedDigits) {
  EXPECT_EQ(ZeroPadded(42), "0000000000000042");
  EXPECT_EQ(SegmentFileName(1024), "0000000000001024.seg");
  uint64_t v = 0;
  EXPECT_TRUE(ParseSegmentFileName("0000000000001024.seg", &v));
  EXPECT_EQ(v, 1024u);
  EXPECT_FALSE(ParseSegmentFileName("1024.seg", &v));
  EXPECT_FALSE(ParseSegmentFileName("0000000000001024.seg.lost", &v));
  EXPECT_FALSE(ParseZeroPadded("000000000000002x", &v));
}

TEST_F(SegmentLogTest, AppendThenReadFromOneFile) {
  SegmentLog log(Files(1 << 20), 7, 0);
  EXPECT_EQ(log.tail(), 0u);
  ASSERT_TRUE(log.Append(Bytes(0, 5), 0).ok());
  ASSERT_TRUE(log.Append(Bytes(5, 12), 0).ok());
  EXPECT_EQ(log.tail(), 12u);
  EXPECT_EQ(Read(log, 0, 12), Bytes(0, 12));
  EXPECT_EQ(Read(log, 3, 4), Bytes(3, 7));
  ASSERT_TRUE(log.Sync().ok());
  // Raw bytes, no framing: the file is exactly the stream.
  EXPECT_EQ(SizeOf(FilePath(7, 0)), 12u);
  EXPECT_LE(log.memory_bytes(), 64u);
}

TEST_F(SegmentLogTest, RollsToNewFilesAndReadsAcrossThem) {
  SegmentLog log(Files(10), 1, 0);
  ASSERT_TRUE(log.Append(Bytes(0, 4), 0).ok());
  ASSERT_TRUE(log.Append(Bytes(4, 27), 0).ok());  // spans three files
  ASSERT_TRUE(log.Append(Bytes(27, 30), 0).ok());  // fills the third exactly
  ASSERT_TRUE(log.Append(Bytes(30, 31), 0).ok());  // starts a fourth
  EXPECT_EQ(log.segment_count(), 4u);
  EXPECT_EQ(SizeOf(FilePath(1, 0)), 10u);
  EXPECT_EQ(SizeOf(FilePath(1, 10)), 10u);
  EXPECT_EQ(SizeOf(FilePath(1, 20)), 10u);
  EXPECT_EQ(SizeOf(FilePath(1, 30)), 1u);
  EXPECT_EQ(Read(log, 0, 31), Bytes(0, 31));
  EXPECT_EQ(Read(log, 8, 15), Bytes(8, 23));
  EXPECT_EQ(Read(log, 29, 2), Bytes(29, 31));
  ASSERT_TRUE(log.Sync().ok());
}

TEST_F(SegmentLogTest, ForkLogStartsAtItsBase) {
  SegmentLog log(Files(10), 3, 100);
  EXPECT_EQ(log.base(), 100u);
  EXPECT_EQ(log.tail(), 100u);
  ASSERT_TRUE(log.Append(Bytes(100, 115), 0).ok());
  EXPECT_EQ(SizeOf(FilePath(3, 100)), 10u);
  EXPECT_EQ(SizeOf(FilePath(3, 110)), 5u);
  EXPECT_EQ(Read(log, 105, 10), Bytes(105, 115));
}

TEST_F(SegmentLogTest, ReadOutsideTheLogIsRefused) {
  SegmentLog log(Files(10), 3, 100);
  ASSERT_TRUE(log.Append(Bytes(100, 110), 0).ok());
  std::string out = "keep";
  EXPECT_EQ(log.Read(99, 2, &out).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(log.Read(105, 6, &out).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(out, "keep");
  EXPECT_TRUE(log.Read(110, 0, &out).ok());
}

TEST_F(SegmentLogTest, OpenFilesAreCappedAcrossLogs) {
  auto files = Files(8, /*max_open=*/4);
  std::vector<std::unique_ptr<SegmentLog>> logs;
  for (uint64_t id = 1; id <= 20; ++id) {
    logs.push_back(std::make_unique<SegmentLog>(files, id, 0));
    ASSERT_TRUE(logs.back()->Append(Bytes(0, 20), 0).ok());  // 3 files each
    EXPECT_LE(files->fds().size(), 4u);
  }
  // Every log still reads and appends: closed files reopen on demand.
  for (auto& log : logs) {
    EXPECT_EQ(Read(*log, 0, 20), Bytes(0, 20));
    ASSERT_TRUE(log->Append(Bytes(20, 30), 0).ok());
    ASSERT_TRUE(log->Sync().ok());
    EXPECT_EQ(Read(*log, 15, 15), Bytes(15, 30));
  }
  EXPECT_LE(files->fds().size(), 4u);
}

TEST_F(SegmentLogTest, FailedRollLeavesTailAndFilesUnchanged) {
  SegmentLog log(Files(10), 5, 0);
  ASSERT_TRUE(log.Append(Bytes(0, 5), 0).ok());
  // Something in the way of the next segment file: creating it fails.
  ASSERT_EQ(::mkdir(FilePath(5, 10).c_str(), 0755), 0);
  Status s = log.Append(Bytes(5, 15), 0);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kIoError) << s.message();
  EXPECT_EQ(log.tail(), 5u);
  EXPECT_EQ(SizeOf(FilePath(5, 0)), 5u);  // the partial write was cut back
  EXPECT_EQ(log.segment_count(), 1u);
  // Cleared, the same append goes through.
  ASSERT_EQ(::rmdir(FilePath(5, 10).c_str()), 0);
  ASSERT_TRUE(log.Append(Bytes(5, 15), 0).ok());
  EXPECT_EQ(Read(log, 0, 15), Bytes(0, 15));
}

TEST_F(SegmentLogTest, DiskFullIsNoSpace) {
  UniqueFd full;
  ASSERT_TRUE(OpenFile("/dev/full", O_WRONLY, 0, &full).ok());
  Status s = WriteAt(full.get(), "bytes", 0, "/dev/full");
  EXPECT_EQ(s.code(), Status::Code::kNoSpace) << s.message();
}

TEST_F(SegmentLogTest, ReadersRunConcurrentlyWithOneAppenderAndSyncs) {
  auto files = Files(64, /*max_open=*/2);
  SegmentLog log(files, 9, 0);
  constexpr uint64_t kTotal = 20000;
  std::atomic<bool> done{false};
  std::thread appender([&] {
    std::mt19937 rng(1);
    uint64_t pos = 0;
    while (pos < kTotal) {
      uint64_t n = std::min<uint64_t>(1 + rng() % 100, kTotal - pos);
      if (!log.Append(Bytes(pos, pos + n), 0).ok()) {
        ADD_FAILURE() << "append failed at " << pos;
        break;
      }
      pos += n;
    }
    done = true;  // even on failure, so the other threads stop
  });
  std::thread syncer([&] {
    while (!done) ASSERT_TRUE(log.Sync().ok());
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      std::mt19937 rng(100 + r);
      while (!done) {
        uint64_t tail = log.tail();
        if (tail == 0) continue;
        uint64_t from = rng() % tail;
        uint64_t len = std::min<uint64_t>(rng() % 300, tail - from);
        std::string out;
        ASSERT_TRUE(log.Read(from, len, &out).ok());
        ASSERT_EQ(out, Bytes(from, from + len));
      }
    });
  }
  appender.join();
  syncer.join();
  for (auto& t : readers) t.join();
  EXPECT_EQ(Read(log, 0, kTotal), Bytes(0, kTotal));
}

TEST_F(SegmentLogTest, UnsyncedFilesAreTrackedAndSynced) {
  auto files = Files(10, 64, /*track=*/true);
  SegmentLog log(files, 2, 0);
  ASSERT_TRUE(log.Append(Bytes(0, 25), 0).ok());
  EXPECT_EQ(files->unsynced_files(), 3u);
  ASSERT_TRUE(files->SyncUnsynced().ok());
  EXPECT_EQ(files->unsynced_files(), 0u);
}

// ---- Recovery -------------------------------------------------------------

class SegmentRecoverTest : public SegmentLogTest {
 protected:
  // Writes [0, n) for stream `id` in files of 10 bytes.
  void Write(uint64_t id, uint64_t n) {
    SegmentLog log(Files(10), id, 0);
    ASSERT_TRUE(log.Append(Bytes(0, n), 0).ok());
  }
  std::unique_ptr<SegmentLog> Recover(uint64_t id, uint64_t* tail) {
    std::unique_ptr<SegmentLog> log;
    Status s = SegmentLog::Recover(Files(10), id, 0, 0, tail, &log);
    EXPECT_TRUE(s.ok()) << s.message();
    return log;
  }
};

TEST_F(SegmentRecoverTest, CutsBytesPastTheRecordedTail) {
  Write(1, 30);
  uint64_t tail = 15;
  auto log = Recover(1, &tail);
  EXPECT_EQ(tail, 15u);
  EXPECT_EQ(log->tail(), 15u);
  EXPECT_EQ(SizeOf(FilePath(1, 10)), 5u);
  EXPECT_FALSE(PathExists(FilePath(1, 20)));
  // Appends continue at the recorded tail, overwriting nothing stale.
  ASSERT_TRUE(log->Append("XYZ", 0).ok());
  EXPECT_EQ(Read(*log, 0, 18), Bytes(0, 15) + "XYZ");
}

TEST_F(SegmentRecoverTest, TailOnAFileBoundaryDropsTheNextFile) {
  Write(1, 25);
  uint64_t tail = 20;
  auto log = Recover(1, &tail);
  EXPECT_EQ(tail, 20u);
  EXPECT_FALSE(PathExists(FilePath(1, 20)));
  ASSERT_TRUE(log->Append(Bytes(20, 22), 0).ok());
  EXPECT_EQ(SizeOf(FilePath(1, 20)), 2u);
  EXPECT_EQ(Read(*log, 0, 22), Bytes(0, 22));
}

TEST_F(SegmentRecoverTest, MissingMiddleFileLowersTheTail) {
  Write(1, 30);
  ASSERT_TRUE(RemoveFile(FilePath(1, 10)).ok());
  uint64_t tail = 30;
  auto log = Recover(1, &tail);
  EXPECT_EQ(tail, 10u);
  EXPECT_EQ(log->tail(), 10u);
  EXPECT_FALSE(PathExists(FilePath(1, 20)));
  EXPECT_TRUE(PathExists(FilePath(1, 20) + ".lost"));  // kept for inspection
  ASSERT_TRUE(log->Append(Bytes(10, 22), 0).ok());
  EXPECT_EQ(Read(*log, 0, 22), Bytes(0, 22));
}

TEST_F(SegmentRecoverTest, ShortFileLowersTheTail) {
  Write(1, 30);
  UniqueFd fd;
  ASSERT_TRUE(OpenFile(FilePath(1, 20), O_RDWR, 0, &fd).ok());
  ASSERT_TRUE(Truncate(fd.get(), 4, FilePath(1, 20)).ok());
  uint64_t tail = 30;
  auto log = Recover(1, &tail);
  EXPECT_EQ(tail, 24u);
  EXPECT_EQ(Read(*log, 0, 24), Bytes(0, 24));
}

TEST_F(SegmentRecoverTest, MissingDirectoryMeansNoBytes) {
  uint64_t tail = 5;
  auto log = Recover(77, &tail);
  EXPECT_EQ(tail, 0u);
  ASSERT_TRUE(log->Append("abc", 0).ok());
  EXPECT_EQ(Read(*log, 0, 3), "abc");
}

TEST_F(SegmentRecoverTest, EmptyRecordedLogDeletesUncommittedFiles) {
  Write(1, 12);
  uint64_t tail = 0;
  auto log = Recover(1, &tail);
  EXPECT_EQ(tail, 0u);
  EXPECT_FALSE(PathExists(FilePath(1, 0)));
  EXPECT_FALSE(PathExists(FilePath(1, 10)));
}

// ---- Retention ------------------------------------------------------------

TEST_F(SegmentLogTest, TrimDeletesWholeFilesBelowTheNewStart) {
  SegmentLog log(Files(10), 5, 0);
  ASSERT_TRUE(log.Append(Bytes(0, 12), 1000).ok());
  ASSERT_TRUE(log.Append(Bytes(12, 35), 2000).ok());  // files 0, 10, 20, 30
  std::vector<LogSegment> segments = log.Segments();
  ASSERT_EQ(segments.size(), 4u);
  EXPECT_EQ(segments[0].base, 0u);
  EXPECT_EQ(segments[0].end, 10u);
  EXPECT_EQ(segments[0].last_write_ms, 1000);
  EXPECT_EQ(segments[1].last_write_ms, 2000);  // got bytes 10..12 at 1000, then more
  EXPECT_EQ(segments[3].end, 35u);

  ASSERT_TRUE(log.Trim(23).ok());  // mid-file: files 0 and 10 go, 20 stays
  EXPECT_EQ(log.start(), 23u);
  EXPECT_FALSE(PathExists(FilePath(5, 0)));
  EXPECT_FALSE(PathExists(FilePath(5, 10)));
  EXPECT_TRUE(PathExists(FilePath(5, 20)));
  EXPECT_EQ(log.segment_count(), 2u);
  EXPECT_EQ(log.Segments().front().base, 23u);  // readable part only

  std::string out;
  Status s = log.Read(22, 2, &out);
  EXPECT_EQ(s.code(), Status::Code::kGone) << s.message();
  EXPECT_EQ(Read(log, 23, 12), Bytes(23, 35));
  ASSERT_TRUE(log.Append(Bytes(35, 41), 3000).ok());
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ(Read(log, 23, 18), Bytes(23, 41));
}

TEST_F(SegmentLogTest, TrimNeverDropsTheActiveFile) {
  SegmentLog log(Files(10), 5, 0);
  ASSERT_TRUE(log.Append(Bytes(0, 20), 1).ok());  // files 0 and 10, both full
  ASSERT_TRUE(log.Trim(20).ok());
  EXPECT_FALSE(PathExists(FilePath(5, 0)));
  EXPECT_TRUE(PathExists(FilePath(5, 10)));
  EXPECT_EQ(log.start(), 20u);
  ASSERT_TRUE(log.Append(Bytes(20, 25), 2).ok());
  EXPECT_EQ(Read(log, 20, 5), Bytes(20, 25));
  EXPECT_EQ(log.Trim(26).code(), Status::Code::kInvalidArgument);  // past the tail
}

TEST_F(SegmentRecoverTest, RecoverFromARecordedStartDeletesTrimmedLeftovers) {
  Write(1, 35);
  // The record says [23, 35) is kept; the process stopped before unlinking.
  uint64_t tail = 35;
  std::unique_ptr<SegmentLog> log;
  ASSERT_TRUE(SegmentLog::Recover(Files(10), 1, 0, 23, &tail, &log).ok());
  EXPECT_EQ(tail, 35u);
  EXPECT_EQ(log->start(), 23u);
  EXPECT_FALSE(PathExists(FilePath(1, 0)));
  EXPECT_FALSE(PathExists(FilePath(1, 10)));
  EXPECT_FALSE(PathExists(FilePath(1, 0) + ".lost"));  // not damage: no set-aside
  EXPECT_TRUE(PathExists(FilePath(1, 20)));
  EXPECT_EQ(Read(*log, 23, 12), Bytes(23, 35));
  std::string out;
  EXPECT_EQ(log->Read(5, 1, &out).code(), Status::Code::kGone);
}

TEST_F(SegmentRecoverTest, RecoverAcceptsTheLeadingGapATrimLeaves) {
  Write(1, 35);
  ASSERT_TRUE(RemoveFile(FilePath(1, 0)).ok());
  ASSERT_TRUE(RemoveFile(FilePath(1, 10)).ok());
  uint64_t tail = 35;
  std::unique_ptr<SegmentLog> log;
  ASSERT_TRUE(SegmentLog::Recover(Files(10), 1, 0, 20, &tail, &log).ok());
  EXPECT_EQ(tail, 35u);  // nothing the record keeps is missing
  EXPECT_EQ(Read(*log, 20, 15), Bytes(20, 35));
}

TEST_F(SegmentRecoverTest, MissingBytesAfterTheStartStillLowerTheTail) {
  Write(1, 35);
  ASSERT_TRUE(RemoveFile(FilePath(1, 0)).ok());
  ASSERT_TRUE(RemoveFile(FilePath(1, 10)).ok());
  uint64_t tail = 35;
  std::unique_ptr<SegmentLog> log;
  // The record keeps [15, 35) but the file holding 15..20 is gone.
  ASSERT_TRUE(SegmentLog::Recover(Files(10), 1, 0, 15, &tail, &log).ok());
  EXPECT_EQ(tail, 15u);
  EXPECT_TRUE(PathExists(FilePath(1, 20) + ".lost"));
}

}  // namespace
}  // namespace ds

namespace ds {
namespace {

// Rewind (a commit that failed for a full disk): the bytes past the
// committed tail go, files that only hold them are deleted, and the next
// append writes where they were.
TEST_F(SegmentLogTest, RewindCutsTheFileAndDropsTheFilesPastIt) {
  SegmentLog log(Files(10), 1, 0);
  ASSERT_TRUE(log.Append(Bytes(0, 14), 0).ok());
  ASSERT_TRUE(log.Sync().ok());
  ASSERT_TRUE(log.Append(std::string(13, '!'), 0).ok());  // into files 10 and 20
  ASSERT_TRUE(log.Rewind(14).ok());
  EXPECT_EQ(log.tail(), 14u);
  EXPECT_EQ(log.segment_count(), 2u);
  EXPECT_EQ(SizeOf(FilePath(1, 10)), 4u);
  EXPECT_EQ(SizeOf(FilePath(1, 20)), UINT64_MAX);
  ASSERT_TRUE(log.Append(Bytes(14, 25), 0).ok());
  EXPECT_EQ(Read(log, 0, 25), Bytes(0, 25));
  ASSERT_TRUE(log.Sync().ok());
}

TEST_F(SegmentLogTest, RewindToAFileBoundaryStartsThatFileAgain) {
  SegmentLog log(Files(10), 1, 0);
  ASSERT_TRUE(log.Append(Bytes(0, 10), 0).ok());
  ASSERT_TRUE(log.Append(std::string(5, '!'), 0).ok());
  ASSERT_TRUE(log.Rewind(10).ok());
  EXPECT_EQ(SizeOf(FilePath(1, 10)), UINT64_MAX);
  ASSERT_TRUE(log.Append(Bytes(10, 12), 0).ok());
  EXPECT_EQ(SizeOf(FilePath(1, 10)), 2u);
  EXPECT_EQ(Read(log, 0, 12), Bytes(0, 12));
  ASSERT_TRUE(log.Rewind(0).ok());
  EXPECT_EQ(log.segment_count(), 0u);
  ASSERT_TRUE(log.Append(Bytes(0, 3), 0).ok());
  EXPECT_EQ(Read(log, 0, 3), Bytes(0, 3));
}

// ---- Write-ahead ranges (fsync always) ------------------------------------

// What WalRange gives for [from, to), or "false" when the log must sync.
std::string WalBytes(SegmentLog& log, uint64_t to, uint64_t* from, size_t max = 1 << 20) {
  std::string bytes;
  if (!log.WalRange(to, max, from, &bytes)) return "false";
  return bytes;
}

TEST_F(SegmentLogTest, WalRangeGivesTheAppendedBytesWithoutReadingTheFile) {
  SegmentLog log(Files(1 << 20), 1, 0);
  ASSERT_TRUE(log.Append(Bytes(0, 100), 0).ok());
  uint64_t from = 0;
  EXPECT_EQ(WalBytes(log, 100, &from), "false");  // a new file: sync it
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ(WalBytes(log, 100, &from), "");
  EXPECT_EQ(from, 100u);
  // From the first call on, the appends keep their bytes: the files are
  // not read back (overwritten here behind the log's back to tell).
  ASSERT_TRUE(log.Append(Bytes(100, 200), 0).ok());
  ASSERT_TRUE(log.Append(Bytes(200, 300), 0).ok());
  {
    const int fd = ::open(FilePath(1, 0).c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    const std::string junk(200, '#');
    ASSERT_EQ(::pwrite(fd, junk.data(), junk.size(), 100), 200);
    ::close(fd);
  }
  EXPECT_EQ(WalBytes(log, 200, &from), Bytes(100, 200));
  EXPECT_EQ(from, 100u);
  EXPECT_EQ(WalBytes(log, 300, &from), Bytes(100, 300));
  log.WalCommitted(300);
  EXPECT_EQ(WalBytes(log, 300, &from), "");
  EXPECT_EQ(from, 300u);
}

TEST_F(SegmentLogTest, WalRangeFollowsRewindsAndKeepsLittleMemory) {
  SegmentLog log(Files(1 << 20), 1, 0);
  ASSERT_TRUE(log.Append(Bytes(0, 100), 0).ok());
  ASSERT_TRUE(log.Sync().ok());
  uint64_t from = 0;
  EXPECT_EQ(WalBytes(log, 100, &from), "");
  const size_t idle = log.memory_bytes();

  // A failed commit's bytes are rewound and the positions written again.
  ASSERT_TRUE(log.Append(Bytes(100, 200), 0).ok());
  ASSERT_TRUE(log.Rewind(150).ok());
  const std::string again(100, '!');
  ASSERT_TRUE(log.Append(again, 0).ok());
  EXPECT_EQ(WalBytes(log, 250, &from), Bytes(100, 150) + again);
  EXPECT_EQ(from, 100u);
  EXPECT_EQ(Read(log, 100, 150), Bytes(100, 150) + again);
  ASSERT_TRUE(log.Rewind(100).ok());
  ASSERT_TRUE(log.Append(Bytes(100, 160), 0).ok());
  EXPECT_EQ(WalBytes(log, 160, &from), Bytes(100, 160));

  // Committed bytes are not kept.
  log.WalCommitted(160);
  EXPECT_EQ(log.memory_bytes(), idle);
  ASSERT_TRUE(log.Append(Bytes(160, 260), 0).ok());
  EXPECT_GT(log.memory_bytes(), idle);
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ(log.memory_bytes(), idle);

  // An append larger than a WAL entry is not kept; the range is read.
  const std::string big = Bytes(260, 260 + (1 << 17));
  ASSERT_TRUE(log.Append(big, 0).ok());
  EXPECT_LT(log.memory_bytes(), idle + (64 << 10));
  EXPECT_EQ(WalBytes(log, 260 + (1 << 17), &from), big);
  EXPECT_EQ(from, 260u);
  EXPECT_EQ(WalBytes(log, 260 + (1 << 17), &from, 64 << 10), "false");
}

TEST(MemoryStreamLogTest, RewindKeepsTheBytesBelowAcrossBlocks) {
  const uint64_t block = MemoryStreamLog::kBlockBytes;
  MemoryStreamLog log(0);
  ASSERT_TRUE(log.Append(std::string(block + 5, 'a'), 0).ok());
  ASSERT_TRUE(log.Append(std::string(block, 'b'), 0).ok());
  ASSERT_TRUE(log.Rewind(block + 3).ok());
  EXPECT_EQ(log.tail(), block + 3);
  ASSERT_TRUE(log.Append("cd", 0).ok());
  std::string out;
  ASSERT_TRUE(log.Read(block, 5, &out).ok());
  EXPECT_EQ(out, "aaacd");
  ASSERT_TRUE(log.Rewind(0).ok());
  ASSERT_TRUE(log.Append("e", 0).ok());
  out.clear();
  ASSERT_TRUE(log.Read(0, 1, &out).ok());
  EXPECT_EQ(out, "e");
}

}  // namespace
}  // namespace ds
