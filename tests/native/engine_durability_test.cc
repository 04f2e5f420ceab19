// The engine's commit path over a store that keeps only committed state:
// restarts, failed commits, group commit.
#include <algorithm>
#include <chrono>
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

TEST_F(DurabilityTest, ReadsOfTtlStreamsAreStoredOnceAndSurviveRestart) {
  ASSERT_EQ(Put("/read", With(Text(), DS_FIELD_STREAM_TTL, "10")).status, 201);
  ASSERT_EQ(Put("/idle", With(Text(), DS_FIELD_STREAM_TTL, "10")).status, 201);
  ASSERT_EQ(Put("/plain", Text()).status, 201);
  clock_->Advance(8000);
  ASSERT_EQ(Get("/read").status, 200);
  ASSERT_EQ(Get("/read").status, 200);
  ASSERT_EQ(Get("/plain").status, 200);
  const uint64_t before = engine_->Stats().committed_writes;
  engine_->FlushAccessTimes();
  EXPECT_EQ(engine_->Stats().committed_writes, before + 1);  // /read, once
  engine_->FlushAccessTimes();
  EXPECT_EQ(engine_->Stats().committed_writes, before + 1);  // nothing read since
  Restart();
  EXPECT_EQ(engine_->Stats().expiring_streams, 2u);
  clock_->Advance(3000);  // 11 s after creation, 3 s after the read
  engine_->SweepExpired();
  EXPECT_EQ(engine_->Stats().streams, 2u);
  EXPECT_EQ(Head("/idle").status, 404);
  EXPECT_EQ(Head("/read").status, 200);
  clock_->Advance(7000);
  engine_->SweepExpired();
  EXPECT_EQ(engine_->Stats().streams, 1u);
}

TEST_F(DurabilityTest, StatsCountCommitsTheirWritesAndTheirTime) {
  EngineStats before = engine_->Stats();
  EXPECT_EQ(before.commits, 0u);
  EXPECT_EQ(before.committed_writes, 0u);
  EXPECT_EQ(before.commit_nanos, 0u);
  ASSERT_EQ(Put("/s", Text()).status, 201);
  ASSERT_EQ(Post("/s", Text(), "a").status, 204);
  ASSERT_EQ(Post("/s", Text(), "b").status, 204);
  // Blocking calls: each write is its own commit.
  EngineStats after = engine_->Stats();
  EXPECT_EQ(after.commits, 3u);
  EXPECT_EQ(after.committed_writes, 3u);
  EXPECT_GT(after.commit_nanos, 0u);
  EXPECT_EQ(state_->commits, 3u);
}

