#include "block_arena.h"

#if defined(__linux__)

#include <sys/mman.h>

#include <algorithm>
#include <mutex>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define DS_ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DS_ARENA_ASAN 1
#endif
#endif
#if defined(DS_ARENA_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace ds {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
// 32 MiB per region: few mmaps for a large stream, little address space
// for a small server.
constexpr size_t kRegionBytes = size_t{32} << 20;

struct Arena {
  std::mutex mu;
  std::vector<char*> regions;  // guarded by mu
  std::vector<char*> free;     // guarded by mu; LIFO
  size_t used = 0;             // guarded by mu
  bool failed = false;         // guarded by mu: mmap failed once, stop trying

  // Maps a 2 MiB-aligned region and puts its slots on the free list,
  // lowest address last so that slots go out in address order (two
  // consecutive full blocks share a huge page).
  bool Grow() {
    void* p = mmap(nullptr, kRegionBytes + kHugePage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    auto* raw = static_cast<char*>(p);
    const auto addr = reinterpret_cast<uintptr_t>(raw);
    const size_t head = (kHugePage - addr % kHugePage) % kHugePage;
    if (head > 0) munmap(raw, head);
    if (kHugePage - head > 0) munmap(raw + head + kRegionBytes, kHugePage - head);
    char* region = raw + head;
    // Advice only: without THP support the region still works.
    (void)madvise(region, kRegionBytes, MADV_HUGEPAGE);
    regions.push_back(region);
    for (size_t off = kRegionBytes; off > 0; off -= BlockArena::kSlotBytes) {
      char* slot = region + off - BlockArena::kSlotBytes;
#if defined(DS_ARENA_ASAN)
      ASAN_POISON_MEMORY_REGION(slot, BlockArena::kSlotBytes);
#endif
      free.push_back(slot);
    }
    return true;
  }
};

Arena& TheArena() {
  static Arena* arena = new Arena;  // never destroyed: blocks may outlive statics
  return *arena;
}

}  // namespace

char* BlockArena::Allocate() {
  Arena& a = TheArena();
  std::lock_guard lock(a.mu);
  if (a.free.empty() && (a.failed || !a.Grow())) {
    a.failed = true;
    return nullptr;
  }
  char* slot = a.free.back();
  a.free.pop_back();
  ++a.used;
#if defined(DS_ARENA_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(slot, kSlotBytes);
#endif
  return slot;
}

void BlockArena::Free(char* slot) {
  if (slot == nullptr) return;
  // Outside the lock: the kernel call is the slow part. The pages a socket
  // still references (none with writev, which copies) would stay theirs.
  (void)madvise(slot, kSlotBytes, MADV_DONTNEED);
#if defined(DS_ARENA_ASAN)
  ASAN_POISON_MEMORY_REGION(slot, kSlotBytes);
#endif
  Arena& a = TheArena();
  std::lock_guard lock(a.mu);
  a.free.push_back(slot);
  --a.used;
}

bool BlockArena::Owns(const void* p) {
  Arena& a = TheArena();
  std::lock_guard lock(a.mu);
  const char* c = static_cast<const char*>(p);
  return std::any_of(a.regions.begin(), a.regions.end(),
                     [c](const char* r) { return c >= r && c < r + kRegionBytes; });
}

BlockArena::Stats BlockArena::stats() {
  Arena& a = TheArena();
  std::lock_guard lock(a.mu);
  return Stats{a.regions.size(), a.used, a.free.size()};
}

}  // namespace ds

#else  // !__linux__: blocks stay on the heap.

namespace ds {

char* BlockArena::Allocate() { return nullptr; }
void BlockArena::Free(char*) {}
bool BlockArena::Owns(const void*) { return false; }
BlockArena::Stats BlockArena::stats() { return {}; }

}  // namespace ds

#endif
