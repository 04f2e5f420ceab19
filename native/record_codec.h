// The binary encodings of the store's LMDB keys and values (STORAGE_FORMAT.md
// is the normative description; keep the two in step).
//
// Values start with a format version byte and use fixed-width little-endian
// integers and u32-length-prefixed strings. A later version appends fields
// and bumps the byte; decoders accept every version up to the one they know
// and fill added fields with defaults, and refuse a newer one (Corruption),
// so an old binary never misreads a record written by a newer one.
//
// Keys are big-endian, so LMDB's byte order is numeric order: a cursor walks
// streams by id (sources before their forks) and finds a stream's producers
// as one contiguous key range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"
#include "store.h"

namespace ds {

// Version bytes. StreamRecord version 2 appended `start` (retention),
// version 3 the stream's inline bytes (storage format 6, STORAGE_FORMAT.md
// "Inline streams"); ProducerRecord and producer-bucket values are still at
// version 1.
inline constexpr uint8_t kStreamRecordVersion = 3;
inline constexpr uint8_t kRecordVersion = 1;

// `inline_bytes`: the stream's first bytes kept in its record (version 3;
// empty for a stream without any). Decoding a version 1 or 2 value gives
// none; the view points into `value`.
std::string EncodeStreamRecord(const StreamRecord& record, std::string_view inline_bytes = {});
Status DecodeStreamRecord(std::string_view value, StreamRecord* record, std::string_view* inline_bytes = nullptr);

std::string EncodeProducerRecord(const ProducerRecord& producer);
Status DecodeProducerRecord(std::string_view value, ProducerRecord* producer);

// Several producers whose ids share a bucket key (see ProducerKey).
std::string EncodeProducerBucket(const std::vector<ProducerRecord>& producers);
Status DecodeProducerBucket(std::string_view value, std::vector<ProducerRecord>* producers);

// `streams` database key: the stream id, 8 bytes big-endian.
std::string StreamKey(uint64_t stream_id);
bool ParseStreamKey(std::string_view key, uint64_t* stream_id);

// `producers` database key: stream id (8 bytes big-endian) followed by the
// producer id. LMDB keys are limited to 511 bytes and Producer-Id is client
// input, so an id longer than kMaxInlineProducerId cannot be spelled out:
// its key is the stream id, the id's first kMaxInlineProducerId bytes and an
// 8-byte hash of the whole id, and its value is a bucket holding the full
// records of every long id with that key (collisions are therefore harmless).
// The two key shapes never meet: inline keys are at most 8 + 400 bytes long,
// bucket keys exactly 8 + 400 + 8.
inline constexpr size_t kMaxInlineProducerId = 400;
inline constexpr size_t kProducerBucketKeyBytes = 8 + kMaxInlineProducerId + 8;
std::string ProducerKey(uint64_t stream_id, std::string_view producer_id);
bool IsProducerBucketKey(std::string_view key);
// The first 8 bytes of a producer key; false if the key is shorter.
bool ParseProducerKeyStream(std::string_view key, uint64_t* stream_id);

// `meta` database values: a u64, little-endian.
std::string EncodeU64(uint64_t value);
bool DecodeU64(std::string_view value, uint64_t* out);

}  // namespace ds