TEST_F(EngineTest, AMemoryEngineCountsNoCommits) {
  ASSERT_EQ(Put("/m", Text()).status, 201);
  ASSERT_EQ(Post("/m", Text(), "a").status, 204);
  EngineStats stats = engine_->Stats();
  EXPECT_EQ(stats.appends, 1u);
  EXPECT_EQ(stats.commits, 0u);
  EXPECT_EQ(stats.committed_writes, 0u);
  EXPECT_EQ(stats.commit_nanos, 0u);
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
  // A full disk refuses nothing up front (engine_storage_full_test.cc);
  // reads go on.
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

// The HTTP path: a durable append parks until its group commit is done, so
// no caller thread waits out an fsync; the commit's wake names it.
class ParkedAppendTest : public DurabilityTest {
 protected:
  Response Raw(const std::string& path, Headers headers, std::string body, uint64_t session) {
    path_ = path;
    headers_ = std::move(headers);
    body_ = std::move(body);
    Request r;
    r.method = "POST";
    r.path = path_;
    for (const auto& [id, value] : headers_) r.fields[id] = value;
    r.body = body_;
    return engine_->Handle(r, session);
  }
  // Waits, as the HTTP layer does, until the wake callback names `session`.
  void AwaitWake(uint64_t session) {
    std::vector<uint64_t> seen;
    while (std::find(seen.begin(), seen.end(), session) == seen.end()) {
      auto more = TakeWoken();
      seen.insert(seen.end(), more.begin(), more.end());
      if (more.empty()) std::this_thread::yield();
    }
  }

  std::string path_, body_;
  Headers headers_;
};

TEST_F(ParkedAppendTest, ParksUntilCommittedThenAnswers) {
  ASSERT_EQ(Put("/s", Text(), "a").status, 201);
  Response parked = Raw("/s", Text(), "bc", 77);
  ASSERT_EQ(parked.live, DS_LIVE_COMMIT);
  EXPECT_EQ(parked.session, 77u);
  EXPECT_EQ(parked.status, 0);
  EXPECT_TRUE(parked.headers.empty());
  EXPECT_EQ(parked.wait_ms, 0u);
  EXPECT_EQ(engine_->Stats().parked_sessions, 0u);  // not a live read
  AwaitWake(77);
  Response r = engine_->Resume(77, DS_RESUME_WAKE);
  EXPECT_EQ(r.live, DS_LIVE_NONE);
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(HeaderOf(r, "Stream-Next-Offset"), EncodeOffset(3));
  EXPECT_EQ(HeaderOf(r, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(HeaderOf(r, "Access-Control-Allow-Origin"), "*");
  EXPECT_EQ(Get("/s").body, "abc");
  // Answered once: the session is gone.
  EXPECT_EQ(engine_->Resume(77, DS_RESUME_WAKE).status, 404);
  Restart();
  EXPECT_EQ(Get("/s").body, "abc");
}

TEST_F(ParkedAppendTest, ReadersAreWokenWithTheCommit) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Response wait = Get("/s", "offset=now&live=long-poll");
  ASSERT_EQ(wait.live, DS_LIVE_WAIT);
  Response parked = Raw("/s", Text(), "x", 78);
  ASSERT_EQ(parked.live, DS_LIVE_COMMIT);
  AwaitWake(78);
  Response data = engine_->Resume(wait.session, DS_RESUME_WAKE);
  EXPECT_EQ(data.status, 200);
  EXPECT_EQ(data.body, "x");
  EXPECT_EQ(engine_->Resume(78, DS_RESUME_WAKE).status, 204);
}

TEST_F(ParkedAppendTest, ResumeBeforeTheWakeWaitsForTheCommit) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  ASSERT_EQ(Raw("/s", Text(), "x", 79).live, DS_LIVE_COMMIT);
  Response r = engine_->Resume(79, DS_RESUME_TIMEOUT);
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(Get("/s").body, "x");
}

TEST_F(ParkedAppendTest, ACancelledAppendIsStillCommittedAndPublished) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  ASSERT_EQ(Raw("/s", Text(), "gone", 80).live, DS_LIVE_COMMIT);
  engine_->Cancel(80);  // the client went away
  AwaitWake(80);
  EXPECT_EQ(Get("/s").body, "gone");
  EXPECT_EQ(engine_->Resume(80, DS_RESUME_WAKE).status, 404);
  Restart();
  EXPECT_EQ(Get("/s").body, "gone");
}

TEST_F(ParkedAppendTest, AFailedCommitAnswersTheParkedAppendWithItsError) {
  ASSERT_EQ(Put("/s", Text(), "a").status, 201);
  state_->fail_next = Status::IoError("fdatasync: Input/output error");
  ASSERT_EQ(Raw("/s", Text(), "b", 81).live, DS_LIVE_COMMIT);
  AwaitWake(81);
  EXPECT_EQ(engine_->Resume(81, DS_RESUME_WAKE).status, 500);
  EXPECT_EQ(Get("/s").body, "a");  // never published
  EXPECT_EQ(Post("/s", Text(), "c").status, 500);  // refused from now on
}

TEST_F(ParkedAppendTest, WithoutASessionOrWithOneInUseTheAppendBlocks) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Response direct = Raw("/s", Text(), "a", 0);
  EXPECT_EQ(direct.live, DS_LIVE_NONE);
  EXPECT_EQ(direct.status, 204);
  ASSERT_EQ(Raw("/s", Text(), "b", 82).live, DS_LIVE_COMMIT);
  Response reused = Raw("/s", Text(), "c", 82);  // the caller broke the contract
  EXPECT_EQ(reused.live, DS_LIVE_NONE);
  EXPECT_EQ(reused.status, 204);
  EXPECT_EQ(HeaderOf(reused, "Stream-Next-Offset"), EncodeOffset(3));
  EXPECT_EQ(engine_->Resume(82, DS_RESUME_WAKE).status, 204);
  EXPECT_EQ(Get("/s").body, "abc");
}

