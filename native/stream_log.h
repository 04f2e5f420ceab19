// A stream's own bytes: the positions [base, tail) of its logical byte log.
// A plain stream has base 0; a fork's own log starts at its fork offset and
// everything below comes from its source (see stream.h).
//
// Thread safety: one appender at a time (the engine serialises appends per
// stream), any number of concurrent readers. Readers never wait for the
// stream's metadata lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "file_util.h"
#include "status.h"

namespace ds {

// Bytes of a stream that a response sends straight from a file
// (sendfile(2)): `length` bytes at `offset` of `fd`, a descriptor of its
// own (its own file position), open read-only. Shared, so that a Response
// holding it stays copyable; the last holder closes it.
struct FileRange {
  std::shared_ptr<UniqueFd> fd;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Bytes of a stream that a response sends straight from engine memory:
// `length` bytes at `data`, which stay valid and unchanged while `pin` is
// held (a memory log's full block, or a copy of the bytes of a block that
// may still move). The writer needs no copy of its own.
struct MemoryRange {
  std::shared_ptr<const void> pin;
  const char* data = nullptr;
  size_t length = 0;
};

// One segment of a log, for retention: whole segments are what it drops.
struct LogSegment {
  uint64_t base = 0;           // first position in the segment
  uint64_t end = 0;            // one past its last byte (so far, if active)
  int64_t last_write_ms = 0;   // when its newest byte was appended
};

class StreamLog {
 public:
  virtual ~StreamLog() = default;
  // The first position the log was created with; it never changes.
  virtual uint64_t base() const = 0;
  // The first position still held: base() until Trim drops old bytes.
  virtual uint64_t start() const = 0;
  // Position after the last appended byte (durable or not).
  virtual uint64_t tail() const = 0;
  // Appends bytes [from, from + len) to `out`. Requires start <= from and
  // from + len <= tail; a range Trim dropped meanwhile fails with Gone.
  virtual Status Read(uint64_t from, size_t len, std::string* out) const = 0;
  // Instead of copying [from, from + len): appends to `out` the file
  // ranges holding those bytes, each with a descriptor of its own, so the
  // caller can send them with sendfile(2). Only for bytes that Read would
  // return as they are (verified against their checksums already); any
  // other case, including a log without files, answers NotSupported and
  // the caller reads the bytes with Read, which checks them. The files may
  // be deleted (retention) once this returns: the descriptors keep them.
  virtual Status OpenFiles(uint64_t from, size_t len, std::vector<FileRange>* out) const {
    (void)from, (void)len, (void)out;
    return Status::NotSupported("no files behind this log");
  }
  // Whether catch-up reads can go out without a copy (OpenFiles or
  // PinRange), so a response far behind the tail costs no buffer of its
  // size and may be large.
  virtual bool zero_copy() const { return false; }
  // Instead of copying [from, from + len): appends to `out` views of the
  // log's memory holding those bytes, each pinned, so a response can be
  // written from them after the log moved on (appends, retention). Logs
  // without memory blocks answer NotSupported; the caller then uses Read.
  virtual Status PinRange(uint64_t from, size_t len, std::vector<MemoryRange>* out) const {
    (void)from, (void)len, (void)out;
    return Status::NotSupported("no memory blocks behind this log");
  }
  // Writes `bytes` at tail(), at wall-clock time `now_ms` (retention by age
  // counts from it). They are not durable until Sync returns OK; a failed
  // Append leaves tail() unchanged.
  virtual Status Append(std::string_view bytes, int64_t now_ms) = 0;
  // Makes every appended byte durable (a no-op in memory).
  virtual Status Sync() = 0;
  // Takes back the bytes at and past `to` (start() <= to <= tail()): the
  // tail becomes `to`, so the next append writes there. For a commit that
  // failed with its bytes already written (disk full): nobody read past
  // the committed tail, and no record points past it. The caller is the
  // only appender meanwhile (it holds the stream's lock).
  virtual Status Rewind(uint64_t to) = 0;
  // Bytes held in memory by this log (for stats and limits).
  virtual size_t memory_bytes() const = 0;

