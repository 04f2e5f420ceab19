// Forks (§4.2): creation rules, stitched reads, sub-offsets, soft-delete and
// cascading collection.
#include "engine_fixture.h"
#include "offset.h"

namespace ds::testing {
namespace {

using ForkTest = EngineTest;

Headers Fork(const std::string& source, std::optional<uint64_t> offset = std::nullopt,
             std::optional<std::string> sub = std::nullopt, Headers h = {}) {
  h[DS_FIELD_STREAM_FORKED_FROM] = source;
  if (offset) h[DS_FIELD_STREAM_FORK_OFFSET] = EncodeOffset(*offset);
  if (sub) h[DS_FIELD_STREAM_FORK_SUB_OFFSET] = *sub;
  return h;
}

TEST_F(ForkTest, SharesThePrefixAndTheOffsetSpace) {
  ASSERT_EQ(Put("/src", Text(), "first").status, 201);
  Response fork = Put("/f", Fork("/src"));
  EXPECT_EQ(fork.status, 201);
  EXPECT_EQ(HeaderOf(fork, "Content-Type"), "text/plain");
  EXPECT_EQ(HeaderOf(fork, "Stream-Next-Offset"), EncodeOffset(5));
  ASSERT_EQ(Post("/src", Text(), "-src").status, 204);
  ASSERT_EQ(Post("/f", Text(), "-fork").status, 204);
  EXPECT_EQ(Get("/f").body, "first-fork");
  EXPECT_EQ(Get("/f", "offset=" + EncodeOffset(5)).body, "-fork");
  EXPECT_EQ(Get("/src").body, "first-src");
}

TEST_F(ForkTest, CreationErrors) {
  ASSERT_EQ(Put("/src", Text(), "hi").status, 201);
  EXPECT_EQ(Put("/f", Fork("/missing")).status, 404);
  EXPECT_EQ(Put("/f", With(Fork("/src"), DS_FIELD_STREAM_FORK_OFFSET,
                           "9999999999999999_9999999999999999")).status, 400);
  EXPECT_EQ(Put("/f", With(Fork("/src"), DS_FIELD_STREAM_FORK_OFFSET, "zzz")).status, 400);
  EXPECT_EQ(Put("/f", Fork("/src", 0, "5")).status, 400);
  for (const char* sub : {"-1", "abc", "1.5", "05", "+1"}) {
    EXPECT_EQ(Put("/f", Fork("/src", 0, sub)).status, 400) << sub;
  }
  EXPECT_EQ(Put("/f", Fork("/src", std::nullopt, "1")).status, 400);
  EXPECT_EQ(Put("/plain", {{DS_FIELD_STREAM_FORK_SUB_OFFSET, "0"}}).status, 400);
  EXPECT_EQ(Put("/f", Fork("/src", std::nullopt, std::nullopt, Json())).status, 409);
  // No rejected attempt left a reference: the source deletes outright.
  EXPECT_EQ(Delete("/src").status, 204);
  EXPECT_EQ(Head("/src").status, 404);
}

TEST_F(ForkTest, SubOffsetsCountBytesOrMessages) {
  ASSERT_EQ(Put("/t", Text(), "hello").status, 201);
  ASSERT_EQ(Put("/ft", Fork("/t", 0, "3"), "XY").status, 201);
  EXPECT_EQ(Get("/ft").body, "helXY");
  EXPECT_EQ(Put("/ft", Fork("/t", 0, "3")).status, 200);
  EXPECT_EQ(Put("/ft", Fork("/t", 0, "4")).status, 409);
  ASSERT_EQ(Put("/j", Json(), R"([{"a":1},{"b":2},{"c":3}])").status, 201);
  ASSERT_EQ(Put("/fj", Fork("/j", 0, "2")).status, 201);
  EXPECT_EQ(Get("/fj").body, R"([{"a":1},{"b":2}])");
  EXPECT_EQ(Put("/fj3", Fork("/j", 0, "3")).status, 201);
  EXPECT_EQ(Put("/fj4", Fork("/j", 0, "4")).status, 400);
  ASSERT_EQ(Post("/fj", Json(), R"({"d":4})").status, 204);
  EXPECT_EQ(Get("/fj").body, R"([{"a":1},{"b":2},{"d":4}])");
}

TEST_F(ForkTest, ForksStartOpenWithFreshWriterState) {
  Headers producer = {{DS_FIELD_CONTENT_TYPE, "text/plain"},
                      {DS_FIELD_PRODUCER_ID, "p"},
                      {DS_FIELD_PRODUCER_EPOCH, "0"},
                      {DS_FIELD_PRODUCER_SEQ, "0"}};
  ASSERT_EQ(Put("/src", Text()).status, 201);
  ASSERT_EQ(Post("/src", With(producer, DS_FIELD_STREAM_CLOSED, "true"), "hello").status, 200);
  Response fork = Put("/f", Fork("/src", 0, "3"));
  EXPECT_EQ(fork.status, 201);
  EXPECT_EQ(HeaderOf(fork, "Stream-Closed"), "<absent>");
  EXPECT_EQ(Post("/f", producer, "LO").status, 200);
  EXPECT_EQ(Get("/f").body, "helLO");
}

TEST_F(ForkTest, LifetimeInheritance) {
  ASSERT_EQ(Put("/ttl", With(Text(), DS_FIELD_STREAM_TTL, "3600")).status, 201);
  ASSERT_EQ(Put("/f1", Fork("/ttl")).status, 201);
  EXPECT_EQ(HeaderOf(Head("/f1"), "Stream-Ttl"), "3600");
  ASSERT_EQ(Put("/f2", With(Fork("/ttl"), DS_FIELD_STREAM_TTL, "99999")).status, 201);
  EXPECT_EQ(HeaderOf(Head("/f2"), "Stream-Ttl"), "99999");
  ASSERT_EQ(Put("/exp", With(Text(), DS_FIELD_STREAM_EXPIRES_AT, "2026-06-01T00:00:00Z")).status,
            201);
  ASSERT_EQ(Put("/f3", Fork("/exp")).status, 201);
  EXPECT_EQ(HeaderOf(Head("/f3"), "Stream-Expires-At"), "2026-06-01T00:00:00.000Z");
}

TEST_F(ForkTest, ReadingAForkRenewsOnlyTheFork) {
  ASSERT_EQ(Put("/src", With(Text(), DS_FIELD_STREAM_TTL, "2"), "data").status, 201);
  ASSERT_EQ(Put("/f", With(Fork("/src"), DS_FIELD_STREAM_TTL, "2")).status, 201);
  clock_->Advance(1500);
  EXPECT_EQ(Get("/f").body, "data");
  clock_->Advance(600);
  EXPECT_NE(Head("/src").status, 200);
  EXPECT_EQ(Head("/f").status, 200);
  EXPECT_EQ(Get("/f").body, "data");
}

TEST_F(ForkTest, SoftDeleteAndCascade) {
  ASSERT_EQ(Put("/l0", Text(), "A").status, 201);
  ASSERT_EQ(Put("/l1", Fork("/l0")).status, 201);
  ASSERT_EQ(Post("/l1", Text(), "B").status, 204);
  ASSERT_EQ(Put("/l2", Fork("/l1")).status, 201);
  ASSERT_EQ(Post("/l2", Text(), "C").status, 204);
  EXPECT_EQ(Delete("/l0").status, 204);
  EXPECT_EQ(Delete("/l1").status, 204);
  for (const char* p : {"/l0", "/l1"}) {
    EXPECT_EQ(Head(p).status, 410);
    EXPECT_EQ(Get(p).status, 410);
    EXPECT_EQ(Post(p, Text(), "x").status, 410);
    EXPECT_EQ(Delete(p).status, 410);
    EXPECT_EQ(Put(p, Text()).status, 409);
    EXPECT_EQ(Put("/new", Fork(p)).status, 409);
  }
  EXPECT_EQ(Get("/l2").body, "ABC");
  EXPECT_EQ(Delete("/l2").status, 204);
  for (const char* p : {"/l0", "/l1", "/l2"}) EXPECT_EQ(Head(p).status, 404) << p;
  EXPECT_EQ(engine_->Stats().streams, 0u);
}

TEST_F(ForkTest, LongPollOnForkIgnoresSourceAppends) {
  ASSERT_EQ(Put("/src", Text(), "s").status, 201);
  ASSERT_EQ(Put("/f", Fork("/src")).status, 201);
  Response wait = Get("/f", "offset=" + EncodeOffset(1) + "&live=long-poll");
  ASSERT_EQ(wait.live, DS_LIVE_WAIT);
  ASSERT_EQ(Post("/src", Text(), "x").status, 204);
  EXPECT_TRUE(TakeWoken().empty());
  ASSERT_EQ(Post("/f", Text(), " fork new").status, 204);
  EXPECT_EQ(TakeWoken().size(), 1u);
  EXPECT_EQ(engine_->Resume(wait.session, DS_RESUME_WAKE).body, " fork new");
}

}  // namespace
}  // namespace ds::testing
