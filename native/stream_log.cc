#include "stream_log.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "block_arena.h"

namespace ds {

static_assert(MemoryStreamLog::kBlockBytes == BlockArena::kSlotBytes);

MemoryStreamLog::Block::~Block() { BlockArena::Free(slot_); }

void MemoryStreamLog::SealLast() {
  Block& last = *blocks_.back();
  if (last.in_arena() || last.size() != kBlockBytes) return;
  auto sealed = std::make_shared<Block>();  // first: a throw leaks no slot
  char* slot = BlockArena::Allocate();
  if (slot == nullptr) return;
  std::memcpy(slot, last.data(), kBlockBytes);
  sealed->Adopt(slot);
  // A reader may still pin the heap block: it keeps that copy.
  blocks_.back() = std::move(sealed);
}

Status MemoryStreamLog::Read(uint64_t from, size_t len, std::string* out) const {
  std::shared_lock lock(mu_);
  // Checked under the lock: Trim frees blocks holding it exclusively.
  if (from < start_.load(std::memory_order_relaxed)) {
    return Status::Gone("position " + std::to_string(from) + " was dropped by retention");
  }
  uint64_t rel = from - base_ - dropped_blocks_ * kBlockBytes;
  out->reserve(out->size() + len);
  while (len > 0) {
    size_t block = static_cast<size_t>(rel / kBlockBytes);
    size_t within = static_cast<size_t>(rel % kBlockBytes);
    const Block& b = *blocks_[block];
    size_t n = std::min(len, b.size() - within);
    out->append(b.data() + within, n);
    rel += n;
    len -= n;
  }
  return Status::OK();
}

Status MemoryStreamLog::PinRange(uint64_t from, size_t len, std::vector<MemoryRange>* out) const {
  std::shared_lock lock(mu_);
  if (from < start_.load(std::memory_order_relaxed)) {
    return Status::Gone("position " + std::to_string(from) + " was dropped by retention");
  }
  uint64_t rel = from - base_ - dropped_blocks_ * kBlockBytes;
  while (len > 0) {
    size_t block = static_cast<size_t>(rel / kBlockBytes);
    size_t within = static_cast<size_t>(rel % kBlockBytes);
    const std::shared_ptr<Block>& b = blocks_[block];
    size_t n = std::min(len, b->size() - within);
    if (b->size() == kBlockBytes) {
      // Full: appends go to the next block, so its buffer never moves and
      // the bytes below the tail never change (a Rewind only takes back
      // bytes past the committed tail, which no reader was given).
      out->push_back(MemoryRange{b, b->data() + within, n});
    } else {
      // The active block: the next append may reallocate it. Its bytes
      // (less than a block, only at the end of a range) are copied.
      auto copy = std::make_shared<const std::string>(b->data() + within, n);
      out->push_back(MemoryRange{copy, copy->data(), n});
    }
    rel += n;
    len -= n;
  }
  return Status::OK();
}

Status MemoryStreamLog::Append(std::string_view bytes, int64_t now_ms) {
  std::unique_lock lock(mu_);
  const uint64_t total = bytes.size();
  while (!bytes.empty()) {
    if (blocks_.empty() || blocks_.back()->size() == kBlockBytes) {
      // A whole block's worth goes straight into an arena slot: no heap
      // block to fill and copy.
      auto block = std::make_shared<Block>();
      char* slot = bytes.size() >= kBlockBytes ? BlockArena::Allocate() : nullptr;
      if (slot != nullptr) {
        std::memcpy(slot, bytes.data(), kBlockBytes);
        block->Adopt(slot);
        blocks_.push_back(std::move(block));
        block_write_ms_.push_back(now_ms);
        bytes.remove_prefix(kBlockBytes);
        continue;
      }
      blocks_.push_back(std::move(block));
      block_write_ms_.push_back(now_ms);
    }
    std::string& last = blocks_.back()->heap();
    size_t n = std::min(bytes.size(), kBlockBytes - last.size());
    last.append(bytes.data(), n);
    block_write_ms_.back() = now_ms;
    bytes.remove_prefix(n);
    if (last.size() == kBlockBytes) SealLast();
  }
  // Publish the whole append at once: no reader sees half of it.
  tail_.fetch_add(total, std::memory_order_release);
  return Status::OK();
}

Status MemoryStreamLog::Rewind(uint64_t to) {
  std::unique_lock lock(mu_);
  const uint64_t tail = tail_.load(std::memory_order_relaxed);
  if (to >= tail) return Status::OK();
  if (to < start_.load(std::memory_order_relaxed)) {
    return Status::InvalidArgument("rewind below the log's start");
  }
  // Blocks hold whole kBlockBytes but the last: keep what lies below `to`.
  uint64_t keep = to - (base_ + dropped_blocks_ * kBlockBytes);
  size_t blocks = static_cast<size_t>((keep + kBlockBytes - 1) / kBlockBytes);
  blocks = std::max<size_t>(blocks, std::min<size_t>(blocks_.size(), 1));  // keep the active one
  blocks_.resize(blocks);
  block_write_ms_.resize(blocks);
  if (!blocks_.empty()) {
    const size_t keep_last = static_cast<size_t>(keep - (blocks - 1) * kBlockBytes);
    if (blocks_.back()->in_arena() && keep_last < kBlockBytes) {
      // A full block becomes the active one again: back to the heap, where
      // it may grow (readers pinning the arena block keep it).
      auto active = std::make_shared<Block>();
      active->heap().assign(blocks_.back()->data(), keep_last);
      blocks_.back() = std::move(active);
    } else if (!blocks_.back()->in_arena()) {
      blocks_.back()->heap().resize(keep_last);
    }
  }
  tail_.store(to, std::memory_order_release);
  return Status::OK();
}

size_t MemoryStreamLog::memory_bytes() const {
  std::shared_lock lock(mu_);
  size_t total = 0;
  for (const auto& b : blocks_) total += b->capacity();
  return total;
}

std::vector<LogSegment> MemoryStreamLog::Segments() const {
  std::shared_lock lock(mu_);
  std::vector<LogSegment> out;
  out.reserve(blocks_.size());
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const uint64_t block_base = base_ + (dropped_blocks_ + i) * kBlockBytes;
    out.push_back(LogSegment{std::max(block_base, start_.load(std::memory_order_relaxed)),
                             block_base + blocks_[i]->size(), block_write_ms_[i]});
  }
  return out;
}

size_t MemoryStreamLog::segment_count() const {
  std::shared_lock lock(mu_);
  return blocks_.size();
}

Status MemoryStreamLog::Trim(uint64_t new_start) {
  std::unique_lock lock(mu_);
  if (new_start <= start_.load(std::memory_order_relaxed)) return Status::OK();
  if (new_start > tail_.load(std::memory_order_relaxed)) {
    return Status::InvalidArgument("trim past the tail");
  }
  start_.store(new_start, std::memory_order_release);
  // Free every block wholly below the new start, but never the last one:
  // appends continue in it.
  size_t drop = 0;
  while (drop + 1 < blocks_.size() &&
         base_ + (dropped_blocks_ + drop + 1) * kBlockBytes <= new_start) {
    ++drop;
  }
  blocks_.erase(blocks_.begin(), blocks_.begin() + static_cast<ptrdiff_t>(drop));
  block_write_ms_.erase(block_write_ms_.begin(),
                        block_write_ms_.begin() + static_cast<ptrdiff_t>(drop));
  dropped_blocks_ += drop;
  return Status::OK();
}

}  // namespace ds
