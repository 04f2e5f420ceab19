#include "offset.h"

#include <gtest/gtest.h>

namespace ds {
namespace {

TEST(Offset, EncodesTwoFixedWidthFields) {
  EXPECT_EQ(EncodeOffset(0), "0000000000000000_0000000000000000");
  EXPECT_EQ(EncodeOffset(42), "0000000000000000_0000000000000042");
  EXPECT_EQ(EncodeOffset(kMaxOffsetPosition), "0000000000000000_9999999999999999");
}

TEST(Offset, StringOrderIsPositionOrder) {
  uint64_t positions[] = {0, 1, 9, 10, 99, 100, 12345, 1000000007};
  for (uint64_t a : positions) {
    for (uint64_t b : positions) {
      EXPECT_EQ(EncodeOffset(a) < EncodeOffset(b), a < b) << a << " vs " << b;
    }
  }
}

TEST(Offset, RoundTrips) {
  for (uint64_t p : {uint64_t{0}, uint64_t{1}, uint64_t{77}, uint64_t{4294967296}, kMaxOffsetPosition}) {
    EXPECT_EQ(DecodeOffset(EncodeOffset(p)), p);
  }
}

TEST(Offset, RejectsAnythingElse) {
  for (const char* bad : {"", "-1", "now", "0", "0,1", "0 1",
                          "0000000000000000-0000000000000000",
                          "0000000000000000_000000000000000",
                          "0000000000000000_00000000000000000",
                          "000000000000000a_0000000000000000",
                          " 0000000000000000_000000000000000",
                          "0000000000000000_000000000000000\n"}) {
    EXPECT_FALSE(DecodeOffset(bad).has_value()) << '"' << bad << '"';
  }
}

TEST(Offset, ForeignReservedFieldIsBeyondAnyTail) {
  EXPECT_EQ(DecodeOffset("9999999999999999_9999999999999999"), UINT64_MAX);
}

}  // namespace
}  // namespace ds
