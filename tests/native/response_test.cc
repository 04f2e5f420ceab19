// Response: header order, repeats and the ds_response header block.
#include <string>

#include <gtest/gtest.h>

#include "response.h"

namespace ds {
namespace {

TEST(ResponseTest, SetKeepsOrderAndRepeatsPastTheReservedRoom) {
  Response r;
  const size_t n = Response::kReservedHeaders + 5;
  for (size_t i = 0; i < n; ++i) {
    r.Set(i % 2 == 0 ? header::kStreamCursor : header::kETag, std::to_string(i));
  }
  ASSERT_EQ(r.headers.size(), n);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(r.headers[i].first, i % 2 == 0 ? header::kStreamCursor : header::kETag);
    EXPECT_EQ(r.headers[i].second, std::to_string(i));
  }
}

TEST(ResponseTest, EncodeHeadersIsNamesAndValuesNulTerminated) {
  Response r;
  EXPECT_EQ(EncodeHeaders(r), "");
  r.Set(header::kContentType, "text/plain").Set(header::kStreamUpToDate, "");
  using namespace std::string_literals;
  EXPECT_EQ(EncodeHeaders(r), "Content-Type\0text/plain\0Stream-Up-To-Date\0\0"s);
}

TEST(ResponseTest, MovedFromResponseCanBeReused) {
  Response a;
  a.Set(header::kETag, "\"1:0:5\"");
  Response b = std::move(a);
  a = Response();
  a.Set(header::kAllow, "GET");
  ASSERT_EQ(a.headers.size(), 1u);
  EXPECT_EQ(a.headers[0].second, "GET");
  ASSERT_EQ(b.headers.size(), 1u);
  EXPECT_EQ(b.headers[0].second, "\"1:0:5\"");
}

}  // namespace
}  // namespace ds
