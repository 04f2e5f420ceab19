// LmdbStore: the durable Store for data_dir, its record codec and its
// backup. Hermetic: each test works in its own mkdtemp directory; no sleeps.
#include "lmdb_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "crc32c.h"
#include "durable_streams.h"
#include "file_util.h"
#include "temp_dir.h"
#include "lmdb_env.h"
#include "record_codec.h"
#include "segment_log.h"

namespace ds {
namespace {

using testing::TempDir;

char Pattern(uint64_t id, uint64_t p) { return static_cast<char>('a' + (p * 7 + id * 3 + p / 11) % 26); }
std::string Bytes(uint64_t id, uint64_t from, uint64_t to) {
  std::string s;
  for (uint64_t p = from; p < to; ++p) s.push_back(Pattern(id, p));
  return s;
}

StreamRecord Record(uint64_t id, uint64_t tail = 0) {
  StreamRecord r;
  r.id = id;
  r.path = "/v1/stream/s" + std::to_string(id);
  r.content_type = "application/octet-stream";
  r.last_access_ms = 1767225600000;
  r.tail = tail;
  return r;
}

double Millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// ---- Record codec --------------------------------------------------------

TEST(LmdbRecordCodecTest, StreamRecordRoundTrips) {
  StreamRecord r;
  r.id = 0x0102030405060708ull;
  r.path = std::string("/v1/stream/\0binary\xff", 19);
  r.content_type = "application/json; charset=utf-8";
  r.ttl_seconds = 3600;
  r.expires_at_ms = -5;  // before the epoch: signed survives
  r.last_access_ms = 1767225600123;
  r.tail = 1ull << 40;
  r.closed = true;
  r.soft_deleted = true;
  r.last_stream_seq = "seq-0009";
  r.source_id = 3;
  r.fork_offset = 77;
  r.start = 1ull << 30;
  const std::string encoded = EncodeStreamRecord(r);
  EXPECT_EQ(static_cast<uint8_t>(encoded[0]), kStreamRecordVersion);
  StreamRecord back;
  ASSERT_TRUE(DecodeStreamRecord(encoded, &back).ok());
  EXPECT_EQ(back.id, r.id);
  EXPECT_EQ(back.path, r.path);
  EXPECT_EQ(back.content_type, r.content_type);
  EXPECT_EQ(back.ttl_seconds, r.ttl_seconds);
  EXPECT_EQ(back.expires_at_ms, r.expires_at_ms);
  EXPECT_EQ(back.last_access_ms, r.last_access_ms);
  EXPECT_EQ(back.tail, r.tail);
  EXPECT_EQ(back.closed, r.closed);
  EXPECT_EQ(back.soft_deleted, r.soft_deleted);
  EXPECT_EQ(back.last_stream_seq, r.last_stream_seq);
  EXPECT_EQ(back.source_id, r.source_id);
  EXPECT_EQ(back.fork_offset, r.fork_offset);
  EXPECT_EQ(back.start, r.start);

  StreamRecord plain = Record(9);
  ASSERT_TRUE(DecodeStreamRecord(EncodeStreamRecord(plain), &back).ok());
  EXPECT_FALSE(back.ttl_seconds.has_value());
  EXPECT_FALSE(back.expires_at_ms.has_value());
  EXPECT_FALSE(back.closed);
}

TEST(LmdbRecordCodecTest, RejectsTruncatedTrailingAndNewerValues) {
  const std::string encoded = EncodeStreamRecord(Record(1, 5));
  StreamRecord r;
  for (size_t n = 0; n < encoded.size(); ++n) {
    EXPECT_EQ(DecodeStreamRecord(encoded.substr(0, n), &r).code(), Status::Code::kCorruption) << n;
  }
  EXPECT_EQ(DecodeStreamRecord(encoded + "x", &r).code(), Status::Code::kCorruption);
  std::string newer = encoded;
  newer[0] = static_cast<char>(kStreamRecordVersion + 1);
  Status s = DecodeStreamRecord(newer, &r);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("newer"), std::string::npos) << s.message();
}

TEST(LmdbRecordCodecTest, Version1StreamRecordsStartAtTheirForkOffset) {
  // Version 1 is version 2 without the trailing u64 `start` (retention),
  // which is version 3 without the trailing inline bytes (an empty string
  // here: its u32 length).
  StreamRecord r = Record(4, 500);
  r.fork_offset = 40;
  r.start = 300;
  std::string v1 = EncodeStreamRecord(r);
  v1.resize(v1.size() - 4 - 8);
  v1[0] = 1;
  StreamRecord back;
  ASSERT_TRUE(DecodeStreamRecord(v1, &back).ok());
  EXPECT_EQ(back.tail, 500u);
  EXPECT_EQ(back.start, 40u);
  v1[0] = 2;  // a version 2 value must carry the field
  EXPECT_EQ(DecodeStreamRecord(v1, &back).code(), Status::Code::kCorruption);
}

TEST(LmdbRecordCodecTest, Version3StreamRecordsCarryTheirInlineBytes) {
  StreamRecord r = Record(5, 9);
  r.start = 2;
  const std::string bytes("inline\0bytes", 12);
  const std::string v3 = EncodeStreamRecord(r, bytes);
  StreamRecord back;
  std::string_view got;
  ASSERT_TRUE(DecodeStreamRecord(v3, &back, &got).ok());
  EXPECT_EQ(got, bytes);
  EXPECT_EQ(back.tail, 9u);
  EXPECT_EQ(back.start, 2u);
  // A version 2 value (format 5 and older) has none.
  std::string v2 = EncodeStreamRecord(r);
  v2.resize(v2.size() - 4);
  v2[0] = 2;
  got = "stale";
  ASSERT_TRUE(DecodeStreamRecord(v2, &back, &got).ok());
  EXPECT_EQ(got, "");
  EXPECT_EQ(back.start, 2u);
  v2[0] = 3;  // a version 3 value must carry the field
  EXPECT_EQ(DecodeStreamRecord(v2, &back, &got).code(), Status::Code::kCorruption);
  // A length past the value's end.
  std::string cut = v3.substr(0, v3.size() - 1);
  EXPECT_EQ(DecodeStreamRecord(cut, &back, &got).code(), Status::Code::kCorruption);
}

TEST(LmdbRecordCodecTest, ProducersRoundTrip) {
  ProducerRecord p{"writer-1", 7, 123456789012ull};
  ProducerRecord back;
  ASSERT_TRUE(DecodeProducerRecord(EncodeProducerRecord(p), &back).ok());
  EXPECT_EQ(back.producer_id, p.producer_id);
  EXPECT_EQ(back.epoch, p.epoch);
  EXPECT_EQ(back.last_seq, p.last_seq);

  std::vector<ProducerRecord> bucket{{std::string(600, 'a'), 1, 2}, {std::string(700, 'b'), 3, 4}};
  std::vector<ProducerRecord> bucket_back;
  ASSERT_TRUE(DecodeProducerBucket(EncodeProducerBucket(bucket), &bucket_back).ok());
  ASSERT_EQ(bucket_back.size(), 2u);
  EXPECT_EQ(bucket_back[1].producer_id, bucket[1].producer_id);
  EXPECT_EQ(bucket_back[1].last_seq, 4u);
}

TEST(LmdbRecordCodecTest, KeysSortByStreamIdAndFitLmdb) {
  EXPECT_LT(StreamKey(255), StreamKey(256));
  EXPECT_LT(StreamKey(1), StreamKey(1ull << 56));
  uint64_t id = 0;
  ASSERT_TRUE(ParseStreamKey(StreamKey(123456), &id));
  EXPECT_EQ(id, 123456u);
  // A producer key starts with its stream key, so a stream's producers are
  // one range.
  EXPECT_EQ(ProducerKey(5, "p").substr(0, 8), StreamKey(5));
  const std::string long_key = ProducerKey(5, std::string(5000, 'x'));
  EXPECT_TRUE(IsProducerBucketKey(long_key));
  EXPECT_LE(long_key.size(), 511u);  // LMDB's default key limit
  EXPECT_FALSE(IsProducerBucketKey(ProducerKey(5, std::string(kMaxInlineProducerId, 'x'))));
  EXPECT_NE(ProducerKey(5, std::string(500, 'x') + "1"), ProducerKey(5, std::string(500, 'x') + "2"));
}

TEST(LmdbRecordCodecTest, WalKeysSortByCommitThenStreamThenPosition) {
  // A later commit sorts after an earlier one whatever its streams, so a
  // commit's entries go to the rightmost pages of the tree.
  EXPECT_LT(lmdb::WalKey(1, 900, 1 << 20), lmdb::WalKey(2, 1, 0));
  EXPECT_LT(lmdb::WalKey(7, 3, 500), lmdb::WalKey(7, 4, 0));
  EXPECT_LT(lmdb::WalKey(7, 3, 255), lmdb::WalKey(7, 3, 256));
  uint64_t seq = 0, id = 0, position = 0;
  ASSERT_TRUE(lmdb::ParseWalKey(lmdb::WalKey(1ull << 40, 12, 34567), &seq, &id, &position));
  EXPECT_EQ(seq, 1ull << 40);
  EXPECT_EQ(id, 12u);
  EXPECT_EQ(position, 34567u);
  // Format 2 spelled a key as stream id ‖ position: still read, commit 0.
  ASSERT_TRUE(lmdb::ParseWalKey(StreamKey(12) + StreamKey(99), &seq, &id, &position));
  EXPECT_EQ(seq, 0u);
  EXPECT_EQ(id, 12u);
  EXPECT_EQ(position, 99u);
  EXPECT_FALSE(lmdb::ParseWalKey(StreamKey(12), &seq, &id, &position));
  EXPECT_FALSE(lmdb::ParseWalKey(lmdb::WalKey(1, 2, 3) + "x", &seq, &id, &position));
}

// ---- The store -----------------------------------------------------------

class LmdbStoreTest : public ::testing::Test {
 protected:
  LmdbStoreOptions Options() const {
    LmdbStoreOptions o;
    o.data_dir = data_dir();
    o.segment_bytes = 1 << 20;
    o.initial_map_bytes = 1 << 20;
    // These tests are about segment files (write-ahead entries, erasing and
    // trimming files, missing files): small streams must get them too.
    // InlineStreamTest covers the inline bytes.
    o.inline_stream_bytes = inline_stream_bytes_;
    return o;
  }
  std::string data_dir() const { return JoinPath(tmp_.path(), "data"); }
  uint64_t inline_stream_bytes_ = 0;

