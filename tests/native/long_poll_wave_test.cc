// Serve pending answers before new requests: while some fan-out loop still
// has a delivery wave to write (it was woken for a stream change and has
// not yet had the turn that takes the wake), the connections other loops
// answered are held back from the HTTP layer; they all go back, in order,
// when the last wave is written (or after a time bound), and none is lost
// when the engine closes with a wave on.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "engine_fixture.h"
#include "socket_fixture.h"
#include "offset.h"

namespace ds::testing {
namespace {

constexpr uint64_t kTag0 = (uint64_t{1} << 62) | 21;
constexpr uint64_t kTag1 = (uint64_t{1} << 62) | 22;

class LongPollWaveTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineOptions options;
    options.long_poll_timeout_ms = 30000;
    options.sse_fanout_thread = false;
    options.sse_fanout_loops = 2;
    Open(options);
    ASSERT_EQ(Put("/s", Text()).status, 201);
    Adopt(kTag0, 0, sv0_);
    Adopt(kTag1, 1, sv1_);
    engine_->RunSseFanoutLoopOnce(0, 0);
    engine_->RunSseFanoutLoopOnce(1, 0);
    ASSERT_EQ(engine_->Stats().adopted_sessions, 2u);
    ASSERT_EQ(TakeWoken(), std::vector<uint64_t>{});
  }
  void TearDown() override {
    for (int fd : fds_) ::close(fd);
  }

  // Parks a long-poll and lends its socket sv[0] with `tag` to `loop`: a
  // borrowed socket goes to the loop its number names (number % loops).
  void Adopt(uint64_t tag, int loop, int sv[2], uint64_t offset = 0) {
    Response r = Get("/s", "offset=" + EncodeOffset(offset) + "&live=long-poll");
    ASSERT_EQ(r.live, DS_LIVE_WAIT);
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
    if (sv[0] % 2 != loop) {
      int moved = ::dup3(sv[0], next_moved_ + loop, O_CLOEXEC);
      ASSERT_EQ(moved, next_moved_ + loop);
      next_moved_ += 2;
      ::close(sv[0]);
      sv[0] = moved;
    }
    fds_.push_back(sv[0]);
    fds_.push_back(sv[1]);
    std::string message;
    ASSERT_EQ(engine_->AdoptLongPoll(r.session, AdoptedSocket::Borrowed(sv[0]), 1, "", tag, &message),
              Engine::Adoption::kAdopted)
        << message;
  }


  static void ExpectAnswer(const std::string& got, const std::string& body) {
    EXPECT_EQ(got.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got;
    EXPECT_EQ(got.find("Connection: close"), std::string::npos) << got;
    EXPECT_EQ(got.size() - got.find("\r\n\r\n"), 4 + body.size()) << got;
    EXPECT_EQ(got.substr(got.size() - body.size()), body) << got;
  }

  int next_moved_ = 1000;  // even
  int sv0_[2];
  int sv1_[2];
  std::vector<int> fds_;
};

TEST_F(LongPollWaveTest, AnsweredConnectionsWaitForEveryLoopsWave) {
  ASSERT_EQ(Post("/s", Text(), "hello").status, 204);  // wakes both loops
  TakeWoken();
  engine_->RunSseFanoutLoopOnce(0, 0);
  ExpectAnswer(ReadAvailable(sv0_[1]), "hello");
  // Loop 0's answer is out, but loop 1 has its wave to write: the
  // connection stays with the engine.
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{});
  EXPECT_EQ(ReadAvailable(sv1_[1]), "");
  engine_->RunSseFanoutLoopOnce(1, 0);
  ExpectAnswer(ReadAvailable(sv1_[1]), "hello");
  // Both go back together, loop 0's first.
  EXPECT_EQ(TakeWoken(), (std::vector<uint64_t>{kTag0 | SseFanout::kServeNext,
                                                kTag1 | SseFanout::kServeNext}));
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
}

TEST_F(LongPollWaveTest, AWaveThatStartsLaterElsewhereDoesNotHoldThemLonger) {
  constexpr uint64_t kTag2 = (uint64_t{1} << 62) | 23;
  ASSERT_EQ(Post("/s", Text(), "a").status, 204);  // wakes both loops
  TakeWoken();
  engine_->RunSseFanoutLoopOnce(0, 0);
  ExpectAnswer(ReadAvailable(sv0_[1]), "a");
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{});  // held for loop 1's wave
  // Loop 0 gets a new waiter and then a wave of its own, while loop 1 is
  // still writing the first.
  int sv2[2];
  Adopt(kTag2, 0, sv2, 1);
  engine_->RunSseFanoutLoopOnce(0, 0);
  ASSERT_EQ(Post("/s", Text(), "b").status, 204);
  TakeWoken();
  engine_->RunSseFanoutLoopOnce(1, 0);
  ExpectAnswer(ReadAvailable(sv1_[1]), "ab");
  // Loop 0's first answer waited only for the wave on when it was written;
  // loop 1's waits for loop 0's new one.
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kTag0 | SseFanout::kServeNext});
  engine_->RunSseFanoutLoopOnce(0, 0);
  ExpectAnswer(ReadAvailable(sv2[1]), "b");
  EXPECT_EQ(TakeWoken(), (std::vector<uint64_t>{kTag1 | SseFanout::kServeNext,
                                                kTag2 | SseFanout::kServeNext}));
}

TEST_F(LongPollWaveTest, AHoldEndsAfterItsTimeBound) {
  ASSERT_EQ(Post("/s", Text(), "late").status, 204);
  TakeWoken();
  engine_->RunSseFanoutLoopOnce(0, 0);
  ExpectAnswer(ReadAvailable(sv0_[1]), "late");
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{});
  // Loop 1 does not get to its wave; loop 0 turns on.
  clock_->Advance(99);
  engine_->RunSseFanoutLoopOnce(0, 0);
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{});
  clock_->Advance(1);
  engine_->RunSseFanoutLoopOnce(0, 0);
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kTag0 | SseFanout::kServeNext});
  engine_->RunSseFanoutLoopOnce(1, 0);
  ExpectAnswer(ReadAvailable(sv1_[1]), "late");
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kTag1 | SseFanout::kServeNext});
}

TEST_F(LongPollWaveTest, WithoutAWaveElsewhereAnAnswerGoesBackAtOnce) {
  // Loop 1's waiter leaves: only loop 0 has a wave on the next append.
  ::shutdown(sv1_[1], SHUT_RDWR);
  engine_->RunSseFanoutLoopOnce(1, 0);
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kTag1});  // to be closed
  ASSERT_EQ(Post("/s", Text(), "hi").status, 204);
  TakeWoken();
  engine_->RunSseFanoutLoopOnce(0, 0);
  ExpectAnswer(ReadAvailable(sv0_[1]), "hi");
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kTag0 | SseFanout::kServeNext});
}

TEST_F(LongPollWaveTest, ClosingWithAWaveOnLosesNoHeldConnection) {
  ASSERT_EQ(Post("/s", Text(), "bye").status, 204);
  TakeWoken();
  engine_->RunSseFanoutLoopOnce(0, 0);
  ExpectAnswer(ReadAvailable(sv0_[1]), "bye");
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{});
  // Loop 1 never gets its turn: closing ends its wave and gives back both
  // connections (loop 1's unanswered one to be closed).
  engine_.reset();
  std::vector<uint64_t> woken = TakeWoken();
  EXPECT_EQ(woken, (std::vector<uint64_t>{kTag0 | SseFanout::kServeNext, kTag1}));
}

}  // namespace
}  // namespace ds::testing
