// A plain EventSource (§5.8): every control event carries `id:` with its
// streamNextOffset, and a reconnect's Last-Event-ID picks the offset to
// resume from when it is a valid offset at or after the URL's.
#include "engine_fixture.h"
#include "offset.h"
#include "sse.h"

namespace ds::testing {
namespace {

class SseResumeTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineOptions options;
    options.max_read_bytes = 1 << 20;
    options.sse_reconnect_interval_ms = 60000;
    options.sse_keepalive_interval_ms = 15000;
    Open(options);
    ASSERT_EQ(Put("/s", Text(), "hello world").status, 201);  // 11 bytes
  }

  // The SSE body of GET /s?<query>&live=sse with Last-Event-ID `id`.
  std::string Sse(const std::string& query, std::optional<std::string> id) {
    Headers h;
    if (id) h[DS_FIELD_LAST_EVENT_ID] = *id;
    Response r = Get("/s", query + "&live=sse", h);
    EXPECT_EQ(r.status, 200);
    return r.body;
  }

  // What a reader that starts at `from` gets first (the stream is open).
  static std::string From(uint64_t from) {
    std::string data = std::string("hello world").substr(from);
    std::string out;
    if (!data.empty()) out = "event: data\ndata:" + data + "\n\n";
    return out + "event: control\ndata:{\"streamNextOffset\":\"" + EncodeOffset(11) +
           "\",\"streamCursor\":\"";
  }

  static bool StartsWith(const std::string& s, const std::string& prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
  }
};

TEST(SseFramingTest, ControlEventCarriesItsOffsetAsId) {
  std::string out;
  AppendSseControl({.next_offset = EncodeOffset(7), .cursor = "42", .up_to_date = true}, &out);
  EXPECT_EQ(out, "event: control\ndata:{\"streamNextOffset\":\"" + EncodeOffset(7) +
                     "\",\"streamCursor\":\"42\",\"upToDate\":true}\nid: " + EncodeOffset(7) +
                     "\n\n");
  out.clear();
  AppendSseData("x", SseDataEncoding::kText, &out);
  EXPECT_EQ(out, "event: data\ndata:x\n\n") << "data events carry no id";
}

TEST_F(SseResumeTest, WithoutLastEventIdTheUrlOffsetIsUsed) {
  EXPECT_PRED2(StartsWith, Sse("offset=-1", std::nullopt), From(0));
  EXPECT_PRED2(StartsWith, Sse("offset=" + EncodeOffset(3), std::nullopt), From(3));
}

TEST_F(SseResumeTest, LastEventIdAtOrAfterTheUrlOffsetWins) {
  EXPECT_PRED2(StartsWith, Sse("offset=-1", EncodeOffset(6)), From(6));
  EXPECT_PRED2(StartsWith, Sse("offset=" + EncodeOffset(3), EncodeOffset(6)), From(6));
  EXPECT_PRED2(StartsWith, Sse("offset=" + EncodeOffset(6), EncodeOffset(6)), From(6));
  // At the tail: no data again, only the control event saying where it is.
  EXPECT_PRED2(StartsWith, Sse("offset=-1", EncodeOffset(11)), From(11));
}

TEST_F(SseResumeTest, LastEventIdThatIsNotAValidLaterOffsetIsIgnored) {
  const std::string url = "offset=" + EncodeOffset(6);
  EXPECT_PRED2(StartsWith, Sse(url, EncodeOffset(3)), From(6)) << "before the URL's offset";
  EXPECT_PRED2(StartsWith, Sse(url, EncodeOffset(12)), From(6)) << "beyond the tail";
  EXPECT_PRED2(StartsWith, Sse(url, "garbage"), From(6));
  EXPECT_PRED2(StartsWith, Sse(url, ""), From(6));
  EXPECT_PRED2(StartsWith, Sse(url, "-1"), From(6));
  EXPECT_PRED2(StartsWith, Sse(url, "now"), From(6));
  EXPECT_PRED2(StartsWith, Sse(url, "1" + EncodeOffset(8).substr(1)), From(6)) << "not our token";
}

// offset=now started at an earlier tail: the id of that connection's last
// control event is where its reader stopped, so it resumes there.
TEST_F(SseResumeTest, AtNowAnyRetainedOffsetResumes) {
  EXPECT_PRED2(StartsWith, Sse("offset=now", std::nullopt), From(11));
  EXPECT_PRED2(StartsWith, Sse("offset=now", EncodeOffset(6)), From(6));
  EXPECT_PRED2(StartsWith, Sse("offset=now", EncodeOffset(12)), From(11));
}

TEST_F(SseResumeTest, LongPollIgnoresLastEventId) {
  Response r = Get("/s", "offset=" + EncodeOffset(3) + "&live=long-poll",
                   {{DS_FIELD_LAST_EVENT_ID, EncodeOffset(6)}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "lo world");
}

}  // namespace
}  // namespace ds::testing