  std::unique_ptr<LmdbStore> Open(const LmdbStoreOptions& o) {
    std::unique_ptr<LmdbStore> store;
    Status s = LmdbStore::Open(o, &store);
    EXPECT_TRUE(s.ok()) << s.message();
    return store;
  }
  std::unique_ptr<LmdbStore> Open() { return Open(Options()); }

  std::vector<RecoveredStream> Recover(LmdbStore* store, uint64_t* next_id = nullptr) {
    std::vector<RecoveredStream> streams;
    uint64_t next = 0;
    Status s = store->Recover(&streams, &next);
    EXPECT_TRUE(s.ok()) << s.message();
    if (next_id != nullptr) *next_id = next;
    return streams;
  }

  std::unique_ptr<StreamLog> NewLog(LmdbStore* store, uint64_t id, uint64_t base = 0) {
    std::unique_ptr<StreamLog> log;
    EXPECT_TRUE(store->CreateLog(id, base, &log).ok());
    return log;
  }

  // Appends bytes and commits the record pointing past them.
  Status AppendAndCommit(LmdbStore* store, StreamLog* log, StreamRecord* record, const std::string& bytes,
                         std::vector<ProducerRecord> producers = {}) {
    Status s = log->Append(bytes, 0);
    if (!s.ok()) return s;
    record->tail = log->tail();
    return store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, *record, std::move(producers), log}});
  }

  // Opens the store, creates stream `id` and commits one append per entry
  // of `ends` (bytes Bytes(id, previous end, end)), then closes the store.
  void CommitAppendsToNewStream(uint64_t id, std::initializer_list<uint64_t> ends) {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    Recover(store.get());
    auto log = NewLog(store.get(), id);
    StreamRecord r = Record(id);
    uint64_t from = 0;
    for (uint64_t to : ends) {
      ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(id, from, to)).ok());
      from = to;
    }
  }

  // Commits a record alone, with no new bytes (e.g. a raised start).
  Status CommitRecord(LmdbStore* store, const StreamRecord& record) {
    return store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, record, {}, nullptr}});
  }

  std::string ReadAll(const StreamLog& log) {
    std::string out;
    Status s = log.Read(log.base(), static_cast<size_t>(log.tail() - log.base()), &out);
    EXPECT_TRUE(s.ok()) << s.message();
    return out;
  }

  std::string StreamDir(uint64_t id) const {
    return JoinPath(JoinPath(data_dir(), "segments"), ZeroPadded(id));
  }

  TempDir tmp_;
};

TEST_F(LmdbStoreTest, OpenCreatesTheDocumentedLayout) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(PathExists(data_dir() + "/LOCK"));
  EXPECT_TRUE(PathExists(data_dir() + "/streams.db/data.mdb"));
  EXPECT_TRUE(PathExists(data_dir() + "/streams.db/lock.mdb"));
  EXPECT_TRUE(PathExists(data_dir() + "/segments"));
  uint64_t next = 0;
  EXPECT_TRUE(Recover(store.get(), &next).empty());
  EXPECT_EQ(next, 1u);
  EXPECT_TRUE(store->durable());
}

TEST_F(LmdbStoreTest, CommitThenReopenRecoversRecordsProducersAndBytes) {
  const std::string long_a = std::string(450, 'p') + "A";
  const std::string long_b = std::string(450, 'p') + "B";
  {
    auto store = Open();
    Recover(store.get());
    auto log1 = NewLog(store.get(), 1);
    StreamRecord r1 = Record(1);
    r1.ttl_seconds = 60;
    r1.last_stream_seq = "0007";
    ASSERT_TRUE(AppendAndCommit(store.get(), log1.get(), &r1, Bytes(1, 0, 100),
                                {{"short", 1, 5}, {long_a, 2, 6}, {long_b, 3, 7}})
                    .ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log1.get(), &r1, Bytes(1, 100, 150), {{long_a, 2, 8}}).ok());
    // A fork of stream 1 at offset 120: its own log starts there.
    auto log2 = NewLog(store.get(), 2, 120);
    StreamRecord r2 = Record(2, 120);
    r2.source_id = 1;
    r2.fork_offset = 120;
    ASSERT_TRUE(AppendAndCommit(store.get(), log2.get(), &r2, Bytes(2, 120, 130)).ok());
  }
  auto store = Open();
  uint64_t next = 0;
  auto streams = Recover(store.get(), &next);
  EXPECT_EQ(next, 3u);
  ASSERT_EQ(streams.size(), 2u);
  const RecoveredStream& s1 = streams[0];
  EXPECT_EQ(s1.record.id, 1u);
  EXPECT_EQ(s1.record.path, "/v1/stream/s1");
  EXPECT_EQ(s1.record.ttl_seconds, std::optional<uint64_t>(60));
  EXPECT_EQ(s1.record.last_stream_seq, "0007");
  EXPECT_EQ(s1.record.tail, 150u);
  EXPECT_EQ(ReadAll(*s1.log), Bytes(1, 0, 150));
  std::map<std::string, ProducerRecord> producers;
  for (const ProducerRecord& p : s1.producers) producers[p.producer_id] = p;
  ASSERT_EQ(producers.size(), 3u);
  EXPECT_EQ(producers["short"].last_seq, 5u);
  EXPECT_EQ(producers[long_a].last_seq, 8u);
  EXPECT_EQ(producers[long_a].epoch, 2u);
  EXPECT_EQ(producers[long_b].last_seq, 7u);
  const RecoveredStream& s2 = streams[1];
  EXPECT_EQ(s2.record.source_id, 1u);
  EXPECT_EQ(s2.log->base(), 120u);
  EXPECT_EQ(s2.log->tail(), 130u);
  EXPECT_EQ(ReadAll(*s2.log), Bytes(2, 120, 130));
}

// A group commit carries several appends to one stream; the store puts only
// the last record of each stream (the others are older snapshots), but every
// mutation's producer states.
TEST_F(LmdbStoreTest, ABatchWithManyAppendsPerStreamRecordsTheLastOfEach) {
  {
    auto store = Open();
    Recover(store.get());
    auto log1 = NewLog(store.get(), 1);
    auto log2 = NewLog(store.get(), 2);
    StreamRecord r1 = Record(1), r2 = Record(2);
    std::vector<StreamMutation> batch;
    uint64_t p1 = 0, p2 = 0;
    for (int i = 1; i <= 4; ++i) {
      ASSERT_TRUE(log1->Append(Bytes(1, p1, p1 + 10), 0).ok());
      p1 += 10;
      r1.tail = p1;
      r1.last_stream_seq = "000" + std::to_string(i);
      batch.push_back({StreamMutation::Kind::kUpsert, r1, {{"w" + std::to_string(i), 1, static_cast<uint64_t>(i)}}, log1.get()});
      ASSERT_TRUE(log2->Append(Bytes(2, p2, p2 + 3), 0).ok());
      p2 += 3;
      r2.tail = p2;
      batch.push_back({StreamMutation::Kind::kUpsert, r2, {{"v", 7, static_cast<uint64_t>(i)}}, log2.get()});
    }
    ASSERT_TRUE(store->Commit(batch).ok());
  }
  auto store = Open();
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 2u);
  EXPECT_EQ(streams[0].record.tail, 40u);
  EXPECT_EQ(streams[0].record.last_stream_seq, "0004");
  EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 40));
  std::map<std::string, uint64_t> producers;
  for (const ProducerRecord& p : streams[0].producers) producers[p.producer_id] = p.last_seq;
  EXPECT_EQ(producers, (std::map<std::string, uint64_t>{{"w1", 1}, {"w2", 2}, {"w3", 3}, {"w4", 4}}));
  EXPECT_EQ(streams[1].record.tail, 12u);
  EXPECT_EQ(ReadAll(*streams[1].log), Bytes(2, 0, 12));
  ASSERT_EQ(streams[1].producers.size(), 1u);
  EXPECT_EQ(streams[1].producers[0].last_seq, 4u);
}

// Under fsync always a batch is acknowledged after the next commit's flush,
// so every commit must be a real LMDB transaction (an empty one is skipped,
// flush and all). A batch that puts nothing else (an erase of a stream the
// store no longer has, below the id counter) still commits: the store puts
// its id counter then.
TEST_F(LmdbStoreTest, UnderAlwaysABatchThatPutsNothingElseStillCommits) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->commits_durable_late());
  Recover(store.get());
  auto log = NewLog(store.get(), 1);
  StreamRecord r = Record(1);
  ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, "abc").ok());
  auto last_txn = [&] {
    MDB_envinfo info{};
    EXPECT_TRUE(LmdbStore::WithEnvironment(data_dir(), [&](MDB_env* env) {
                  if (env == nullptr) return Status::IoError("not open");
                  mdb_env_info(env, &info);
                  return Status::OK();
                }).ok());
    return info.me_last_txnid;
  };
  auto log2 = NewLog(store.get(), 2);
  StreamRecord r2 = Record(2);
  ASSERT_TRUE(AppendAndCommit(store.get(), log2.get(), &r2, "gone").ok());
  ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kErase, Record(2), {}, nullptr}}).ok());
  const size_t before = last_txn();
  // Stream 2 is gone already and its id is below the counter: nothing to
  // delete, nothing to raise.
  ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kErase, Record(2), {}, nullptr}}).ok());
  EXPECT_EQ(last_txn(), before + 1);
  ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, "def").ok());
  EXPECT_EQ(last_txn(), before + 2);
}

