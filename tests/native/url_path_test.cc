// Percent-encoding of paths echoed in headers (Location), and the answers to
// bodies the HTTP layer refused to read (413, 503).
#include <string>

#include <gtest/gtest.h>

#include "engine_fixture.h"
#include "url_path.h"

namespace ds::testing {
namespace {

// Decodes %XX as a server decodes a request path (no '+' rule in paths).
std::string DecodePath(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

TEST(EncodePathTest, KeepsPathCharactersRaw) {
  EXPECT_EQ(EncodePath("/v1/stream/a-b.c_d~e"), "/v1/stream/a-b.c_d~e");
  EXPECT_EQ(EncodePath("/v1/stream/x:y@z!$&'()*+,;="), "/v1/stream/x:y@z!$&'()*+,;=");
  EXPECT_EQ(EncodePath(""), "");
}

TEST(EncodePathTest, EncodesWhatWouldChangeTheTarget) {
  EXPECT_EQ(EncodePath("/u/q?x"), "/u/q%3Fx");
  EXPECT_EQ(EncodePath("/u/a#b"), "/u/a%23b");
  EXPECT_EQ(EncodePath("/u/100%"), "/u/100%25");
  EXPECT_EQ(EncodePath("/u/%25"), "/u/%2525");
  EXPECT_EQ(EncodePath("/u/a b"), "/u/a%20b");
  EXPECT_EQ(EncodePath("/u/\"<>\\^`{|}"), "/u/%22%3C%3E%5C%5E%60%7B%7C%7D");
  EXPECT_EQ(EncodePath(std::string_view("/u/\x7f\x01", 5)), "/u/%7F%01");
}

TEST(EncodePathTest, NoLineBreakOrNulSurvives) {
  std::string encoded = EncodePath(std::string_view("/u/a\r\nSet-Cookie: x\0y", 21));
  EXPECT_EQ(encoded, "/u/a%0D%0ASet-Cookie:%20x%00y");
  EXPECT_EQ(encoded.find_first_of(std::string_view("\r\n\0 ", 4)), std::string::npos);
}

TEST(EncodePathTest, EncodesUtf8ByteByByte) {
  EXPECT_EQ(EncodePath("/u/caf\xC3\xA9/\xE2\x82\xAC"), "/u/caf%C3%A9/%E2%82%AC");
}

TEST(EncodePathTest, DecodingGivesThePathBack) {
  std::string all = "/";
  for (int c = 1; c < 256; ++c) all.push_back(static_cast<char>(c));
  all.push_back('\0');
  EXPECT_EQ(DecodePath(EncodePath(all)), all);
}

using BodyRefusalTest = EngineTest;

TEST_F(BodyRefusalTest, LocationIsEncoded) {
  Response r = Put("/v1/stream/q?x #%\r\n\xC3\xA9", With(Text(), DS_FIELD_REQUEST_BASE, "http://h:1"));
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(HeaderOf(r, "Location"), "http://h:1/v1/stream/q%3Fx%20%23%25%0D%0A%C3%A9");
}

class UnreadBodyTest : public EngineTest {
 protected:
  Response Refused(std::string_view method, bool too_large, bool over_budget) {
    Request r;
    r.method = method;
    r.path = "/v1/stream/s";
    r.fields[DS_FIELD_CONTENT_TYPE] = "text/plain";
    r.body_too_large = too_large;
    r.body_over_budget = over_budget;
    return engine_->Handle(r, ++next_session_);
  }
};

TEST_F(UnreadBodyTest, TooLargePutCreatesNothing) {
  Response r = Refused("PUT", true, false);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.body, "request body exceeds the server's append size limit (67108864 bytes)\n");
  EXPECT_EQ(Head("/v1/stream/s").status, 404);
}

TEST_F(UnreadBodyTest, OverBudgetIsShedWithRetryAfter) {
  for (std::string_view method : {"PUT", "POST"}) {
    SCOPED_TRACE(method);
    Response r = Refused(method, false, true);
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(HeaderOf(r, "Retry-After"), "1");
    EXPECT_EQ(HeaderOf(r, "Content-Type"), "text/plain; charset=utf-8");
    EXPECT_EQ(r.body, "the server is receiving too many request bodies at once; retry later\n");
    EXPECT_EQ(HeaderOf(r, "Access-Control-Allow-Origin"), "*");
  }
  EXPECT_EQ(Head("/v1/stream/s").status, 404);
  ASSERT_EQ(Put("/v1/stream/s", Text()).status, 201);
  EXPECT_EQ(Refused("POST", false, true).status, 503);
  EXPECT_EQ(Refused("POST", true, false).status, 413);
  EXPECT_EQ(HeaderOf(Head("/v1/stream/s"), "Stream-Next-Offset"), HeaderOf(Put("/v1/stream/s", Text()), "Stream-Next-Offset"));
}

}  // namespace
}  // namespace ds::testing
