#include "expiry_queue.h"

#include <utility>

#include "stream.h"

namespace ds {

void ExpiryQueue::Schedule(const StreamPtr& stream, int64_t due_ms) {
  std::lock_guard lock(mu_);
  size_t slot = stream->expiry_slot;
  if (slot == Stream::kNotQueued) {
    slot = heap_.size();
    heap_.emplace_back();
  }
  Place(slot, Entry{due_ms, stream});
  Restore(slot);
}

void ExpiryQueue::Erase(const Stream& stream) {
  std::lock_guard lock(mu_);
  if (stream.expiry_slot == Stream::kNotQueued) return;
  RemoveAt(stream.expiry_slot);
}

std::vector<ExpiryQueue::StreamPtr> ExpiryQueue::TakeDue(int64_t now_ms) {
  std::vector<StreamPtr> due;
  std::lock_guard lock(mu_);
  while (!heap_.empty() && heap_.front().due_ms <= now_ms) {
    due.push_back(std::move(RemoveAt(0).stream));
  }
  return due;
}

size_t ExpiryQueue::size() const {
  std::lock_guard lock(mu_);
  return heap_.size();
}

void ExpiryQueue::Place(size_t slot, Entry e) {
  e.stream->expiry_slot = slot;
  heap_[slot] = std::move(e);
}

void ExpiryQueue::SiftUp(size_t slot) {
  Entry moving = std::move(heap_[slot]);
  while (slot > 0) {
    const size_t parent = (slot - 1) / 2;
    if (heap_[parent].due_ms <= moving.due_ms) break;
    Place(slot, std::move(heap_[parent]));
    slot = parent;
  }
  Place(slot, std::move(moving));
}

void ExpiryQueue::SiftDown(size_t slot) {
  Entry moving = std::move(heap_[slot]);
  const size_t n = heap_.size();
  for (;;) {
    size_t child = 2 * slot + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1].due_ms < heap_[child].due_ms) ++child;
    if (moving.due_ms <= heap_[child].due_ms) break;
    Place(slot, std::move(heap_[child]));
    slot = child;
  }
  Place(slot, std::move(moving));
}

void ExpiryQueue::Restore(size_t slot) {
  if (slot > 0 && heap_[(slot - 1) / 2].due_ms > heap_[slot].due_ms) {
    SiftUp(slot);
  } else {
    SiftDown(slot);
  }
}

ExpiryQueue::Entry ExpiryQueue::RemoveAt(size_t slot) {
  Entry removed = std::move(heap_[slot]);
  removed.stream->expiry_slot = Stream::kNotQueued;
  Entry last = std::move(heap_.back());
  heap_.pop_back();
  if (slot < heap_.size()) {
    // The last entry fills the hole and moves whichever way its time says.
    Place(slot, std::move(last));
    Restore(slot);
  }
  return removed;
}

}  // namespace ds
