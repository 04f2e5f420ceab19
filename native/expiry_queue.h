// The streams that can expire (a TTL or an Expires-At, PROTOCOL.md §5.1),
// ordered by when they come due, so the sweeper looks only at those due
// instead of scanning every stream each second (with 100,000 streams the
// scan alone was 8% of the server's CPU; README, Performance).
//
// A stream's time here is a lower bound of when it expires: reads and
// appends push a sliding TTL later without touching the queue (that would
// put a second lock on every read). The sweeper re-queues a stream that
// comes due early at its real time, so each stream costs O(log n) at most
// once per TTL, however often it is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace ds {

struct Stream;

class ExpiryQueue {
 public:
  using StreamPtr = std::shared_ptr<Stream>;

  // Queues `stream` to come due at `due_ms`, or moves it there if queued.
  void Schedule(const StreamPtr& stream, int64_t due_ms);
  // Forgets `stream` if it is queued (a deleted stream must not stay
  // alive here until its time).
  void Erase(const Stream& stream);
  // Takes every stream due at or before `now_ms`, earliest first.
  std::vector<StreamPtr> TakeDue(int64_t now_ms);
  size_t size() const;

 private:
  struct Entry {
    int64_t due_ms;
    StreamPtr stream;
  };
  // Puts `e` at `slot` and records the slot in its stream. Requires mu_.
  void Place(size_t slot, Entry e);
  // Restores the heap order around `slot`, whichever way its entry must
  // move. Require mu_.
  void Restore(size_t slot);
  void SiftUp(size_t slot);
  void SiftDown(size_t slot);
  // Removes the entry at `slot`. Requires mu_.
  Entry RemoveAt(size_t slot);

  mutable std::mutex mu_;
  std::vector<Entry> heap_;  // a binary min-heap on due_ms
};

}  // namespace ds
