// Full memory-stream blocks kept in transparent huge pages.
//
// A large catch-up read of a memory stream is written from its full 1 MiB
// blocks with writev, which copies every byte into the socket. That copy
// walks the source a page at a time: from 4 KiB heap pages it takes a TLB
// miss (a page-table walk) every 4 KiB, from a 2 MiB huge page one per 2 MiB.
// Measured through the bench's read-large, huge-page blocks cut the server's
// CPU per MB by about a tenth and raised MB/s (docs/large-reads-and-durable-
// appends.md, fourth round). Sending blocks from a memfd with sendfile was
// measured too and cost more (shmem keeps 4 KiB pages; see the same section).
//
// The arena hands out 1 MiB slots from 2 MiB-aligned anonymous regions
// advised MADV_HUGEPAGE (honoured where transparent_hugepage is `always` or
// `madvise`, the kernel default; elsewhere they are ordinary pages). Only full
// blocks live here, two to a huge page, so a huge page is never mostly empty
// (RSS follows the bytes held). A freed slot's pages go back to the kernel at
// once (MADV_DONTNEED), so RSS drops as blocks are trimmed or deleted; the
// slot's address is reused by the next block. Regions are virtual address
// space only until written, and are never unmapped.
//
// Where the arena is not available (not Linux, or mmap fails) Allocate
// answers nullptr and the caller keeps the block on the heap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ds {

class BlockArena {
 public:
  static constexpr size_t kSlotBytes = size_t{1} << 20;

  // A slot of kSlotBytes (its pages not yet touched: they read as zeros),
  // or nullptr if the arena cannot give one.
  static char* Allocate();
  // Returns a slot from Allocate: its memory goes back to the kernel and
  // the slot to the free list. The caller guarantees nobody reads it any
  // more (memory blocks free their slot when the last pin is gone).
  static void Free(char* slot);
  // Whether p lies in one of the arena's regions (for tests).
  static bool Owns(const void* p);

  struct Stats {
    size_t regions = 0;     // regions mapped so far
    size_t slots_used = 0;  // slots handed out and not freed
    size_t slots_free = 0;  // slots on the free list
  };
  static Stats stats();
};

}  // namespace ds
