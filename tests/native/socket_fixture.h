// The client's end of a connection handed over to the engine (an SSE
// session adopted by the fan-out, a long-poll taken over): one end of a
// socketpair, read without blocking so that tests turn the fan-out's loop
// themselves and never sleep.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace ds::testing {

// Everything readable on fd now, without waiting; *eof set when the peer
// has closed its end.
inline std::string ReadAvailable(int fd, bool* eof = nullptr) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 && eof != nullptr) *eof = true;
    return out;
  }
}

class SocketPeer {
 public:
  explicit SocketPeer(int fd) : fd_(fd) {}
  ~SocketPeer() { Close(); }
  SocketPeer(SocketPeer&& other) noexcept : fd_(other.fd_), eof_(other.eof_) { other.fd_ = -1; }
  SocketPeer(const SocketPeer&) = delete;

  // Everything readable now, without waiting.
  std::string Read() { return ReadAvailable(fd_, &eof_); }
  // Reads until `marker` or EOF arrives, waiting for each read at most
  // `timeout_ms` (for a loop on its own thread).
  std::string Await(const std::string& marker, int timeout_ms) {
    std::string out;
    while (out.find(marker) == std::string::npos && !eof_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) break;
      out += Read();
    }
    return out;
  }
  bool eof() const { return eof_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  bool eof_ = false;
};

}  // namespace ds::testing
