// PUT (§5.1), HEAD (§5.5), DELETE (§5.4) and request validation.
#include "engine_fixture.h"
#include "offset.h"

namespace ds::testing {
namespace {

using CreateTest = EngineTest;

TEST_F(CreateTest, CreatesWithLocationTypeAndTail) {
  Response r = Put("/v1/stream/a", With(Text(), DS_FIELD_REQUEST_BASE, "http://h:1"), "hello");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(HeaderOf(r, "Location"), "http://h:1/v1/stream/a");
  EXPECT_EQ(HeaderOf(r, "Content-Type"), "text/plain");
  EXPECT_EQ(HeaderOf(r, "Stream-Next-Offset"), EncodeOffset(5));
  EXPECT_EQ(HeaderOf(r, "Stream-Closed"), "<absent>");
  EXPECT_EQ(HeaderOf(r, "X-Content-Type-Options"), "nosniff");
}

TEST_F(CreateTest, DefaultsToOctetStream) {
  EXPECT_EQ(HeaderOf(Put("/v1/stream/a"), "Content-Type"), "application/octet-stream");
}

TEST_F(CreateTest, IdempotentOnSameConfigConflictOtherwise) {
  ASSERT_EQ(Put("/v1/stream/a", With(Text(), DS_FIELD_STREAM_TTL, "3600")).status, 201);
  EXPECT_EQ(Put("/v1/stream/a", With(Text(), DS_FIELD_STREAM_TTL, "3600")).status, 200);
  EXPECT_EQ(Put("/v1/stream/a", {{DS_FIELD_CONTENT_TYPE, "TEXT/Plain; charset=utf-8"},
                                 {DS_FIELD_STREAM_TTL, "3600"}}).status, 200);
  EXPECT_EQ(Put("/v1/stream/a", With(Text(), DS_FIELD_STREAM_TTL, "7200")).status, 409);
  EXPECT_EQ(Put("/v1/stream/a", With(Json(), DS_FIELD_STREAM_TTL, "3600")).status, 409);
  EXPECT_EQ(Put("/v1/stream/a", Text()).status, 409);
}

TEST_F(CreateTest, ClosureStatusTakesPartInTheMatch) {
  ASSERT_EQ(Put("/v1/stream/c", With(Text(), DS_FIELD_STREAM_CLOSED, "true"), "x").status, 201);
  EXPECT_EQ(Put("/v1/stream/c", Text()).status, 409);
  Response again = Put("/v1/stream/c", With(Text(), DS_FIELD_STREAM_CLOSED, "TRUE"));
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(HeaderOf(again, "Stream-Closed"), "true");
  ASSERT_EQ(Put("/v1/stream/o", Text()).status, 201);
  EXPECT_EQ(Put("/v1/stream/o", With(Text(), DS_FIELD_STREAM_CLOSED, "true")).status, 409);
  // Values other than "true" are ignored (§4.1).
  EXPECT_EQ(Put("/v1/stream/o", With(Text(), DS_FIELD_STREAM_CLOSED, "yes")).status, 200);
}

TEST_F(CreateTest, RejectsBadLifetimes) {
  for (const char* ttl : {"abc", "-1", "00060", "+60", "60.5", "1e3", "3.6e3", "", " 60"}) {
    EXPECT_EQ(Put("/v1/stream/t", With(Text(), DS_FIELD_STREAM_TTL, ttl)).status, 400) << ttl;
  }
  EXPECT_EQ(Put("/v1/stream/t", With(Text(), DS_FIELD_STREAM_EXPIRES_AT, "not-a-timestamp")).status,
            400);
  Headers both = With(Text(), DS_FIELD_STREAM_TTL, "60");
  both[DS_FIELD_STREAM_EXPIRES_AT] = "2030-01-01T00:00:00Z";
  EXPECT_EQ(Put("/v1/stream/t", both).status, 400);
  EXPECT_EQ(Put("/v1/stream/t", With(Text(), DS_FIELD_STREAM_EXPIRES_AT,
                                     "2030-01-01T12:34:56.789+00:00")).status, 201);
}

TEST_F(CreateTest, JsonBodyIsValidated) {
  EXPECT_EQ(Put("/v1/stream/j", Json(), "{bad").status, 400);
  EXPECT_EQ(Put("/v1/stream/j", Json(), "[]").status, 201);
  EXPECT_EQ(Get("/v1/stream/j").body, "[]");
}

TEST_F(CreateTest, RefusesUnsafePathsAndReservedPrefix) {
  EXPECT_EQ(Put("/v1/stream/../etc").status, 400);
  EXPECT_EQ(Put("/v1/stream/./x").status, 400);
  EXPECT_EQ(Put(std::string("/v1/stream/a\0b", 14)).status, 400);
  // The reserved prefix goes to the subscription API (§6), never to a
  // stream create: an empty body is an invalid subscription.
  Response reserved = Put("/v1/stream/__ds/subscriptions/x");
  EXPECT_EQ(reserved.status, 400);
  EXPECT_NE(reserved.body.find(R"("field":"body")"), std::string::npos) << reserved.body;
  EXPECT_EQ(Put("/v1/stream/__dsx").status, 201);
}

TEST_F(CreateTest, HeadReportsMetadataWithoutTouchingTtl) {
  ASSERT_EQ(Put("/v1/stream/h", With(Text(), DS_FIELD_STREAM_TTL, "2"), "abc").status, 201);
  Response h = Head("/v1/stream/h");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(HeaderOf(h, "Stream-Ttl"), "2");
  EXPECT_EQ(HeaderOf(h, "Stream-Next-Offset"), EncodeOffset(3));
  EXPECT_EQ(HeaderOf(h, "Cache-Control"), "no-store");
  EXPECT_TRUE(h.body.empty());
  clock_->Advance(1500);
  EXPECT_EQ(Head("/v1/stream/h").status, 200);
  clock_->Advance(600);
  EXPECT_EQ(Head("/v1/stream/h").status, 404);
}

TEST_F(CreateTest, ExpiresAtIsReportedInRfc3339) {
  ASSERT_EQ(Put("/v1/stream/e", With(Text(), DS_FIELD_STREAM_EXPIRES_AT,
                                     "2026-01-01T01:00:00.250+01:00")).status, 201);
  EXPECT_EQ(HeaderOf(Head("/v1/stream/e"), "Stream-Expires-At"), "2026-01-01T00:00:00.250Z");
}

TEST_F(CreateTest, DeleteThenRecreate) {
  ASSERT_EQ(Put("/v1/stream/d", Text(), "old").status, 201);
  EXPECT_EQ(Delete("/v1/stream/d").status, 204);
  EXPECT_EQ(Delete("/v1/stream/d").status, 404);
  EXPECT_EQ(Get("/v1/stream/d").status, 404);
  ASSERT_EQ(Put("/v1/stream/d", Text(), "new").status, 201);
  EXPECT_EQ(Get("/v1/stream/d").body, "new");
}

TEST_F(CreateTest, SlidingTtlResetsOnReadsAndWrites) {
  ASSERT_EQ(Put("/v1/stream/s", With(Text(), DS_FIELD_STREAM_TTL, "2")).status, 201);
  clock_->Advance(1500);
  EXPECT_EQ(Post("/v1/stream/s", Text(), "x").status, 204);
  clock_->Advance(1500);
  EXPECT_EQ(Get("/v1/stream/s", "offset=now").status, 200);
  clock_->Advance(1500);
  EXPECT_EQ(Head("/v1/stream/s").status, 200);
  clock_->Advance(600);
  EXPECT_EQ(Head("/v1/stream/s").status, 404);
}

TEST_F(CreateTest, SweepRemovesExpiredStreamsAndWakesReaders) {
  ASSERT_EQ(Put("/v1/stream/x", With(Text(), DS_FIELD_STREAM_EXPIRES_AT,
                                     "2026-01-01T00:00:03Z")).status, 201);
  Response wait = Get("/v1/stream/x", "offset=now&live=long-poll");
  ASSERT_EQ(wait.live, DS_LIVE_WAIT);
  clock_->Advance(3000);
  engine_->SweepExpired();
  EXPECT_EQ(TakeWoken(), std::vector<uint64_t>{wait.session});
  EXPECT_EQ(engine_->Stats().streams, 0u);
  EXPECT_EQ(engine_->Resume(wait.session, DS_RESUME_WAKE).status, 404);
}

TEST_F(CreateTest, SweepLooksAgainAtAStreamWhoseTtlReadsPushedOn) {
  ASSERT_EQ(Put("/v1/stream/s", With(Text(), DS_FIELD_STREAM_TTL, "2")).status, 201);
  EXPECT_EQ(engine_->Stats().expiring_streams, 1u);
  clock_->Advance(1500);
  ASSERT_EQ(Get("/v1/stream/s", "offset=now").status, 200);
  clock_->Advance(1000);  // past the time it was queued for, not past its TTL
  engine_->SweepExpired();
  EXPECT_EQ(engine_->Stats().streams, 1u);
  EXPECT_EQ(engine_->Stats().expiring_streams, 1u);  // queued again, for later
  clock_->Advance(1000);  // 2 s after the read
  engine_->SweepExpired();
  EXPECT_EQ(engine_->Stats().streams, 0u);
  EXPECT_EQ(engine_->Stats().expiring_streams, 0u);
}

TEST_F(CreateTest, OnlyStreamsThatCanExpireAreQueuedAndDeletionUnqueues) {
  ASSERT_EQ(Put("/v1/stream/plain", Text()).status, 201);
  EXPECT_EQ(engine_->Stats().expiring_streams, 0u);
  ASSERT_EQ(Put("/v1/stream/t", With(Text(), DS_FIELD_STREAM_TTL, "3600")).status, 201);
  ASSERT_EQ(Put("/v1/stream/e", With(Text(), DS_FIELD_STREAM_EXPIRES_AT,
                                     "2026-01-01T00:00:03Z")).status, 201);
  ASSERT_EQ(Put("/v1/stream/f", {{DS_FIELD_STREAM_FORKED_FROM, "/v1/stream/t"}}).status, 201);
  EXPECT_EQ(engine_->Stats().expiring_streams, 3u);  // the fork inherits the TTL
  EXPECT_EQ(Delete("/v1/stream/e").status, 204);
  EXPECT_EQ(Delete("/v1/stream/t").status, 204);  // soft-deleted: the fork reads it
  EXPECT_EQ(engine_->Stats().expiring_streams, 1u);
  clock_->Advance(3600 * 1000);
  engine_->SweepExpired();  // the fork expires, and takes its source along
  EXPECT_EQ(engine_->Stats().streams, 1u);
  EXPECT_EQ(engine_->Stats().expiring_streams, 0u);
  EXPECT_EQ(Head("/v1/stream/plain").status, 200);
}

TEST_F(CreateTest, OptionsPreflightAllowsRequestedHeaders) {
  Response r = Call("OPTIONS", "/v1/stream/none",
                    {{DS_FIELD_ACCESS_CONTROL_REQUEST_HEADERS, "if-none-match"}});
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(HeaderOf(r, "Access-Control-Allow-Headers"), "if-none-match");
  EXPECT_EQ(HeaderOf(r, "Access-Control-Allow-Origin"), "*");
}

TEST_F(CreateTest, UnknownMethodIs405) {
  Response r = Call("PATCH", "/v1/stream/a");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(HeaderOf(r, "Allow"), "GET, HEAD, POST, PUT, DELETE, OPTIONS");
}

}  // namespace
}  // namespace ds::testing
