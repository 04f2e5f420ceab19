// The SSE fan-out (sse_fanout.h): adopted sessions served over socketpairs,
// driven turn by turn with the fan-out's thread off and a manual clock.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "cursor.h"
#include "engine_fixture.h"
#include "offset.h"
#include "socket_fixture.h"

namespace ds::testing {
namespace {

constexpr int64_t kKeepaliveMs = 15000;
constexpr int64_t kReconnectMs = 60000;

std::string Chunk(const std::string& payload) {
  char size[24];
  std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
  return size + payload + "\r\n";
}

const std::string kTerminator = "0\r\n\r\n";

// The peer's end of an adopted connection: what a client reads.
using Peer = SocketPeer;

class SseFanoutTest : public EngineTest {
 protected:
  void SetUp() override { OpenWith(1 << 20); }

  void OpenWith(uint64_t max_read_bytes, int loops = 1, bool threads = false) {
    EngineOptions options;
    options.max_read_bytes = max_read_bytes;
    options.sse_fanout_loops = loops;
    options.sse_reconnect_interval_ms = kReconnectMs;
    options.sse_keepalive_interval_ms = kKeepaliveMs;
    options.sse_fanout_thread = threads;  // without: the test turns the loops
    Open(options);
  }

  // Opens an SSE read and hands it over with one end of a socketpair, as
  // the HTTP layer does after writing the first piece (returned in
  // `first`). `sndbuf` > 0 shrinks the engine's socket buffer.
  Peer Subscribe(const std::string& path, const std::string& offset, uint64_t owner = 1,
                 int sndbuf = 0, Response* first = nullptr) {
    Response r = Get(path, "offset=" + offset + "&live=sse");
    EXPECT_EQ(r.live, DS_LIVE_STREAM);
    EXPECT_FALSE(r.done);
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    if (sndbuf > 0) {
      EXPECT_EQ(::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    }
    std::string message;
    EXPECT_EQ(engine_->AdoptSse(r.session, UniqueFd(sv[0]), owner, &message),
              Engine::Adoption::kAdopted)
        << message;
    if (first != nullptr) *first = std::move(r);
    return Peer(sv[1]);
  }

  void Turn() { engine_->RunSseFanoutOnce(0); }

  // Turns the loop until `peer` has read `want` bytes (or EOF, or too many
  // turns): no sleeping, every turn either writes or finds nothing to do.
  std::string ReadBytes(Peer& peer, size_t want) {
    std::string got;
    for (int turns = 0; got.size() < want && !peer.eof() && turns < 10000; ++turns) {
      Turn();
      got += peer.Read();
    }
    return got;
  }

  std::string Control(uint64_t next, bool up_to_date, bool closed = false) {
    std::string c = "event: control\ndata:{\"streamNextOffset\":\"" + EncodeOffset(next) + "\"";
    if (!closed) c += ",\"streamCursor\":\"" + NextCursor(clock_->NowMs(), "", 1) + "\"";
    if (up_to_date) c += ",\"upToDate\":true";
    if (closed) c += ",\"streamClosed\":true";
    return c + "}\nid: " + EncodeOffset(next) + "\n\n";
  }

  static std::string Data(const std::string& text) { return "event: data\ndata:" + text + "\n\n"; }
};

TEST_F(SseFanoutTest, OneAppendReachesEverySubscriberByteExact) {
  ASSERT_EQ(Put("/s", Text(), "ab").status, 201);
  constexpr int kSubscribers = 64;
  std::vector<Peer> peers;
  for (int i = 0; i < kSubscribers; ++i) peers.push_back(Subscribe("/s", EncodeOffset(2)));
  Turn();
  EXPECT_EQ(engine_->Stats().adopted_sessions, uint64_t{kSubscribers});
  EXPECT_EQ(engine_->Stats().parked_sessions, uint64_t{kSubscribers});
  for (Peer& p : peers) EXPECT_EQ(p.Read(), "");  // caught up: nothing to say

  ASSERT_EQ(Post("/s", Text(), "hello").status, 204);
  Turn();
  std::string want = Chunk(Data("hello") + Control(7, true));
  for (Peer& p : peers) EXPECT_EQ(p.Read(), want);
  EXPECT_TRUE(TakeWoken().empty()) << "adopted sessions must not wake the HTTP layer";

  // And again: the group parked itself anew after the wake.
  ASSERT_EQ(Post("/s", Text(), "x\ny").status, 204);
  Turn();
  want = Chunk("event: data\ndata:x\ndata:y\n\n" + Control(10, true));
  for (Peer& p : peers) EXPECT_EQ(p.Read(), want);
}

// While subscribers keep arriving, the loop is not woken for each: it comes
// back for them every millisecond on its own, and once none has arrived for
// a few milliseconds it sleeps until it is woken again. A wake is never
// delayed.
TEST_F(SseFanoutTest, AdoptionsInAWaveAreTakenWithoutAWakeEach) {
  using std::chrono::milliseconds;
  using std::chrono::steady_clock;
  // Capped chunks of one byte: the HTTP layer's first piece carries four,
  // the loop sends the fifth once it has taken the subscriber.
  OpenWith(/*max_read_bytes=*/1);
  ASSERT_EQ(Put("/s", Text(), "01234").status, 201);

  // A wave starts with a subscriber whose socket is full when it is taken
  // over, so that its registration reports nothing: no socket event ends
  // the loop's waits below, only the wave's own short turns do.
  Response r = Get("/s", "offset=" + EncodeOffset(5) + "&live=sse");
  ASSERT_EQ(r.live, DS_LIVE_STREAM);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  Peer full_peer(sv[1]);
  const std::string filler(4096, 'f');
  while (::send(sv[0], filler.data(), filler.size(), MSG_DONTWAIT) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);
  std::string message;
  ASSERT_EQ(engine_->AdoptSse(r.session, UniqueFd(sv[0]), 1, &message), Engine::Adoption::kAdopted)
      << message;
  Turn();  // takes the adoption: a wave may be starting

  // The next one is taken within the wave's short turn, not after the
  // 10 s this turn may wait (the next timer is a keepalive, 15 s away).
  Peer b = Subscribe("/s", EncodeOffset(0));
  auto start = steady_clock::now();
  engine_->RunSseFanoutOnce(10000);
  EXPECT_LT(steady_clock::now() - start, milliseconds(2000));
  EXPECT_EQ(b.Read(), Chunk(Data("4") + Control(5, true)));

  // A few milliseconds without adoptions end the wave: the loop sleeps
  // until it is woken again.
  std::this_thread::sleep_for(milliseconds(20));
  Turn();
  start = steady_clock::now();
  engine_->RunSseFanoutOnce(300);
  EXPECT_GE(steady_clock::now() - start, milliseconds(250));

  // A wake still interrupts the sleep at once.
  ASSERT_EQ(Post("/s", Text(), "c").status, 204);
  start = steady_clock::now();
  engine_->RunSseFanoutOnce(10000);
  EXPECT_LT(steady_clock::now() - start, milliseconds(2000));
  EXPECT_EQ(b.Read(), Chunk(Data("c") + Control(6, true)));
}

TEST_F(SseFanoutTest, SubscribersSpreadOverLoopsAreAllWoken) {
  OpenWith(1 << 20, /*loops=*/3);
  ASSERT_EQ(Put("/a", Text()).status, 201);
  ASSERT_EQ(Put("/b", Text()).status, 201);
  std::vector<Peer> a, b;
  for (int i = 0; i < 7; ++i) {  // dealt round-robin: every loop gets some
    a.push_back(Subscribe("/a", EncodeOffset(0)));
    b.push_back(Subscribe("/b", EncodeOffset(0)));
  }
  Turn();
  EXPECT_EQ(engine_->Stats().adopted_sessions, 14u);
  ASSERT_EQ(Post("/a", Text(), "A").status, 204);
  Turn();
  for (Peer& p : a) EXPECT_EQ(p.Read(), Chunk(Data("A") + Control(1, true)));
  for (Peer& p : b) EXPECT_EQ(p.Read(), "");
  ASSERT_EQ(Post("/b", Text(), "B").status, 204);
  engine_->EndAdopted(1);  // every loop ends its share
  Turn();
  for (Peer& p : b) EXPECT_EQ(p.Read(), Chunk(Data("B") + Control(1, true)) + kTerminator);
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
}

TEST_F(SseFanoutTest, LoopsOnTheirOwnThreadsDeliverAndStopWithTheEngine) {
  OpenWith(1 << 20, /*loops=*/2, /*threads=*/true);
  ASSERT_EQ(Put("/s", Text()).status, 201);
  std::vector<Peer> peers;
  for (int i = 0; i < 16; ++i) peers.push_back(Subscribe("/s", EncodeOffset(0)));
  // Appends race the loops' joining the subscribers: none may be lost.
  ASSERT_EQ(Post("/s", Text(), "a").status, 204);
  ASSERT_EQ(Post("/s", Text(), "b").status, 204);
  for (Peer& p : peers) {
    // One event or two, depending on whether the loop saw both appends.
    std::string got = p.Await("\"" + EncodeOffset(2) + "\"", 10000);
    bool both = got.find("data:ab\n") != std::string::npos ||
                (got.find("data:a\n") != std::string::npos &&
                 got.find("data:b\n") != std::string::npos);
    EXPECT_TRUE(both) << got;
  }
  engine_.reset();  // joins the threads, ends every connection
  for (Peer& p : peers) {
    EXPECT_EQ(p.Await(kTerminator, 10000), kTerminator);
    EXPECT_TRUE(p.eof());
  }
}

TEST_F(SseFanoutTest, SubscribersBehindCatchUpInCappedChunks) {
  OpenWith(4);
  ASSERT_EQ(Put("/s", Text(), "0123456789abcdefghijklmnopqrstuvwxyzABCD").status, 201);  // 40 B
  Response first;
  Peer peer = Subscribe("/s", "-1", 1, 0, &first);
  // The first response carried four capped chunks; the rest is the fan-out's.
  ASSERT_EQ(first.wait_ms, 0u);
  const std::string bytes = "0123456789abcdefghijklmnopqrstuvwxyzABCD";
  std::vector<std::string> pieces;
  for (uint64_t at = 16; at < 40; at += 4) {
    pieces.push_back(Chunk(Data(bytes.substr(at, 4)) + Control(at + 4, at + 4 == 40)));
  }
  // One capped chunk per turn: a long catch-up never becomes one buffer,
  // and never holds up the loop.
  for (const std::string& piece : pieces) {
    Turn();
    EXPECT_EQ(peer.Read(), piece);
  }
  Turn();
  EXPECT_EQ(peer.Read(), "");
}

TEST_F(SseFanoutTest, FullSocketKeepsTheRestUntilItDrains) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Peer slow = Subscribe("/s", EncodeOffset(0), 1, /*sndbuf=*/4096);
  Peer fast = Subscribe("/s", EncodeOffset(0));
  Turn();
  const std::string big(256 << 10, 'z');
  ASSERT_EQ(Post("/s", Text(), big).status, 204);
  Turn();
  std::string want = Chunk(Data(big) + Control(big.size(), true));
  // The fast subscriber is not held up by the slow one.
  EXPECT_EQ(ReadBytes(fast, want.size()), want);
  std::string got = slow.Read();
  ASSERT_LT(got.size(), want.size()) << "the socket buffer should have filled";
  EXPECT_EQ(engine_->Stats().adopted_sessions, 2u);

