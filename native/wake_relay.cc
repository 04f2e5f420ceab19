#include "wake_relay.h"

#include <algorithm>
#include <cerrno>

#ifdef __linux__
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>
#endif

namespace ds {

WakeRelay::~WakeRelay() {
#ifdef __linux__
  if (fd_ >= 0) ::close(fd_);
#endif
}

int WakeRelay::Enable() {
#ifdef __linux__
  std::lock_guard lock(mu_);
  if (fd_ < 0) {
    fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd_ < 0) return -1;
  }
  const int dup = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return -1;
  enabled_.store(true, std::memory_order_release);
  return dup;
#else
  return -1;
#endif
}

void WakeRelay::Push(const std::vector<uint64_t>& ids) {
  if (ids.empty()) return;
  bool was_empty;
  int fd;
  {
    std::lock_guard lock(mu_);
    was_empty = pending_.size() == taken_;
    pending_.insert(pending_.end(), ids.begin(), ids.end());
    ready_.store(1, std::memory_order_release);
    fd = fd_;
  }
#ifdef __linux__
  if (was_empty && fd >= 0) {
    const uint64_t one = 1;
    // EAGAIN (the counter is near 2^64) still leaves it readable; EINTR
    // retried. Nothing else can fail on an eventfd.
    while (::write(fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
#else
  (void)was_empty;
  (void)fd;
#endif
}

size_t WakeRelay::Take(uint64_t* out, size_t cap) {
  std::lock_guard lock(mu_);
  const size_t n = std::min(cap, pending_.size() - taken_);
  std::copy_n(pending_.begin() + static_cast<std::ptrdiff_t>(taken_), n, out);
  taken_ += n;
  if (taken_ == pending_.size()) {
    pending_.clear();  // keeps its capacity
    taken_ = 0;
    ready_.store(0, std::memory_order_relaxed);
  }
  return n;
}

}  // namespace ds
