// The engine when storage fails (issue 19 item 5): a full disk is a soft
// state (507, the failed commit's pending state undone, DELETE still
// works, writes resume by themselves); any other storage error stops
// writes until restart.
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "engine_fixture.h"
#include "fake_store.h"
#include "offset.h"

namespace ds::testing {
namespace {

class StorageFullTest : public EngineTest {
 protected:
  void SetUp() override { Restart(); }
  void Restart() { OpenOver(EngineOptions{}, std::make_unique<FakeDurableStore>(state_)); }
  void FailNextCommit(Status s) {
    std::lock_guard lock(state_->mu);
    state_->fail_next = std::move(s);
  }
  static Headers Producer(std::string seq) {
    return {{DS_FIELD_CONTENT_TYPE, "text/plain"},
            {DS_FIELD_PRODUCER_ID, "p"},
            {DS_FIELD_PRODUCER_EPOCH, "0"},
            {DS_FIELD_PRODUCER_SEQ, std::move(seq)}};
  }
  // A POST answered later (a session), as the HTTP layer sends them.
  Response Parked(const std::string& path, std::string body, uint64_t session) {
    bodies_.push_back(std::make_unique<std::string>(std::move(body)));
    paths_.push_back(std::make_unique<std::string>(path));
    Request r;
    r.method = "POST";
    r.path = *paths_.back();
    r.fields[DS_FIELD_CONTENT_TYPE] = "text/plain";
    r.body = *bodies_.back();
    return engine_->Handle(r, session);
  }