  // An append while bytes are unsent is delivered after them, not lost.
  ASSERT_EQ(Post("/s", Text(), "more").status, 204);
  want += Chunk(Data("more") + Control(big.size() + 4, true));
  got += ReadBytes(slow, want.size() - got.size());
  EXPECT_EQ(got, want);
  EXPECT_EQ(fast.Read(), Chunk(Data("more") + Control(big.size() + 4, true)));
}

TEST_F(SseFanoutTest, PeerHangUpFreesTheSubscriber) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Peer gone = Subscribe("/s", EncodeOffset(0));
  Peer stays = Subscribe("/s", EncodeOffset(0));
  Turn();
  gone.Close();
  for (int turns = 0; engine_->Stats().adopted_sessions != 1 && turns < 100; ++turns) Turn();
  EXPECT_EQ(engine_->Stats().adopted_sessions, 1u);
  EXPECT_EQ(engine_->Stats().parked_sessions, 1u);
  ASSERT_EQ(Post("/s", Text(), "hi").status, 204);
  Turn();
  EXPECT_EQ(stays.Read(), Chunk(Data("hi") + Control(2, true)));

  stays.Close();
  for (int turns = 0; engine_->Stats().adopted_sessions != 0 && turns < 100; ++turns) Turn();
  EXPECT_EQ(engine_->Stats().parked_sessions, 0u);
  ASSERT_EQ(Post("/s", Text(), "nobody").status, 204);
  Turn();
}

TEST_F(SseFanoutTest, KeepaliveWhenIdleThenTerminatingChunkAtReconnect) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Peer peer = Subscribe("/s", EncodeOffset(0));
  Turn();
  clock_->Advance(kKeepaliveMs - 1);
  Turn();
  EXPECT_EQ(peer.Read(), "");
  clock_->Advance(1);
  Turn();
  EXPECT_EQ(peer.Read(), Chunk(":\n\n"));