TEST_F(ParkedAppendTest, ProducerAnswersSurviveTheWait) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Headers producer = {{DS_FIELD_CONTENT_TYPE, "text/plain"},
                      {DS_FIELD_PRODUCER_ID, "p"},
                      {DS_FIELD_PRODUCER_EPOCH, "3"},
                      {DS_FIELD_PRODUCER_SEQ, "0"}};
  ASSERT_EQ(Raw("/s", producer, "x", 83).live, DS_LIVE_COMMIT);
  Response r = engine_->Resume(83, DS_RESUME_WAKE);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(HeaderOf(r, "Producer-Epoch"), "3");
  EXPECT_EQ(HeaderOf(r, "Producer-Seq"), "0");
  // A retry is a duplicate, answered at once (nothing to commit).
  Response retry = Raw("/s", producer, "x", 84);
  EXPECT_EQ(retry.live, DS_LIVE_NONE);
  EXPECT_EQ(retry.status, 204);
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
        uint64_t session = static_cast<uint64_t>(t) * kEach + i + 1;
        Response parked = engine_->Handle(r, session);
        if (parked.live != DS_LIVE_COMMIT || parked.session != session) continue;
        if (engine_->Resume(session, DS_RESUME_WAKE).status == 204) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
  Restart();
  EXPECT_EQ(Get("/s").body, std::string(kThreads * kEach, 'x'));
}

TEST_F(DurabilityTest, StreamsExpiringTogetherShareCommits) {
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(Put("/x" + std::to_string(i), With(Text(), DS_FIELD_STREAM_TTL, "1")).status, 201);
  }
  const uint64_t before = engine_->Stats().commits;
  std::mutex gate;
  state_->commit_gate = &gate;
  std::unique_lock hold(gate);
  clock_->Advance(1000);
  std::thread sweeper([&] { engine_->SweepExpired(); });
  // Every removal is queued while the first commit is held at the gate
  // (one at a time, the sweep would wait there with the rest not queued) ...
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (engine_->Stats().streams != 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  EXPECT_EQ(engine_->Stats().streams, 0u);
  hold.unlock();
  sweeper.join();
  state_->commit_gate = nullptr;
  // ... so they share two commits at most, not one each.
  EXPECT_LE(engine_->Stats().commits - before, 2u);
  Restart();
  EXPECT_EQ(engine_->Stats().streams, 0u);
}

// The sweeper's queue and access list against creates, reads and deletes of
// the same TTL streams on other threads (ASan checks the lifetimes): in the
// end every stream that can expire is queued exactly once.
TEST_F(DurabilityTest, SweepsRaceCreatesReadsAndDeletes) {
  constexpr int kThreads = 3, kEach = 300, kPaths = 12;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> sessions{1};
  std::thread sweeper([&] {
    while (!stop.load()) {
      clock_->Advance(100);
      engine_->SweepExpired();
      engine_->FlushAccessTimes();
    }
  });
  std::atomic<int> unexpected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string put = "PUT", get = "GET", del = "DELETE", ct = "text/plain", ttl = "1";
      for (int i = 0; i < kEach; ++i) {
        std::string path = "/t" + std::to_string((i * 7 + t * 5) % kPaths);
        Request r;
        r.path = path;
        int status_ok = 0;
        switch ((i + t) % 3) {
          case 0:
            r.method = put;
            r.fields[DS_FIELD_CONTENT_TYPE] = ct;
            r.fields[DS_FIELD_STREAM_TTL] = ttl;
            status_ok = 201;  // or 200: it exists with the same settings
            break;
          case 1:
            r.method = get;
            status_ok = 200;
            break;
          default:
            r.method = del;
            status_ok = 204;
            break;
        }
        const int status = engine_->Handle(r, sessions.fetch_add(1)).status;
        if (status != status_ok && status != 404 && !(status_ok == 201 && status == 200)) {
          ++unexpected;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  stop = true;
  sweeper.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(engine_->Stats().expiring_streams, engine_->Stats().streams);
  clock_->Advance(1000);
  engine_->SweepExpired();
  EXPECT_EQ(engine_->Stats().streams, 0u);
  EXPECT_EQ(engine_->Stats().expiring_streams, 0u);
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

TEST(CommitQueue, WhatQueuesDuringACommitSharesTheNext) {
  auto state = std::make_shared<FakeDurableStore::State>();
  FakeDurableStore store(state);
  std::mutex gate;
  state->commit_gate = &gate;
  std::unique_lock hold(gate);
  CommitQueue queue(&store, nullptr);
  StreamRecord rec;
  auto first = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 1, rec), {}, nullptr}});
  // The committer is inside the first commit (held at the gate) ...
  while (state->commits_entered.load() == 0) std::this_thread::yield();
  // ... so these three queue behind it and go as one batch.
  auto a = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 2, rec), {}, nullptr}});
  auto b = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 3, rec), {}, nullptr}});
  auto c = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 4, rec), {}, nullptr}});
  hold.unlock();
  EXPECT_TRUE(queue.Wait(first).ok());
  EXPECT_TRUE(queue.Wait(a).ok());
  EXPECT_TRUE(queue.Wait(b).ok());
  EXPECT_TRUE(queue.Wait(c).ok());
  const CommitQueue::Counters counters = queue.counters();
  EXPECT_EQ(counters.commits, 2u);
  EXPECT_EQ(counters.entries, 4u);
  EXPECT_GT(counters.time.count(), 0);
  EXPECT_EQ(state->records.size(), 4u);
}

