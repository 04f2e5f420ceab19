// Long-poll takeover (long_poll_takeover): a parked long-poll handed to the
// fan-out with one end of a socketpair, answered by the engine itself in
// the bytes net/http would have written (http1_answer.h), then closed.
// Driven turn by turn with the fan-out's thread off and a manual clock.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "cursor.h"
#include "engine_fixture.h"
#include "http1_answer.h"
#include "offset.h"
#include "socket_fixture.h"

namespace ds::testing {
namespace {

constexpr int64_t kTimeoutMs = 30000;
constexpr int64_t kKeepaliveMs = 15000;

const std::string kExpose =
    "Access-Control-Expose-Headers: Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, "
    "Stream-Closed, Stream-TTL, Stream-Expires-At, Stream-SSE-Data-Encoding, Producer-Epoch, "
    "Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, ETag, Location, Content-Type\r\n";

// What earlier middleware set: Caddy's Server header and a CORS rule of
// the user's (which must win over the engine's "*").
const std::string kMiddleware = std::string("Server\0Caddy\0Access-Control-Allow-Origin\0https://app.example\0", 61);

// The client's end of a taken-over connection.
using Client = SocketPeer;

class LongPollTakeoverTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineOptions options;
    options.long_poll_timeout_ms = kTimeoutMs;
    options.sse_keepalive_interval_ms = kKeepaliveMs;
    options.sse_fanout_thread = false;
    Open(options);
  }

  // Parks a long-poll at `offset` and hands it over, as the HTTP layer does.
  Client Park(const std::string& path, const std::string& offset, uint64_t owner = 1,
              uint64_t return_tag = 0, const std::string& cursor = "") {
    std::string query = "offset=" + offset + "&live=long-poll";
    if (!cursor.empty()) query += "&cursor=" + cursor;
    Response r = Get(path, query);
    EXPECT_EQ(r.live, DS_LIVE_WAIT);
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    // With a return tag the HTTP layer keeps its own descriptor open.
    if (return_tag != 0) kept_.emplace_back(::dup(sv[0]));
    std::string message;
    EXPECT_EQ(engine_->AdoptLongPoll(r.session, UniqueFd(sv[0]), owner, kMiddleware, return_tag,
                                     &message),
              Engine::Adoption::kAdopted)
        << message;
    return Client(sv[1]);
  }

  void Turn() { engine_->RunSseFanoutOnce(0); }

  std::string Cursor() const { return NextCursor(clock_->NowMs(), "", 1); }

  std::vector<UniqueFd> kept_;
};

TEST(Http1AnswerTest, RendersAsNetHttpWouldByteExact) {
  Response r;
  r.status = 200;
  r.Set(header::kContentType, "text/plain");
  r.Set(header::kStreamNextOffset, "0000_0005");
  r.Set(header::kAllowOrigin, "*");
  r.Set("X-Twice", "a");
  r.Set("X-Twice", "b");
  r.body = "hello";
  // Middleware: a value with a line break and blanks (net/http turns the
  // break into a space and trims), a keep-alive Connection (replaced), a
  // header the engine replaces.
  std::string mw("Connection\0keep-alive\0X-Mw\0 one\r\ntwo \0Stream-Next-Offset\0stale\0", 63);
  EXPECT_EQ(RenderHttp1Answer(mw, r, 1767225600),
            "HTTP/1.1 200 OK\r\n"
            "Access-Control-Allow-Origin: *\r\n"
            "Content-Length: 5\r\n"
            "Content-Type: text/plain\r\n"
            "Stream-Next-Offset: 0000_0005\r\n"
            "X-Mw: one  two\r\n"
            "X-Twice: a\r\n"
            "X-Twice: b\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
            "Connection: close\r\n"
            "\r\n"
            "hello");
  Response none;
  none.status = 204;
  none.Set(header::kCacheControl, "no-store");
  EXPECT_EQ(RenderHttp1Answer(std::string("Content-Length\0" "9\0Date\0yesterday\0", 32), none, 0),
            "HTTP/1.1 204 No Content\r\n"
            "Cache-Control: no-store\r\n"
            "Date: yesterday\r\n"
            "Connection: close\r\n"
            "\r\n");
}

