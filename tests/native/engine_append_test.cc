// POST (§5.2), idempotent producers (§5.2.1), closure (§5.3), JSON mode (§9.1).
#include "engine_fixture.h"
#include "offset.h"

namespace ds::testing {
namespace {

class AppendTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    ASSERT_EQ(Put("/s", Text()).status, 201);
  }
  static Headers Producer(std::string id, std::string epoch, std::string seq, Headers h = Text()) {
    h[DS_FIELD_PRODUCER_ID] = std::move(id);
    h[DS_FIELD_PRODUCER_EPOCH] = std::move(epoch);
    h[DS_FIELD_PRODUCER_SEQ] = std::move(seq);
    return h;
  }
};

TEST_F(AppendTest, AppendsAndAdvancesTheTail) {
  Response r = Post("/s", Text(), "hello");
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(HeaderOf(r, "Stream-Next-Offset"), EncodeOffset(5));
  EXPECT_EQ(Post("/s", {{DS_FIELD_CONTENT_TYPE, "TEXT/PLAIN"}}, " world").status, 204);
  EXPECT_EQ(Get("/s").body, "hello world");
}

TEST_F(AppendTest, RejectsEmptyBodyMissingTypeAndMismatch) {
  EXPECT_EQ(Post("/s", Text(), "").status, 400);
  EXPECT_EQ(Post("/s", {}, "data").status, 400);
  EXPECT_EQ(Post("/s", Json(), "{}").status, 409);
  EXPECT_EQ(Post("/missing", Text(), "x").status, 404);
}

TEST_F(AppendTest, BodyTooLargeIs413) {
  Call("POST", "/s", Text(), "");  // warm up
  Request r;
  std::string method = "POST", path = "/s";
  r.method = method;
  r.path = path;
  r.body_too_large = true;
  EXPECT_EQ(engine_->Handle(r, 1).status, 413);
}

TEST_F(AppendTest, StreamSeqIsStrictlyIncreasingBytewise) {
  EXPECT_EQ(Post("/s", With(Text(), DS_FIELD_STREAM_SEQ, "2"), "a").status, 204);
  EXPECT_EQ(Post("/s", With(Text(), DS_FIELD_STREAM_SEQ, "10"), "b").status, 409);
  EXPECT_EQ(Post("/s", With(Text(), DS_FIELD_STREAM_SEQ, "2"), "b").status, 409);
  EXPECT_EQ(Post("/s", With(Text(), DS_FIELD_STREAM_SEQ, "3"), "b").status, 204);
  EXPECT_EQ(Get("/s").body, "ab");
}

TEST_F(AppendTest, ProducerLifecycle) {
  Response first = Post("/s", Producer("p", "0", "0"), "a");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(HeaderOf(first, "Producer-Epoch"), "0");
  EXPECT_EQ(HeaderOf(first, "Producer-Seq"), "0");
  EXPECT_EQ(Post("/s", Producer("p", "0", "1"), "b").status, 200);
  Response dup = Post("/s", Producer("p", "0", "0"), "a");
  EXPECT_EQ(dup.status, 204);
  EXPECT_EQ(HeaderOf(dup, "Producer-Seq"), "1");
  Response gap = Post("/s", Producer("p", "0", "3"), "x");
  EXPECT_EQ(gap.status, 409);
  EXPECT_EQ(HeaderOf(gap, "Producer-Expected-Seq"), "2");
  EXPECT_EQ(HeaderOf(gap, "Producer-Received-Seq"), "3");
  EXPECT_EQ(Post("/s", Producer("p", "1", "1"), "x").status, 400);
  EXPECT_EQ(Post("/s", Producer("p", "1", "0"), "c").status, 200);
  Response stale = Post("/s", Producer("p", "0", "2"), "x");
  EXPECT_EQ(stale.status, 403);
  EXPECT_EQ(HeaderOf(stale, "Producer-Epoch"), "1");
  EXPECT_EQ(Get("/s").body, "abc");
}

TEST_F(AppendTest, ProducerHeadersMustBeCompleteAndNumeric) {
  EXPECT_EQ(Post("/s", {{DS_FIELD_CONTENT_TYPE, "text/plain"}, {DS_FIELD_PRODUCER_ID, "p"}}, "x").status,
            400);
  EXPECT_EQ(Post("/s", Producer("", "0", "0"), "x").status, 400);
  for (const char* bad : {"1abc", "0xyz", "1e3", "-1", "9007199254740992", ""}) {
    EXPECT_EQ(Post("/s", Producer("p", bad, "0"), "x").status, 400) << bad;
    EXPECT_EQ(Post("/s", Producer("p", "0", bad), "x").status, 400) << bad;
  }
  EXPECT_EQ(Post("/s", Producer("p", "0", "0"), "x").status, 200);
}

