// GET catch-up (§5.6), long-poll (§5.7), SSE (§5.8), offsets (§8), ETags (§10.1).
#include "engine_fixture.h"
#include "offset.h"

namespace ds::testing {
namespace {

class ReadTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineOptions options;
    options.max_read_bytes = 4;
    options.long_poll_timeout_ms = 2000;
    options.sse_reconnect_interval_ms = 60000;
    options.sse_keepalive_interval_ms = 15000;
    Open(options);
  }
};

TEST_F(ReadTest, CatchUpIsCappedAndMarksOnlyTheTail) {
  ASSERT_EQ(Put("/s", Text(), "abcdefghij").status, 201);
  Response first = Get("/s", "offset=-1");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, "abcd");
  EXPECT_EQ(HeaderOf(first, "Stream-Up-To-Date"), "<absent>");
  EXPECT_EQ(HeaderOf(first, "Stream-Next-Offset"), EncodeOffset(4));
  EXPECT_EQ(HeaderOf(first, "Cache-Control"), "public, max-age=60, stale-while-revalidate=300");
  Response last = Get("/s", "offset=" + EncodeOffset(8));
  EXPECT_EQ(last.body, "ij");
  EXPECT_EQ(HeaderOf(last, "Stream-Up-To-Date"), "true");
  Response tail = Get("/s", "offset=" + EncodeOffset(10));
  EXPECT_EQ(tail.body, "");
  EXPECT_EQ(HeaderOf(tail, "Stream-Up-To-Date"), "true");
  EXPECT_EQ(Get("/s").body, "abcd");
}

TEST_F(ReadTest, JsonChunksEndOnMessageBoundaries) {
  ASSERT_EQ(Put("/j", Json(), R"([1,"long message",3])").status, 201);
  Response a = Get("/j");
  EXPECT_EQ(a.body, "[1]");
  Response b = Get("/j", "offset=" + HeaderOf(a, "Stream-Next-Offset"));
  EXPECT_EQ(b.body, R"(["long message"])");
  Response c = Get("/j", "offset=" + HeaderOf(b, "Stream-Next-Offset"));
  EXPECT_EQ(c.body, "[3]");
  EXPECT_EQ(HeaderOf(c, "Stream-Up-To-Date"), "true");
}

TEST_F(ReadTest, OffsetValidation) {
  ASSERT_EQ(Put("/s", Text(), "abc").status, 201);
  for (const char* q : {"offset=", "offset=a&offset=b", "offset=0,1", "offset=0%201", "offset=now%20",
                        "offset=-1%0A", "offset=..%2F", "offset=9999999999999999_9999999999999999",
                        "offset=0000000000000000_0000000000000004", "live=long-poll", "live=sse",
                        "offset=-1&live=poll"}) {
    EXPECT_EQ(Get("/s", q).status, 400) << q;
  }
  EXPECT_EQ(Get("/s", "offset=-1&foo=bar").body, "abc");
  EXPECT_EQ(Get("/missing", "offset=now").status, 404);
  EXPECT_EQ(Get("/missing", "offset=now&live=sse").status, 404);
}

TEST_F(ReadTest, NowSentinel) {
  ASSERT_EQ(Put("/s", Text(), "abc").status, 201);
  Response r = Get("/s", "offset=now");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(HeaderOf(r, "Stream-Next-Offset"), EncodeOffset(3));
  EXPECT_EQ(HeaderOf(r, "Stream-Up-To-Date"), "true");
  EXPECT_EQ(HeaderOf(r, "Cache-Control"), "no-store");
  EXPECT_EQ(HeaderOf(r, "Etag"), "<absent>");
  ASSERT_EQ(Put("/j", Json(), "[1]").status, 201);
  EXPECT_EQ(Get("/j", "offset=now").body, "[]");
}

TEST_F(ReadTest, ETagChangesWithDataAndClosure) {
  ASSERT_EQ(Put("/s", Text(), "ab").status, 201);
  std::string etag = HeaderOf(Get("/s"), "Etag");
  Response cached = Get("/s", "", {{DS_FIELD_IF_NONE_MATCH, etag}});
  EXPECT_EQ(cached.status, 304);
  EXPECT_TRUE(cached.body.empty());
  EXPECT_EQ(Get("/s", "", {{DS_FIELD_IF_NONE_MATCH, "\"wrong\""}}).status, 200);
  ASSERT_EQ(Post("/s", {{DS_FIELD_STREAM_CLOSED, "true"}}).status, 204);
  Response after = Get("/s", "", {{DS_FIELD_IF_NONE_MATCH, etag}});
  EXPECT_EQ(after.status, 200);
  EXPECT_EQ(HeaderOf(after, "Etag"), etag.substr(0, etag.size() - 1) + ":c\"");
  EXPECT_EQ(HeaderOf(after, "Stream-Closed"), "true");
}