  // Segments holding [start, tail), oldest first; the last is the active
  // one, which Trim never drops.
  virtual std::vector<LogSegment> Segments() const = 0;
  // How many segments Segments() would list, without building the list.
  virtual size_t segment_count() const = 0;
  // Makes positions below `new_start` unreadable and frees every segment
  // wholly below it. The caller records `new_start` durably first (a crash
  // after that finishes the job in recovery). Requires
  // start() <= new_start <= tail(). Safe against concurrent reads and
  // appends.
  virtual Status Trim(uint64_t new_start) = 0;
};

// In-memory log: fixed-size blocks, so a position maps to its block by
// division and appends never move old bytes (no reallocation of the whole
// stream, no long copy under the lock).
class MemoryStreamLog final : public StreamLog {
 public:
  explicit MemoryStreamLog(uint64_t base) : base_(base), start_(base), tail_(base) {}
  MemoryStreamLog(const MemoryStreamLog&) = delete;
  MemoryStreamLog& operator=(const MemoryStreamLog&) = delete;

  uint64_t base() const override { return base_; }
  uint64_t start() const override { return start_.load(std::memory_order_acquire); }
  uint64_t tail() const override { return tail_.load(std::memory_order_acquire); }
  Status Read(uint64_t from, size_t len, std::string* out) const override;
  Status PinRange(uint64_t from, size_t len, std::vector<MemoryRange>* out) const override;
  bool zero_copy() const override { return true; }
  Status Append(std::string_view bytes, int64_t now_ms) override;
  Status Sync() override { return Status::OK(); }
  Status Rewind(uint64_t to) override;
  size_t memory_bytes() const override;
  std::vector<LogSegment> Segments() const override;
  size_t segment_count() const override;
  Status Trim(uint64_t new_start) override;

  static constexpr size_t kBlockBytes = 1 << 20;

  // One block: on the heap while it fills (it grows by doubling, so small
  // streams stay small), in a BlockArena slot once full (huge pages: see
  // block_arena.h). A full block never changes again.
  class Block {
   public:
    Block() = default;
    Block(const Block&) = delete;
    Block& operator=(const Block&) = delete;
    ~Block();
    const char* data() const { return slot_ != nullptr ? slot_ : heap_.data(); }
    size_t size() const { return slot_ != nullptr ? kBlockBytes : heap_.size(); }
    size_t capacity() const { return slot_ != nullptr ? kBlockBytes : heap_.capacity(); }
    bool in_arena() const { return slot_ != nullptr; }
    std::string& heap() { return heap_; }
    // Takes a full arena slot (BlockArena::Allocate) as this block's bytes.
    void Adopt(char* slot) {
      slot_ = slot;
      std::string().swap(heap_);
    }

   private:
    std::string heap_;       // while filling (or full where the arena is unavailable)
    char* slot_ = nullptr;   // once full, when the arena had a slot
  };

 private:
  // Moves the last block, just filled, into an arena slot (no-op where the
  // arena gives none). Requires mu_ held exclusively.
  void SealLast();
  const uint64_t base_;
  std::atomic<uint64_t> start_;
  std::atomic<uint64_t> tail_;
  mutable std::shared_mutex mu_;
  // blocks_[i] holds positions from base + (dropped_blocks_ + i) *
  // kBlockBytes. Every block but the last holds exactly kBlockBytes; the
  // last grows by doubling, so small streams stay small. Trim erases blocks
  // from the front. Shared, so that a response pinning a full block (whose
  // bytes never move or change again) outlives a trim.
  std::vector<std::shared_ptr<Block>> blocks_;  // guarded by mu_
  std::vector<int64_t> block_write_ms_;  // guarded by mu_; parallel to blocks_
  uint64_t dropped_blocks_ = 0;          // guarded by mu_
};

}  // namespace ds