  std::shared_ptr<FakeDurableStore::State> state_ = std::make_shared<FakeDurableStore::State>();
  std::vector<std::unique_ptr<std::string>> bodies_, paths_;
};

TEST_F(StorageFullTest, AFullDiskAnswers507AndTheNextAppendTakesItsPlace) {
  ASSERT_EQ(Put("/s", Text(), "a").status, 201);
  FailNextCommit(Status::NoSpace("commit: MDB_MAP_FULL"));
  Response r = Post("/s", Text(), "b");
  EXPECT_EQ(r.status, 507);
  EXPECT_EQ(r.body, "insufficient storage: commit: MDB_MAP_FULL\n");
  EXPECT_TRUE(engine_->Stats().no_space);
  EXPECT_EQ(Get("/s").body, "a");
  EXPECT_EQ(HeaderOf(Head("/s"), header::kStreamNextOffset), EncodeOffset(1));
  // No restart: the next append succeeds where the failed one would have.
  r = Post("/s", Text(), "c");
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(HeaderOf(r, header::kStreamNextOffset), EncodeOffset(2));
  EXPECT_EQ(Get("/s").body, "ac");
  EngineStats stats = engine_->Stats();
  EXPECT_FALSE(stats.no_space);
  EXPECT_FALSE(stats.writes_failed);
  EXPECT_EQ(stats.answered_no_space, 1u);
  EXPECT_EQ(stats.answered_io_error, 0u);
  Restart();
  EXPECT_EQ(Get("/s").body, "ac");
}

TEST_F(StorageFullTest, ProducerStateAndStreamSeqOfAFailedCommitAreUndone) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  ASSERT_EQ(Post("/s", Producer("0"), "a").status, 200);
  FailNextCommit(Status::NoSpace("disk full"));
  Headers h = Producer("1");
  h[DS_FIELD_STREAM_SEQ] = "5";
  EXPECT_EQ(Post("/s", h, "b").status, 507);
  // The retry is new data (200), not a duplicate (204), and its Stream-Seq
  // is not taken.
  EXPECT_EQ(Post("/s", h, "b").status, 200);
  EXPECT_EQ(Get("/s").body, "ab");
  // A producer whose first append failed is unknown again.
  FailNextCommit(Status::NoSpace("disk full"));
  Headers q = Producer("0");
  q[DS_FIELD_PRODUCER_ID] = "q";
  EXPECT_EQ(Post("/s", q, "c").status, 507);
  EXPECT_EQ(Post("/s", q, "c").status, 200);
  EXPECT_EQ(Get("/s").body, "abc");
  Restart();
  EXPECT_EQ(Post("/s", Producer("1"), "b").status, 204);
}

TEST_F(StorageFullTest, AClosureThatFailedToCommitIsUndone) {
  ASSERT_EQ(Put("/s", Text(), "a").status, 201);
  FailNextCommit(Status::NoSpace("disk full"));
  Headers close = Text();
  close[DS_FIELD_STREAM_CLOSED] = "true";
  EXPECT_EQ(Post("/s", close, "b").status, 507);
  EXPECT_EQ(Post("/s", Text(), "c").status, 204);
  EXPECT_EQ(Get("/s").body, "ac");
}

TEST_F(StorageFullTest, AppendsQueuedBehindAFailedCommitAreNotCommitted) {
  ASSERT_EQ(Put("/s", Text(), "x").status, 201);
  std::mutex gate;
  std::unique_lock hold(gate);
  state_->commit_gate = &gate;
  const int entered = state_->commits_entered.load();
  ASSERT_EQ(Parked("/s", "a", 101).live, DS_LIVE_COMMIT);
  while (state_->commits_entered.load() == entered) std::this_thread::yield();
  FailNextCommit(Status::NoSpace("disk full"));
  // Built on "a", which is about to fail: it must not be recorded.
  ASSERT_EQ(Parked("/s", "b", 102).live, DS_LIVE_COMMIT);
  hold.unlock();
  EXPECT_EQ(engine_->Resume(101, DS_RESUME_WAKE).status, 507);
  EXPECT_EQ(engine_->Resume(102, DS_RESUME_WAKE).status, 507);
  state_->commit_gate = nullptr;
  EXPECT_EQ(Get("/s").body, "x");
  EXPECT_EQ(Post("/s", Text(), "c").status, 204);
  EXPECT_EQ(Get("/s").body, "xc");
  Restart();
  EXPECT_EQ(Get("/s").body, "xc");
}

TEST_F(StorageFullTest, DeleteRunsWhileTheDiskIsFull) {
  ASSERT_EQ(Put("/s", Text(), "a").status, 201);
  ASSERT_EQ(Put("/t", Text(), "b").status, 201);
  FailNextCommit(Status::NoSpace("disk full"));
  ASSERT_EQ(Post("/s", Text(), "c").status, 507);
  ASSERT_TRUE(engine_->Stats().no_space);
  EXPECT_EQ(Delete("/t").status, 204);
  EXPECT_EQ(Get("/t").status, 404);
  Restart();
  EXPECT_EQ(Get("/t").status, 404);
  EXPECT_EQ(Get("/s").body, "a");
}

TEST_F(StorageFullTest, AnEraseThatFailedIsRecordedWithTheNextCommit) {
  ASSERT_EQ(Put("/s", Text(), "a").status, 201);
  FailNextCommit(Status::NoSpace("disk full"));
  EXPECT_EQ(Delete("/s").status, 507);
  EXPECT_EQ(Get("/s").status, 404);  // let go of in memory
  ASSERT_EQ(Put("/s", Text(), "new").status, 201);
  Restart();
  // Not the old stream back, nor two records for one path.
  EXPECT_EQ(Get("/s").body, "new");
  std::lock_guard lock(state_->mu);
  EXPECT_EQ(state_->records.size(), 1u);
}

TEST_F(StorageFullTest, ExpiryRunsWhileTheDiskIsFull) {
  ASSERT_EQ(Put("/s", Text(), "a").status, 201);
  Headers ttl = Text();
  ttl[DS_FIELD_STREAM_TTL] = "1";
  ASSERT_EQ(Put("/t", ttl, "b").status, 201);
  FailNextCommit(Status::NoSpace("disk full"));
  ASSERT_EQ(Post("/s", Text(), "c").status, 507);
  clock_->Advance(2000);
  engine_->SweepExpired();
  std::lock_guard lock(state_->mu);
  EXPECT_EQ(state_->records.size(), 1u);  // /t's record is erased
}

TEST_F(StorageFullTest, ATrimThatFailedToCommitIsTriedAgain) {
  EngineOptions options;
  options.retention_bytes = 1;
  OpenOver(options, std::make_unique<FakeDurableStore>(state_));
  ASSERT_EQ(Put("/s", {{DS_FIELD_CONTENT_TYPE, "application/octet-stream"}}).status, 201);
  const uint64_t mib = MemoryStreamLog::kBlockBytes;
  ASSERT_EQ(Post("/s", {{DS_FIELD_CONTENT_TYPE, "application/octet-stream"}},
                 std::string(2 * mib + 1, 'x')).status, 204);
  FailNextCommit(Status::NoSpace("disk full"));
  engine_->ApplyRetention();
  EXPECT_EQ(Get("/s", "offset=" + EncodeOffset(0)).status, 200);
  engine_->ApplyRetention();  // room again: the retry trims
  EXPECT_EQ(Get("/s", "offset=" + EncodeOffset(0)).status, 410);
}

TEST_F(StorageFullTest, AnIoErrorStopsWritesUntilRestart) {
  ASSERT_EQ(Put("/s", Text(), "a").status, 201);
  FailNextCommit(Status::IoError("fdatasync x: Input/output error"));
  Response r = Post("/s", Text(), "b");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, "storage error: fdatasync x: Input/output error\n");
  const std::string refused =
      "storage failed earlier; writes are refused until the server restarts: storage error: "
      "fdatasync x: Input/output error\n";
  r = Post("/s", Text(), "c");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, refused);
  EXPECT_EQ(Put("/t", Text()).body, refused);
  EXPECT_EQ(Delete("/s").body, refused);
  EXPECT_EQ(Get("/s").body, "a");  // reads go on
  EngineStats stats = engine_->Stats();
  EXPECT_TRUE(stats.writes_failed);
  EXPECT_FALSE(stats.no_space);
  EXPECT_EQ(stats.answered_io_error, 4u);
  Restart();
  EXPECT_EQ(Post("/s", Text(), "d").status, 204);
  EXPECT_EQ(Get("/s").body, "ad");
}

}  // namespace
}  // namespace ds::testing