  // Data postpones the next keepalive by a whole interval.
  clock_->Advance(10000);  // t = 25 s
  ASSERT_EQ(Post("/s", Text(), "d").status, 204);
  Turn();
  EXPECT_EQ(peer.Read(), Chunk(Data("d") + Control(1, true)));
  clock_->Advance(kKeepaliveMs - 1);  // t = 39.999 s: 15 s after the data
  Turn();
  EXPECT_EQ(peer.Read(), "");
  clock_->Advance(1);
  Turn();
  EXPECT_EQ(peer.Read(), Chunk(":\n\n"));

  clock_->Set(kStart + kReconnectMs);
  Turn();
  EXPECT_EQ(peer.Read(), kTerminator);
  EXPECT_TRUE(peer.eof());
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
}

TEST_F(SseFanoutTest, ClosureSendsTheClosingControlThenEnds) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Peer peer = Subscribe("/s", EncodeOffset(0));
  Turn();
  ASSERT_EQ(Post("/s", With(Text(), DS_FIELD_STREAM_CLOSED, "true"), "bye").status, 204);
  Turn();
  EXPECT_EQ(peer.Read(), Chunk(Data("bye") + Control(3, true, /*closed=*/true)) + kTerminator);
  EXPECT_TRUE(peer.eof());
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
}

