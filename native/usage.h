// Stream data accounting: the memory budget (memory mode) and the quotas per
// placement group (streams and bytes). A stream is charged its own bytes
// (a fork's start at its fork offset), from the create or append that
// writes them until a delete, expiry, retention trim or undone commit
// frees them; soft-deleted streams stay charged while forks hold them.
//
// Cost: an append reserves its bytes with one atomic add on the engine's
// total (and one on its group's when a byte quota is set) and takes them
// back if that went over a limit, so concurrent appends never overshoot.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "response.h"

namespace ds {

struct GroupUsage {
  explicit GroupUsage(std::string name_in) : name(std::move(name_in)) {}
  const std::string name;
  std::atomic<uint64_t> bytes{0};
  uint64_t streams = 0;  // guarded by Usage's mutex
};

struct UsageLimits {
  uint64_t max_memory_bytes = 0;       // 0: no budget (ignored unless enforced)
  uint64_t max_streams_per_group = 0;  // 0: no limit
  uint64_t max_bytes_per_group = 0;    // 0: no limit
};

// One group's usage at a moment, for metrics.
struct GroupSnapshot {
  std::string name;
  uint64_t streams = 0;
  uint64_t bytes = 0;
};

class Usage {
 public:
  // `enforce_memory`: whether max_memory_bytes applies (memory mode only;
  // with data_dir the bytes live on disk).
  Usage(std::string stream_root, int group_depth, bool enforce_memory, UsageLimits limits);

  // The placement group of a stream path: its first group_depth segments
  // under the stream root ("" for paths outside it).
  std::string GroupOf(std::string_view path) const;

  void SetLimits(const UsageLimits& limits);
  UsageLimits limits() const;

  // Counts a new stream in its group; the 507 to answer when the group
  // holds max_streams_per_group already.
  std::optional<Response> AddStream(std::string_view path, std::shared_ptr<GroupUsage>* out);
  // The same without a limit (recovery: what is stored stays served).
  std::shared_ptr<GroupUsage> AdoptStream(std::string_view path);
  void RemoveStream(const std::shared_ptr<GroupUsage>& group);

  // Reserves `n` new bytes of `group`: the 403 (larger than the group's
  // whole quota, it can never succeed) or 507 (over the memory budget or
  // the group's quota) to answer, or nullopt with the bytes charged.
  std::optional<Response> Reserve(GroupUsage& group, uint64_t n);
  // Charges without a limit (recovery) and gives back.
  void Charge(GroupUsage& group, uint64_t n);
  void Release(GroupUsage& group, uint64_t n);

  uint64_t total_bytes() const { return total_bytes_.load(std::memory_order_relaxed); }
  uint64_t refused_memory() const { return refused_memory_.load(std::memory_order_relaxed); }
  uint64_t refused_streams() const { return refused_streams_.load(std::memory_order_relaxed); }
  uint64_t refused_bytes() const { return refused_bytes_.load(std::memory_order_relaxed); }

  // The `n` groups holding the most bytes, largest first (ties by name),
  // and the sum of all the others in *rest.
  std::vector<GroupSnapshot> TopGroups(size_t n, GroupSnapshot* rest) const;

 private:
  const std::string stream_root_;
  const int group_depth_;
  const bool enforce_memory_;
  std::atomic<uint64_t> max_memory_bytes_;
  std::atomic<uint64_t> max_streams_per_group_;
  std::atomic<uint64_t> max_bytes_per_group_;
  std::atomic<uint64_t> total_bytes_{0};
  std::atomic<uint64_t> refused_memory_{0};
  std::atomic<uint64_t> refused_streams_{0};
  std::atomic<uint64_t> refused_bytes_{0};
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<GroupUsage>> groups_;  // guarded by mu_
};

// "1.2 GiB", "512 KiB", "17 bytes": sizes in refusal messages.
std::string HumanBytes(uint64_t n);

}  // namespace ds
