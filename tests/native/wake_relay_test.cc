// WakeRelay: ids queued on one thread, taken in order on another, with the
// descriptor signalled once per empty-to-non-empty transition.
#include "wake_relay.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

#ifdef __linux__
#include <poll.h>
#include <unistd.h>
#endif

namespace ds {
namespace {

#ifdef __linux__
// Readable now (without waiting)?
bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

uint64_t ReadCounter(int fd) {
  uint64_t v = 0;
  EXPECT_EQ(::read(fd, &v, sizeof v), static_cast<ssize_t>(sizeof v));
  return v;
}

TEST(WakeRelayTest, SignalsOnceUntilDrainedAndKeepsOrder) {
  WakeRelay relay;
  EXPECT_FALSE(relay.enabled());
  const int fd = relay.Enable();
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(relay.enabled());
  EXPECT_FALSE(Readable(fd));

  EXPECT_EQ(relay.ready()->load(), 0u);
  relay.Push({1, 2});
  EXPECT_EQ(relay.ready()->load(), 1u);  // the word busy callers poll
  relay.Push({3});  // not drained yet: no second signal needed
  ASSERT_TRUE(Readable(fd));
  EXPECT_EQ(ReadCounter(fd), 1u);
  EXPECT_FALSE(Readable(fd));

  uint64_t out[2];
  ASSERT_EQ(relay.Take(out, 2), 2u);  // a full buffer: more may be left
  EXPECT_EQ(out[0], 1u);
  EXPECT_EQ(out[1], 2u);
  EXPECT_EQ(relay.ready()->load(), 1u);  // one id left
  ASSERT_EQ(relay.Take(out, 2), 1u);
  EXPECT_EQ(out[0], 3u);
  EXPECT_EQ(relay.ready()->load(), 0u);
  EXPECT_EQ(relay.Take(out, 2), 0u);

  // Drained: the next push signals again.
  relay.Push({4});
  ASSERT_TRUE(Readable(fd));
  EXPECT_EQ(ReadCounter(fd), 1u);
  ASSERT_EQ(relay.Take(out, 2), 1u);
  EXPECT_EQ(out[0], 4u);
  ::close(fd);
}

TEST(WakeRelayTest, NoIdLostAcrossThreads) {
  WakeRelay relay;
  const int fd = relay.Enable();
  ASSERT_GE(fd, 0);
  constexpr uint64_t kIds = 20000;
  std::thread pusher([&] {
    for (uint64_t i = 1; i <= kIds; ++i) relay.Push({i});
  });
  // The Go side's loop: wait for the signal, reset it, drain.
  std::vector<uint64_t> got;
  uint64_t buf[64];
  while (got.size() < kIds) {
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1) << "no signal with " << got.size() << " ids taken";
    ReadCounter(fd);
    for (size_t n = relay.Take(buf, 64);; n = relay.Take(buf, 64)) {
      got.insert(got.end(), buf, buf + n);
      if (n < 64) break;
    }
  }
  pusher.join();
  for (uint64_t i = 0; i < kIds; ++i) ASSERT_EQ(got[i], i + 1);
  ::close(fd);
}
#endif

}  // namespace
}  // namespace ds
