// CRC32C: known vectors, the hardware path against the table, and the
// incremental extension the segment log relies on.
#include "crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace ds {
namespace {

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(crc32c::Value(""), 0u);
  EXPECT_EQ(crc32c::Value("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c::Value("a"), 0xC1D04330u);
  // RFC 3720 (iSCSI), B.4: 32 bytes of zeros, of 0xff, ascending, descending.
  EXPECT_EQ(crc32c::Value(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c::Value(std::string(32, '\xff')), 0x62A8AB43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(crc32c::Value(up), 0x46DD794Eu);
  EXPECT_EQ(crc32c::Value(down), 0x113FDB5Cu);
  EXPECT_EQ(crc32c::ExtendPortable(0, "123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c::ExtendHardware(0, "123456789", 9), 0xE3069283u);
}

TEST(Crc32cTest, HardwareMatchesTableOnRandomData) {
  std::printf("[ crc32c ] hardware path: %s\n", crc32c::HardwareAvailable() ? "yes" : "no (table)");
  std::mt19937_64 rng(19);
  std::string data(256 << 10, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  // Every length and misalignment near the 8-byte steps, then big ones.
  for (size_t offset = 0; offset < 9; ++offset) {
    for (size_t len = 0; len < 80; ++len) {
      const char* p = data.data() + offset;
      ASSERT_EQ(crc32c::ExtendHardware(7, p, len), crc32c::ExtendPortable(7, p, len))
          << "offset " << offset << " len " << len;
    }
  }
  for (int i = 0; i < 20; ++i) {
    const size_t offset = rng() % 4096, len = rng() % (data.size() - offset);
    ASSERT_EQ(crc32c::ExtendHardware(0, data.data() + offset, len),
              crc32c::ExtendPortable(0, data.data() + offset, len));
  }
}

TEST(Crc32cTest, ExtendingPieceByPieceEqualsTheWhole) {
  std::mt19937_64 rng(7);
  std::string data(200000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  const uint32_t whole = crc32c::Value(data);
  for (int round = 0; round < 20; ++round) {
    uint32_t crc = 0;
    size_t pos = 0;
    while (pos < data.size()) {
      const size_t n = std::min<size_t>(data.size() - pos, 1 + rng() % 9000);
      crc = crc32c::Extend(crc, std::string_view(data).substr(pos, n));
      pos += n;
    }
    ASSERT_EQ(crc, whole);
  }
  // A single flipped bit changes it.
  data[12345] ^= 0x10;
  EXPECT_NE(crc32c::Value(data), whole);
}

}  // namespace
}  // namespace ds