TEST_F(ReadTest, ClosedChunkSignalsEofOnlyAtTheTail) {
  ASSERT_EQ(Put("/s", With(Text(), DS_FIELD_STREAM_CLOSED, "true"), "abcdef").status, 201);
  EXPECT_EQ(HeaderOf(Get("/s"), "Stream-Closed"), "<absent>");
  Response end = Get("/s", "offset=" + EncodeOffset(4));
  EXPECT_EQ(end.body, "ef");
  EXPECT_EQ(HeaderOf(end, "Stream-Closed"), "true");
}

TEST_F(ReadTest, LongPollReturnsDataAtOnceOrParks) {
  ASSERT_EQ(Put("/s", Text(), "ab").status, 201);
  Response now = Get("/s", "offset=-1&live=long-poll");
  EXPECT_EQ(now.status, 200);
  EXPECT_EQ(now.body, "ab");
  EXPECT_NE(HeaderOf(now, "Stream-Cursor"), "<absent>");

  Response wait = Get("/s", "offset=" + EncodeOffset(2) + "&live=long-poll");
  ASSERT_EQ(wait.live, DS_LIVE_WAIT);
  EXPECT_EQ(wait.wait_ms, 2000u);
  EXPECT_EQ(engine_->Stats().parked_sessions, 1u);
  ASSERT_EQ(Post("/s", Text(), "cd").status, 204);
  Response data = engine_->Resume(wait.session, DS_RESUME_WAKE);
  EXPECT_EQ(data.live, DS_LIVE_NONE);
  EXPECT_EQ(data.status, 200);
  EXPECT_EQ(data.body, "cd");
  EXPECT_EQ(HeaderOf(data, "Stream-Up-To-Date"), "true");
  EXPECT_EQ(engine_->Stats().parked_sessions, 0u);
}

TEST_F(ReadTest, ResumedLongPollCarriesSecurityAndCorsHeaders) {
  // A browser on another origin reads the answer of a long-poll that waited
  // as it reads one that did not (§12.7): the resumed response needs the
  // same headers as one Handle returns.
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Response wait = Get("/s", "offset=now&live=long-poll");
  ASSERT_EQ(wait.live, DS_LIVE_WAIT);
  ASSERT_EQ(Post("/s", Text(), "x").status, 204);
  Response data = engine_->Resume(wait.session, DS_RESUME_WAKE);
  ASSERT_EQ(data.status, 200);
  EXPECT_EQ(HeaderOf(data, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(HeaderOf(data, "Access-Control-Allow-Origin"), "*");
  EXPECT_NE(HeaderOf(data, "Access-Control-Expose-Headers"), "<absent>");

  Response again = Get("/s", "offset=" + EncodeOffset(1) + "&live=long-poll");
  ASSERT_EQ(again.live, DS_LIVE_WAIT);
  Response timeout = engine_->Resume(again.session, DS_RESUME_TIMEOUT);
  ASSERT_EQ(timeout.status, 204);
  EXPECT_EQ(HeaderOf(timeout, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(HeaderOf(timeout, "Access-Control-Allow-Origin"), "*");
}

TEST_F(ReadTest, LongPollTimesOutWith204AndCursor) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Response wait = Get("/s", "offset=now&live=long-poll");
  ASSERT_EQ(wait.live, DS_LIVE_WAIT);
  clock_->Advance(2000);
  Response done = engine_->Resume(wait.session, DS_RESUME_TIMEOUT);
  EXPECT_EQ(done.status, 204);
  EXPECT_EQ(HeaderOf(done, "Stream-Up-To-Date"), "true");
  EXPECT_EQ(HeaderOf(done, "Stream-Next-Offset"), EncodeOffset(0));
  std::string cursor = HeaderOf(done, "Stream-Cursor");
  ASSERT_NE(cursor, "<absent>");
  // Echoing the cursor in the same interval yields a strictly larger one.
  Response next = Get("/s", "offset=now&live=long-poll&cursor=" + cursor);
  clock_->Advance(10);
  Response done2 = engine_->Resume(next.session, DS_RESUME_TIMEOUT);
  EXPECT_GT(std::stoull(HeaderOf(done2, "Stream-Cursor")), std::stoull(cursor));
}

TEST_F(ReadTest, LongPollOnClosedTailReturnsAtOnce) {
  ASSERT_EQ(Put("/s", With(Text(), DS_FIELD_STREAM_CLOSED, "true")).status, 201);
  Response r = Get("/s", "offset=now&live=long-poll");
  EXPECT_EQ(r.live, DS_LIVE_NONE);
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(HeaderOf(r, "Stream-Closed"), "true");
  EXPECT_EQ(HeaderOf(r, "Stream-Up-To-Date"), "true");
}

TEST_F(ReadTest, CancelUnregistersAWaiter) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Response wait = Get("/s", "offset=now&live=long-poll");
  engine_->Cancel(wait.session);
  EXPECT_EQ(engine_->Stats().parked_sessions, 0u);
  ASSERT_EQ(Post("/s", Text(), "x").status, 204);
  EXPECT_TRUE(TakeWoken().empty());
}

TEST_F(ReadTest, DeleteEndsParkedReaders) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Response wait = Get("/s", "offset=now&live=long-poll");
  Response sse = Get("/s", "offset=now&live=sse");
  ASSERT_EQ(Delete("/s").status, 204);
  auto woken = TakeWoken();
  EXPECT_EQ(woken.size(), 2u);
  EXPECT_EQ(engine_->Resume(wait.session, DS_RESUME_WAKE).status, 404);
  Response end = engine_->Resume(sse.session, DS_RESUME_WAKE);
  EXPECT_TRUE(end.done);
  EXPECT_EQ(engine_->Stats().parked_sessions, 0u);
}

TEST_F(ReadTest, SseCatchUpFramesDataThenControl) {
  ASSERT_EQ(Put("/s", Text(), "l1\nl2\r\nl3\rl4").status, 201);
  EngineOptions big;
  big.max_read_bytes = 1 << 20;
  Open(big);
  ASSERT_EQ(Put("/s", Text(), "l1\nl2\r\nl3\rl4").status, 201);
  Response r = Get("/s", "offset=-1&live=sse");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.live, DS_LIVE_STREAM);
  EXPECT_EQ(HeaderOf(r, "Content-Type"), "text/event-stream");
  EXPECT_EQ(HeaderOf(r, "Cache-Control"), "no-cache, no-transform");
  EXPECT_EQ(HeaderOf(r, "Stream-Sse-Data-Encoding"), "<absent>");
  std::string prefix =
      "event: data\ndata:l1\ndata:l2\ndata:l3\ndata:l4\n\nevent: control\ndata:{\"streamNextOffset\":\"" +
      EncodeOffset(12) + "\",\"streamCursor\":\"";
  EXPECT_EQ(r.body.substr(0, prefix.size()), prefix);
  EXPECT_NE(r.body.find("\"upToDate\":true}\nid: " + EncodeOffset(12) + "\n\n"), std::string::npos);
}