TEST_F(AppendTest, ProducerDedupComesBeforeStreamSeq) {
  Headers h = With(Producer("p", "0", "0"), DS_FIELD_STREAM_SEQ, "s1");
  EXPECT_EQ(Post("/s", h, "x").status, 200);
  EXPECT_EQ(Post("/s", h, "x").status, 204);
}

TEST_F(AppendTest, CloseOnlyIsIdempotent) {
  Response close = Post("/s", {{DS_FIELD_STREAM_CLOSED, "true"}});
  EXPECT_EQ(close.status, 204);
  EXPECT_EQ(HeaderOf(close, "Stream-Closed"), "true");
  EXPECT_EQ(Post("/s", {{DS_FIELD_STREAM_CLOSED, "true"}}).status, 204);
  Response refused = Post("/s", Text(), "late");
  EXPECT_EQ(refused.status, 409);
  EXPECT_EQ(HeaderOf(refused, "Stream-Closed"), "true");
  EXPECT_EQ(HeaderOf(refused, "Stream-Next-Offset"), EncodeOffset(0));
  EXPECT_EQ(Post("/s", With(Text(), DS_FIELD_STREAM_CLOSED, "true"), "late").status, 409);
}

TEST_F(AppendTest, CloseOnlyIgnoresContentType) {
  ASSERT_EQ(Put("/j", Json()).status, 201);
  EXPECT_EQ(Post("/j", With(Text(), DS_FIELD_STREAM_CLOSED, "true")).status, 204);
}

TEST_F(AppendTest, ProducerCloseAndRetry) {
  Response close = Post("/s", With(Producer("p", "0", "0"), DS_FIELD_STREAM_CLOSED, "true"), "A");
  EXPECT_EQ(close.status, 200);
  EXPECT_EQ(HeaderOf(close, "Stream-Closed"), "true");
  Response retry = Post("/s", With(Producer("p", "0", "0"), DS_FIELD_STREAM_CLOSED, "true"), "B");
  EXPECT_EQ(retry.status, 204);
  EXPECT_EQ(HeaderOf(retry, "Stream-Closed"), "true");
  EXPECT_EQ(Post("/s", With(Producer("p", "0", "1"), DS_FIELD_STREAM_CLOSED, "true"), "C").status,
            409);
  EXPECT_EQ(Post("/s", With(Producer("q", "0", "0"), DS_FIELD_STREAM_CLOSED, "true"), "C").status,
            409);
  EXPECT_EQ(Get("/s").body, "A");
}

TEST_F(AppendTest, ProducerCloseOnlyIs204) {
  EXPECT_EQ(Post("/s", Producer("p", "0", "0"), "m").status, 200);
  Response close = Post("/s", {{DS_FIELD_STREAM_CLOSED, "true"},
                               {DS_FIELD_PRODUCER_ID, "p"},
                               {DS_FIELD_PRODUCER_EPOCH, "0"},
                               {DS_FIELD_PRODUCER_SEQ, "1"}});
  EXPECT_EQ(close.status, 204);
  EXPECT_EQ(HeaderOf(close, "Producer-Seq"), "1");
  EXPECT_EQ(HeaderOf(close, "Stream-Closed"), "true");
}

TEST_F(AppendTest, JsonFlattensOneLevel) {
  ASSERT_EQ(Put("/j", Json(), R"({"initial": true})").status, 201);
  EXPECT_EQ(Post("/j", Json(), R"([{"a":1}, [1,2], "s"])").status, 204);
  EXPECT_EQ(Post("/j", Json(), "[[[1,2,3]]]").status, 204);
  EXPECT_EQ(Post("/j", Json(), "{\n  \"multi\":\n  \"line\"\n}").status, 204);
  EXPECT_EQ(Get("/j").body,
            R"([{"initial": true},{"a":1},[1,2],"s",[[1,2,3]],{   "multi":   "line" }])");
}

TEST_F(AppendTest, JsonRejectsEmptyArrayAndInvalid) {
  ASSERT_EQ(Put("/j", Json()).status, 201);
  EXPECT_EQ(Post("/j", Json(), "[]").status, 400);
  EXPECT_EQ(Post("/j", Json(), "[ ]").status, 400);
  EXPECT_EQ(Post("/j", Json(), "{ invalid json }").status, 400);
  EXPECT_EQ(Post("/j", Json(), "[1,]").status, 400);
  EXPECT_EQ(Post("/j", Json(), "\"a\\\"]\"").status, 204);
  EXPECT_EQ(Get("/j").body, R"(["a\"]"])");
}

TEST_F(AppendTest, AppendWakesParkedReaders) {
  Response wait = Get("/s", "offset=now&live=long-poll");
  ASSERT_EQ(wait.live, DS_LIVE_WAIT);
  EXPECT_TRUE(TakeWoken().empty());
  ASSERT_EQ(Post("/s", Text(), "x").status, 204);
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{wait.session});
}

}  // namespace
}  // namespace ds::testing