TEST_F(LmdbStoreTest, TornTailIsCutAndAppendsContinueAtTheRecordedTail) {
  {
    auto store = Open();
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 0, 40)).ok());
    // Appended, never committed: not acknowledged.
    ASSERT_TRUE(log->Append("UNACKNOWLEDGED", 0).ok());
    ASSERT_TRUE(log->Sync().ok());
  }
  {
    auto store = Open();
    auto streams = Recover(store.get());
    ASSERT_EQ(streams.size(), 1u);
    EXPECT_EQ(streams[0].log->tail(), 40u);
    EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 40));
    StreamRecord r = streams[0].record;
    ASSERT_TRUE(AppendAndCommit(store.get(), streams[0].log.get(), &r, "next").ok());
  }
  auto store = Open();
  auto streams = Recover(store.get());
  EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 40) + "next");
}

TEST_F(LmdbStoreTest, TrimmedStartSurvivesReopenAndLeftoverFilesGo) {
  const uint64_t kSeg = 1 << 20;  // Options() rolls segments at 1 MiB
  const std::string dir = JoinPath(JoinPath(data_dir(), "segments"), ZeroPadded(1));
  {
    auto store = Open();
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 0, 3 * kSeg + 10)).ok());
    // The engine's order: record the new start, then trim. Stop between the
    // two (a crash): the files below the start are still there.
    r.start = 2 * kSeg + 3;
    ASSERT_TRUE(CommitRecord(store.get(), r).ok());
    EXPECT_TRUE(PathExists(JoinPath(dir, SegmentFileName(0))));
  }
  {
    auto store = Open();
    auto streams = Recover(store.get());
    ASSERT_EQ(streams.size(), 1u);
    EXPECT_EQ(streams[0].record.start, 2 * kSeg + 3);
    EXPECT_EQ(streams[0].log->start(), 2 * kSeg + 3);
    EXPECT_EQ(streams[0].log->tail(), 3 * kSeg + 10);
    EXPECT_FALSE(PathExists(JoinPath(dir, SegmentFileName(0))));
    EXPECT_FALSE(PathExists(JoinPath(dir, SegmentFileName(kSeg))));
    EXPECT_TRUE(PathExists(JoinPath(dir, SegmentFileName(2 * kSeg))));
    std::string out;
    ASSERT_TRUE(streams[0].log->Read(2 * kSeg + 3, kSeg + 7, &out).ok());
    EXPECT_EQ(out, Bytes(1, 2 * kSeg + 3, 3 * kSeg + 10));
    // Trim through the log, as the engine does after the next commit.
    StreamRecord r = streams[0].record;
    r.start = 3 * kSeg;
    ASSERT_TRUE(CommitRecord(store.get(), r).ok());
    ASSERT_TRUE(streams[0].log->Trim(3 * kSeg).ok());
    EXPECT_FALSE(PathExists(JoinPath(dir, SegmentFileName(2 * kSeg))));
  }
  auto store = Open();
  auto streams = Recover(store.get());
  EXPECT_EQ(streams[0].log->start(), 3 * kSeg);
  std::string out;
  ASSERT_TRUE(streams[0].log->Read(3 * kSeg, 10, &out).ok());
  EXPECT_EQ(out, Bytes(1, 3 * kSeg, 3 * kSeg + 10));
}

TEST_F(LmdbStoreTest, ProducerStateAndTailCommitAtomically) {
  {
    auto store = Open();
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, "first", {{"w", 1, 1}}).ok());
    // The second append's bytes reach the segment, its batch never commits.
    ASSERT_TRUE(log->Append("second", 0).ok());
  }
  auto store = Open();
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(ReadAll(*streams[0].log), "first");
  ASSERT_EQ(streams[0].producers.size(), 1u);
  EXPECT_EQ(streams[0].producers[0].last_seq, 1u);
}

TEST_F(LmdbStoreTest, RefusedCommitLeavesNothingRecorded) {
  {
    auto store = Open();
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, "abc").ok());
    // A batch whose second record points past its log's bytes is refused
    // whole: the first mutation is not applied either.
    auto log2 = NewLog(store.get(), 2);
    StreamRecord r2 = Record(2, 10);
    r.last_stream_seq = "changed";
    Status s = store->Commit({StreamMutation{StreamMutation::Kind::kUpsert, r, {}, log.get()},
                              StreamMutation{StreamMutation::Kind::kUpsert, r2, {}, log2.get()}});
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  }
  auto store = Open();
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(streams[0].record.last_stream_seq, "");
}

TEST_F(LmdbStoreTest, SegmentsRollAndReadAcrossFilesAfterReopen) {
  LmdbStoreOptions o = Options();
  o.segment_bytes = 16;
  {
    auto store = Open(o);
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    for (uint64_t p = 0; p < 200; p += 13) {
      ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, p, std::min<uint64_t>(p + 13, 200))).ok());
    }
  }
  std::vector<std::string> names;
  ASSERT_TRUE(ListDir(StreamDir(1), &names).ok());
  EXPECT_EQ(names.size(), 13u);  // ceil(200 / 16)
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  const StreamLog& log = *streams[0].log;
  EXPECT_EQ(ReadAll(log), Bytes(1, 0, 200));
  std::string out;
  ASSERT_TRUE(log.Read(15, 50, &out).ok());
  EXPECT_EQ(out, Bytes(1, 15, 65));
}

TEST_F(LmdbStoreTest, EraseRemovesRecordProducersAndDirectory) {
  auto store = Open();
  Recover(store.get());
  auto log = NewLog(store.get(), 1);
  StreamRecord r = Record(1);
  ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, "bytes", {{"w", 1, 1}, {std::string(600, 'L'), 1, 1}}).ok());
  auto log2 = NewLog(store.get(), 2);
  StreamRecord r2 = Record(2);
  ASSERT_TRUE(AppendAndCommit(store.get(), log2.get(), &r2, "keep", {{"w", 1, 9}}).ok());
  ASSERT_TRUE(PathExists(StreamDir(1)));
  ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kErase, Record(1), {}, nullptr}}).ok());
  EXPECT_FALSE(PathExists(StreamDir(1)));
  EXPECT_TRUE(PathExists(StreamDir(2)));
  store.reset();
  store = Open();
  uint64_t next = 0;
  auto streams = Recover(store.get(), &next);
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(streams[0].record.id, 2u);
  ASSERT_EQ(streams[0].producers.size(), 1u);
  EXPECT_EQ(streams[0].producers[0].last_seq, 9u);
  EXPECT_EQ(next, 3u);  // ids are never reused
}

// Under INTERVAL an erase's commit is not durable when Commit returns
// (MDB_NOSYNC): unlinking the files then would let a power loss bring the
// record back without its bytes. The files wait for the next sync.
TEST_F(LmdbStoreTest, UnderIntervalErasedFilesGoOnlyAfterTheNextSync) {
  LmdbStoreOptions o = Options();
  o.fsync = DS_FSYNC_INTERVAL;
  o.fsync_interval_ms = 3600 * 1000;  // the test syncs (Flush) itself
  auto store = Open(o);
  Recover(store.get());
  auto log = NewLog(store.get(), 1);
  StreamRecord r = Record(1);
  ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, "bytes").ok());
  ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kErase, Record(1), {}, nullptr}}).ok());
  EXPECT_TRUE(PathExists(StreamDir(1)));  // the erase is not durable yet
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_FALSE(PathExists(StreamDir(1)));
}

TEST_F(LmdbStoreTest, UnderIntervalTrimmedFilesGoOnlyAfterTheNextSync) {
  LmdbStoreOptions o = Options();
  o.fsync = DS_FSYNC_INTERVAL;
  o.fsync_interval_ms = 3600 * 1000;
  o.segment_bytes = 10;
  auto store = Open(o);
  Recover(store.get());
  auto log = NewLog(store.get(), 1);
  StreamRecord r = Record(1);
  ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 0, 35)).ok());
  r.start = 20;
  ASSERT_TRUE(CommitRecord(store.get(), r).ok());
  ASSERT_TRUE(log->Trim(20).ok());
  EXPECT_EQ(log->start(), 20u);
  EXPECT_TRUE(PathExists(JoinPath(StreamDir(1), SegmentFileName(0))));
  EXPECT_TRUE(PathExists(JoinPath(StreamDir(1), SegmentFileName(10))));
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_FALSE(PathExists(JoinPath(StreamDir(1), SegmentFileName(0))));
  EXPECT_FALSE(PathExists(JoinPath(StreamDir(1), SegmentFileName(10))));
  std::string out;
  ASSERT_TRUE(log->Read(20, 15, &out).ok());
  EXPECT_EQ(out, Bytes(1, 20, 35));
}

// A clean close syncs, so what was queued goes then; and ALWAYS and OFF
// (which syncs the environment first) free the space at once.
TEST_F(LmdbStoreTest, ErasedFilesGoAtCloseUnderIntervalAndAtOnceUnderAlwaysAndOff) {
  for (ds_fsync policy : {DS_FSYNC_ALWAYS, DS_FSYNC_INTERVAL, DS_FSYNC_OFF}) {
    SCOPED_TRACE(policy);
    TempDir tmp;
    LmdbStoreOptions o = Options();
    o.data_dir = JoinPath(tmp.path(), "data");
    o.fsync = policy;
    o.fsync_interval_ms = 3600 * 1000;
    const std::string dir = JoinPath(JoinPath(o.data_dir, "segments"), ZeroPadded(1));
    {
      auto store = Open(o);
      Recover(store.get());
      auto log = NewLog(store.get(), 1);
      StreamRecord r = Record(1);
      ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, "bytes").ok());
      ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kErase, Record(1), {}, nullptr}}).ok());
      EXPECT_EQ(PathExists(dir), policy == DS_FSYNC_INTERVAL);
    }
    EXPECT_FALSE(PathExists(dir));
    auto store = Open(o);
    EXPECT_TRUE(Recover(store.get()).empty());
  }
}

