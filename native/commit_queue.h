// Group commit: concurrent appends, creates and deletes — to one stream or
// across streams — share one Store::Commit, so an fsync costs latency, not
// throughput.
//
// A writer Enqueues its mutations while it still holds its stream's lock (so
// commits of one stream keep the order its log was written in) and releases
// the lock. One committer thread takes everything queued as one batch,
// commits it, runs each entry's OnCommit (publishing what it made durable)
// and then names, in one call to the wake function, every session those
// callbacks asked for. A writer either blocks in Wait or — the HTTP path —
// returns at once and is resumed when woken, so no caller thread sits in a
// blocked call for the length of an fsync (for cgo that would cost a thread
// handoff per request; see STORAGE_FORMAT.md).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "status.h"
#include "store.h"

namespace ds {

class CommitQueue {
 public:
  // Runs on the committer thread once its entry's batch is committed (or
  // failed), before the entry is marked done, with no queue lock held.
  // Appends to *wake the sessions to wake.
  using OnCommit = std::function<void(const Status& outcome, std::vector<uint64_t>* wake)>;
  using WakeFn = std::function<void(std::vector<uint64_t> sessions)>;
  // Runs on the committer thread just before the entry's batch is
  // committed: false drops the entry uncommitted, failed with the last
  // failed commit's status. The engine's answer to "this entry was built on
  // state that a failed commit has since undone" (engine.h, RollBack).
  using Valid = std::function<bool()>;

  struct Entry {
    std::vector<StreamMutation> mutations;
    OnCommit on_commit;
    Valid valid;
    Status status;
    bool done = false;  // guarded by the queue's mutex
    uint64_t flushes_at_enqueue = 0;  // guarded by the queue's mutex
  };
  using Ticket = std::shared_ptr<Entry>;

  // Starts the committer thread.
  CommitQueue(Store* store, WakeFn wake);
  // Commits whatever is still queued, then stops the thread.
  ~CommitQueue();
  CommitQueue(const CommitQueue&) = delete;
  CommitQueue& operator=(const CommitQueue&) = delete;

  // Queues `mutations` as one atomic unit. Never blocks on I/O.
  //
  // After a failed commit, its batch's kErase mutations go again at the
  // head of every following batch until one commits: a stream the engine
  // let go of (DELETE, expiry) is erased from the store with the next
  // commit that succeeds, rather than coming back at the next start while
  // its path may already name a new stream.
  Ticket Enqueue(std::vector<StreamMutation> mutations, OnCommit on_commit = nullptr,
                 Valid valid = nullptr);

  // Blocks until the ticket's batch is committed; returns the outcome.
  Status Wait(const Ticket& ticket);

  // Entries queued, commits performed, entries carried by them and the wall
  // time spent in Store::Commit, read together, for stats and tests.
  // `flushes` counts the store's commits and syncs (under fsync always, one
  // device flush each), `flushes_waited` sums, over finished entries, how
  // many of them ran between an entry's Enqueue and its acknowledgement
  // (while a commit runs, what queues waits for the rest of it, its own
  // commit and, under late durability, the next flush).
  struct Counters {
    size_t enqueued = 0;
    size_t commits = 0;
    size_t entries = 0;
    std::chrono::nanoseconds time{0};
    uint64_t flushes = 0;
    uint64_t flushes_waited = 0;
  };
  Counters counters() const;

 private:
  void CommitterLoop();
  // After each Store::Commit or SyncCommits call: one more flush.
  void CountFlush();
  // Publishes a batch's outcome: its entries' OnCommit, done, the counters
  // and one wake call.
  void Finish(std::vector<Ticket>* batch, const std::vector<bool>& dropped, const Status& status,
              const Status& superseded, std::chrono::nanoseconds took);

  Store* const store_;
  const WakeFn wake_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // the committer: work queued, or stopping
  std::condition_variable done_cv_;  // Wait: a batch finished
  std::deque<Ticket> queue_;
  bool stopping_ = false;
  // Committer thread only: erases of failed batches, and the last failure.
  std::vector<StreamMutation> carried_erases_;
  Status last_failure_;
  Counters counters_;
  std::thread committer_;  // last: starts once the rest is constructed
};

}  // namespace ds
