#include "producer.h"

namespace ds {

ProducerDecision DecideProducer(const std::optional<ProducerState>& current,
                                uint64_t epoch, uint64_t seq) {
  if (!current) {
    // A producer's first request must open its session at seq 0, whatever
    // epoch it declares.
    if (seq != 0) return {ProducerVerdict::kSequenceGap, {}, 0};
    return {ProducerVerdict::kAccept, {epoch, 0}, 0};
  }
  if (epoch < current->epoch) return {ProducerVerdict::kStaleEpoch, *current, 0};
  if (epoch > current->epoch) {
    if (seq != 0) return {ProducerVerdict::kNewEpochBadSeq, *current, 0};
    return {ProducerVerdict::kAccept, {epoch, 0}, 0};
  }
  if (seq <= current->last_seq) return {ProducerVerdict::kDuplicate, *current, 0};
  if (seq == current->last_seq + 1) {
    return {ProducerVerdict::kAccept, {epoch, seq}, 0};
  }
  return {ProducerVerdict::kSequenceGap, *current, current->last_seq + 1};
}

std::optional<uint64_t> ParseProducerNumber(std::string_view text) {
  if (text.empty() || text.size() > 16) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (value > kMaxProducerNumber) return std::nullopt;
  return value;
}

}  // namespace ds
