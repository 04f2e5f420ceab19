// Catch-up reads served from segment files (sendfile): the same bytes and
// headers as the copying read, across segment boundaries, never a block
// that was not checked against its checksum, JSON mode always copied, and
// descriptors that outlive the deletion of their files by retention.
// Hermetic: each test works in its own mkdtemp directory; no sleeps.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "engine_fixture.h"
#include "file_util.h"
#include "lmdb_store.h"
#include "offset.h"
#include "segment_log.h"
#include "temp_dir.h"

namespace ds {
namespace {

using testing::EngineTest;
using testing::TempDir;

constexpr uint64_t kSegment = 100000;  // files roll every 100,000 bytes
constexpr uint64_t kCap = 70000;       // max_read_bytes: above the sendfile minimum
constexpr uint64_t kTotal = 350000;    // four files, the last one partial
constexpr uint64_t kFarFactor = 16;    // Engine::kFarChunkFactor (zero-copy reads)

std::string Pattern(uint64_t from, uint64_t to) {
  std::string s;
  for (uint64_t p = from; p < to; ++p) s.push_back(static_cast<char>('A' + (p * 13 + p / 7) % 57));
  return s;
}

// The bytes a response's file ranges hold, read with pread.
std::string FileBytes(const Response& r) {
  std::string out;
  for (const FileRange& f : r.files) {
    std::string piece(f.length, '\0');
    EXPECT_EQ(::pread(f.fd->get(), piece.data(), piece.size(), static_cast<off_t>(f.offset)),
              static_cast<ssize_t>(f.length));
    out += piece;
  }
  return out;
}

// The bytes of pinned memory pieces, in order.
std::string PieceBytes(const Response& r) {
  std::string out;
  for (const MemoryRange& m : r.pieces) out.append(m.data, m.length);
  return out;
}

// A response's whole body: body, then pieces, then files.
std::string AllBytes(const Response& r) { return r.body + PieceBytes(r) + FileBytes(r); }

class SendfileReadTest : public EngineTest {
 protected:
  EngineOptions Options() const {
    EngineOptions o;
    o.max_read_bytes = kCap;
    return o;
  }

  LmdbStoreOptions StoreOptions() const {
    LmdbStoreOptions o;
    o.data_dir = JoinPath(tmp_.path(), "data");
    o.segment_bytes = kSegment;
    o.initial_map_bytes = 1 << 20;
    return o;
  }

  void OpenDurable(ds_fsync fsync = DS_FSYNC_ALWAYS) {
    std::unique_ptr<LmdbStore> store;
    LmdbStoreOptions o = StoreOptions();
    o.fsync = fsync;
    Status s = LmdbStore::Open(o, &store);
    ASSERT_TRUE(s.ok()) << s.message();
    OpenOver(Options(), std::move(store));
  }

  // The same appends on a durable engine (engine_) and a memory one
  // (memory_, the copying path throughout).
  void WriteBoth(const std::string& path, testing::Headers type, const std::vector<std::string>& appends) {
    memory_ = std::make_unique<Engine>(Options(), clock_, [](const std::vector<uint64_t>&) {});
    ASSERT_EQ(Put(path, type).status, 201);
    ASSERT_EQ(MemoryCall("PUT", path, type, {}, {}).status, 201);
    for (const std::string& a : appends) {
      ASSERT_EQ(Post(path, type, a).status, 204);
      ASSERT_EQ(MemoryCall("POST", path, type, a, {}).status, 204);
    }
  }

  Response MemoryCall(std::string method, std::string path, testing::Headers headers,
                      std::string body, std::string query) {
    Request r;
    r.method = method;
    r.path = path;
    r.query = query;
    for (const auto& [id, value] : headers) r.fields[id] = value;
    r.body = body;
    return memory_->Handle(r, 0);
  }

  std::string SegmentPath(uint64_t id, uint64_t base) const {
    return JoinPath(JoinPath(JoinPath(StoreOptions().data_dir, "segments"), ZeroPadded(id)),
                    SegmentFileName(base));
  }

