#include "stream_log.h"

#include <algorithm>
#include <mutex>

namespace ds {

Status MemoryStreamLog::Read(uint64_t from, size_t len, std::string* out) const {
  std::shared_lock lock(mu_);
  uint64_t rel = from - base_;
  out->reserve(out->size() + len);
  while (len > 0) {
    size_t block = static_cast<size_t>(rel / kBlockBytes);
    size_t within = static_cast<size_t>(rel % kBlockBytes);
    const std::string& b = blocks_[block];
    size_t n = std::min(len, b.size() - within);
    out->append(b, within, n);
    rel += n;
    len -= n;
  }
  return Status::OK();
}

Status MemoryStreamLog::Append(std::string_view bytes) {
  std::unique_lock lock(mu_);
  const uint64_t total = bytes.size();
  while (!bytes.empty()) {
    if (blocks_.empty() || blocks_.back().size() == kBlockBytes) {
      blocks_.emplace_back();
    }
    std::string& last = blocks_.back();
    size_t n = std::min(bytes.size(), kBlockBytes - last.size());
    last.append(bytes.data(), n);
    bytes.remove_prefix(n);
  }
  // Publish the whole append at once: no reader sees half of it.
  tail_.fetch_add(total, std::memory_order_release);
  return Status::OK();
}

size_t MemoryStreamLog::memory_bytes() const {
  std::shared_lock lock(mu_);
  size_t total = 0;
  for (const auto& b : blocks_) total += b.capacity();
  return total;
}

}  // namespace ds
