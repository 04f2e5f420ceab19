#include "expiry_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "stream.h"
#include "stream_log.h"

namespace ds::testing {
namespace {

std::shared_ptr<Stream> MakeStream(uint64_t id) {
  return std::make_shared<Stream>("/s/" + std::to_string(id), id, StreamConfig{"text/plain", {}, {}},
                                  nullptr, 0, std::make_unique<MemoryStreamLog>(0));
}

std::vector<uint64_t> Ids(const std::vector<std::shared_ptr<Stream>>& streams) {
  std::vector<uint64_t> ids;
  for (const auto& s : streams) ids.push_back(s->id);
  return ids;
}

TEST(ExpiryQueueTest, TakesOnlyWhatIsDueEarliestFirst) {
  ExpiryQueue q;
  auto a = MakeStream(1), b = MakeStream(2), c = MakeStream(3);
  q.Schedule(b, 200);
  q.Schedule(c, 300);
  q.Schedule(a, 100);
  EXPECT_TRUE(q.TakeDue(99).empty());
  EXPECT_EQ(Ids(q.TakeDue(200)), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(a->expiry_slot, Stream::kNotQueued);
  EXPECT_EQ(c->expiry_slot, 0u);
  EXPECT_EQ(Ids(q.TakeDue(1000)), (std::vector<uint64_t>{3}));
  EXPECT_EQ(q.size(), 0u);
}

TEST(ExpiryQueueTest, SchedulingAQueuedStreamMovesIt) {
  ExpiryQueue q;
  auto a = MakeStream(1), b = MakeStream(2);
  q.Schedule(a, 100);
  q.Schedule(b, 200);
  q.Schedule(a, 300);  // later: a read pushed its sliding TTL
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(Ids(q.TakeDue(250)), (std::vector<uint64_t>{2}));
  q.Schedule(a, 50);  // earlier
  EXPECT_EQ(Ids(q.TakeDue(60)), (std::vector<uint64_t>{1}));
}

TEST(ExpiryQueueTest, EraseForgetsTheStreamAndItsReference) {
  ExpiryQueue q;
  auto a = MakeStream(1), b = MakeStream(2);
  q.Schedule(a, 100);
  q.Schedule(b, 200);
  EXPECT_EQ(a.use_count(), 2);
  q.Erase(*a);
  EXPECT_EQ(a.use_count(), 1);  // a deleted stream is not kept alive here
  EXPECT_EQ(a->expiry_slot, Stream::kNotQueued);
  q.Erase(*a);  // not queued: nothing happens
  EXPECT_EQ(Ids(q.TakeDue(1000)), (std::vector<uint64_t>{2}));
}

// Random schedules, moves, erases and takes against a plain ordered map: the
// heap and every stream's recorded slot stay right.
TEST(ExpiryQueueTest, AgreesWithAnOrderedModel) {
  std::mt19937_64 rng(7);
  ExpiryQueue q;
  std::vector<std::shared_ptr<Stream>> streams;
  for (uint64_t id = 1; id <= 200; ++id) streams.push_back(MakeStream(id));
  std::map<uint64_t, int64_t> model;  // id -> due
  int64_t now = 0;
  for (int step = 0; step < 20000; ++step) {
    auto& s = streams[rng() % streams.size()];
    switch (rng() % 4) {
      case 0:
      case 1: {
        int64_t due = now + static_cast<int64_t>(rng() % 1000);
        q.Schedule(s, due);
        model[s->id] = due;
        break;
      }
      case 2:
        q.Erase(*s);
        model.erase(s->id);
        break;
      case 3: {
        now += static_cast<int64_t>(rng() % 50);
        std::vector<std::shared_ptr<Stream>> taken = q.TakeDue(now);
        std::map<uint64_t, int64_t> want;  // the model's due streams
        for (auto it = model.begin(); it != model.end();) {
          if (it->second <= now) {
            want.insert(*it);
            it = model.erase(it);
          } else {
            ++it;
          }
        }
        ASSERT_EQ(taken.size(), want.size()) << "step " << step;
        int64_t last = INT64_MIN;
        std::vector<uint64_t> got_ids, want_ids;
        for (const auto& t : taken) {
          ASSERT_EQ(want.count(t->id), 1u) << "step " << step << ": took " << t->id;
          ASSERT_LE(last, want[t->id]) << "step " << step << ": not earliest first";
          last = want[t->id];
          got_ids.push_back(t->id);
        }
        for (const auto& [id, due] : want) want_ids.push_back(id);
        std::sort(got_ids.begin(), got_ids.end());
        ASSERT_EQ(got_ids, want_ids) << "step " << step;
        break;
      }
    }
    ASSERT_EQ(q.size(), model.size());
  }
  for (const auto& s : streams) {
    EXPECT_EQ(s->expiry_slot == Stream::kNotQueued, model.count(s->id) == 0) << s->id;
  }
}

}  // namespace
}  // namespace ds::testing
