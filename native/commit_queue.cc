#include "commit_queue.h"

#include <iterator>

namespace ds {
namespace {

// A batch stops growing here, bounding one transaction's size and the
// latency of the writers queued behind it.
constexpr size_t kMaxBatchEntries = 1024;

}  // namespace

CommitQueue::CommitQueue(Store* store, WakeFn wake)
    : store_(store), wake_(std::move(wake)), committer_([this] { CommitterLoop(); }) {}

CommitQueue::~CommitQueue() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_one();
  committer_.join();
}

CommitQueue::Ticket CommitQueue::Enqueue(std::vector<StreamMutation> mutations,
                                         OnCommit on_commit) {
  auto entry = std::make_shared<Entry>();
  entry->mutations = std::move(mutations);
  entry->on_commit = std::move(on_commit);
  bool was_empty;
  {
    std::lock_guard lock(mu_);
    was_empty = queue_.empty();
    queue_.push_back(entry);
    ++counters_.enqueued;
  }
  // A non-empty queue means the committer is already due to look again.
  if (was_empty) work_cv_.notify_one();
  return entry;
}

Status CommitQueue::Wait(const Ticket& ticket) {
  std::unique_lock lock(mu_);
  done_cv_.wait(lock, [&] { return ticket->done; });
  return ticket->status;
}

void CommitQueue::CommitterLoop() {
  std::vector<Ticket> batch;
  std::vector<StreamMutation> mutations;
  std::vector<uint64_t> wake;
  for (;;) {
    batch.clear();
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to commit
      while (!queue_.empty() && batch.size() < kMaxBatchEntries) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }

    // Moved, not copied: nothing reads an entry's mutations once taken.
    mutations.clear();
    for (const Ticket& t : batch) {
      mutations.insert(mutations.end(), std::make_move_iterator(t->mutations.begin()),
                       std::make_move_iterator(t->mutations.end()));
    }
    const auto started = std::chrono::steady_clock::now();
    const Status status = store_->Commit(mutations);
    const auto took = std::chrono::steady_clock::now() - started;

    wake.clear();
    for (const Ticket& t : batch) {
      if (t->on_commit) t->on_commit(status, &wake);
    }
    {
      std::lock_guard lock(mu_);
      for (const Ticket& t : batch) {
        t->status = status;
        t->done = true;
      }
      ++counters_.commits;
      counters_.entries += batch.size();
      counters_.time += std::chrono::duration_cast<std::chrono::nanoseconds>(took);
    }
    done_cv_.notify_all();
    // Last: a woken session's resume finds its ticket done.
    if (!wake.empty() && wake_) wake_(std::move(wake));
    wake = {};
  }
}

CommitQueue::Counters CommitQueue::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace ds
