// The memory budget and the quotas per placement group (usage.h): what is
// charged (appends, creates with a body, a fork's own bytes), what gives it
// back (deletes, expiry, retention trims, undone commits), the exact 507
// and 403 answers, recovery, and reloads.
#include <string>

#include "engine_fixture.h"
#include "fake_store.h"

namespace ds::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class UsageTest : public EngineTest {
 protected:
  void OpenWith(uint64_t max_memory, uint64_t max_streams = 0, uint64_t max_bytes = 0,
                int depth = 1) {
    Open(Options(max_memory, max_streams, max_bytes, depth));
  }
  static EngineOptions Options(uint64_t max_memory, uint64_t max_streams = 0,
                               uint64_t max_bytes = 0, int depth = 1) {
    EngineOptions o;
    o.max_memory_bytes = max_memory;
    o.max_streams_per_group = max_streams;
    o.max_bytes_per_group = max_bytes;
    o.group_depth = depth;
    return o;
  }
  uint64_t Held() { return engine_->Stats().stream_bytes; }
  std::vector<GroupSnapshot> Groups(GroupSnapshot* rest = nullptr) {
    GroupSnapshot ignored;
    return engine_->TopGroups(10, rest ? rest : &ignored);
  }
};

constexpr const char* kBudget10 =
    "insufficient storage: in-memory streams hold 10 bytes, the max_memory_bytes limit is 10 "
    "bytes\n";

TEST_F(UsageTest, TheBudgetRefusesAppendsAndCreatesWithABodyButNotReadsOrDeletes) {
  OpenWith(10);
  ASSERT_EQ(Put("/v1/stream/a", Text(), "hello").status, 201);
  ASSERT_EQ(Post("/v1/stream/a", Text(), "world").status, 204);
  EXPECT_EQ(Held(), 10u);
  Response r = Post("/v1/stream/a", Text(), "!");
  EXPECT_EQ(r.status, 507);
  EXPECT_EQ(r.body, kBudget10);
  Response c = Put("/v1/stream/b", Text(), "x");
  EXPECT_EQ(c.status, 507);
  EXPECT_EQ(c.body, kBudget10);
  EXPECT_EQ(Head("/v1/stream/b").status, 404);
  // No bytes, no charge; closing needs none either.
  EXPECT_EQ(Put("/v1/stream/c", Text()).status, 201);
  EXPECT_EQ(Post("/v1/stream/c", With(Text(), DS_FIELD_STREAM_CLOSED, "true")).status, 204);
  EXPECT_EQ(Get("/v1/stream/a").body, "helloworld");
  EXPECT_EQ(engine_->Stats().refused_memory_budget, 2u);

  ASSERT_EQ(Delete("/v1/stream/a").status, 204);
  EXPECT_EQ(Held(), 0u);
  EXPECT_EQ(Put("/v1/stream/b", Text(), "0123456789").status, 201);
  EXPECT_EQ(Post("/v1/stream/b", Text(), "x").status, 507);
}

TEST_F(UsageTest, AForkIsChargedItsOwnBytesOnlyAndItsSourceUntilTheLastForkGoes) {
  OpenWith(10);
  ASSERT_EQ(Put("/v1/stream/a", Text(), "hello").status, 201);
  ASSERT_EQ(Put("/v1/stream/f", With(Text(), DS_FIELD_STREAM_FORKED_FROM, "/v1/stream/a"))
                .status, 201);
  EXPECT_EQ(Held(), 5u);
  ASSERT_EQ(Post("/v1/stream/f", Text(), "abc").status, 204);
  EXPECT_EQ(Held(), 8u);
  ASSERT_EQ(Put("/v1/stream/g", With(Text(), DS_FIELD_STREAM_FORKED_FROM, "/v1/stream/a"), "xy")
                .status, 201);
  EXPECT_EQ(Held(), 10u);
  EXPECT_EQ(Post("/v1/stream/g", Text(), "z").status, 507);
  // The source is soft-deleted: its bytes stay while forks read them.
  ASSERT_EQ(Delete("/v1/stream/a").status, 204);
  EXPECT_EQ(Held(), 10u);
  ASSERT_EQ(Delete("/v1/stream/g").status, 204);
  EXPECT_EQ(Held(), 8u);
  ASSERT_EQ(Delete("/v1/stream/f").status, 204);
  EXPECT_EQ(Held(), 0u);
  EXPECT_TRUE(Groups().empty());
}