// Recovery lowering a JSON stream's tail (bytes lost) stops at the end of
// its last whole message, never inside one (json_mode.h: each stored
// message ends with a newline).
TEST_F(LmdbStoreTest, ALoweredJsonTailEndsOnAMessageBoundary) {
  LmdbStoreOptions o = Options();
  o.segment_bytes = 10;
  const std::string m1 = "{\"a\":1}\n", m2 = "{\"bb\":22}\n", m3 = "[3]\n";  // 8, 10, 4 bytes
  {
    auto store = Open(o);
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    r.content_type = "application/json";
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, m1).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, m2).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, m3).ok());
  }
  // Bytes [10, 20) go: the contiguous bytes end at 10, inside m2 [8, 18).
  ASSERT_TRUE(RemoveFile(JoinPath(StreamDir(1), SegmentFileName(10))).ok());
  {
    auto store = Open(o);
    auto streams = Recover(store.get());
    ASSERT_EQ(streams.size(), 1u);
    EXPECT_EQ(streams[0].record.tail, 8u);
    EXPECT_EQ(streams[0].log->tail(), 8u);
    EXPECT_EQ(ReadAll(*streams[0].log), m1);
  }
  // Recorded, and the checksum of the cut block fits what was kept.
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(streams[0].record.tail, 8u);
  EXPECT_EQ(ReadAll(*streams[0].log), m1);
  EXPECT_EQ(store->checksum_failures(), 0u);
}

// A power loss while a new store was being created: LMDB's first pages of
// data.mdb never reached the disk. The environment is built aside and
// renamed into place whole, so what is left is a streams.db.new/ (and
// perhaps an empty streams.db/), and the next open simply creates it again.
TEST_F(LmdbStoreTest, AnInterruptedCreationOfTheEnvironmentIsRedone) {
  const std::string env_dir = JoinPath(data_dir(), "streams.db");
  ASSERT_TRUE(CreateDirsDurably(env_dir).ok());
  ASSERT_TRUE(CreateDirsDurably(env_dir + ".new").ok());
  {
    UniqueFd fd;
    ASSERT_TRUE(OpenFile(env_dir + ".new/data.mdb", O_RDWR | O_CREAT, 0644, &fd).ok());
    ASSERT_TRUE(WriteAt(fd.get(), std::string(16384, '\0'), 0, "data.mdb").ok());  // torn: no meta
  }
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(Recover(store.get()).empty());
    EXPECT_FALSE(PathExists(env_dir + ".new"));
    EXPECT_TRUE(PathExists(JoinPath(env_dir, "data.mdb")));
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, "kept").ok());
  }
  auto store = Open();
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(ReadAll(*streams[0].log), "kept");
}

TEST_F(LmdbStoreTest, OrphanDirectoryIsRemovedOnRecover) {
  {
    auto store = Open();
    Recover(store.get());
    auto log = NewLog(store.get(), 5);
    ASSERT_TRUE(log->Append("never committed", 0).ok());
  }
  ASSERT_TRUE(PathExists(StreamDir(5)));
  auto store = Open();
  EXPECT_TRUE(Recover(store.get()).empty());
  EXPECT_FALSE(PathExists(StreamDir(5)));
}

TEST_F(LmdbStoreTest, MissingSegmentLowersTheTailWithoutCrashing) {
  LmdbStoreOptions o = Options();
  o.segment_bytes = 10;
  {
    auto store = Open(o);
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 0, 35)).ok());
  }
  ASSERT_TRUE(RemoveFile(JoinPath(StreamDir(1), SegmentFileName(20))).ok());
  {
    auto store = Open(o);
    auto streams = Recover(store.get());
    ASSERT_EQ(streams.size(), 1u);
    EXPECT_EQ(streams[0].record.tail, 20u);
    EXPECT_EQ(streams[0].log->tail(), 20u);
    EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 20));
  }
  // The lowered tail was recorded: the next start agrees without repairs.
  auto store = Open(o);
  auto streams = Recover(store.get());
  EXPECT_EQ(streams[0].record.tail, 20u);
}

TEST_F(LmdbStoreTest, MapGrowsFromATinyInitialMap) {
  LmdbStoreOptions o = Options();
  o.initial_map_bytes = 64 << 10;
  o.fsync = DS_FSYNC_OFF;  // growth does not depend on the policy; keep it quick
  constexpr uint64_t kStreams = 5000;
  {
    auto store = Open(o);
    Recover(store.get());
    const uint64_t initial = store->map_bytes();
    std::vector<StreamMutation> batch;
    for (uint64_t id = 1; id <= kStreams; ++id) {
      StreamRecord r = Record(id);
      r.path += std::string(100, 'x');  // fatter records fill the map faster
      batch.push_back(StreamMutation{StreamMutation::Kind::kUpsert, r, {{"writer", 1, id}}, nullptr});
      if (batch.size() == (id < 2500 ? 1 : 250) || id == kStreams) {
        Status s = store->Commit(batch);
        ASSERT_TRUE(s.ok()) << s.message();
        batch.clear();
      }
    }
    ASSERT_TRUE(batch.empty());
    EXPECT_GT(store->map_bytes(), initial);
    std::printf("[ map ] grew from %llu to %llu bytes for %llu records\n",
                static_cast<unsigned long long>(initial),
                static_cast<unsigned long long>(store->map_bytes()),
                static_cast<unsigned long long>(kStreams));
  }
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), kStreams);
  EXPECT_EQ(streams.back().producers[0].last_seq, kStreams);
}

TEST_F(LmdbStoreTest, SecondOpenOfTheSameDataDirIsLocked) {
  auto first = Open();
  ASSERT_NE(first, nullptr);
  std::unique_ptr<LmdbStore> second;
  Status s = LmdbStore::Open(Options(), &second);
  EXPECT_EQ(s.code(), Status::Code::kLocked);
  EXPECT_NE(s.message().find(data_dir() + "/LOCK"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("another server"), std::string::npos) << s.message();
  EXPECT_EQ(second, nullptr);
  // The first store is unharmed, and the lock goes with it.
  Recover(first.get());
  auto log = NewLog(first.get(), 1);
  StreamRecord r = Record(1);
  EXPECT_TRUE(AppendAndCommit(first.get(), log.get(), &r, "x").ok());
  first.reset();
  EXPECT_NE(Open(), nullptr);
}

TEST_F(LmdbStoreTest, IntervalAndOffPoliciesCommitAndSurviveACleanClose) {
  for (ds_fsync policy : {DS_FSYNC_INTERVAL, DS_FSYNC_OFF}) {
    SCOPED_TRACE(policy);
    TempDir tmp;
    LmdbStoreOptions o = Options();
    o.data_dir = JoinPath(tmp.path(), "data");
    o.fsync = policy;
    o.fsync_interval_ms = 1;  // the syncer runs constantly alongside commits
    o.segment_bytes = 64;
    {
      auto store = Open(o);
      EXPECT_TRUE(store->durable());  // it keeps data, whatever the policy
      Recover(store.get());
      std::vector<std::unique_ptr<StreamLog>> logs;
      std::vector<StreamRecord> records;
      for (uint64_t id = 1; id <= 10; ++id) {
        logs.push_back(NewLog(store.get(), id));
        records.push_back(Record(id));
      }
      for (int round = 0; round < 30; ++round) {
        for (uint64_t id = 1; id <= 10; ++id) {
          StreamRecord& r = records[id - 1];
          ASSERT_TRUE(AppendAndCommit(store.get(), logs[id - 1].get(), &r,
                                      Bytes(id, r.tail, r.tail + 7))
                          .ok());
        }
      }
      ASSERT_TRUE(store->Flush().ok());
    }
    o.fsync = DS_FSYNC_ALWAYS;
    auto store = Open(o);
    auto streams = Recover(store.get());
    ASSERT_EQ(streams.size(), 10u);
    for (const RecoveredStream& s : streams) {
      EXPECT_EQ(ReadAll(*s.log), Bytes(s.record.id, 0, 210));
    }
  }
}

// Opens streams.db directly, the store being closed, and runs `body` in one
// transaction: read-only, or committed after it. How tests read what is on
// disk and forge what another server version would leave.
void InEnvironment(const std::string& data_dir, bool read_only,
                   const std::function<void(MDB_txn*, const lmdb::Dbs&)>& body) {
  MDB_env* raw = nullptr;
  ASSERT_EQ(mdb_env_create(&raw), 0);
  lmdb::Env env(raw);
  ASSERT_EQ(mdb_env_set_maxdbs(raw, lmdb::kMaxDbs), 0);
  const unsigned flags = MDB_NOTLS | (read_only ? MDB_RDONLY : 0u);
  ASSERT_EQ(mdb_env_open(raw, (data_dir + "/streams.db").c_str(), flags, 0644), 0);
  lmdb::Txn txn;
  ASSERT_EQ(txn.Begin(raw, read_only ? MDB_RDONLY : 0u), 0);
  lmdb::Dbs dbs;
  ASSERT_EQ(lmdb::OpenDbs(txn.get(), false, &dbs), 0);
  body(txn.get(), dbs);
  if (!read_only) ASSERT_EQ(txn.Commit(), 0);
}

TEST_F(LmdbStoreTest, RefusesANewerStorageFormat) {
  { auto store = Open(); }
  // What a future server would leave behind.
  InEnvironment(data_dir(), /*read_only=*/false, [](MDB_txn* txn, const lmdb::Dbs& dbs) {
    ASSERT_EQ(lmdb::PutU64(txn, dbs.meta, lmdb::kFormatVersionKey, lmdb::kFormatVersion + 1), 0);
  });
  std::unique_ptr<LmdbStore> store;
  Status s = LmdbStore::Open(Options(), &store);
  EXPECT_EQ(s.code(), Status::Code::kNotSupported) << s.message();
  EXPECT_NE(s.message().find("newer server"), std::string::npos) << s.message();
}

// ---- The write-ahead path (fsync always) -----------------------------------

// The wal database's entries, read with the store closed; with `seqs`,
// also each entry's (commit sequence, stream id) in key order.
std::map<std::pair<uint64_t, uint64_t>, std::string> WalEntries(
    const std::string& data_dir, uint64_t* format = nullptr,
    std::vector<std::pair<uint64_t, uint64_t>>* seqs = nullptr) {
  std::map<std::pair<uint64_t, uint64_t>, std::string> out;
  InEnvironment(data_dir, /*read_only=*/true, [&](MDB_txn* txn, const lmdb::Dbs& dbs) {
    if (format != nullptr) {
      bool found = false;
      EXPECT_EQ(lmdb::GetU64(txn, dbs.meta, lmdb::kFormatVersionKey, format, &found), 0);
    }
    if (!dbs.has_wal) return;
    lmdb::Cursor cursor;
    EXPECT_EQ(cursor.Open(txn, dbs.wal), 0);
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT)) {
      uint64_t seq = 0, id = 0, position = 0;
      EXPECT_TRUE(lmdb::ParseWalKey(lmdb::View(k), &seq, &id, &position));
      out[{id, position}] = std::string(lmdb::View(v));
      if (seqs != nullptr) seqs->emplace_back(seq, id);
    }
  });
  return out;
}

