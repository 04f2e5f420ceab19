#include "crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define DS_CRC32C_X86 1
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
// Only when the target guarantees the CRC extension (Apple arm64 always
// does; other arm64 builds get it with -march=armv8-a+crc): no run-time
// detection to get wrong across operating systems.
#include <arm_acle.h>
#define DS_CRC32C_ARM 1
#endif

namespace ds::crc32c {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78;  // reflected Castagnoli

// Slicing-by-8: table[k][b] is the CRC of byte b followed by k zero bytes,
// so eight input bytes cost eight lookups and no per-bit work.
constexpr std::array<std::array<uint32_t, 256>, 8> MakeTables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1) ? kPolynomial : 0);
    t[0][b] = c;
  }
  for (uint32_t b = 0; b < 256; ++b) {
    for (int k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
  }
  return t;
}
constexpr auto kTables = MakeTables();

uint32_t PortableRaw(uint32_t c, const uint8_t* p, size_t n) {
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xff];
    --n;
  }
  while (n >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    lo = __builtin_bswap32(lo);
    hi = __builtin_bswap32(hi);
#endif
    lo ^= c;
    c = kTables[7][lo & 0xff] ^ kTables[6][(lo >> 8) & 0xff] ^ kTables[5][(lo >> 16) & 0xff] ^
        kTables[4][lo >> 24] ^ kTables[3][hi & 0xff] ^ kTables[2][(hi >> 8) & 0xff] ^
        kTables[1][(hi >> 16) & 0xff] ^ kTables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xff];
  return c;
}

#if defined(DS_CRC32C_X86)
// The crc32 instruction has a latency of three cycles but issues one per
// cycle: three independent lanes over consecutive stripes keep it busy,
// and the lanes are joined with CRC linearity: over raw (not inverted)
// values, crc(s, X || Y) = Z(crc(s, X)) ^ crc(0, Y), where Z is "append
// |Y| zero bytes", a linear map on 32 bits kept as four byte tables.
constexpr size_t kStripe = 4096;  // bytes per lane

struct ZeroShift {
  std::array<std::array<uint32_t, 256>, 4> t{};
  uint32_t operator()(uint32_t s) const {
    return t[0][s & 0xff] ^ t[1][(s >> 8) & 0xff] ^ t[2][(s >> 16) & 0xff] ^ t[3][s >> 24];
  }
};

const ZeroShift& StripeShift() {
  static const ZeroShift shift = [] {
    uint32_t basis[32];  // Z applied to each single-bit value
    for (int i = 0; i < 32; ++i) {
      uint32_t c = uint32_t{1} << i;
      for (size_t k = 0; k < kStripe; ++k) c = (c >> 8) ^ kTables[0][c & 0xff];
      basis[i] = c;
    }
    ZeroShift z;
    for (int k = 0; k < 4; ++k) {
      for (uint32_t b = 0; b < 256; ++b) {
        uint32_t v = 0;
        for (int bit = 0; bit < 8; ++bit) {
          if ((b >> bit) & 1) v ^= basis[8 * k + bit];
        }
        z.t[k][b] = v;
      }
    }
    return z;
  }();
  return shift;
}

// Compiled for SSE4.2 whatever the build's -march, and only called after
// the CPU said it has it. Clang 19+ (zig cc) treats the crc32 instruction as
// its own feature that sse4.2 no longer implies for the intrinsics' checks.
__attribute__((target("sse4.2,crc32"))) uint32_t HardwareRaw(uint32_t c32, const uint8_t* p, size_t n) {
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c32 = _mm_crc32_u8(c32, *p++);
    --n;
  }
  if (n >= 3 * kStripe) {
    const ZeroShift& z = StripeShift();
    while (n >= 3 * kStripe) {
      uint64_t a = c32, b = 0, c = 0;
      for (size_t i = 0; i < kStripe; i += 8) {
        uint64_t va, vb, vc;
        std::memcpy(&va, p + i, 8);
        std::memcpy(&vb, p + kStripe + i, 8);
        std::memcpy(&vc, p + 2 * kStripe + i, 8);
        a = _mm_crc32_u64(a, va);
        b = _mm_crc32_u64(b, vb);
        c = _mm_crc32_u64(c, vc);
      }
      c32 = z(z(static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b)) ^ static_cast<uint32_t>(c);
      p += 3 * kStripe;
      n -= 3 * kStripe;
    }
  }
  uint64_t c = c32;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    n -= 8;
  }
  c32 = static_cast<uint32_t>(c);
  while (n-- > 0) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}
bool DetectHardware() { return __builtin_cpu_supports("sse4.2"); }
#elif defined(DS_CRC32C_ARM)
uint32_t HardwareRaw(uint32_t c, const uint8_t* p, size_t n) {
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = __crc32cb(c, *p++);
    --n;
  }
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __crc32cd(c, v);
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = __crc32cb(c, *p++);
  return c;
}
bool DetectHardware() { return true; }
#else
uint32_t HardwareRaw(uint32_t c, const uint8_t* p, size_t n) { return PortableRaw(c, p, n); }
bool DetectHardware() { return false; }
#endif

using RawFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);
const bool kHardware = DetectHardware();
const RawFn kBest = kHardware ? HardwareRaw : PortableRaw;

}  // namespace

bool HardwareAvailable() { return kHardware; }

// The checksum is kept inverted between calls (the standard pre- and
// post-conditioning), which is what makes Extend compose.
uint32_t Extend(uint32_t crc, const void* data, size_t n) {
  return ~kBest(~crc, static_cast<const uint8_t*>(data), n);
}

uint32_t ExtendPortable(uint32_t crc, const void* data, size_t n) {
  return ~PortableRaw(~crc, static_cast<const uint8_t*>(data), n);
}

uint32_t ExtendHardware(uint32_t crc, const void* data, size_t n) {
  const RawFn fn = kHardware ? HardwareRaw : PortableRaw;
  return ~fn(~crc, static_cast<const uint8_t*>(data), n);
}

}  // namespace ds::crc32c
