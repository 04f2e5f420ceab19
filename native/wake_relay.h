// Wakes made on the engine's own threads (the group committer), handed to
// the caller through a file descriptor instead of a call into it.
//
// Why: the wake callback is Go (cgo). A C-created thread that calls into Go
// borrows an M and takes a P, and when the callback returns the M keeps that
// P in the "in a syscall" state while the thread goes back to its C work (a
// group commit: page writes and an fdatasync). Go's sysmon then retakes the
// P after 20 µs, which wakes another OS thread and keeps sysmon polling every
// 20 µs; and when both Ps are busy the committer itself waits for one before
// it can deliver the wake. Measured under `append-1` with data_dir: sysmon
// alone was 10% of the server's CPU (retake -> handoffp -> startm), against
// 1% in memory. With the relay the committer only writes an eventfd; a
// goroutine parked in Go's netpoller drains the ids with one short call.
// That alone made wakes late when both Ps were busy (Go polls the network
// only when a P runs out of work, or every 10 ms): so the ready word is
// also polled after every request's engine call, and on a busy server the
// next request to finish takes the wakes; the descriptor covers an idle one.
//
// Linux only (eventfd). Elsewhere Enable returns -1 and the engine keeps
// calling the wake function.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace ds {

class WakeRelay {
 public:
  WakeRelay() = default;
  ~WakeRelay();
  WakeRelay(const WakeRelay&) = delete;
  WakeRelay& operator=(const WakeRelay&) = delete;

  // Turns the relay on (once; later calls return another duplicate) and
  // returns a non-blocking, close-on-exec descriptor the caller owns: it
  // becomes readable (an eventfd counter, read 8 bytes to reset it) when
  // ids are waiting for Take. -1 where unsupported or on failure (the relay
  // stays off).
  int Enable();
  bool enabled() const { return enabled_.load(std::memory_order_acquire); }

  // Queues ids for Take; signals the descriptor when the queue was empty
  // (a reader drains it whole after each signal, so one is enough).
  void Push(const std::vector<uint64_t>& ids);
  // Moves up to `cap` queued ids (oldest first) into `out`; returns how
  // many. Fewer than `cap` means the queue is empty now.
  size_t Take(uint64_t* out, size_t cap);
  // Non-zero while ids wait for Take: a word the caller may poll without a
  // call (between requests), so that busy callers take wakes before the
  // descriptor's reader is scheduled. Valid for the relay's lifetime.
  const std::atomic<uint32_t>* ready() const { return &ready_; }

 private:
  std::mutex mu_;
  std::vector<uint64_t> pending_;  // guarded by mu_
  size_t taken_ = 0;               // pending_[0, taken_) already handed out
  int fd_ = -1;                    // guarded by mu_ (set once)
  std::atomic<bool> enabled_{false};
  std::atomic<uint32_t> ready_{0};  // pending_ has ids not yet taken
};

}  // namespace ds
