// CRC32C (Castagnoli, the polynomial of iSCSI, ext4 metadata and SSE4.2's
// crc32 instruction): the checksum over segment bytes (STORAGE_FORMAT.md,
// "Checksums").
//
// Extend(crc, data) continues a checksum: Extend(Extend(0, a), b) equals
// Extend(0, a + b), so the last block of a stream is checksummed
// incrementally as appends arrive, without reading it back. Value(x) is
// Extend(0, x); Value("123456789") is 0xE3069283.
//
// The hardware path (x86-64 SSE4.2, chosen at run time; arm64 CRC
// instructions where the compiler targets them) and the table-driven one
// give identical results; Extend picks the fastest the CPU has.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ds::crc32c {

uint32_t Extend(uint32_t crc, const void* data, size_t n);
inline uint32_t Extend(uint32_t crc, std::string_view bytes) {
  return Extend(crc, bytes.data(), bytes.size());
}
inline uint32_t Value(std::string_view bytes) { return Extend(0, bytes); }

// For tests and benchmarks: each implementation on its own.
uint32_t ExtendPortable(uint32_t crc, const void* data, size_t n);
// Whether this CPU (and this build) has the hardware path; when false,
// ExtendHardware is the portable one.
bool HardwareAvailable();
uint32_t ExtendHardware(uint32_t crc, const void* data, size_t n);

}  // namespace ds::crc32c