TEST_F(UsageTest, ExpiryFreesTheBudget) {
  OpenWith(10);
  ASSERT_EQ(Put("/v1/stream/a", With(Text(), DS_FIELD_STREAM_TTL, "1"), "0123456789").status,
            201);
  EXPECT_EQ(Put("/v1/stream/b", Text(), "x").status, 507);
  clock_->Advance(2000);
  engine_->SweepExpired();
  EXPECT_EQ(Held(), 0u);
  EXPECT_EQ(Put("/v1/stream/b", Text(), "0123456789").status, 201);
}

TEST_F(UsageTest, RetentionTrimsFreeTheBudget) {
  EngineOptions o = Options(4 * kMiB);
  o.retention_bytes = kMiB;
  Open(o);
  ASSERT_EQ(Put("/v1/stream/a", Bin()).status, 201);
  const std::string quarter(256 << 10, 'q');
  for (int i = 0; i < 14; ++i) ASSERT_EQ(Post("/v1/stream/a", Bin(), quarter).status, 204);
  EXPECT_EQ(Held(), 3 * kMiB + kMiB / 2);
  engine_->ApplyRetention();  // blocks 0 and 1 go
  EXPECT_EQ(Held(), kMiB + kMiB / 2);
  EXPECT_EQ(Groups().at(0).bytes, kMiB + kMiB / 2);
}

TEST_F(UsageTest, AReloadChangesTheLimits) {
  OpenWith(10);
  ASSERT_EQ(Put("/v1/stream/a", Text(), "0123456789").status, 201);
  EXPECT_EQ(Post("/v1/stream/a", Text(), "x").status, 507);
  Engine::Tunables t = engine_->tunables();
  EXPECT_EQ(t.limits.max_memory_bytes, 10u);
  t.limits.max_memory_bytes = 11;
  t.limits.max_streams_per_group = 1;
  engine_->SetTunables(t);
  EXPECT_EQ(Post("/v1/stream/a", Text(), "x").status, 204);
  EXPECT_EQ(Put("/v1/stream/a/b", Text()).status, 507);
  t.limits = UsageLimits{};
  engine_->SetTunables(t);
  EXPECT_EQ(Post("/v1/stream/a", Text(), std::string(100, 'y')).status, 204);
}

TEST_F(UsageTest, StreamsQuotaPerGroup) {
  OpenWith(0, 2);
  ASSERT_EQ(Put("/v1/stream/g/a", Text()).status, 201);
  ASSERT_EQ(Put("/v1/stream/g/b", Text()).status, 201);
  Response r = Put("/v1/stream/g/c", Text());
  EXPECT_EQ(r.status, 507);
  EXPECT_EQ(r.body,
            "insufficient storage: group \"g\" holds 2 streams, the max_streams_per_group "
            "quota\n");
  // Confirming an existing stream creates nothing; other groups are apart.
  EXPECT_EQ(Put("/v1/stream/g/a", Text()).status, 200);
  EXPECT_EQ(Put("/v1/stream/h/a", Text()).status, 201);
  EXPECT_EQ(Put("/v1/stream/g/c", With(Text(), DS_FIELD_STREAM_FORKED_FROM, "/v1/stream/g/a"))
                .status, 507);
  EXPECT_EQ(engine_->Stats().refused_quota_streams, 2u);
  ASSERT_EQ(Delete("/v1/stream/g/a").status, 204);
  EXPECT_EQ(Put("/v1/stream/g/c", Text()).status, 201);
}

TEST_F(UsageTest, BytesQuotaPerGroupAnswers507OrNever403) {
  OpenWith(0, 0, 8);
  ASSERT_EQ(Put("/v1/stream/g/a", Text(), "hello").status, 201);
  ASSERT_EQ(Put("/v1/stream/g/b", Text()).status, 201);
  ASSERT_EQ(Post("/v1/stream/g/b", Text(), "abc").status, 204);
  Response r = Post("/v1/stream/g/b", Text(), "x");
  EXPECT_EQ(r.status, 507);
  EXPECT_EQ(r.body,
            "insufficient storage: group \"g\" holds 8 bytes, the max_bytes_per_group quota is "
            "8 bytes\n");
  Response never = Put("/v1/stream/h/a", Text(), "123456789");
  EXPECT_EQ(never.status, 403);
  EXPECT_EQ(never.body,
            "forbidden: a body of 9 bytes is more than group \"h\" may ever hold, the "
            "max_bytes_per_group quota (8 bytes)\n");
  EXPECT_EQ(Put("/v1/stream/h/a", Text(), "12345678").status, 201);
  EXPECT_EQ(Put("/v1/stream/g/c",
                With(Text(), DS_FIELD_STREAM_FORKED_FROM, "/v1/stream/g/a"), "z").status, 507);
  EXPECT_EQ(engine_->Stats().refused_quota_bytes, 3u);
  ASSERT_EQ(Delete("/v1/stream/g/a").status, 204);
  EXPECT_EQ(Post("/v1/stream/g/b", Text(), "x").status, 204);
}

