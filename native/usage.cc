#include "usage.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace ds {

std::string HumanBytes(uint64_t n) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (n < 1024) return std::to_string(n) + (n == 1 ? " byte" : " bytes");
  double v = static_cast<double>(n) / 1024;
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  // Whole numbers print without a fraction ("64 MiB", not "64.0 MiB").
  if (v == static_cast<double>(static_cast<uint64_t>(v))) {
    std::snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(v), kUnits[unit]);
  } else {
    // Rounded down: a size just under a limit must not print as the limit.
    std::snprintf(buf, sizeof buf, "%.1f %s", std::floor(v * 10) / 10, kUnits[unit]);
  }
  return buf;
}

Usage::Usage(std::string stream_root, int group_depth, bool enforce_memory, UsageLimits limits)
    : stream_root_(std::move(stream_root)),
      group_depth_(std::max(1, group_depth)),
      enforce_memory_(enforce_memory),
      max_memory_bytes_(limits.max_memory_bytes),
      max_streams_per_group_(limits.max_streams_per_group),
      max_bytes_per_group_(limits.max_bytes_per_group) {}

std::string Usage::GroupOf(std::string_view path) const {
  std::string_view rel = path;
  if (stream_root_ != "/") {
    if (rel.substr(0, stream_root_.size()) != stream_root_) return "";
    rel.remove_prefix(stream_root_.size());
  }
  if (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
  size_t end = 0;
  for (int i = 0; i < group_depth_; ++i) {
    size_t slash = rel.find('/', end);
    if (slash == std::string_view::npos) return std::string(rel);
    end = slash + 1;
  }
  return std::string(rel.substr(0, end - 1));
}

void Usage::SetLimits(const UsageLimits& l) {
  max_memory_bytes_.store(l.max_memory_bytes, std::memory_order_relaxed);
  max_streams_per_group_.store(l.max_streams_per_group, std::memory_order_relaxed);
  max_bytes_per_group_.store(l.max_bytes_per_group, std::memory_order_relaxed);
}

UsageLimits Usage::limits() const {
  return UsageLimits{max_memory_bytes_.load(std::memory_order_relaxed),
                     max_streams_per_group_.load(std::memory_order_relaxed),
                     max_bytes_per_group_.load(std::memory_order_relaxed)};
}

std::optional<Response> Usage::AddStream(std::string_view path,
                                         std::shared_ptr<GroupUsage>* out) {
  std::string name = GroupOf(path);
  const uint64_t max_streams = max_streams_per_group_.load(std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  auto& group = groups_[name];
  if (group == nullptr) group = std::make_shared<GroupUsage>(name);
  if (max_streams > 0 && group->streams >= max_streams) {
    refused_streams_.fetch_add(1, std::memory_order_relaxed);
    uint64_t held = group->streams;
    if (held == 0 && group->bytes.load() == 0) groups_.erase(name);
    return ErrorResponse(507, "insufficient storage: group \"" + name + "\" holds " +
                                  std::to_string(held) +
                                  " streams, the max_streams_per_group quota");
  }
  ++group->streams;
  *out = group;
  return std::nullopt;
}

std::shared_ptr<GroupUsage> Usage::AdoptStream(std::string_view path) {
  std::string name = GroupOf(path);
  std::lock_guard lock(mu_);
  auto& group = groups_[name];
  if (group == nullptr) group = std::make_shared<GroupUsage>(name);
  ++group->streams;
  return group;
}

void Usage::RemoveStream(const std::shared_ptr<GroupUsage>& group) {
  std::lock_guard lock(mu_);
  if (group->streams > 0) --group->streams;
  // A group with no stream left has no bytes either (each stream gave its
  // own back first): forget it, so the map holds only groups in use.
  if (group->streams == 0) {
    auto it = groups_.find(group->name);
    if (it != groups_.end() && it->second == group) groups_.erase(it);
  }
}

std::optional<Response> Usage::Reserve(GroupUsage& group, uint64_t n) {
  if (n == 0) return std::nullopt;
  const uint64_t max_group = max_bytes_per_group_.load(std::memory_order_relaxed);
  if (max_group > 0 && n > max_group) {
    refused_bytes_.fetch_add(1, std::memory_order_relaxed);
    return ErrorResponse(403, "forbidden: a body of " + std::to_string(n) +
                                  " bytes is more than group \"" + group.name +
                                  "\" may ever hold, the max_bytes_per_group quota (" +
                                  HumanBytes(max_group) + ")");
  }
  const uint64_t before = total_bytes_.fetch_add(n, std::memory_order_relaxed);
  const uint64_t max_memory = max_memory_bytes_.load(std::memory_order_relaxed);
  if (enforce_memory_ && max_memory > 0 && before + n > max_memory) {
    total_bytes_.fetch_sub(n, std::memory_order_relaxed);
    refused_memory_.fetch_add(1, std::memory_order_relaxed);
    return ErrorResponse(507, "insufficient storage: in-memory streams hold " +
                                  HumanBytes(before) + ", the max_memory_bytes limit is " +
                                  HumanBytes(max_memory));
  }
  const uint64_t group_before = group.bytes.fetch_add(n, std::memory_order_relaxed);
  if (max_group > 0 && group_before + n > max_group) {
    group.bytes.fetch_sub(n, std::memory_order_relaxed);
    total_bytes_.fetch_sub(n, std::memory_order_relaxed);
    refused_bytes_.fetch_add(1, std::memory_order_relaxed);
    return ErrorResponse(507, "insufficient storage: group \"" + group.name + "\" holds " +
                                  HumanBytes(group_before) +
                                  ", the max_bytes_per_group quota is " + HumanBytes(max_group));
  }
  return std::nullopt;
}

void Usage::Charge(GroupUsage& group, uint64_t n) {
  total_bytes_.fetch_add(n, std::memory_order_relaxed);
  group.bytes.fetch_add(n, std::memory_order_relaxed);
}

void Usage::Release(GroupUsage& group, uint64_t n) {
  if (n == 0) return;
  total_bytes_.fetch_sub(n, std::memory_order_relaxed);
  group.bytes.fetch_sub(n, std::memory_order_relaxed);
}

std::vector<GroupSnapshot> Usage::TopGroups(size_t n, GroupSnapshot* rest) const {
  std::vector<GroupSnapshot> all;
  {
    std::lock_guard lock(mu_);
    all.reserve(groups_.size());
    for (const auto& [name, group] : groups_) {
      all.push_back({name, group->streams, group->bytes.load(std::memory_order_relaxed)});
    }
  }
  auto larger = [](const GroupSnapshot& a, const GroupSnapshot& b) {
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.name < b.name;
  };
  if (all.size() > n) {
    std::partial_sort(all.begin(), all.begin() + static_cast<ptrdiff_t>(n), all.end(), larger);
  } else {
    std::sort(all.begin(), all.end(), larger);
  }
  *rest = GroupSnapshot{};
  for (size_t i = n; i < all.size(); ++i) {
    rest->streams += all[i].streams;
    rest->bytes += all[i].bytes;
  }
  if (all.size() > n) all.resize(n);
  return all;
}

}  // namespace ds
