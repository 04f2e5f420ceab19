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

#include "status.h"

namespace ds {

class StreamLog {
 public:
  virtual ~StreamLog() = default;
  virtual uint64_t base() const = 0;
  // Position after the last appended byte (durable or not).
  virtual uint64_t tail() const = 0;
  // Appends bytes [from, from + len) to `out`. Requires base <= from and
  // from + len <= tail.
  virtual Status Read(uint64_t from, size_t len, std::string* out) const = 0;
  // Writes `bytes` at tail(). They are not durable until Sync returns OK; a
  // failed Append leaves tail() unchanged.
  virtual Status Append(std::string_view bytes) = 0;
  // Makes every appended byte durable (a no-op in memory).
  virtual Status Sync() = 0;
  // Bytes held in memory by this log (for stats and limits).
  virtual size_t memory_bytes() const = 0;
};

// In-memory log: fixed-size blocks, so a position maps to its block by
// division and appends never move old bytes (no reallocation of the whole
// stream, no long copy under the lock).
class MemoryStreamLog final : public StreamLog {
 public:
  explicit MemoryStreamLog(uint64_t base) : base_(base), tail_(base) {}
  MemoryStreamLog(const MemoryStreamLog&) = delete;
  MemoryStreamLog& operator=(const MemoryStreamLog&) = delete;

  uint64_t base() const override { return base_; }
  uint64_t tail() const override { return tail_.load(std::memory_order_acquire); }
  Status Read(uint64_t from, size_t len, std::string* out) const override;
  Status Append(std::string_view bytes) override;
  Status Sync() override { return Status::OK(); }
  size_t memory_bytes() const override;

  static constexpr size_t kBlockBytes = 1 << 20;

 private:
  const uint64_t base_;
  std::atomic<uint64_t> tail_;
  mutable std::shared_mutex mu_;
  // Every block but the last holds exactly kBlockBytes. The last grows by
  // doubling, so small streams stay small.
  std::vector<std::string> blocks_;
};

}  // namespace ds