// What a power loss does to bytes that were written but never synced.
void CutSegment(const std::string& path, uint64_t size) {
  UniqueFd fd;
  ASSERT_TRUE(OpenFile(path, O_RDWR, 0, &fd).ok());
  ASSERT_TRUE(Truncate(fd.get(), size, path).ok());
}

TEST_F(LmdbStoreTest, SmallCommitsGoToTheWalAndAReplayRestoresWhatThePowerLossTook) {
  {
    auto store = Open();
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    // The first append makes the directory and file: those names cannot
    // come back from a WAL entry, so this commit syncs in place.
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 0, 100)).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 100, 300)).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 300, 310),
                                {{"p", 0, 4}})
                    .ok());
  }
  auto wal = WalEntries(data_dir());
  ASSERT_EQ(wal.size(), 2u);
  EXPECT_EQ((wal[{1, 100}]), Bytes(1, 100, 300));
  EXPECT_EQ((wal[{1, 300}]), Bytes(1, 300, 310));
  // The power loss: only the first 100 bytes (the synced ones) remain.
  CutSegment(StreamDir(1) + "/" + SegmentFileName(0), 100);
  {
    auto store = Open();
    auto streams = Recover(store.get());
    ASSERT_EQ(streams.size(), 1u);
    EXPECT_EQ(streams[0].record.tail, 310u);
    EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 310));
    ASSERT_EQ(streams[0].producers.size(), 1u);
    EXPECT_EQ(streams[0].producers[0].last_seq, 4u);
    // Appends go on from the restored tail, through the WAL again.
    StreamRecord r = streams[0].record;
    ASSERT_TRUE(AppendAndCommit(store.get(), streams[0].log.get(), &r, Bytes(1, 310, 320)).ok());
  }
  wal = WalEntries(data_dir());
  ASSERT_EQ(wal.size(), 1u);  // the replayed entries were dropped
  EXPECT_EQ((wal[{1, 310}]), Bytes(1, 310, 320));
  auto store = Open();
  auto streams = Recover(store.get());
  EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 320));
  store.reset();
  EXPECT_TRUE(WalEntries(data_dir()).empty());
}

TEST_F(LmdbStoreTest, LargeRangesAndNewSegmentFilesAreSyncedInPlace) {
  LmdbStoreOptions o = Options();
  o.segment_bytes = 64 << 10;
  {
    auto store = Open(o);
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 0, 10)).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 10, 20)).ok());  // WAL
    // Over the per-log limit (64 KiB), and rolling into a second file.
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 20, 20 + (70 << 10))).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 20 + (70 << 10), 30 + (70 << 10))).ok());
  }
  auto wal = WalEntries(data_dir());
  ASSERT_EQ(wal.size(), 2u);
  EXPECT_EQ((wal[{1, 10}]), Bytes(1, 10, 20));
  EXPECT_EQ((wal[{1, 20 + (70 << 10)}]), Bytes(1, 20 + (70 << 10), 30 + (70 << 10)));
  // Lose the unsynced tail of the second file only: the in-place sync made
  // everything before it durable, the WAL brings back the rest.
  CutSegment(StreamDir(1) + "/" + SegmentFileName(64 << 10), 20 + (70 << 10) - (64 << 10));
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(streams[0].record.tail, 30u + (70 << 10));
  EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 30 + (70 << 10)));
}

TEST_F(LmdbStoreTest, ACheckpointSyncsEverythingAndEmptiesTheWal) {
  LmdbStoreOptions o = Options();
  o.wal_checkpoint_bytes = 15;
  {
    auto store = Open(o);
    Recover(store.get());
    auto log1 = NewLog(store.get(), 1);
    auto log2 = NewLog(store.get(), 2);
    StreamRecord r1 = Record(1), r2 = Record(2);
    ASSERT_TRUE(AppendAndCommit(store.get(), log1.get(), &r1, Bytes(1, 0, 5)).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log2.get(), &r2, Bytes(2, 0, 5)).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log1.get(), &r1, Bytes(1, 5, 15)).ok());  // WAL: 10
    ASSERT_TRUE(AppendAndCommit(store.get(), log2.get(), &r2, Bytes(2, 5, 15)).ok());  // WAL: 20
    // Due now (20 >= 15): this commit syncs the filesystem and drops both
    // entries, stream 2's included though it is not in the batch.
    ASSERT_TRUE(AppendAndCommit(store.get(), log1.get(), &r1, Bytes(1, 15, 20)).ok());
  }
  EXPECT_TRUE(WalEntries(data_dir()).empty());
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 2u);
  EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 20));
  EXPECT_EQ(ReadAll(*streams[1].log), Bytes(2, 0, 15));
}

TEST_F(LmdbStoreTest, AFormatVersion1DirectoryIsUpgraded) {
  { auto store = Open(); }
  // What a version 1 server leaves: no wal database, format_version 1.
  InEnvironment(data_dir(), /*read_only=*/false, [](MDB_txn* txn, const lmdb::Dbs& dbs) {
    ASSERT_TRUE(dbs.has_wal);
    ASSERT_EQ(mdb_drop(txn, dbs.wal, 1), 0);  // delete the database itself
    ASSERT_EQ(lmdb::PutU64(txn, dbs.meta, lmdb::kFormatVersionKey, 1), 0);
  });
  uint64_t format = 0;
  WalEntries(data_dir(), &format);
  ASSERT_EQ(format, 1u);
  ASSERT_NO_FATAL_FAILURE(CommitAppendsToNewStream(1, {5, 9}));
  auto wal = WalEntries(data_dir(), &format);
  EXPECT_EQ(format, lmdb::kFormatVersion);  // through version 3, then checksums (4)
  EXPECT_EQ((wal[{1, 5}]), Bytes(1, 5, 9));
}

TEST_F(LmdbStoreTest, ACommitsWalEntriesShareOneSequenceAboveEveryEarlierOne) {
  {
    auto store = Open();
    Recover(store.get());
    std::vector<std::unique_ptr<StreamLog>> logs;
    std::vector<StreamRecord> records;
    for (uint64_t id = 1; id <= 3; ++id) {
      logs.push_back(NewLog(store.get(), id));
      records.push_back(Record(id));
      ASSERT_TRUE(AppendAndCommit(store.get(), logs.back().get(), &records.back(), Bytes(id, 0, 10)).ok());
    }
    // One commit across the three streams, listed out of id order, then
    // one to the first stream alone.
    std::vector<StreamMutation> batch;
    for (uint64_t id : {3, 1, 2}) {
      ASSERT_TRUE(logs[id - 1]->Append(Bytes(id, 10, 20), 0).ok());
      records[id - 1].tail = 20;
      batch.push_back(StreamMutation{StreamMutation::Kind::kUpsert, records[id - 1], {}, logs[id - 1].get()});
    }
    ASSERT_TRUE(store->Commit(batch).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), logs[0].get(), &records[0], Bytes(1, 20, 25)).ok());
  }
  std::vector<std::pair<uint64_t, uint64_t>> seqs;  // (commit, stream) in key order
  auto wal = WalEntries(data_dir(), nullptr, &seqs);
  ASSERT_EQ(seqs.size(), 4u);
  EXPECT_EQ(seqs[0].first, seqs[1].first);
  EXPECT_EQ(seqs[0].first, seqs[2].first);
  EXPECT_EQ((std::vector<uint64_t>{seqs[0].second, seqs[1].second, seqs[2].second}),
            (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_GT(seqs[3].first, seqs[0].first);
  EXPECT_EQ(seqs[3].second, 1u);
  EXPECT_EQ((wal[{1, 20}]), Bytes(1, 20, 25));

  // A power loss takes every unsynced byte (the first append of each stream
  // was synced in place): the entries, interleaved across streams in key
  // order, bring each stream back whole.
  for (uint64_t id = 1; id <= 3; ++id) CutSegment(StreamDir(id) + "/" + SegmentFileName(0), 10);
  auto store = Open();
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 3u);
  EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 25));
  EXPECT_EQ(ReadAll(*streams[1].log), Bytes(2, 0, 20));
  EXPECT_EQ(ReadAll(*streams[2].log), Bytes(3, 0, 20));
}

TEST_F(LmdbStoreTest, AFormatVersion2WalIsReplayedAndTheDirectoryUpgraded) {
  ASSERT_NO_FATAL_FAILURE(CommitAppendsToNewStream(1, {100, 150, 160}));
  // What a version 2 server leaves: the same entries keyed stream id ‖
  // position, and format_version 2.
  InEnvironment(data_dir(), /*read_only=*/false, [&](MDB_txn* txn, const lmdb::Dbs& dbs) {
    ASSERT_EQ(mdb_drop(txn, dbs.wal, 0), 0);
    for (auto [from, to] : {std::pair<uint64_t, uint64_t>{150, 160}, {100, 150}}) {
      const std::string key = StreamKey(1) + StreamKey(from), value = Bytes(1, from, to);
      MDB_val k = lmdb::Val(key), v = lmdb::Val(value);
      ASSERT_EQ(mdb_put(txn, dbs.wal, &k, &v, 0), 0);
    }
    ASSERT_EQ(lmdb::PutU64(txn, dbs.meta, lmdb::kFormatVersionKey, 2), 0);
  });
  CutSegment(StreamDir(1) + "/" + SegmentFileName(0), 100);  // the power loss
  {
    auto store = Open();
    auto streams = Recover(store.get());
    ASSERT_EQ(streams.size(), 1u);
    EXPECT_EQ(streams[0].record.tail, 160u);
    EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 160));
    StreamRecord r = streams[0].record;
    ASSERT_TRUE(AppendAndCommit(store.get(), streams[0].log.get(), &r, Bytes(1, 160, 170)).ok());
  }
  uint64_t format = 0;
  std::vector<std::pair<uint64_t, uint64_t>> seqs;
  auto wal = WalEntries(data_dir(), &format, &seqs);
  EXPECT_EQ(format, lmdb::kFormatVersion);
  ASSERT_EQ(seqs.size(), 1u);  // the replayed entries went, the new one has a sequence
  EXPECT_GT(seqs[0].first, 0u);
  EXPECT_EQ((wal[{1, 160}]), Bytes(1, 160, 170));
}