  TempDir tmp_;
  std::unique_ptr<Engine> memory_;
};

std::vector<std::string> Appends(uint64_t total, uint64_t step) {
  std::vector<std::string> out;
  for (uint64_t p = 0; p < total; p += step) out.push_back(Pattern(p, std::min(total, p + step)));
  return out;
}

// Every page of a full catch-up, and reads starting just before, at and
// after segment boundaries: status, every header and the body match the
// copying read of a memory engine given the same appends.
TEST_F(SendfileReadTest, ServesTheCopyingReadsBytesAndHeadersAcrossSegments) {
  OpenDurable();
  WriteBoth("/s", testing::Bin(), Appends(kTotal, 25000));
  // The pages of a full catch-up, then reads around segment boundaries.
  std::vector<std::string> offsets;
  for (std::string at = "-1"; offsets.size() < 20;) {
    offsets.push_back(at);
    Response page = Get("/s", "offset=" + at);
    if (HeaderOf(page, header::kStreamUpToDate) == "true") break;
    at = HeaderOf(page, header::kStreamNextOffset);
  }
  EXPECT_EQ(offsets.size(), 2u);  // [0, 280000), then [280000, 350000) up to date
  for (uint64_t at : std::vector<uint64_t>{1, kSegment - 10, kSegment, kSegment + 1, 2 * kSegment - 30000, 250000}) {
    offsets.push_back(EncodeOffset(at));
  }
  size_t sent_from_files = 0;
  for (const std::string& offset : offsets) {
    SCOPED_TRACE("offset " + offset);
    Response disk = Get("/s", "offset=" + offset);
    Response mem = MemoryCall("GET", "/s", {}, {}, "offset=" + offset);
    ASSERT_EQ(disk.status, 200);
    EXPECT_EQ(disk.status, mem.status);
    EXPECT_EQ(disk.headers, mem.headers);
    ASSERT_TRUE(mem.files.empty());
    EXPECT_TRUE(disk.body.empty());
    EXPECT_TRUE(disk.pieces.empty());
    const std::string got = FileBytes(disk);
    const std::string want = AllBytes(mem);
    EXPECT_TRUE(got == want) << got.size() << " bytes vs " << want.size();
    if (!disk.files.empty()) ++sent_from_files;
  }
  EXPECT_EQ(sent_from_files, offsets.size());
}

// Far from the tail a byte stream's chunk is kFarChunkFactor times the cap;
// the last chunks before the tail stay at the cap.
TEST_F(SendfileReadTest, ChunksFarBehindTheTailAreLargerAndNearItCapped) {
  OpenDurable();
  constexpr uint64_t kLong = (kFarFactor + 1) * kCap + 5000;
  WriteBoth("/s", testing::Bin(), Appends(kLong, 25000));
  Response first = Get("/s", "offset=-1");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(HeaderOf(first, header::kStreamNextOffset), EncodeOffset(kFarFactor * kCap));
  // Within 16 caps of the tail: 4 caps while that leaves one.
  Response mid = Get("/s", "offset=" + EncodeOffset(kLong - 5 * kCap));
  EXPECT_EQ(HeaderOf(mid, header::kStreamNextOffset), EncodeOffset(kLong - kCap));
  Response short_of_mid = Get("/s", "offset=" + EncodeOffset(kLong - 5 * kCap + 1));
  EXPECT_EQ(HeaderOf(short_of_mid, header::kStreamNextOffset), EncodeOffset(kLong - 4 * kCap + 1));
  Response near = Get("/s", "offset=" + EncodeOffset(kLong - kCap - 1));
  EXPECT_EQ(HeaderOf(near, header::kStreamNextOffset), EncodeOffset(kLong - 1));
  Response mem = MemoryCall("GET", "/s", {}, {}, "offset=-1");
  EXPECT_EQ(mem.headers, first.headers);
  EXPECT_TRUE(AllBytes(mem) == FileBytes(first));
}

// A far chunk of blocks not checked since the start (after a restart) is
// checked a cap at a time and then sent from the files, never copied whole;
// a damaged block in it answers 500 with none of its bytes.
TEST_F(SendfileReadTest, FarChunksOfUncheckedBlocksAreCheckedThenSentFromFiles) {
  constexpr uint64_t kFar = kFarFactor * kCap;
  constexpr uint64_t kLong = kFar + 2 * kCap + 12345;
  OpenDurable(DS_FSYNC_INTERVAL);
  for (const char* path : {"/good", "/bad"}) {
    ASSERT_EQ(Put(path, testing::Bin()).status, 201);
    for (const std::string& a : Appends(kLong, 25000)) ASSERT_EQ(Post(path, testing::Bin(), a).status, 204);
  }
  engine_.reset();
  const uint64_t damaged = kFar / 2 + 777;
  {
    UniqueFd fd;
    ASSERT_TRUE(OpenFile(SegmentPath(2, damaged / kSegment * kSegment), O_RDWR, 0, &fd).ok());
    const std::string flipped(1, static_cast<char>(Pattern(damaged, damaged + 1)[0] ^ 1));
    ASSERT_TRUE(WriteAt(fd.get(), flipped, damaged % kSegment, "segment").ok());
  }
  OpenDurable(DS_FSYNC_INTERVAL);
  Response good = Get("/good", "offset=-1");
  ASSERT_EQ(good.status, 200);
  EXPECT_EQ(HeaderOf(good, header::kStreamNextOffset), EncodeOffset(kFar));
  EXPECT_TRUE(good.body.empty());
  EXPECT_FALSE(good.files.empty());
  EXPECT_TRUE(FileBytes(good) == Pattern(0, kFar));

  ::testing::internal::CaptureStderr();
  Response bad = Get("/bad", "offset=-1");
  EXPECT_EQ(bad.status, 500);
  EXPECT_TRUE(bad.files.empty());
  EXPECT_TRUE(bad.pieces.empty());
  EXPECT_EQ(bad.body.find(Pattern(0, 100)), std::string::npos);
  ::testing::internal::GetCapturedStderr();
}

// JSON mode frames messages: never sent from files, the body as before.
TEST_F(SendfileReadTest, JsonStreamsAreCopiedAndFramed) {
  OpenDurable();
  std::vector<std::string> messages;
  // About 13,300 bytes each: five make a chunk above the sendfile minimum.
  for (int i = 0; i < 30; ++i) messages.push_back("{\"n\":" + std::to_string(i + 10) + ",\"pad\":\"" + std::string(13280, 'x') + "\"}");
  WriteBoth("/j", testing::Json(), messages);
  for (const std::string& offset : {std::string("-1"), EncodeOffset(kSegment)}) {
    Response disk = Get("/j", "offset=" + offset);
    Response mem = MemoryCall("GET", "/j", {}, {}, "offset=" + offset);
    EXPECT_TRUE(disk.files.empty());
    EXPECT_TRUE(disk.pieces.empty());
    EXPECT_TRUE(mem.pieces.empty());
    EXPECT_EQ(disk.status, mem.status);
    EXPECT_EQ(disk.headers, mem.headers);
    EXPECT_TRUE(disk.body == mem.body);
    EXPECT_EQ(disk.body.front(), '[');
    if (offset == "-1") EXPECT_GE(disk.body.size(), 64u << 10);  // sendfile-sized
  }
}

// After a restart, blocks are unchecked until read: the first read copies
// (and checks) them, later reads of them go out from files. A block whose
// bytes do not match its checksum is answered 500 and never sent.
TEST_F(SendfileReadTest, UncheckedBlocksAreCheckedByACopyingReadAndBadOnesNeverSent) {
  // Under interval no write-ahead entry can repair the damaged block.
  OpenDurable(DS_FSYNC_INTERVAL);
  ASSERT_EQ(Put("/s", testing::Bin()).status, 201);
  for (const std::string& a : Appends(kTotal, 25000)) ASSERT_EQ(Post("/s", testing::Bin(), a).status, 204);
  engine_.reset();
  // Damage one byte in block 3 ([196608, 262144)), in the file based at 200000.
  {
    UniqueFd fd;
    ASSERT_TRUE(OpenFile(SegmentPath(1, 2 * kSegment), O_RDWR, 0, &fd).ok());
    const std::string flipped(1, static_cast<char>(Pattern(210000, 210001)[0] ^ 1));
    ASSERT_TRUE(WriteAt(fd.get(), flipped, 10000, "segment").ok());
  }
  OpenDurable(DS_FSYNC_INTERVAL);

  const std::string early = "offset=" + EncodeOffset(kCap);
  Response first = Get("/s", early);  // [70000, 140000): blocks 1-2, unchecked
  ASSERT_EQ(first.status, 200);
  EXPECT_TRUE(first.files.empty());
  EXPECT_TRUE(first.body == Pattern(kCap, 2 * kCap));
  Response again = Get("/s", early);
  ASSERT_EQ(again.status, 200);
  EXPECT_FALSE(again.files.empty());
  EXPECT_TRUE(FileBytes(again) == Pattern(kCap, 2 * kCap));

  ::testing::internal::CaptureStderr();
  const std::string bad = "offset=" + EncodeOffset(3 * kCap);  // [210000, 280000)
  for (int attempt = 0; attempt < 2; ++attempt) {
    Response r = Get("/s", bad);
    EXPECT_EQ(r.status, 500);
    EXPECT_TRUE(r.files.empty());
    EXPECT_EQ(r.body.find(Pattern(3 * kCap, 3 * kCap + 100)), std::string::npos);
  }
  ::testing::internal::GetCapturedStderr();
}

// Retention deletes a file while a response still has to send it: the
// descriptor keeps the bytes; a read arriving after the trim is 410 Gone.
TEST_F(SendfileReadTest, FilesDeletedByRetentionAfterTheOpenStillSendTheirBytes) {
  LmdbStoreOptions o = StoreOptions();
  std::unique_ptr<LmdbStore> store;
  ASSERT_TRUE(LmdbStore::Open(o, &store).ok());
  std::vector<RecoveredStream> recovered;
  uint64_t next = 0;
  ASSERT_TRUE(store->Recover(&recovered, &next).ok());
  std::unique_ptr<StreamLog> log;
  ASSERT_TRUE(store->CreateLog(7, 0, &log).ok());
  StreamRecord rec;
  rec.id = 7;
  rec.path = "/r";
  rec.content_type = "application/octet-stream";
  for (uint64_t p = 0; p < kTotal; p += 25000) {
    ASSERT_TRUE(log->Append(Pattern(p, std::min(kTotal, p + 25000)), 0).ok());
    rec.tail = log->tail();
    ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, rec, {}, log.get()}}).ok());
  }
  Response r;
  ASSERT_TRUE(log->OpenFiles(50000, 200000, &r.files).ok());
  ASSERT_EQ(r.files.size(), 3u);  // [50000, 100000), [100000, 200000), [200000, 250000)
  EXPECT_EQ(r.files[0].offset, 50000u);
  EXPECT_EQ(r.files[1].offset, 0u);
  EXPECT_EQ(r.files[2].length, 50000u);

  rec.start = 2 * kSegment;
  ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, rec, {}, log.get()}}).ok());
  ASSERT_TRUE(log->Trim(2 * kSegment).ok());
  EXPECT_NE(::access(SegmentPath(7, 0).c_str(), F_OK), 0);
  EXPECT_NE(::access(SegmentPath(7, kSegment).c_str(), F_OK), 0);
  EXPECT_TRUE(FileBytes(r) == Pattern(50000, 250000));

  std::vector<FileRange> late;
  EXPECT_EQ(log->OpenFiles(50000, 10000, &late).code(), Status::Code::kNotSupported);
  EXPECT_TRUE(late.empty());
  std::string copied;
  EXPECT_EQ(log->Read(50000, 10000, &copied).code(), Status::Code::kGone);
  ASSERT_TRUE(log->OpenFiles(2 * kSegment, 100000, &late).ok());
  EXPECT_TRUE(FileBytes(Response{.files = std::move(late)}) == Pattern(2 * kSegment, 3 * kSegment));
}

