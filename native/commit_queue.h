// Group commit (LevelDB's leader/follower writer queue): concurrent appends,
// creates and deletes — to one stream or across streams — share one
// Store::Commit, so an fsync costs latency, not throughput.
//
// A writer Enqueues its mutations while it still holds its stream's lock
// (so commits of one stream keep the order its log was written in), then
// releases the lock and Waits. The first waiter in the queue becomes the
// leader: it commits every queued entry in one batch, marks them done and
// hands leadership to the next waiter.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "status.h"
#include "store.h"

namespace ds {

class CommitQueue {
 public:
  struct Entry {
    std::vector<StreamMutation> mutations;
    Status status;
    bool done = false;
  };
  using Ticket = std::shared_ptr<Entry>;

  explicit CommitQueue(Store* store) : store_(store) {}
  CommitQueue(const CommitQueue&) = delete;
  CommitQueue& operator=(const CommitQueue&) = delete;

  // Queues `mutations` as one atomic unit. Never blocks on I/O.
  Ticket Enqueue(std::vector<StreamMutation> mutations);

  // Blocks until the ticket's mutations are committed; returns the outcome.
  Status Wait(const Ticket& ticket);

  // Commits performed and entries carried by them, for stats and tests.
  size_t commits() const;
  size_t entries() const;

 private:
  Store* const store_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Ticket> queue_;
  bool leader_active_ = false;
  size_t commits_ = 0;
  size_t entries_ = 0;
};

}  // namespace ds
