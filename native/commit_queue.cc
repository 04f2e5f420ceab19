#include "commit_queue.h"

#include <pthread.h>

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
                                         OnCommit on_commit, Valid valid) {
  auto entry = std::make_shared<Entry>();
  entry->mutations = std::move(mutations);
  entry->on_commit = std::move(on_commit);
  entry->valid = std::move(valid);
  bool was_empty;
  {
    std::lock_guard lock(mu_);
    was_empty = queue_.empty();
    entry->flushes_at_enqueue = counters_.flushes;
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

void CommitQueue::Finish(std::vector<Ticket>* batch, const std::vector<bool>& dropped,
                         const Status& status, const Status& superseded,
                         std::chrono::nanoseconds took) {
  std::vector<uint64_t> wake;
  for (size_t i = 0; i < batch->size(); ++i) {
    if ((*batch)[i]->on_commit) (*batch)[i]->on_commit(dropped[i] ? superseded : status, &wake);
  }
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < batch->size(); ++i) {
      (*batch)[i]->status = dropped[i] ? superseded : status;
      (*batch)[i]->done = true;
      counters_.flushes_waited += counters_.flushes - (*batch)[i]->flushes_at_enqueue;
    }
    ++counters_.commits;
    counters_.entries += batch->size();
    counters_.time += took;
  }
  done_cv_.notify_all();
  // Last: a woken session's resume finds its ticket done.
  if (!wake.empty() && wake_) wake_(std::move(wake));
  batch->clear();
}

void CommitQueue::CommitterLoop() {
  // Named, so that its share of the server's CPU can be read per thread.
  pthread_setname_np(pthread_self(), "ds-committer");
  const bool late = store_->commits_durable_late();
  std::vector<Ticket> batch;
  std::vector<StreamMutation> mutations;
  // Late durability: the batch committed last, not yet acknowledged
  // because its transaction is not yet durable (store.h).
  struct Unsynced {
    std::vector<Ticket> batch;
    std::vector<bool> dropped;
    Status superseded;
    std::chrono::nanoseconds took{0};
  } unsynced;
  for (;;) {
    batch.clear();
    {
      std::unique_lock lock(mu_);
      // With a batch awaiting its flush, do not sleep: either more work is
      // queued (its commit's flush covers that batch too) or the batch is
      // synced on its own at once.
      if (unsynced.batch.empty()) {
        work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and nothing left to commit
      }
      while (!queue_.empty() && batch.size() < kMaxBatchEntries) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (batch.empty()) {
      // Nothing arrived while the last batch committed: flush it alone.
      const auto started = std::chrono::steady_clock::now();
      const Status synced = store_->SyncCommits();
      CountFlush();
      const auto took = unsynced.took + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            std::chrono::steady_clock::now() - started);
      if (!synced.ok()) last_failure_ = synced;
      Finish(&unsynced.batch, unsynced.dropped, synced, synced.ok() ? unsynced.superseded : synced,
             took);
      continue;
    }

    // Moved, not copied: nothing reads an entry's mutations once taken.
    // Entries built on undone state are left out (they fail below).
    mutations = carried_erases_;
    std::vector<bool> dropped(batch.size(), false);
    bool any = !mutations.empty();
    for (size_t i = 0; i < batch.size(); ++i) {
      const Ticket& t = batch[i];
      if (t->valid && !t->valid()) {
        dropped[i] = true;
        continue;
      }
      any = any || !t->mutations.empty();
      mutations.insert(mutations.end(), std::make_move_iterator(t->mutations.begin()),
                       std::make_move_iterator(t->mutations.end()));
    }
    const auto started = std::chrono::steady_clock::now();
    const Status status = any ? store_->Commit(mutations) : Status::OK();
    if (any) CountFlush();
    const auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now() - started);
    carried_erases_.clear();
    if (!status.ok()) {
      last_failure_ = status;
      for (StreamMutation& m : mutations) {
        if (m.kind == StreamMutation::Kind::kErase) carried_erases_.push_back(std::move(m));
      }
    }
    const Status superseded = last_failure_.ok() ? Status::IoError("superseded") : last_failure_;

    if (!late) {
      Finish(&batch, dropped, status, superseded, took);
      continue;
    }
    if (!unsynced.batch.empty()) {
      // A successful commit flushed the file after the previous batch's
      // meta page was written: that batch is durable. A commit that did
      // not run or failed proves nothing, so sync explicitly.
      Status synced = Status::OK();
      if (!any || !status.ok()) {
        synced = store_->SyncCommits();
        CountFlush();
        if (!synced.ok()) last_failure_ = synced;
      }
      Finish(&unsynced.batch, unsynced.dropped, synced, synced.ok() ? unsynced.superseded : synced,
             unsynced.took);
    }
    if (status.ok() && any) {
      // Acknowledged once the next flush (the next commit's or its own) ran.
      unsynced.batch = std::move(batch);
      unsynced.dropped = std::move(dropped);
      unsynced.superseded = superseded;
      unsynced.took = took;
      batch = {};
    } else {
      Finish(&batch, dropped, status, superseded, took);
    }
  }
}

void CommitQueue::CountFlush() {
  std::lock_guard lock(mu_);
  ++counters_.flushes;
}

CommitQueue::Counters CommitQueue::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace ds