// Memory streams have no files: their reads are sent from the log's blocks,
// full ones pinned in place, the active one (which the next append may
// move) copied.
TEST_F(EngineTest, MemoryStreamsAreSentFromTheirBlocksNotFiles) {
  ASSERT_EQ(Put("/m", testing::Bin()).status, 201);
  ASSERT_EQ(Post("/m", testing::Bin(), Pattern(0, 300000)).status, 204);
  Response r = Get("/m", "offset=-1");
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.files.empty());
  EXPECT_TRUE(r.body.empty());
  EXPECT_TRUE(PieceBytes(r) == Pattern(0, 300000));
  ASSERT_EQ(Post("/m", testing::Bin(), Pattern(300000, 2600000)).status, 204);
  Response mid = Get("/m", "offset=" + EncodeOffset(100000));  // one capped chunk
  ASSERT_EQ(mid.status, 200);
  EXPECT_TRUE(mid.body.empty());
  EXPECT_TRUE(PieceBytes(mid) == Pattern(100000, 100000 + (1 << 20)));

  // Past one block: [100000, 2600000) is the rest of block 0, block 1
  // (pinned) and part of block 2 (active: copied).
  MemoryStreamLog log(0);
  ASSERT_TRUE(log.Append(Pattern(0, 2600000), 0).ok());
  std::vector<MemoryRange> pins;
  ASSERT_TRUE(log.PinRange(100000, 2500000, &pins).ok());
  ASSERT_EQ(pins.size(), 3u);
  const auto* block0 = static_cast<const MemoryStreamLog::Block*>(pins[0].pin.get());
  EXPECT_EQ(pins[0].data, block0->data() + 100000);
  EXPECT_EQ(pins[1].length, MemoryStreamLog::kBlockBytes);
  EXPECT_EQ(pins[2].length, 2600000 - 2 * MemoryStreamLog::kBlockBytes);
  EXPECT_NE(pins[2].data, nullptr);
  // Appends that grow the active block, and a trim that frees the first
  // two, leave the pinned bytes as they were.
  ASSERT_TRUE(log.Append(std::string(3 * MemoryStreamLog::kBlockBytes, 'z'), 0).ok());
  ASSERT_TRUE(log.Trim(2 * MemoryStreamLog::kBlockBytes + 5).ok());
  std::string pinned;
  for (const MemoryRange& m : pins) pinned.append(m.data, m.length);
  EXPECT_TRUE(pinned == Pattern(100000, 2600000));
  std::vector<MemoryRange> late;
  EXPECT_EQ(log.PinRange(100000, 10, &late).code(), Status::Code::kGone);
  EXPECT_TRUE(late.empty());
}

}  // namespace
}  // namespace ds