TEST(CommitQueue, OnCommitRunsBeforeDoneAndItsWakesGoOutInOneCall) {
  auto state = std::make_shared<FakeDurableStore::State>();
  FakeDurableStore store(state);
  std::mutex gate;
  state->commit_gate = &gate;
  std::unique_lock hold(gate);
  std::mutex woken_mu;
  std::vector<std::vector<uint64_t>> wake_calls;
  auto queue = std::make_unique<CommitQueue>(&store, [&](std::vector<uint64_t> ids) {
    std::lock_guard lock(woken_mu);
    wake_calls.push_back(std::move(ids));
  });
  StreamRecord rec;
  auto first = queue->Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 1, rec), {}, nullptr}});
  while (state->commits_entered.load() == 0) std::this_thread::yield();
  std::atomic<int> ran{0};
  auto on_commit = [&](uint64_t session) {
    return [&, session](const Status& outcome, std::vector<uint64_t>* wake) {
      EXPECT_TRUE(outcome.ok());
      ++ran;
      wake->push_back(session);
    };
  };
  auto a = queue->Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 2, rec), {}, nullptr}},
                         on_commit(7));
  auto b = queue->Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 3, rec), {}, nullptr}},
                         on_commit(9));
  hold.unlock();
  EXPECT_TRUE(queue->Wait(b).ok());
  EXPECT_EQ(ran.load(), 2);  // done implies its callback ran
  EXPECT_TRUE(queue->Wait(a).ok());
  EXPECT_TRUE(queue->Wait(first).ok());
  // The wake call follows done; stopping the queue joins its thread.
  queue.reset();
  std::lock_guard lock(woken_mu);
  ASSERT_EQ(wake_calls.size(), 1u);
  EXPECT_EQ(wake_calls[0], (std::vector<uint64_t>{7, 9}));
}

TEST(CommitQueue, AFailedCommitReachesEveryEntryOfItsBatch) {
  auto state = std::make_shared<FakeDurableStore::State>();
  state->fail_next = Status::NoSpace("disk full");
  FakeDurableStore store(state);
  CommitQueue queue(&store, nullptr);
  StreamRecord rec;
  Status seen;
  auto t = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 1, rec), {}, nullptr}},
                         [&](const Status& outcome, std::vector<uint64_t>*) { seen = outcome; });
  EXPECT_EQ(queue.Wait(t).code(), Status::Code::kNoSpace);
  EXPECT_EQ(seen.code(), Status::Code::kNoSpace);
  EXPECT_TRUE(state->records.empty());
}

// Late durability (fsync always, MDB_NOMETASYNC): a batch is acknowledged
// only after a later flush, the next batch's successful commit or an
// explicit sync, never right after its own commit.
CommitQueue::OnCommit LogAck(FakeDurableStore::State* state, const std::string& name) {
  return [state, name](const Status& outcome, std::vector<uint64_t>*) {
    std::lock_guard lock(state->mu);
    state->events.push_back("ack " + name + (outcome.ok() ? "" : " failed"));
  };
}