TEST_F(LmdbStoreTest, RejectsBadOptions) {
  std::unique_ptr<LmdbStore> store;
  LmdbStoreOptions o = Options();
  o.data_dir.clear();
  EXPECT_EQ(LmdbStore::Open(o, &store).code(), Status::Code::kInvalidArgument);
  o = Options();
  o.segment_bytes = 0;
  EXPECT_EQ(LmdbStore::Open(o, &store).code(), Status::Code::kInvalidArgument);
  o = Options();
  o.fsync = DS_FSYNC_INTERVAL;
  o.fsync_interval_ms = 0;
  EXPECT_EQ(LmdbStore::Open(o, &store).code(), Status::Code::kInvalidArgument);
}

// Commit latency with fsync ALWAYS on this machine's disk. Prints, never
// asserts on time.
TEST_F(LmdbStoreTest, CommitLatencyWithFsyncAlways) {
  auto store = Open();
  Recover(store.get());
  constexpr uint64_t kStreams = 64;
  std::vector<std::unique_ptr<StreamLog>> logs;
  std::vector<StreamRecord> records;
  for (uint64_t id = 1; id <= kStreams; ++id) {
    logs.push_back(NewLog(store.get(), id));
    records.push_back(Record(id));
    ASSERT_TRUE(AppendAndCommit(store.get(), logs.back().get(), &records.back(), "warm").ok());
  }
  const std::string payload(100, 'x');
  std::vector<double> single, batch64;
  for (int i = 0; i < 40; ++i) {
    auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(AppendAndCommit(store.get(), logs[0].get(), &records[0], payload, {{"w", 1, static_cast<uint64_t>(i)}}).ok());
    single.push_back(Millis(std::chrono::steady_clock::now() - start));
  }
  for (int i = 0; i < 15; ++i) {
    auto start = std::chrono::steady_clock::now();
    std::vector<StreamMutation> batch;
    for (uint64_t k = 0; k < kStreams; ++k) {
      ASSERT_TRUE(logs[k]->Append(payload, 0).ok());
      records[k].tail = logs[k]->tail();
      batch.push_back(StreamMutation{StreamMutation::Kind::kUpsert, records[k], {{"w", 1, static_cast<uint64_t>(i)}}, logs[k].get()});
    }
    ASSERT_TRUE(store->Commit(batch).ok());
    batch64.push_back(Millis(std::chrono::steady_clock::now() - start));
  }
  std::printf("[ latency ] fsync=always commit of 1 append: median %.2f ms, p90 %.2f ms\n",
              Percentile(single, 0.5), Percentile(single, 0.9));
  std::printf("[ latency ] fsync=always commit of 64 appends to 64 streams: median %.2f ms, p90 %.2f ms\n",
              Percentile(batch64, 0.5), Percentile(batch64, 0.9));
}

// Recover of many streams. Prints the time, never asserts on it. Most of the
// test's own run time is building the fixture (one directory and file per
// stream), so `make test` uses 2,000; DS_RECOVER_BENCH_STREAMS=100000
// measures the figure the README quotes.
TEST_F(LmdbStoreTest, RecoverManyStreams) {
  uint64_t kStreams = 2000;
  if (const char* env = std::getenv("DS_RECOVER_BENCH_STREAMS")) kStreams = std::max<uint64_t>(1000, std::strtoull(env, nullptr, 10));
  LmdbStoreOptions o = Options();
  o.fsync = DS_FSYNC_OFF;  // building the fixture fast; the close syncs it
  {
    auto store = Open(o);
    Recover(store.get());
    std::vector<std::unique_ptr<StreamLog>> logs;
    std::vector<StreamMutation> batch;
    for (uint64_t id = 1; id <= kStreams; ++id) {
      logs.push_back(NewLog(store.get(), id));
      StreamRecord r = Record(id);
      ASSERT_TRUE(logs.back()->Append(Bytes(id, 0, 16), 0).ok());
      r.tail = 16;
      batch.push_back(StreamMutation{StreamMutation::Kind::kUpsert, r, {{"w", 1, id}}, logs.back().get()});
      if (batch.size() == 1000 || id == kStreams) {
        ASSERT_TRUE(store->Commit(batch).ok());
        batch.clear();
        logs.clear();
      }
    }
    EXPECT_LE(store->open_segment_files(), o.max_open_files);
  }
  o.fsync = DS_FSYNC_ALWAYS;
  auto store = Open(o);
  auto start = std::chrono::steady_clock::now();
  uint64_t next = 0;
  auto streams = Recover(store.get(), &next);
  const double ms = Millis(std::chrono::steady_clock::now() - start);
  ASSERT_EQ(streams.size(), kStreams);
  EXPECT_EQ(next, kStreams + 1);
  EXPECT_EQ(ReadAll(*streams[kStreams / 2].log), Bytes(kStreams / 2 + 1, 0, 16));
  std::printf("[ recover ] %llu streams recovered in %.0f ms\n",
              static_cast<unsigned long long>(kStreams), ms);
}

// ---- Backup --------------------------------------------------------------

class LmdbBackupTest : public LmdbStoreTest {
 protected:
  std::string dest() const { return JoinPath(tmp_.path(), "backup"); }
};

TEST_F(LmdbBackupTest, BackupOfAClosedDataDirRecoversEverything) {
  LmdbStoreOptions o = Options();
  o.segment_bytes = 32;
  {
    auto store = Open(o);
    Recover(store.get());
    for (uint64_t id = 1; id <= 5; ++id) {
      auto log = NewLog(store.get(), id);
      StreamRecord r = Record(id);
      ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(id, 0, id * 40), {{"w", id, id}}).ok());
      ASSERT_TRUE(log->Append("uncommitted", 0).ok());  // not in the backup
    }
  }
  ds_error err;
  ASSERT_EQ(ds_backup(data_dir().c_str(), dest().c_str(), &err), DS_OK) << err.message;
  EXPECT_FALSE(PathExists(dest() + "/streams.db/lock.mdb"));  // none needed yet
  o.data_dir = dest();
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 5u);
  for (const RecoveredStream& s : streams) {
    EXPECT_EQ(ReadAll(*s.log), Bytes(s.record.id, 0, s.record.id * 40));
    ASSERT_EQ(s.producers.size(), 1u);
    EXPECT_EQ(s.producers[0].epoch, s.record.id);
  }
}

TEST_F(LmdbBackupTest, BackupOfATrimmedStreamKeepsItsStart) {
  LmdbStoreOptions o = Options();
  o.segment_bytes = 32;
  {
    auto store = Open(o);
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 0, 200)).ok());
    r.start = 100;  // files 0..96 wholly below: 0, 32 and 64 go
    ASSERT_TRUE(CommitRecord(store.get(), r).ok());
    ASSERT_TRUE(log->Trim(100).ok());
    // A stream whose trim was recorded but not carried out (a crash): its
    // leftovers below the start must not make the backup fail.
    auto log2 = NewLog(store.get(), 2);
    StreamRecord r2 = Record(2);
    ASSERT_TRUE(AppendAndCommit(store.get(), log2.get(), &r2, Bytes(2, 0, 100)).ok());
    r2.start = 70;
    ASSERT_TRUE(CommitRecord(store.get(), r2).ok());
  }
  ds_error err;
  ASSERT_EQ(ds_backup(data_dir().c_str(), dest().c_str(), &err), DS_OK) << err.message;
  o.data_dir = dest();
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 2u);
  const uint64_t starts[] = {100, 70}, tails[] = {200, 100};
  for (size_t i = 0; i < 2; ++i) {
    const RecoveredStream& s = streams[i];
    EXPECT_EQ(s.record.start, starts[i]);
    EXPECT_EQ(s.log->tail(), tails[i]) << "the copy lost bytes of stream " << s.record.id;
    std::string out;
    ASSERT_TRUE(s.log->Read(starts[i], tails[i] - starts[i], &out).ok());
    EXPECT_EQ(out, Bytes(s.record.id, starts[i], tails[i]));
  }
  EXPECT_FALSE(PathExists(JoinPath(dest(), "segments/0000000000000001/" + SegmentFileName(64))));
}

TEST_F(LmdbBackupTest, RefusesANonEmptyDestinationAndAMissingSource) {
  { auto store = Open(); }
  ASSERT_TRUE(CreateDirsDurably(dest() + "/something").ok());
  ds_error err;
  EXPECT_EQ(ds_backup(data_dir().c_str(), dest().c_str(), &err), DS_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(err.message).find("not empty"), std::string::npos) << err.message;
  const std::string nowhere = JoinPath(tmp_.path(), "nowhere");
  EXPECT_EQ(ds_backup(nowhere.c_str(), JoinPath(tmp_.path(), "b2").c_str(), &err), DS_ERR_INVALID_ARGUMENT);
  EXPECT_FALSE(PathExists(JoinPath(tmp_.path(), "b2")));  // nothing made for a bad source
  EXPECT_EQ(ds_backup(nullptr, dest().c_str(), &err), DS_ERR_INVALID_ARGUMENT);
}

