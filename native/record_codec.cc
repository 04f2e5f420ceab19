#include "record_codec.h"

namespace ds {
namespace {

// StreamRecord flag bits (version 1).
constexpr uint8_t kHasTtl = 1 << 0;
constexpr uint8_t kHasExpiresAt = 1 << 1;
constexpr uint8_t kClosed = 1 << 2;
constexpr uint8_t kSoftDeleted = 1 << 3;
constexpr uint8_t kKnownFlags = kHasTtl | kHasExpiresAt | kClosed | kSoftDeleted;

void PutU8(std::string* out, uint8_t v) { out->push_back(static_cast<char>(v)); }

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutString(std::string* out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

// Reads fields front to back; any read past the end fails, and the caller
// reports Corruption once instead of checking every field.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool U8(uint8_t* v) {
    if (in_.empty()) return false;
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool U32(uint32_t* v) {
    if (in_.size() < 4) return false;
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) r |= static_cast<uint32_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(4);
    *v = r;
    return true;
  }
  bool U64(uint64_t* v) {
    if (in_.size() < 8) return false;
    uint64_t r = 0;
    for (int i = 0; i < 8; ++i) r |= static_cast<uint64_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(8);
    *v = r;
    return true;
  }
  bool I64(int64_t* v) {
    uint64_t u;
    if (!U64(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool String(std::string* s) {
    uint32_t n;
    if (!U32(&n) || in_.size() < n) return false;
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  // A u32-length-prefixed field as a view into the input.
  bool View(std::string_view* s) {
    uint32_t n;
    if (!U32(&n) || in_.size() < n) return false;
    *s = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

Status BadValue(const char* what) {
  return Status::Corruption(std::string("malformed ") + what + " value in streams.db");
}

Status CheckVersion(uint8_t version, const char* what, uint8_t known = kRecordVersion) {
  if (version == 0) return BadValue(what);
  if (version > known) {
    return Status::Corruption(std::string(what) + " value has format version " +
                              std::to_string(version) + ", newer than this server (" +
                              std::to_string(known) + "); upgrade the server");
  }
  return Status::OK();
}

void PutProducerFields(std::string* out, const ProducerRecord& p) {
  PutString(out, p.producer_id);
  PutU64(out, p.epoch);
  PutU64(out, p.last_seq);
}

bool ReadProducerFields(Reader* r, ProducerRecord* p) {
  return r->String(&p->producer_id) && r->U64(&p->epoch) && r->U64(&p->last_seq);
}

// FNV-1a, 64 bits: spreads long producer ids over bucket keys. Not a
// security boundary: a collision only puts two ids in one bucket.
uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  return h;
}

void PutBigEndian64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t ReadBigEndian64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

}  // namespace

std::string EncodeStreamRecord(const StreamRecord& r, std::string_view inline_bytes) {
  std::string out;
  out.reserve(1 + 8 + 1 + 8 * 8 + 16 + r.path.size() + r.content_type.size() +
              r.last_stream_seq.size() + inline_bytes.size());
  PutU8(&out, kStreamRecordVersion);
  PutU64(&out, r.id);
  uint8_t flags = 0;
  if (r.ttl_seconds) flags |= kHasTtl;
  if (r.expires_at_ms) flags |= kHasExpiresAt;
  if (r.closed) flags |= kClosed;
  if (r.soft_deleted) flags |= kSoftDeleted;
  PutU8(&out, flags);
  PutU64(&out, r.ttl_seconds.value_or(0));
  PutU64(&out, static_cast<uint64_t>(r.expires_at_ms.value_or(0)));
  PutU64(&out, static_cast<uint64_t>(r.last_access_ms));
  PutU64(&out, r.tail);
  PutU64(&out, r.source_id);
  PutU64(&out, r.fork_offset);
  PutString(&out, r.path);
  PutString(&out, r.content_type);
  PutString(&out, r.last_stream_seq);
  PutU64(&out, r.start);            // version 2
  PutString(&out, inline_bytes);    // version 3
  return out;
}

Status DecodeStreamRecord(std::string_view value, StreamRecord* r, std::string_view* inline_bytes) {
  Reader in(value);
  uint8_t version = 0, flags = 0;
  if (!in.U8(&version)) return BadValue("stream");
  Status s = CheckVersion(version, "stream", kStreamRecordVersion);
  if (!s.ok()) return s;
  StreamRecord out;
  uint64_t ttl = 0;
  int64_t expires = 0;
  if (!in.U64(&out.id) || !in.U8(&flags) || !in.U64(&ttl) || !in.I64(&expires) ||
      !in.I64(&out.last_access_ms) || !in.U64(&out.tail) || !in.U64(&out.source_id) ||
      !in.U64(&out.fork_offset) || !in.String(&out.path) || !in.String(&out.content_type) ||
      !in.String(&out.last_stream_seq) || (flags & ~kKnownFlags) != 0) {
    return BadValue("stream");
  }
  out.start = out.fork_offset;  // version 1 had no retention
  std::string_view inline_view;  // versions 1 and 2 have none
  if ((version >= 2 && !in.U64(&out.start)) || (version >= 3 && !in.View(&inline_view)) || !in.done()) {
    return BadValue("stream");
  }
  if (inline_bytes != nullptr) *inline_bytes = inline_view;
  if (flags & kHasTtl) out.ttl_seconds = ttl;
  if (flags & kHasExpiresAt) out.expires_at_ms = expires;
  out.closed = (flags & kClosed) != 0;
  out.soft_deleted = (flags & kSoftDeleted) != 0;
  *r = std::move(out);
  return Status::OK();
}

std::string EncodeProducerRecord(const ProducerRecord& p) {
  std::string out;
  out.reserve(1 + 4 + p.producer_id.size() + 16);
  PutU8(&out, kRecordVersion);
  PutProducerFields(&out, p);
  return out;
}

Status DecodeProducerRecord(std::string_view value, ProducerRecord* p) {
  Reader in(value);
  uint8_t version = 0;
  if (!in.U8(&version)) return BadValue("producer");
  Status s = CheckVersion(version, "producer");
  if (!s.ok()) return s;
  ProducerRecord out;
  if (!ReadProducerFields(&in, &out) || !in.done()) return BadValue("producer");
  *p = std::move(out);
  return Status::OK();
}

std::string EncodeProducerBucket(const std::vector<ProducerRecord>& producers) {
  std::string out;
  PutU8(&out, kRecordVersion);
  PutU32(&out, static_cast<uint32_t>(producers.size()));
  for (const ProducerRecord& p : producers) PutProducerFields(&out, p);
  return out;
}

Status DecodeProducerBucket(std::string_view value, std::vector<ProducerRecord>* producers) {
  Reader in(value);
  uint8_t version = 0;
  uint32_t count = 0;
  if (!in.U8(&version)) return BadValue("producer bucket");
  Status s = CheckVersion(version, "producer bucket");
  if (!s.ok()) return s;
  if (!in.U32(&count)) return BadValue("producer bucket");
  std::vector<ProducerRecord> out;
  for (uint32_t i = 0; i < count; ++i) {
    ProducerRecord p;
    if (!ReadProducerFields(&in, &p)) return BadValue("producer bucket");
    out.push_back(std::move(p));
  }
  if (!in.done()) return BadValue("producer bucket");
  *producers = std::move(out);
  return Status::OK();
}

std::string StreamKey(uint64_t stream_id) {
  std::string out;
  PutBigEndian64(&out, stream_id);
  return out;
}

bool ParseStreamKey(std::string_view key, uint64_t* stream_id) {
  if (key.size() != 8) return false;
  *stream_id = ReadBigEndian64(key);
  return true;
}

std::string ProducerKey(uint64_t stream_id, std::string_view producer_id) {
  std::string out;
  PutBigEndian64(&out, stream_id);
  if (producer_id.size() <= kMaxInlineProducerId) {
    out.append(producer_id);
    return out;
  }
  out.append(producer_id.substr(0, kMaxInlineProducerId));
  PutBigEndian64(&out, Fnv1a64(producer_id));
  return out;
}

bool IsProducerBucketKey(std::string_view key) { return key.size() == kProducerBucketKeyBytes; }

bool ParseProducerKeyStream(std::string_view key, uint64_t* stream_id) {
  if (key.size() < 8) return false;
  *stream_id = ReadBigEndian64(key);
  return true;
}

std::string EncodeU64(uint64_t value) {
  std::string out;
  PutU64(&out, value);
  return out;
}

bool DecodeU64(std::string_view value, uint64_t* out) {
  Reader in(value);
  return in.U64(out) && in.done();
}

}  // namespace ds
