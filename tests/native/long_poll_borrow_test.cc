// A kept-alive long-poll may lend the fan-out the HTTP layer's own socket
// (AdoptedSocket::Borrowed) instead of a duplicate: the fan-out answers on
// it and gives the connection back, and never closes it, whatever happens
// (answered, client gone, engine closing, adoption refused).
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

constexpr uint64_t kBorrowTag = (uint64_t{1} << 62) | 11;

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

class LongPollBorrowTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineOptions options;
    options.long_poll_timeout_ms = 30000;
    options.sse_fanout_thread = false;
    Open(options);
  }
  void TearDown() override {
    for (int fd : fds_) ::close(fd);
  }
  // Creates /s, parks a long-poll on it and lends its socket sv[0] to the
  // engine with kBorrowTag, then lets the fan-out take it.
  void AdoptBorrowedWaiter(int sv[2]) {
    ASSERT_EQ(Put("/s", Text()).status, 201);
    uint64_t session = ParkedSession(sv);
    ASSERT_NO_FATAL_FAILURE(Lend(session, sv[0]));
    Turn();
  }

  // Lends the HTTP layer's socket fd to the engine for the parked long-poll
  // `session`, with kBorrowTag.
  void Lend(uint64_t session, int fd) {
    std::string message;
    ASSERT_EQ(engine_->AdoptLongPoll(session, AdoptedSocket::Borrowed(fd), 1, "", kBorrowTag,
                                     &message),
              Engine::Adoption::kAdopted)
        << message;
  }

  // A parked long-poll at `offset` of /s, and a socketpair whose [0] the
  // HTTP layer owns (non-blocking, as Go's sockets are).
  uint64_t ParkedSession(int sv[2], uint64_t offset = 0) {
    Response r = Get("/s", "offset=" + EncodeOffset(offset) + "&live=long-poll");
    EXPECT_EQ(r.live, DS_LIVE_WAIT);
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
    fds_.push_back(sv[0]);
    fds_.push_back(sv[1]);
    return r.session;
  }

  void Turn() { engine_->RunSseFanoutOnce(0); }

  // The client at `peer` leaves while its poll waits: the engine hands the
  // borrowed socket back to its owner, to be closed, and holds no waiter.
  void ClientLeaves(int peer) {
    ::shutdown(peer, SHUT_RDWR);
    Turn();
    EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kBorrowTag});  // to be closed, by its owner
    EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
  }

  std::vector<int> fds_;
};

TEST_F(LongPollBorrowTest, AnsweredPollsOnOneBorrowedSocketLeaveItOpen) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  uint64_t tail = 0;
  for (int i = 0; i < 3; ++i) {
    int sv[2];
    uint64_t session = ParkedSession(sv, tail);
    ASSERT_NO_FATAL_FAILURE(Lend(session, sv[0]));
    Turn();
    std::string body = "m" + std::to_string(i);
    ASSERT_EQ(Post("/s", Text(), body).status, 204);
    tail += body.size();
    TakeWoken();
    Turn();
    std::string got = ReadAvailable(sv[1]);
    EXPECT_EQ(got.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got;
    EXPECT_NE(got.find("\r\n\r\n" + body), std::string::npos) << got;
    EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kBorrowTag | SseFanout::kServeNext});
    ASSERT_TRUE(IsOpen(sv[0])) << "the fan-out closed the socket it borrowed";
    EXPECT_EQ(::send(sv[0], "x", 1, MSG_NOSIGNAL), 1) << "the HTTP layer still writes on it";
  }
  EXPECT_EQ(engine_->Stats().adopted_sessions, 0u);
}