TEST_F(LongPollTakeoverTest, AppendAnswers200ByteExactThenClosesWithoutATag) {
  ASSERT_EQ(Put("/s", Text(), "ab").status, 201);
  Client client = Park("/s", EncodeOffset(2));
  Turn();
  EXPECT_EQ(client.Read(), "");
  EXPECT_EQ(engine_->Stats().adopted_sessions, 1u);
  // What the goroutine path answers for the same wait, via Resume.
  Response twin = Get("/s", "offset=" + EncodeOffset(2) + "&live=long-poll");
  ASSERT_EQ(twin.live, DS_LIVE_WAIT);

  ASSERT_EQ(Post("/s", Text(), "hello").status, 204);
  Turn();
  std::string got = client.Read();
  Response want = engine_->Resume(twin.session, DS_RESUME_WAKE);
  ASSERT_EQ(want.status, 200);
  EXPECT_EQ(got, RenderHttp1Answer(kMiddleware, want, clock_->NowMs() / 1000));
  EXPECT_EQ(got.substr(0, 17), "HTTP/1.1 200 OK\r\n");
  EXPECT_NE(got.find("\r\nAccess-Control-Allow-Origin: https://app.example\r\n"), std::string::npos);
  EXPECT_NE(got.find("\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n"), std::string::npos);
  EXPECT_NE(got.find("\r\nStream-Cursor: " + Cursor() + "\r\nStream-Next-Offset: " +
                     EncodeOffset(7) + "\r\nStream-Up-To-Date: true\r\n"),
            std::string::npos);
  EXPECT_EQ(got.substr(got.size() - 63),
            "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nConnection: close\r\n\r\nhello");
  EXPECT_TRUE(client.eof()) << "shut for writing after the answer";
  EXPECT_TRUE(TakeWoken().size() <= 1) << "only the twin session may wake the HTTP layer";
  // Lingers until the client closes.
  EXPECT_EQ(engine_->Stats().adopted_sessions, 1u);
  client.Close();
  Turn();
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
}

TEST_F(LongPollTakeoverTest, TimeoutAnswers204ByteExact) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Client client = Park("/s", EncodeOffset(0));
  Turn();
  clock_->Advance(kTimeoutMs - 1);
  Turn();
  EXPECT_EQ(client.Read(), "");
  clock_->Advance(1);
  Turn();
  EXPECT_EQ(client.Read(),
            "HTTP/1.1 204 No Content\r\n"
            "Access-Control-Allow-Origin: https://app.example\r\n" +
                kExpose +
                "Cache-Control: no-store\r\n"
                "Cross-Origin-Resource-Policy: cross-origin\r\n"
                "Server: Caddy\r\n"
                "Stream-Cursor: " +
                Cursor() +
                "\r\n"
                "Stream-Next-Offset: " +
                EncodeOffset(0) +
                "\r\n"
                "Stream-Up-To-Date: true\r\n"
                "X-Content-Type-Options: nosniff\r\n"
                "Date: Thu, 01 Jan 2026 00:00:30 GMT\r\n"
                "Connection: close\r\n"
                "\r\n");
  EXPECT_TRUE(client.eof());
}

TEST_F(LongPollTakeoverTest, ClosureWhileParkedAnswers204Closed) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Client client = Park("/s", EncodeOffset(0));
  Turn();
  ASSERT_EQ(Post("/s", With(Text(), DS_FIELD_STREAM_CLOSED, "true")).status, 204);
  Turn();
  std::string got = client.Read();
  EXPECT_EQ(got.substr(0, 25), "HTTP/1.1 204 No Content\r\n");
  EXPECT_NE(got.find("\r\nStream-Closed: true\r\nStream-Next-Offset: " + EncodeOffset(0) +
                     "\r\nStream-Up-To-Date: true\r\n"),
            std::string::npos)
      << got;
  EXPECT_EQ(got.find("\r\nStream-Cursor:"), std::string::npos);
}

TEST_F(LongPollTakeoverTest, DeletionWhileParkedAnswers404) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Client client = Park("/s", EncodeOffset(0));
  Turn();
  ASSERT_EQ(Delete("/s").status, 204);
  Turn();
  std::string got = client.Read();
  EXPECT_EQ(got.substr(0, 24), "HTTP/1.1 404 Not Found\r\n");
  EXPECT_NE(got.find("\r\nCache-Control: no-store\r\nContent-Length: 17\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"),
            std::string::npos)
      << got;
  EXPECT_EQ(got.substr(got.size() - 21), "\r\n\r\nstream not found\n");
}

TEST_F(LongPollTakeoverTest, ClientGoneWhileParkedFreesTheWaiter) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Client client = Park("/s", EncodeOffset(0));
  Turn();
  EXPECT_EQ(engine_->Stats().adopted_sessions, 1u);
  client.Close();
  Turn();
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
  // Nothing is left parked on the stream: an append wakes nobody.
  ASSERT_EQ(Post("/s", Text(), "x").status, 204);
  Turn();
  EXPECT_TRUE(TakeWoken().empty());
}