TEST_F(UsageTest, GroupsFollowGroupDepthAndTheTopListIsBounded) {
  OpenWith(0, 0, 0, 2);
  ASSERT_EQ(Put("/v1/stream/t/1/a", Text(), "aaa").status, 201);
  ASSERT_EQ(Put("/v1/stream/t/1/b", Text(), "b").status, 201);
  ASSERT_EQ(Put("/v1/stream/t/2/a", Text(), "cc").status, 201);
  ASSERT_EQ(Put("/v1/stream/u", Text(), "d").status, 201);
  GroupSnapshot rest;
  std::vector<GroupSnapshot> top = engine_->TopGroups(2, &rest);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].name, "t/1");
  EXPECT_EQ(top[0].streams, 2u);
  EXPECT_EQ(top[0].bytes, 4u);
  EXPECT_EQ(top[1].name, "t/2");
  EXPECT_EQ(top[1].bytes, 2u);
  EXPECT_EQ(rest.name, "");
  EXPECT_EQ(rest.streams, 1u);
  EXPECT_EQ(rest.bytes, 1u);
}

TEST_F(UsageTest, SizesInMessagesAreReadable) {
  EXPECT_EQ(HumanBytes(1), "1 byte");
  EXPECT_EQ(HumanBytes(1023), "1023 bytes");
  EXPECT_EQ(HumanBytes(64 * kMiB), "64 MiB");
  EXPECT_EQ(HumanBytes(1288490189), "1.2 GiB");
  EXPECT_EQ(HumanBytes(2047), "1.9 KiB");  // never rounded up to a limit
}

class DurableUsageTest : public UsageTest {
 protected:
  void Restart(EngineOptions o) { OpenOver(o, std::make_unique<FakeDurableStore>(state_)); }
  std::shared_ptr<FakeDurableStore::State> state_ = std::make_shared<FakeDurableStore::State>();
};

TEST_F(DurableUsageTest, RecoveryRecountsEveryGroupAndTheBudgetIsForMemoryOnly) {
  Restart(Options(4));
  ASSERT_EQ(Put("/v1/stream/g/a", Text(), "hello").status, 201);  // over 4: on disk, allowed
  ASSERT_EQ(Put("/v1/stream/g/b", Text(), "abc").status, 201);
  Restart(Options(4, 2, 10));
  EXPECT_EQ(Held(), 8u);
  ASSERT_EQ(Groups().size(), 1u);
  EXPECT_EQ(Groups()[0].streams, 2u);
  EXPECT_EQ(Put("/v1/stream/g/c", Text()).status, 507);
  EXPECT_EQ(Post("/v1/stream/g/b", Text(), "xyz").status, 507);
  EXPECT_EQ(Post("/v1/stream/g/b", Text(), "xy").status, 204);
}

TEST_F(DurableUsageTest, UndoneCommitsGiveTheirBytesBack) {
  Restart(Options(0, 0, 10));
  ASSERT_EQ(Put("/v1/stream/g/a", Text(), "a").status, 201);
  state_->fail_next = Status::NoSpace("disk full");
  EXPECT_EQ(Post("/v1/stream/g/a", Text(), "bcd").status, 507);
  EXPECT_EQ(Held(), 1u);
  state_->fail_next = Status::NoSpace("disk full");
  EXPECT_EQ(Put("/v1/stream/g/b", Text(), "xyz").status, 507);
  EXPECT_EQ(Held(), 1u);
  ASSERT_EQ(Groups().size(), 1u);
  EXPECT_EQ(Groups()[0].streams, 1u);
}

}  // namespace
}  // namespace ds::testing