// The keep-alive pattern: one connection's socket lent for poll after poll.
// Given back, it stays registered in its loop's epoll set; lent again, it is
// watched under its new adoption (answered, its hang-up seen).
TEST_F(LongPollBorrowTest, TheSameSocketLentPollAfterPollIsWatchedEachTime) {
  int sv[2];
  ASSERT_NO_FATAL_FAILURE(AdoptBorrowedWaiter(sv));
  uint64_t tail = 0;
  for (int i = 0; i < 3; ++i) {
    std::string body = "m" + std::to_string(i);
    ASSERT_EQ(Post("/s", Text(), body).status, 204);
    tail += body.size();
    TakeWoken();
    Turn();
    std::string got = ReadAvailable(sv[1]);
    EXPECT_EQ(got.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got;
    EXPECT_EQ(got.substr(got.find("\r\n\r\n")), "\r\n\r\n" + body) << got;
    ASSERT_EQ(TakeWoken(), std::vector<uint64_t>{kBorrowTag | SseFanout::kServeNext});
    // The client's next poll on the same connection.
    Response r = Get("/s", "offset=" + EncodeOffset(tail) + "&live=long-poll");
    ASSERT_EQ(r.live, DS_LIVE_WAIT);
    ASSERT_NO_FATAL_FAILURE(Lend(r.session, sv[0]));
    Turn();
    ASSERT_EQ(TakeWoken(), std::vector<uint64_t>{}) << "poll " << i + 1 << " was refused";
    ASSERT_EQ(engine_->Stats().adopted_sessions, 1u);
  }
  ClientLeaves(sv[1]);  // while the last poll waits
}

// A socket given back for its next request stays in the loop's epoll set
// (SseFanout::kept_registered_). Once the HTTP layer closes it, another
// socket may get its number: lent, it must be watched afresh (its hang-up
// seen), not taken for the old one.
TEST_F(LongPollBorrowTest, ASocketReusingTheNumberOfOneGivenBackIsWatchedAfresh) {
  int sv[2];
  ASSERT_NO_FATAL_FAILURE(AdoptBorrowedWaiter(sv));
  ASSERT_EQ(Post("/s", Text(), "a").status, 204);
  TakeWoken();
  Turn();
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kBorrowTag | SseFanout::kServeNext});
  // The HTTP layer closes that connection; a new one gets its number.
  const int number = sv[0];
  ::close(sv[0]);
  int other[2];
  uint64_t session = ParkedSession(other, 1);
  if (other[0] != number) {  // the lowest free number usually is that one
    ASSERT_EQ(::dup3(other[0], number, O_CLOEXEC), number);
    ::close(other[0]);
    std::erase(fds_, other[0]);
  }
  std::erase(fds_, number);  // listed twice now
  fds_.push_back(number);
  ASSERT_NO_FATAL_FAILURE(Lend(session, number));
  Turn();
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{}) << "the new socket was refused";
  EXPECT_EQ(engine_->Stats().adopted_sessions, 1u);
  ClientLeaves(other[1]);
}

TEST_F(LongPollBorrowTest, ClientGoneGivesTheBorrowedSocketBackOpen) {
  int sv[2];
  ASSERT_NO_FATAL_FAILURE(AdoptBorrowedWaiter(sv));
  ::shutdown(sv[1], SHUT_RDWR);
  Turn();
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kBorrowTag});  // to be closed, by its owner
  EXPECT_TRUE(IsOpen(sv[0]));
}

TEST_F(LongPollBorrowTest, EngineClosingGivesTheBorrowedSocketBackOpen) {
  int sv[2];
  ASSERT_NO_FATAL_FAILURE(AdoptBorrowedWaiter(sv));
  engine_.reset();
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{kBorrowTag});
  EXPECT_TRUE(IsOpen(sv[0]));
}

TEST_F(LongPollBorrowTest, RefusedAdoptionsLeaveTheBorrowedSocketOpen) {
  ASSERT_EQ(Put("/s", Text()).status, 201);
  int sv[2];
  uint64_t session = ParkedSession(sv);
  std::string message;
  // Borrowed without a return tag: it could never be given back.
  EXPECT_EQ(engine_->AdoptLongPoll(session, AdoptedSocket::Borrowed(sv[0]), 1, "", 0, &message),
            Engine::Adoption::kBadSocket);
  EXPECT_TRUE(IsOpen(sv[0]));
  // Not a parked long-poll.
  EXPECT_EQ(engine_->AdoptLongPoll(session + 1000, AdoptedSocket::Borrowed(sv[0]), 1, "",
                                   kBorrowTag, &message),
            Engine::Adoption::kNoSession);
  EXPECT_TRUE(IsOpen(sv[0]));
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{});
}

}  // namespace
}  // namespace ds::testing