TEST_F(LongPollTakeoverTest, OneAppendAnswersEveryWaiter) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  std::vector<Client> clients;
  for (int i = 0; i < 200; ++i) clients.push_back(Park("/s", EncodeOffset(0)));
  Turn();
  EXPECT_EQ(engine_->Stats().adopted_sessions, 200u);
  ASSERT_EQ(Post("/s", Text(), "hi").status, 204);
  Turn();
  std::string first;
  for (Client& c : clients) {
    std::string got = c.Read();
    if (first.empty()) first = got;
    EXPECT_EQ(got, first);
    EXPECT_TRUE(c.eof());
  }
  EXPECT_EQ(first.substr(0, 17), "HTTP/1.1 200 OK\r\n");
  EXPECT_EQ(first.substr(first.size() - 6), "\r\n\r\nhi");
}

TEST_F(LongPollTakeoverTest, EndAdoptedAnswersTheTimeoutAtOnce) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Client old_config = Park("/s", EncodeOffset(0), /*owner=*/1);
  Client new_config = Park("/s", EncodeOffset(0), /*owner=*/2);
  Turn();
  engine_->EndAdopted(1);
  Turn();
  EXPECT_EQ(old_config.Read().substr(0, 25), "HTTP/1.1 204 No Content\r\n");
  EXPECT_EQ(new_config.Read(), "");
}

TEST_F(LongPollTakeoverTest, ClientThatNeverClosesIsClosedAfterLinger) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Client client = Park("/s", EncodeOffset(0));
  Turn();
  ASSERT_EQ(Post("/s", Text(), "x").status, 204);
  Turn();
  EXPECT_FALSE(client.Read().empty());
  EXPECT_EQ(engine_->Stats().adopted_sessions, 1u);
  clock_->Advance(1000);
  Turn();
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
}

TEST_F(LongPollTakeoverTest, DataAlreadyThereWhenAdoptedIsAnsweredAtOnce) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Response r = Get("/s", "offset=" + EncodeOffset(0) + "&live=long-poll");
  ASSERT_EQ(r.live, DS_LIVE_WAIT);
  ASSERT_EQ(Post("/s", Text(), "early").status, 204);  // between park and adopt
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::string message;
  ASSERT_EQ(engine_->AdoptLongPoll(r.session, UniqueFd(sv[0]), 1, "", 0, &message),
            Engine::Adoption::kAdopted);
  Client client(sv[1]);
  Turn();
  std::string got = client.Read();
  EXPECT_EQ(got.substr(got.size() - 9), "\r\n\r\nearly");
}

TEST_F(LongPollTakeoverTest, RefusesWhatIsNotAParkedLongPoll) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Response sse = Get("/s", "offset=" + EncodeOffset(0) + "&live=sse");
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::string message;
  EXPECT_EQ(engine_->AdoptLongPoll(sse.session, UniqueFd(sv[0]), 1, "", 0, &message),
            Engine::Adoption::kNoSession);
  ::close(sv[1]);
}

constexpr uint64_t kTag = (uint64_t{1} << 62) | 7;

TEST_F(LongPollTakeoverTest, KeptAliveAnswerHasNoCloseAndIsGivenBack) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Client client = Park("/s", EncodeOffset(0), 1, kTag);
  Turn();
  Response twin = Get("/s", "offset=" + EncodeOffset(0) + "&live=long-poll");
  ASSERT_EQ(Post("/s", Text(), "hello").status, 204);
  TakeWoken();
  Turn();
  std::string got = client.Read();
  Response want = engine_->Resume(twin.session, DS_RESUME_WAKE);
  EXPECT_EQ(got, RenderHttp1Answer(kMiddleware, want, clock_->NowMs() / 1000, true));
  EXPECT_EQ(got.find("Connection"), std::string::npos) << got;
  EXPECT_NE(got.find("\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n"), std::string::npos);
  EXPECT_FALSE(client.eof()) << "the connection stays open for the next request";
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kTag | SseFanout::kServeNext});
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
}

TEST_F(LongPollTakeoverTest, KeptAliveConnectionOfAClientGoneIsGivenBackToClose) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Client client = Park("/s", EncodeOffset(0), 1, kTag);
  Turn();
  client.Close();
  Turn();
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kTag});
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
}

TEST_F(LongPollTakeoverTest, KeptAliveConnectionsAreGivenBackToCloseWhenTheEngineCloses) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Client client = Park("/s", EncodeOffset(0), 1, kTag);
  Turn();
  TakeWoken();
  engine_.reset();
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kTag});
}

}  // namespace
}  // namespace ds::testing
