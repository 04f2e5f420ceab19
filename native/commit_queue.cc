#include "commit_queue.h"

namespace ds {
namespace {

// A batch stops growing here, bounding one transaction's size and the
// latency of the writers queued behind it.
constexpr size_t kMaxBatchEntries = 1024;

}  // namespace

CommitQueue::Ticket CommitQueue::Enqueue(std::vector<StreamMutation> mutations) {
  auto entry = std::make_shared<Entry>();
  entry->mutations = std::move(mutations);
  std::lock_guard lock(mu_);
  queue_.push_back(entry);
  return entry;
}

Status CommitQueue::Wait(const Ticket& ticket) {
  std::unique_lock lock(mu_);
  while (!ticket->done && (leader_active_ || queue_.empty() || queue_.front() != ticket)) {
    cv_.wait(lock);
  }
  if (ticket->done) return ticket->status;

  // Leader: take everything queued so far (up to the cap) as one batch.
  leader_active_ = true;
  std::vector<Ticket> batch;
  while (!queue_.empty() && batch.size() < kMaxBatchEntries) {
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  lock.unlock();

  std::vector<StreamMutation> mutations;
  for (const Ticket& t : batch) {
    for (const StreamMutation& m : t->mutations) mutations.push_back(m);
  }
  Status status = store_->Commit(mutations);

  lock.lock();
  for (const Ticket& t : batch) {
    t->status = status;
    t->done = true;
  }
  ++commits_;
  entries_ += batch.size();
  leader_active_ = false;
  lock.unlock();
  cv_.notify_all();
  return status;
}

size_t CommitQueue::commits() const {
  std::lock_guard lock(mu_);
  return commits_;
}

size_t CommitQueue::entries() const {
  std::lock_guard lock(mu_);
  return entries_;
}

}  // namespace ds
