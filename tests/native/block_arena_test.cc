// Memory-stream blocks in the huge-page arena (native/block_arena.h): full
// blocks move there, reads see the same bytes through Read and PinRange, a
// pinned block outlives a trim or a delete, and freed slots are reused with
// their memory given back.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "block_arena.h"
#include "stream_log.h"

namespace ds {
namespace {

constexpr size_t kBlock = MemoryStreamLog::kBlockBytes;

std::string Pattern(uint64_t from, uint64_t to) {
  std::string s;
  s.reserve(to - from);
  for (uint64_t p = from; p < to; ++p) s.push_back(static_cast<char>('a' + (p * 7 + p / 4093) % 26));
  return s;
}

std::string Pinned(const std::vector<MemoryRange>& pins) {
  std::string out;
  for (const MemoryRange& m : pins) out.append(m.data, m.length);
  return out;
}

#if defined(__linux__)

// Small appends fill a heap block that moves into the arena when full; a
// block-sized append goes there directly. The active block stays on the heap.
TEST(BlockArenaTest, FullBlocksLiveInTheArenaAndReadTheSame) {
  const size_t used_before = BlockArena::stats().slots_used;
  MemoryStreamLog log(0);
  const uint64_t total = 3 * kBlock + 12345;
  // 1,000-byte appends for the first 1.5 blocks (a block seals mid-append),
  // then one append of two blocks and change.
  uint64_t pos = 0;
  while (pos < kBlock + kBlock / 2) {
    ASSERT_TRUE(log.Append(Pattern(pos, pos + 1000), 0).ok());
    pos += 1000;
  }
  ASSERT_TRUE(log.Append(Pattern(pos, total), 0).ok());
  EXPECT_EQ(BlockArena::stats().slots_used, used_before + 3);

  std::vector<MemoryRange> pins;
  ASSERT_TRUE(log.PinRange(0, total, &pins).ok());
  ASSERT_EQ(pins.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(BlockArena::Owns(pins[i].data)) << "block " << i;
    EXPECT_EQ(pins[i].length, kBlock);
  }
  EXPECT_FALSE(BlockArena::Owns(pins[3].data));  // the active block's copy
  EXPECT_TRUE(Pinned(pins) == Pattern(0, total));

  std::string read;
  ASSERT_TRUE(log.Read(0, total, &read).ok());
  EXPECT_TRUE(read == Pattern(0, total));
  // Reads across block edges, from the middle of sealed blocks.
  for (uint64_t from : {uint64_t{kBlock - 1}, uint64_t{kBlock + 17}, uint64_t{2 * kBlock - 5000}}) {
    std::string part;
    ASSERT_TRUE(log.Read(from, 10000, &part).ok());
    EXPECT_TRUE(part == Pattern(from, from + 10000)) << from;
    std::vector<MemoryRange> p;
    ASSERT_TRUE(log.PinRange(from, 10000, &p).ok());
    EXPECT_TRUE(Pinned(p) == Pattern(from, from + 10000)) << from;
  }
}

// A read in flight pins its blocks: a trim (or the stream's deletion, the
// log's destruction) does not free a pinned slot; the last pin does, and
// the next full block reuses it with the right bytes.
TEST(BlockArenaTest, PinnedSlotsOutliveTrimAndDeleteAndAreReused) {
  auto log = std::make_unique<MemoryStreamLog>(0);
  ASSERT_TRUE(log->Append(Pattern(0, 4 * kBlock), 0).ok());
  std::vector<MemoryRange> pins;
  ASSERT_TRUE(log->PinRange(kBlock / 2, 2 * kBlock, &pins).ok());  // blocks 0..2
  ASSERT_EQ(pins.size(), 3u);
  const BlockArena::Stats pinned = BlockArena::stats();

  ASSERT_TRUE(log->Trim(3 * kBlock).ok());  // frees blocks 0..2 but for the pins
  EXPECT_EQ(BlockArena::stats().slots_used, pinned.slots_used);
  log.reset();  // the stream is deleted: block 3 goes, the pinned ones stay
  EXPECT_EQ(BlockArena::stats().slots_used, pinned.slots_used - 1);
  EXPECT_TRUE(Pinned(pins) == Pattern(kBlock / 2, kBlock / 2 + 2 * kBlock));

  const char* first = pins[0].data - kBlock / 2;
  pins.clear();  // the response is done: the three slots go back
  const BlockArena::Stats released = BlockArena::stats();
  EXPECT_EQ(released.slots_used, pinned.slots_used - 4);
  EXPECT_EQ(released.slots_free, pinned.slots_free + 4);

  // Slots are reused (no new region) and hold the new block's bytes.
  MemoryStreamLog next(7 * kBlock);
  ASSERT_TRUE(next.Append(Pattern(7 * kBlock, 11 * kBlock), 0).ok());
  const BlockArena::Stats reused = BlockArena::stats();
  EXPECT_EQ(reused.regions, released.regions);
  EXPECT_EQ(reused.slots_free, released.slots_free - 4);
  std::vector<MemoryRange> again;
  ASSERT_TRUE(next.PinRange(7 * kBlock, 4 * kBlock, &again).ok());
  bool reused_first = false;
  for (const MemoryRange& m : again) reused_first = reused_first || m.data == first;
  EXPECT_TRUE(reused_first);
  EXPECT_TRUE(Pinned(again) == Pattern(7 * kBlock, 11 * kBlock));
}

// A freed slot's memory goes back to the kernel: it reads as zeros before
// anything is written to it again (MADV_DONTNEED on private anonymous
// memory), so its pages no longer count in RSS.
TEST(BlockArenaTest, FreedSlotsArePunched) {
  char* slot = BlockArena::Allocate();
  ASSERT_NE(slot, nullptr);
  std::memset(slot, 'x', BlockArena::kSlotBytes);
  BlockArena::Free(slot);
  char* again = BlockArena::Allocate();
  ASSERT_EQ(again, slot);  // LIFO: the slot just freed
  size_t nonzero = 0;
  for (size_t i = 0; i < BlockArena::kSlotBytes; i += 512) nonzero += again[i] != 0;
  EXPECT_EQ(nonzero, 0u);
  BlockArena::Free(again);
}

#endif  // __linux__

// A rewind into a full block makes it the active block again (on the heap,
// where it may grow); what it kept and what comes after read right.
TEST(BlockArenaTest, RewindIntoAFullBlock) {
  MemoryStreamLog log(0);
  ASSERT_TRUE(log.Append(Pattern(0, 2 * kBlock), 0).ok());
  ASSERT_TRUE(log.Rewind(kBlock + 100).ok());
  ASSERT_TRUE(log.Append(Pattern(kBlock + 100, 3 * kBlock + 5), 0).ok());
  std::string all;
  ASSERT_TRUE(log.Read(0, 3 * kBlock + 5, &all).ok());
  EXPECT_TRUE(all == Pattern(0, 3 * kBlock + 5));
  std::vector<MemoryRange> pins;
  ASSERT_TRUE(log.PinRange(0, 3 * kBlock + 5, &pins).ok());
  EXPECT_TRUE(Pinned(pins) == Pattern(0, 3 * kBlock + 5));
}

}  // namespace
}  // namespace ds