TEST(CommitQueue, LateDurabilityAcknowledgesABatchAfterTheNextCommitOrASync) {
  auto state = std::make_shared<FakeDurableStore::State>();
  state->late_durability = true;
  FakeDurableStore store(state);
  std::mutex gate;
  state->commit_gate = &gate;
  std::unique_lock hold(gate);
  auto queue = std::make_unique<CommitQueue>(&store, nullptr);
  StreamRecord rec;
  auto first = queue->Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 1, rec), {}, nullptr}},
                              LogAck(state.get(), "1"));
  while (state->commits_entered.load() == 0) std::this_thread::yield();
  // Queued during the first commit: its commit is the first one's flush.
  auto second = queue->Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 2, rec), {}, nullptr}},
                               LogAck(state.get(), "2"));
  hold.unlock();
  EXPECT_TRUE(queue->Wait(first).ok());
  EXPECT_TRUE(queue->Wait(second).ok());
  queue.reset();
  EXPECT_EQ(state->events,
            (std::vector<std::string>{"commit 1", "commit 2", "ack 1", "sync", "ack 2"}));
}

// The flushes an acknowledged write waited for (the metric
// commit_flushes_waited_total): under late durability a lone write waits
// for its commit and a sync; one queued while a commit runs waits for the
// rest of that commit, its own and the sync after it.
TEST(CommitQueue, CountsTheFlushesEachAcknowledgedWriteWaitedFor) {
  auto state = std::make_shared<FakeDurableStore::State>();
  state->late_durability = true;
  FakeDurableStore store(state);
  std::mutex gate;
  state->commit_gate = &gate;
  std::unique_lock hold(gate);
  CommitQueue queue(&store, nullptr);
  StreamRecord rec;
  auto first = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 1, rec), {}, nullptr}});
  while (state->commits_entered.load() == 0) std::this_thread::yield();
  auto second = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 2, rec), {}, nullptr}});
  hold.unlock();
  EXPECT_TRUE(queue.Wait(first).ok());
  EXPECT_TRUE(queue.Wait(second).ok());
  CommitQueue::Counters c = queue.counters();
  // "commit 1", "commit 2", "sync": the first waited for two of them, the
  // second for all three.
  EXPECT_EQ(c.flushes, 3u);
  EXPECT_EQ(c.flushes_waited, 5u);

  // Idle again: a lone write waits for its commit and its sync.
  auto lone = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 3, rec), {}, nullptr}});
  EXPECT_TRUE(queue.Wait(lone).ok());
  c = queue.counters();
  EXPECT_EQ(c.flushes, 5u);
  EXPECT_EQ(c.flushes_waited, 7u);
  EXPECT_EQ(c.entries, 3u);
}

TEST(CommitQueue, WithoutLateDurabilityALoneWriteWaitsForItsCommitOnly) {
  auto state = std::make_shared<FakeDurableStore::State>();
  FakeDurableStore store(state);
  CommitQueue queue(&store, nullptr);
  StreamRecord rec;
  auto t = queue.Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 1, rec), {}, nullptr}});
  EXPECT_TRUE(queue.Wait(t).ok());
  const CommitQueue::Counters c = queue.counters();
  EXPECT_EQ(c.flushes, 1u);
  EXPECT_EQ(c.flushes_waited, 1u);
}

TEST(CommitQueue, LateDurabilitySyncsBeforeAcknowledgingWhenTheNextCommitFails) {
  auto state = std::make_shared<FakeDurableStore::State>();
  state->late_durability = true;
  state->fail_commit_at = 2;
  FakeDurableStore store(state);
  std::mutex gate;
  state->commit_gate = &gate;
  std::unique_lock hold(gate);
  auto queue = std::make_unique<CommitQueue>(&store, nullptr);
  StreamRecord rec;
  auto first = queue->Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 1, rec), {}, nullptr}},
                              LogAck(state.get(), "1"));
  while (state->commits_entered.load() == 0) std::this_thread::yield();
  auto second = queue->Enqueue({{StreamMutation::Kind::kUpsert, (rec.id = 2, rec), {}, nullptr}},
                               LogAck(state.get(), "2"));
  hold.unlock();
  EXPECT_TRUE(queue->Wait(first).ok());
  EXPECT_EQ(queue->Wait(second).code(), Status::Code::kNoSpace);
  queue.reset();
  // The failed commit flushed nothing: the first batch waits for a sync.
  EXPECT_EQ(state->events, (std::vector<std::string>{"commit 1", "commit 2 failed", "sync",
                                                     "ack 1", "ack 2 failed"}));
}

}  // namespace
}  // namespace ds::testing