TEST_F(LmdbBackupTest, BackupWhileAppendingKeepsEveryStreamCommittedBeforeIt) {
  LmdbStoreOptions o = Options();
  o.segment_bytes = 256;
  o.initial_map_bytes = 64 << 10;  // the writer grows the map during the copy
  auto store = Open(o);
  Recover(store.get());

  // Committed content per stream, as the writer knows it.
  std::mutex mu;
  std::map<uint64_t, std::string> committed;
  std::map<uint64_t, std::unique_ptr<StreamLog>> logs;
  std::map<uint64_t, StreamRecord> records;
  auto append = [&](uint64_t id, size_t n) -> Status {
    StreamRecord& r = records[id];
    const std::string bytes = Bytes(id, r.tail, r.tail + n);
    Status s = AppendAndCommit(store.get(), logs[id].get(), &r, bytes, {{"w", 1, r.tail}});
    if (s.ok()) {
      std::lock_guard lock(mu);
      committed[id] += bytes;
    }
    return s;
  };
  uint64_t next_id = 1;
  for (; next_id <= 40; ++next_id) {
    logs[next_id] = NewLog(store.get(), next_id);
    records[next_id] = Record(next_id);
    ASSERT_TRUE(append(next_id, 300).ok());
  }
  const std::map<uint64_t, std::string> before = committed;  // the promise

  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::mt19937 rng(7);
    while (!stop) {
      uint64_t id = 1 + rng() % (next_id - 1);
      if (records.count(id) == 0) continue;
      if (!append(id, 1 + rng() % 200).ok()) {
        ADD_FAILURE() << "append failed";
        break;
      }
      if (rng() % 10 == 0) {  // new streams come and go meanwhile
        uint64_t id2 = next_id++;
        logs[id2] = NewLog(store.get(), id2);
        records[id2] = Record(id2);
        if (!append(id2, 50).ok()) break;
        if (rng() % 2 == 0) {
          StreamRecord gone = records[id2];
          records.erase(id2);
          if (!store->Commit({StreamMutation{StreamMutation::Kind::kErase, gone, {}, nullptr}}).ok()) break;
          std::lock_guard lock(mu);
          committed.erase(id2);
        }
      }
    }
  });
  Status s = BackupDataDir(data_dir(), dest());
  stop = true;
  writer.join();
  ASSERT_TRUE(s.ok()) << s.message();

  LmdbStoreOptions bo = o;
  bo.data_dir = dest();
  auto backup = Open(bo);
  auto streams = Recover(backup.get());
  std::map<uint64_t, const RecoveredStream*> by_id;
  for (const RecoveredStream& r : streams) by_id[r.record.id] = &r;
  for (const auto& [id, bytes] : before) {
    ASSERT_TRUE(by_id.count(id)) << "stream " << id << " missing from the backup";
    const std::string got = ReadAll(*by_id[id]->log);
    ASSERT_GE(got.size(), bytes.size()) << "stream " << id;
    EXPECT_EQ(got.substr(0, bytes.size()), bytes) << "stream " << id;
    EXPECT_EQ(got, committed[id].substr(0, got.size())) << "stream " << id;
  }
  for (const RecoveredStream& r : streams) {  // nothing invented either
    ASSERT_TRUE(committed.count(r.record.id) || r.record.id >= 41) << r.record.id;
    if (committed.count(r.record.id)) {
      EXPECT_EQ(ReadAll(*r.log), committed[r.record.id].substr(0, r.log->tail()));
    }
  }
}

// ---- Inline streams (STORAGE_FORMAT.md, "Inline streams") ----------------

class InlineStreamTest : public LmdbBackupTest {
 protected:
  InlineStreamTest() { inline_stream_bytes_ = kInlineStreamBytes; }
  // The stream's committed inline value, read straight from LMDB.
  std::string InlineValue(uint64_t id) {
    std::string out;
    InEnvironment(data_dir(), /*read_only=*/true, [&](MDB_txn* txn, const lmdb::Dbs& dbs) {
      ASSERT_FALSE(dbs.has_inline);  // format 6: in the records, no database of their own
      std::string_view v;
      ASSERT_EQ(lmdb::GetInline(txn, dbs, id, &v), 0);
      out.assign(v);
    });
    return out;
  }
  uint64_t VerifyProblems(const std::string& dir, std::string* report) {
    ds_verify_result result;
    ds_error err;
    EXPECT_EQ(ds_verify(dir.c_str(), &result, &err), DS_OK) << err.message;
    *report = result.report != nullptr ? result.report : "";
    const uint64_t problems = result.problems;
    ds_verify_result_free(&result);
    return problems;
  }
};

TEST_F(InlineStreamTest, ASmallStreamKeepsItsBytesInLmdbWithNoFileUnderEveryPolicy) {
  for (ds_fsync policy : {DS_FSYNC_ALWAYS, DS_FSYNC_INTERVAL, DS_FSYNC_OFF}) {
    SCOPED_TRACE(policy);
    ASSERT_TRUE(RemoveTree(data_dir()).ok());
    LmdbStoreOptions o = Options();
    o.fsync = policy;
    {
      auto store = Open(o);
      Recover(store.get());
      auto log = NewLog(store.get(), 1);
      StreamRecord r = Record(1);
      for (uint64_t to : {100, 250, 400}) {
        ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, log->tail(), to)).ok());
        EXPECT_EQ(ReadAll(*log), Bytes(1, 0, to));
      }
      // The first append cost no directory and no file.
      EXPECT_FALSE(PathExists(StreamDir(1)));
      ASSERT_TRUE(log->Append("not committed", 0).ok());  // never recorded
    }
    EXPECT_EQ(InlineValue(1), Bytes(1, 0, 400));
    {
      auto store = Open(o);
      auto streams = Recover(store.get());
      ASSERT_EQ(streams.size(), 1u);
      EXPECT_EQ(streams[0].record.tail, 400u);
      EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 400));
      // Appends go on inline after a restart.
      StreamRecord r = streams[0].record;
      ASSERT_TRUE(AppendAndCommit(store.get(), streams[0].log.get(), &r, Bytes(1, 400, 500)).ok());
    }
    EXPECT_FALSE(PathExists(StreamDir(1)));
    EXPECT_EQ(InlineValue(1), Bytes(1, 0, 500));
    std::string report;
    EXPECT_EQ(VerifyProblems(data_dir(), &report), 0u) << report;
  }
}

// The inline bytes stay in a stream's record for good, and each commit of
// the stream rewrites the record: with the default limit a grown stream's
// record (its path, content type and inline bytes) must still fit in an
// LMDB leaf, not in overflow pages rewritten whole at every commit.
TEST_F(InlineStreamTest, AGrownStreamsRecordStaysInAnLmdbLeaf) {
  {
    auto store = Open(Options());
    Recover(store.get());
    for (uint64_t id = 1; id <= 8; ++id) {
      auto log = NewLog(store.get(), id);
      StreamRecord r = Record(id);
      r.path = "/v1/stream/" + std::string(200, 'p') + std::to_string(id);  // a long path
      r.content_type = "application/json; charset=utf-8";
      r.last_stream_seq = std::string(64, 's');
      for (uint64_t to = 100; to <= 3 * kInlineStreamBytes; to += 100) {
        ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(id, log->tail(), to)).ok());
      }
      EXPECT_TRUE(PathExists(StreamDir(id)));  // grown past its inline bytes
    }
  }
  // As many 100-byte appends as fit under the limit stayed inline.
  EXPECT_EQ(InlineValue(1).size(), kInlineStreamBytes / 100 * 100);
  InEnvironment(data_dir(), /*read_only=*/true, [&](MDB_txn* txn, const lmdb::Dbs& dbs) {
    MDB_stat stat;
    ASSERT_EQ(mdb_stat(txn, dbs.streams, &stat), 0);
    EXPECT_EQ(stat.ms_entries, 8u);
    EXPECT_EQ(stat.ms_overflow_pages, 0u);
  });
}

TEST_F(InlineStreamTest, AStreamGrowsIntoSegmentFilesThatStartWhereItsInlineBytesEnd) {
  LmdbStoreOptions o = Options();
  o.inline_stream_bytes = 4096;
  {
    auto store = Open(o);
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 0, 3000)).ok());
    EXPECT_FALSE(PathExists(StreamDir(1)));
    // 3000 + 3000 > 4096: this append starts the first file, at 3000.
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 3000, 6000)).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 6000, 70000)).ok());
    EXPECT_EQ(ReadAll(*log), Bytes(1, 0, 70000));
  }
  EXPECT_EQ(InlineValue(1), Bytes(1, 0, 3000));
  std::vector<std::string> names;
  ASSERT_TRUE(ListDir(StreamDir(1), &names).ok());
  EXPECT_EQ(names, std::vector<std::string>{SegmentFileName(3000)});
  // Block 0 spans the inline bytes and the file: its checksum covers both.
  std::vector<std::pair<uint64_t, uint32_t>> crcs;
  InEnvironment(data_dir(), /*read_only=*/true, [&](MDB_txn* txn, const lmdb::Dbs& dbs) {
    ASSERT_EQ(lmdb::GetCrcs(txn, dbs, 1, 0, 10, &crcs), 0);
  });
  ASSERT_EQ(crcs.size(), 2u);
  EXPECT_EQ(crcs[0].second, crc32c::Value(Bytes(1, 0, 65536)));
  EXPECT_EQ(crcs[1].second, crc32c::Value(Bytes(1, 65536, 70000)));
  std::string report;
  EXPECT_EQ(VerifyProblems(data_dir(), &report), 0u) << report;
  {
    auto store = Open(o);
    auto streams = Recover(store.get());
    ASSERT_EQ(streams.size(), 1u);
    EXPECT_EQ(streams[0].record.tail, 70000u);
    EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 70000));
  }
  // The backup carries the inline bytes in its environment copy.
  ds_error err;
  ASSERT_EQ(ds_backup(data_dir().c_str(), dest().c_str(), &err), DS_OK) << err.message;
  EXPECT_EQ(VerifyProblems(dest(), &report), 0u) << report;
  o.data_dir = dest();
  auto store = Open(o);
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 70000));
}

