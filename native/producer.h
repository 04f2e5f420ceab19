// Idempotent producers (PROTOCOL.md §5.2.1): the per-(stream, producer)
// epoch/sequence state machine. Pure decisions; the caller serialises calls
// per stream and applies the outcome atomically with the append.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ds {

// JavaScript's Number.MAX_SAFE_INTEGER: epochs and seqs must not exceed it.
inline constexpr uint64_t kMaxProducerNumber = (1ull << 53) - 1;

struct ProducerState {
  uint64_t epoch = 0;
  uint64_t last_seq = 0;  // highest accepted seq in `epoch`
};

struct ProducerClaim {
  std::string id;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  bool operator==(const ProducerClaim&) const = default;
};

enum class ProducerVerdict {
  kAccept,          // append, then store the new state
  kDuplicate,       // already appended: 204, no change
  kStaleEpoch,      // 403 with the current epoch
  kNewEpochBadSeq,  // 400: a new epoch must start at seq 0
  kSequenceGap,     // 409 with expected and received seq
};

struct ProducerDecision {
  ProducerVerdict verdict;
  ProducerState next;         // with kAccept: the state to store
  uint64_t expected_seq = 0;  // with kSequenceGap
};

// `current` is nullopt for a producer the stream has not seen.
ProducerDecision DecideProducer(const std::optional<ProducerState>& current,
                                uint64_t epoch, uint64_t seq);

// Parses a Producer-Epoch / Producer-Seq value: decimal digits only, no sign,
// at most kMaxProducerNumber.
std::optional<uint64_t> ParseProducerNumber(std::string_view text);

}  // namespace ds
