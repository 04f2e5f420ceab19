// Placement group moves (group_move.cc): an export imported into another
// engine serves the same streams exactly; forget deletes them.
#include "engine_fixture.h"
#include "offset.h"

namespace ds::testing {
namespace {

class GroupMoveTest : public EngineTest {
 protected:
  // Runs `fn` against the other engine (the move's target).
  template <typename Fn>
  auto OnTarget(Fn fn) {
    std::swap(engine_, target_);
    auto result = fn();
    std::swap(engine_, target_);
    return result;
  }
  ~GroupMoveTest() override { target_.reset(); }

  std::unique_ptr<Engine> target_ = std::make_unique<Engine>(
      [] {
        EngineOptions o;
        o.sweep_interval_ms = 0;
        return o;
      }(),
      clock_, RecordWakes());
};

struct Seen {
  int status;
  std::string body, next, closed, ttl, expires, type;
  bool operator==(const Seen&) const = default;
};

TEST_F(GroupMoveTest, ImportServesTheSameStreams) {
  const std::string g = "/v1/stream/g/";
  ASSERT_EQ(Put(g + "plain", Text(), "hello").status, 201);
  Headers producer = With(With(With(Text(), DS_FIELD_PRODUCER_ID, "w"), DS_FIELD_PRODUCER_EPOCH, "2"),
                          DS_FIELD_PRODUCER_SEQ, "0");
  ASSERT_EQ(Post(g + "plain", producer, " world").status, 200);
  ASSERT_EQ(Put(g + "closed", With(Text(), DS_FIELD_STREAM_CLOSED, "true"), "done").status, 201);
  ASSERT_EQ(Put(g + "ttl", With(Text(), DS_FIELD_STREAM_TTL, "60"), "t").status, 201);
  ASSERT_EQ(Put(g + "json", Json(), R"([{"a":1},{"b":2}])").status, 201);
  ASSERT_EQ(Put(g + "fork", With({}, DS_FIELD_STREAM_FORKED_FROM, g + "plain")).status, 201);
  ASSERT_EQ(Post(g + "fork", Text(), "!").status, 204);
  ASSERT_EQ(Put(g + "gone-src", Text(), "abc").status, 201);
  ASSERT_EQ(Put(g + "gone-fork", With({}, DS_FIELD_STREAM_FORKED_FROM, g + "gone-src")).status, 201);
  ASSERT_EQ(Delete(g + "gone-src").status, 204);  // soft-deleted: its fork reads it
  ASSERT_EQ(Put("/v1/stream/other/x", Text(), "not moved").status, 201);

  const std::vector<std::string> paths = {"plain", "closed", "ttl", "json", "fork", "gone-src", "gone-fork"};
  auto look = [&](const std::string& p) {
    Response r = Get(g + p, "offset=-1");
    Response h = Head(g + p);
    return Seen{r.status, r.body, HeaderOf(r, "Stream-Next-Offset"), HeaderOf(h, "Stream-Closed"),
                HeaderOf(h, "Stream-TTL"), HeaderOf(h, "Stream-Expires-At"), HeaderOf(h, "Content-Type")};
  };
  std::map<std::string, Seen> before;
  for (const auto& p : paths) before[p] = look(p);
  EXPECT_EQ(before["gone-fork"].body, "abc");

  std::string data;
  ASSERT_TRUE(engine_->ExportGroup("g", &data).ok());
  uint64_t n = 0;
  Status s = target_->ImportStreams(data, &n);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(n, 7u);
  for (const auto& p : paths) {
    EXPECT_EQ(OnTarget([&] { return look(p); }), before[p]) << p;
  }
  EXPECT_EQ(OnTarget([&] { return Get("/v1/stream/other/x").status; }), 404);
  // Producer state came along: the same seq is a duplicate, an older
  // epoch is fenced, the next seq appends.
  EXPECT_EQ(OnTarget([&] { return Post(g + "plain", producer, " world").status; }), 204);
  EXPECT_EQ(OnTarget([&] {
              return Post(g + "plain", With(producer, DS_FIELD_PRODUCER_EPOCH, "1"), "x").status;
            }),
            403);
  EXPECT_EQ(OnTarget([&] { return Post(g + "plain", With(producer, DS_FIELD_PRODUCER_SEQ, "1"), "!").status; }),
            200);
  EXPECT_EQ(OnTarget([&] { return Post(g + "closed", Text(), "x").status; }), 409);
  // The soft-deleted source stays out of reach and goes with its fork.
  EXPECT_EQ(OnTarget([&] { return Put(g + "f2", With({}, DS_FIELD_STREAM_FORKED_FROM, g + "gone-src")).status; }),
            409);

  // Importing again: every path exists, nothing is added.
  s = target_->ImportStreams(data, &n);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(n, 0u);
  EXPECT_FALSE(target_->ImportStreams("DSGROUP1garbage", &n).ok());

  uint64_t forgotten = 0;
  ASSERT_TRUE(engine_->ForgetGroup("g", &forgotten).ok());
  EXPECT_EQ(forgotten, 6u);  // the soft-deleted source went with its fork
  for (const auto& p : paths) EXPECT_EQ(Head(g + p).status, 404) << p;
  EXPECT_EQ(Get("/v1/stream/other/x").body, "not moved");
  ASSERT_TRUE(engine_->ExportGroup("g", &data).ok());
  EXPECT_EQ(data.size(), 16u);  // an empty export: magic and a zero count
}

TEST_F(GroupMoveTest, AForkOfAnotherGroupCannotMove) {
  ASSERT_EQ(Put("/v1/stream/a/src", Text(), "x").status, 201);
  ASSERT_EQ(Put("/v1/stream/b/fork", With({}, DS_FIELD_STREAM_FORKED_FROM, "/v1/stream/a/src")).status, 201);
  std::string data;
  Status s = engine_->ExportGroup("b", &data);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not in group \"b\""), std::string::npos) << s.message();
}

}  // namespace
}  // namespace ds::testing