TEST_F(InlineStreamTest, AWriteAheadReplayWritesIntoTheFilesAfterTheInlineBytes) {
  {
    auto store = Open();
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 0, 100)).ok());  // inline
    // Past the inline limit: the first file, at 100 (a new name: synced in place).
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 100, 5000)).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 5000, 5100)).ok());  // the wal
  }
  auto wal = WalEntries(data_dir());
  ASSERT_EQ(wal.size(), 1u);
  EXPECT_EQ((wal[{1, 5000}]), Bytes(1, 5000, 5100));
  // The power loss: the file keeps only its synced bytes [100, 5000).
  CutSegment(StreamDir(1) + "/" + SegmentFileName(100), 4900);
  auto store = Open();
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(streams[0].record.tail, 5100u);
  EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 5100));
}

TEST_F(InlineStreamTest, ARewoundAppendLeavesNoInlineBytesBehind) {
  {
    auto store = Open();
    Recover(store.get());
    auto log = NewLog(store.get(), 1);
    StreamRecord r = Record(1);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 0, 50)).ok());
    // What the engine does after a failed commit (disk full): back to the
    // committed tail, then other bytes at the same positions.
    ASSERT_TRUE(log->Append(std::string(30, '#'), 0).ok());
    ASSERT_TRUE(log->Rewind(50).ok());
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(1, 50, 90)).ok());
    EXPECT_EQ(ReadAll(*log), Bytes(1, 0, 90));
  }
  EXPECT_EQ(InlineValue(1), Bytes(1, 0, 90));
  auto store = Open();
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_EQ(ReadAll(*streams[0].log), Bytes(1, 0, 90));
}

TEST_F(InlineStreamTest, AnEraseDeletesTheInlineBytes) {
  {
    auto store = Open();
    Recover(store.get());
    auto log = NewLog(store.get(), 7);
    StreamRecord r = Record(7);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(7, 0, 64)).ok());
    ASSERT_EQ(InlineValue(7), Bytes(7, 0, 64));
    ASSERT_TRUE(store->Commit({StreamMutation{StreamMutation::Kind::kErase, r, {}, nullptr}}).ok());
  }
  EXPECT_EQ(InlineValue(7), "");
  auto store = Open();
  EXPECT_TRUE(Recover(store.get()).empty());
}

TEST_F(InlineStreamTest, AFormat4DirectoryIsUpgradedAndItsFilesReadInPlace) {
  LmdbStoreOptions o = Options();
  o.inline_stream_bytes = 0;  // what a format 4 server wrote: files only
  {
    auto store = Open(o);
    Recover(store.get());
    for (uint64_t id = 1; id <= 3; ++id) {
      auto log = NewLog(store.get(), id);
      StreamRecord r = Record(id);
      ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(id, 0, id * 100), {{"w", id, id + 10}}).ok());
    }
  }
  InEnvironment(data_dir(), /*read_only=*/false, [](MDB_txn* txn, const lmdb::Dbs& dbs) {
    ASSERT_FALSE(dbs.has_inline);  // neither format 4 nor 6 has the inline database
    ASSERT_EQ(lmdb::PutU64(txn, dbs.meta, lmdb::kFormatVersionKey, 4), 0);
  });
  {
    auto store = Open();  // inline streams on
    auto streams = Recover(store.get());
    ASSERT_EQ(streams.size(), 3u);
    for (RecoveredStream& s : streams) {
      const uint64_t id = s.record.id;
      EXPECT_EQ(s.record.tail, id * 100);
      EXPECT_EQ(ReadAll(*s.log), Bytes(id, 0, id * 100));
      ASSERT_EQ(s.producers.size(), 1u);
      EXPECT_EQ(s.producers[0].epoch, id);
      EXPECT_EQ(s.producers[0].last_seq, id + 10);
      // A stream with a file goes on in it.
      StreamRecord r = s.record;
      ASSERT_TRUE(AppendAndCommit(store.get(), s.log.get(), &r, Bytes(id, id * 100, id * 100 + 10)).ok());
    }
    auto log = NewLog(store.get(), 4);
    StreamRecord r = Record(4);
    ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, Bytes(4, 0, 10)).ok());
  }
  uint64_t format = 0;
  InEnvironment(data_dir(), /*read_only=*/true, [&](MDB_txn* txn, const lmdb::Dbs& dbs) {
    bool found = false;
    EXPECT_EQ(lmdb::GetU64(txn, dbs.meta, lmdb::kFormatVersionKey, &format, &found), 0);
  });
  EXPECT_EQ(format, lmdb::kFormatVersion);
  EXPECT_EQ(InlineValue(1), "");  // its bytes stayed in its file
  EXPECT_EQ(InlineValue(4), Bytes(4, 0, 10));
  EXPECT_FALSE(PathExists(StreamDir(4)));
  auto store = Open();
  auto streams = Recover(store.get());
  ASSERT_EQ(streams.size(), 4u);
  for (const RecoveredStream& s : streams) {
    const uint64_t id = s.record.id;
    const uint64_t tail = id == 4 ? 10 : id * 100 + 10;
    EXPECT_EQ(ReadAll(*s.log), Bytes(id, 0, tail)) << id;
  }
  std::string report;
  EXPECT_EQ(VerifyProblems(data_dir(), &report), 0u) << report;
}

// ---- Upgrades of directories written by older servers (testdata/) -------
//
// format4/ and format5/ were written by the servers of storage formats 4
// and 5 (testdata/make_storage_fixtures.sh says how): the same five streams,
// in files only (format 4), or the small ones in the `inline` database
// (format 5). A format 6 server must open both, move format 5's inline
// bytes into the records, serve every byte as before, go on appending, and
// leave a directory that verifies.

class UpgradeFixtureTest : public InlineStreamTest {
 protected:
  struct Expected {
    const char* name;
    std::string bytes;
    bool closed = false;
  };
  static std::vector<Expected> FixtureStreams() {
    return {
        {"small", "hello, stored fixture\n"},
        {"grown", std::string(3000, 'a') + std::string(3000, 'b')},
        {"empty", ""},
        {"json", "{\"n\":1}\n{\"n\":2}\n"},
        {"closed", "last\n", true},
    };
  }
  void CopyFixture(const std::string& name) {
    std::filesystem::remove_all(data_dir());
    std::filesystem::copy(std::string(DS_TESTDATA_DIR) + "/" + name, data_dir(),
                          std::filesystem::copy_options::recursive);
  }
  // Each fixture stream, by the last component of its path.
  static std::map<std::string, RecoveredStream*> ByName(std::vector<RecoveredStream>& streams) {
    std::map<std::string, RecoveredStream*> out;
    for (RecoveredStream& s : streams) out[s.record.path.substr(s.record.path.rfind('/') + 1)] = &s;
    return out;
  }
  uint64_t StoredFormat() {
    uint64_t format = 0;
    InEnvironment(data_dir(), /*read_only=*/true, [&](MDB_txn* txn, const lmdb::Dbs& dbs) {
      bool found = false;
      EXPECT_EQ(lmdb::GetU64(txn, dbs.meta, lmdb::kFormatVersionKey, &format, &found), 0);
      EXPECT_FALSE(dbs.has_inline);
    });
    return format;
  }
  // Opens the fixture, checks every stream, appends to two and creates one,
  // reopens and checks again. `inline_small`: the fixture kept "small" inline.
  void CheckUpgrade(const std::string& fixture, bool inline_small) {
    CopyFixture(fixture);
    std::string report;
    EXPECT_EQ(VerifyProblems(data_dir(), &report), 0u) << "before the upgrade: " << report;
    std::map<std::string, std::string> want;
    {
      auto store = Open();
      ASSERT_NE(store, nullptr);
      auto streams = Recover(store.get());
      ASSERT_EQ(streams.size(), 5u);
      auto by = ByName(streams);
      for (const Expected& e : FixtureStreams()) {
        SCOPED_TRACE(e.name);
        ASSERT_TRUE(by.count(e.name));
        RecoveredStream& s = *by[e.name];
        EXPECT_EQ(s.record.tail, e.bytes.size());
        EXPECT_EQ(ReadAll(*s.log), e.bytes);
        EXPECT_EQ(s.record.closed, e.closed);
        want[e.name] = e.bytes;
      }
      EXPECT_EQ(InlineValue(by["small"]->record.id), inline_small ? want["small"] : "");
      EXPECT_EQ(InlineValue(by["grown"]->record.id), inline_small ? std::string(3000, 'a') : "");
      // Go on: "small" stays where its bytes are (inline or a file), a new
      // stream goes inline.
      StreamRecord r = by["small"]->record;
      ASSERT_TRUE(AppendAndCommit(store.get(), by["small"]->log.get(), &r, "more\n").ok());
      want["small"] += "more\n";
      r = by["grown"]->record;
      ASSERT_TRUE(AppendAndCommit(store.get(), by["grown"]->log.get(), &r, "ccc").ok());
      want["grown"] += "ccc";
      uint64_t next = 0;
      for (const RecoveredStream& s : streams) next = std::max(next, s.record.id + 1);
      auto log = NewLog(store.get(), next);
      r = Record(next);
      r.path = "/v1/stream/new";
      ASSERT_TRUE(AppendAndCommit(store.get(), log.get(), &r, "new bytes").ok());
      want["new"] = "new bytes";
      EXPECT_EQ(InlineValue(next), "new bytes");
      EXPECT_FALSE(PathExists(StreamDir(next)));
      EXPECT_EQ(InlineValue(by["small"]->record.id), inline_small ? want["small"] : "");
    }
    EXPECT_EQ(StoredFormat(), lmdb::kFormatVersion);
    auto store = Open();
    auto streams = Recover(store.get());
    ASSERT_EQ(streams.size(), 6u);
    for (auto& [name, s] : ByName(streams)) EXPECT_EQ(ReadAll(*s->log), want[name]) << name;
    EXPECT_EQ(VerifyProblems(data_dir(), &report), 0u) << report;
  }
};

TEST_F(UpgradeFixtureTest, AFormat4DirectoryOpensAndEveryByteIsServed) { CheckUpgrade("format4", false); }

TEST_F(UpgradeFixtureTest, AFormat5DirectoryHasItsInlineBytesMovedIntoTheRecords) {
  CheckUpgrade("format5", true);
}

}  // namespace
}  // namespace ds
