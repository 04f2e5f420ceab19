// The engine's commit path over a store that keeps only committed state:
// restarts, failed commits, group commit.
#include <thread>

#include "commit_queue.h"
#include "engine_fixture.h"
#include "fake_store.h"
#include "offset.h"

namespace ds::testing {
namespace {

class DurabilityTest : public EngineTest {
 protected:
  void SetUp() override { Restart(); }

  // A crash and a restart over the committed state.
  void Restart() { OpenOver(EngineOptions{}, std::make_unique<FakeDurableStore>(state_)); }

  static Headers Producer(std::string seq) {
    return {{DS_FIELD_CONTENT_TYPE, "text/plain"},
            {DS_FIELD_PRODUCER_ID, "p"},
            {DS_FIELD_PRODUCER_EPOCH, "0"},
            {DS_FIELD_PRODUCER_SEQ, std::move(seq)}};
  }

  std::shared_ptr<FakeDurableStore::State> state_ = std::make_shared<FakeDurableStore::State>();
};

TEST_F(DurabilityTest, RestartKeepsEveryCommittedFact) {
  ASSERT_EQ(Put("/s", With(Text(), DS_FIELD_STREAM_TTL, "3600"), "ab").status, 201);
  ASSERT_EQ(Post("/s", With(Producer("0"), DS_FIELD_STREAM_SEQ, "a"), "cd").status, 200);
  ASSERT_EQ(Put("/f", {{DS_FIELD_STREAM_FORKED_FROM, "/s"}}).status, 201);
  ASSERT_EQ(Post("/f", Text(), "ef").status, 204);
  ASSERT_EQ(Post("/s", {{DS_FIELD_STREAM_CLOSED, "true"}}).status, 204);
  ASSERT_EQ(Delete("/s").status, 204);  // soft-deleted: /f still reads it
  Restart();
  EXPECT_EQ(Head("/s").status, 410);
  EXPECT_EQ(Get("/f").body, "abcdef");
  Response head = Head("/f");
  EXPECT_EQ(HeaderOf(head, "Stream-Ttl"), "3600");
  EXPECT_EQ(HeaderOf(head, "Stream-Next-Offset"), EncodeOffset(6));
  EXPECT_EQ(Delete("/f").status, 204);
  Restart();
  EXPECT_EQ(Head("/s").status, 404);
  EXPECT_EQ(engine_->Stats().streams, 0u);
  EXPECT_TRUE(state_->records.empty());
}

TEST_F(DurabilityTest, ProducerStateSurvivesRestart) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  ASSERT_EQ(Post("/s", Producer("0"), "a").status, 200);
  Restart();
  EXPECT_EQ(Post("/s", Producer("0"), "a").status, 204);
  EXPECT_EQ(Post("/s", Producer("1"), "b").status, 200);
  EXPECT_EQ(Get("/s").body, "ab");
}

TEST_F(DurabilityTest, FailedCommitIsNeverAcknowledgedNorVisible) {
  ASSERT_EQ(Put("/s", Text(), "a").status, 201);
  state_->fail_next = Status::NoSpace("disk full");
  Response r = Post("/s", Producer("0"), "b");
  EXPECT_EQ(r.status, 507);
  EXPECT_EQ(Get("/s").body, "a");
  // Once a commit failed the engine refuses writes; reads go on.
  EXPECT_EQ(Post("/s", Text(), "c").status, 507);
  EXPECT_EQ(Put("/t", Text()).status, 507);
  Restart();
  // The unacknowledged batch is gone, and its retry is appended once.
  EXPECT_EQ(Get("/s").body, "a");
  EXPECT_EQ(Post("/s", Producer("0"), "b").status, 200);
  EXPECT_EQ(Post("/s", Producer("0"), "b").status, 204);
  EXPECT_EQ(Get("/s").body, "ab");
}

TEST_F(DurabilityTest, FailedCreateLeavesNoStream) {
  state_->fail_next = Status::IoError("boom");
  EXPECT_EQ(Put("/s", Text(), "a").status, 500);
  EXPECT_EQ(Head("/s").status, 404);
  Restart();
  EXPECT_EQ(Put("/s", Text(), "a").status, 201);
}

TEST_F(DurabilityTest, ConcurrentAppendsShareCommits) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  constexpr int kThreads = 8, kEach = 50;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string method = "POST", path = "/s", ct = "text/plain", body = "x";
        Request r;
        r.method = method;
        r.path = path;
        r.fields[DS_FIELD_CONTENT_TYPE] = ct;
        r.body = body;
        if (engine_->Handle(r, 1).status == 204) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
  Restart();
  EXPECT_EQ(Get("/s").body, std::string(kThreads * kEach, 'x'));
}

// A store that comes back with fewer bytes than were committed (a power
// loss under fsync interval/off) must never let a source reuse positions a
// fork inherits: the fork would present new bytes as its history.
TEST_F(DurabilityTest, LostSourceBytesAreNeverReusedUnderAFork) {
  ASSERT_EQ(Put("/src", Text(), std::string(1000, 's')).status, 201);
  ASSERT_EQ(Put("/fork", {{DS_FIELD_STREAM_FORKED_FROM, "/src"}}, "own").status, 201);
  uint64_t src_id = 0;
  for (auto& [id, rec] : state_->records) {
    if (rec.path == "/src") src_id = id;
  }
  ASSERT_NE(src_id, 0u);
  state_->records[src_id].tail = 10;  // what a damaged store recovers
  Restart();
  EXPECT_EQ(Post("/src", Text(), std::string(1200, 'N')).status, 500);
  Response fork = Get("/fork");
  EXPECT_EQ(fork.status, 500);
  EXPECT_EQ(fork.body.find('N'), std::string::npos);
  // What survived is still readable where it is whole.
  EXPECT_EQ(Get("/src").body, std::string(10, 's'));
}

TEST(CommitQueue, OneLeaderCommitsEverythingQueued) {
  auto state = std::make_shared<FakeDurableStore::State>();
  FakeDurableStore store(state);
  CommitQueue queue(&store);
  StreamRecord rec;
  auto a = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 1, rec), {}, nullptr}});
  auto b = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 2, rec), {}, nullptr}});
  auto c = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 3, rec), {}, nullptr}});
  EXPECT_TRUE(queue.Wait(a).ok());
  EXPECT_TRUE(queue.Wait(b).ok());
  EXPECT_TRUE(queue.Wait(c).ok());
  EXPECT_EQ(queue.commits(), 1u);
  EXPECT_EQ(queue.entries(), 3u);
  EXPECT_EQ(state->records.size(), 3u);
}

}  // namespace
}  // namespace ds::testing