TEST_F(SseFanoutTest, DeletionEndsAtOnce) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Peer peer = Subscribe("/s", EncodeOffset(0));
  Turn();
  ASSERT_EQ(Delete("/s").status, 204);
  Turn();
  EXPECT_EQ(peer.Read(), kTerminator);
  EXPECT_TRUE(peer.eof());
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
}

TEST_F(SseFanoutTest, EndAdoptedEndsOnlyThatOwnersSessions) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Peer old_config = Subscribe("/s", EncodeOffset(0), /*owner=*/1);
  Peer new_config = Subscribe("/s", EncodeOffset(0), /*owner=*/2);
  Turn();
  engine_->EndAdopted(1);
  Turn();
  EXPECT_EQ(old_config.Read(), kTerminator);
  EXPECT_TRUE(old_config.eof());
  EXPECT_EQ(new_config.Read(), "");
  EXPECT_EQ(engine_->Stats().adopted_sessions, 1u);
}

TEST_F(SseFanoutTest, StuckSubscriberIsCutOffAfterItsEnd) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Peer stuck = Subscribe("/s", EncodeOffset(0), 1, /*sndbuf=*/4096);
  Turn();
  ASSERT_EQ(Post("/s", Text(), std::string(256 << 10, 'z')).status, 204);
  Turn();
  clock_->Set(kStart + kReconnectMs);  // time to end, but bytes are unsent
  Turn();
  EXPECT_EQ(engine_->Stats().adopted_sessions, 1u);
  clock_->Advance(kKeepaliveMs);  // still unread a keepalive interval later
  Turn();
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
  std::string got;
  while (!stuck.eof()) got += stuck.Read();
  EXPECT_NE(got.substr(got.size() - kTerminator.size()), kTerminator)
      << "a cut-off response must not look complete";
}

TEST_F(SseFanoutTest, EngineCloseEndsAdoptedConnections) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  Peer peer = Subscribe("/s", EncodeOffset(0));
  Turn();
  engine_.reset();
  EXPECT_EQ(peer.Read(), kTerminator);
  EXPECT_TRUE(peer.eof());
}

TEST_F(SseFanoutTest, AdoptRefusesWhatItCannotServeAndClosesIt) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  Peer peer(sv[1]);
  std::string message;
  EXPECT_EQ(engine_->AdoptSse(424242, UniqueFd(sv[0]), 1, &message), Engine::Adoption::kNoSession);
  peer.Read();
  EXPECT_TRUE(peer.eof()) << "a refused socket is closed";

  Response lp = Get("/s", "offset=" + EncodeOffset(0) + "&live=long-poll");
  ASSERT_EQ(lp.live, DS_LIVE_WAIT);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ::close(sv[1]);
  EXPECT_EQ(engine_->AdoptSse(lp.session, UniqueFd(sv[0]), 1, &message),
            Engine::Adoption::kNoSession);
  EXPECT_EQ(engine_->Stats().parked_sessions, 1u) << "the long-poll stays parked";

  Response sse = Get("/s", "offset=" + EncodeOffset(0) + "&live=sse");
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  ::close(pipe_fds[0]);
  EXPECT_EQ(engine_->AdoptSse(sse.session, UniqueFd(pipe_fds[1]), 1, &message),
            Engine::Adoption::kBadSocket);
}

}  // namespace
}  // namespace ds::testing