TEST_F(ReadTest, SseBase64ForBinaryAndEofOnClose) {
  ASSERT_EQ(Put("/b", Bin(), "Hello").status, 201);
  Response r = Get("/b", "offset=-1&live=sse");
  EXPECT_EQ(HeaderOf(r, "Stream-Sse-Data-Encoding"), "base64");
  // Cap is 4 bytes: two data events, each with its control.
  EXPECT_EQ(r.body.find("event: data\ndata:SGVsbA==\n\nevent: control\n"), 0u);
  EXPECT_NE(r.body.find("event: data\ndata:bw==\n\n"), std::string::npos);
  EXPECT_FALSE(r.done);
  ASSERT_EQ(Post("/b", With(Bin(), DS_FIELD_STREAM_CLOSED, "true"), "!").status, 204);
  Response end = engine_->Resume(r.session, DS_RESUME_WAKE);
  EXPECT_TRUE(end.done);
  EXPECT_EQ(end.body, "event: data\ndata:IQ==\n\nevent: control\ndata:{\"streamNextOffset\":\"" +
                          EncodeOffset(6) + "\",\"upToDate\":true,\"streamClosed\":true}\nid: " +
                          EncodeOffset(6) + "\n\n");
}

TEST_F(ReadTest, SseAtTailSendsControlThenKeepalivesThenReconnects) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Response r = Get("/s", "offset=now&live=sse");
  EXPECT_EQ(r.body.rfind("event: control\ndata:{\"streamNextOffset\":\"" + EncodeOffset(0), 0), 0u);
  EXPECT_EQ(r.wait_ms, 15000u);
  clock_->Advance(15000);
  Response ka = engine_->Resume(r.session, DS_RESUME_TIMEOUT);
  EXPECT_EQ(ka.body, ":\n\n");
  EXPECT_FALSE(ka.done);
  clock_->Advance(45000);
  Response end = engine_->Resume(r.session, DS_RESUME_TIMEOUT);
  EXPECT_TRUE(end.done);
  EXPECT_EQ(engine_->Stats().parked_sessions, 0u);
}

TEST_F(ReadTest, SseOnClosedTailEmitsClosedControlOnly) {
  ASSERT_EQ(Put("/s", With(Text(), DS_FIELD_STREAM_CLOSED, "true"), "ab").status, 201);
  Response r = Get("/s", "offset=" + EncodeOffset(2) + "&live=sse");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.body, "event: control\ndata:{\"streamNextOffset\":\"" + EncodeOffset(2) +
                        "\",\"upToDate\":true,\"streamClosed\":true}\nid: " + EncodeOffset(2) +
                        "\n\n");
}

}  // namespace
}  // namespace ds::testing
