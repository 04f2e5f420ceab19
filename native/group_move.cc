// Moving a placement group between nodes (README, Scaling): the group's
// streams leave one engine as an export, enter another by import exactly
// as they were (bytes, offsets, producers, Stream-Seq, closure, TTL and
// expiry, forks, soft deletion), and the first engine then forgets them.
//
// The caller (the HTTP layer) makes sure no write to the group is in
// flight while it exports: the export reads committed state only, so a
// write racing with it would simply not be in it.
//
// Export format, version 1 (all integers little-endian):
//   "DSGROUP1"  u64 stream count, then per stream, sources before forks:
//   str path, str content_type, u8 has_ttl, u64 ttl_seconds,
//   u8 has_expires, i64 expires_at_ms, i64 last_access_ms, u8 closed,
//   u8 soft_deleted, str last_stream_seq, u64 source (1-based index of an
//   earlier stream of this export, 0: not a fork), u64 fork_offset,
//   u64 start, u64 tail, u64 producer count, then per producer
//   str producer_id, u64 epoch, u64 last_seq; then the own log's bytes
//   [start, tail) as str. A str is a u64 length and the bytes.
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine.h"

namespace ds {
namespace {

constexpr std::string_view kMagic = "DSGROUP1";
constexpr uint64_t kCopyChunk = 1 << 20;

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU8(std::string* out, bool v) { out->push_back(v ? 1 : 0); }
void PutStr(std::string* out, std::string_view s) {
  PutU64(out, s.size());
  out->append(s);
}

class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool U64(uint64_t* v) {
    if (data_.size() < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= uint64_t(static_cast<unsigned char>(data_[i])) << (8 * i);
    data_.remove_prefix(8);
    return true;
  }
  bool I64(int64_t* v) {
    uint64_t u;
    if (!U64(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool U8(bool* v) {
    if (data_.empty()) return false;
    *v = data_[0] != 0;
    data_.remove_prefix(1);
    return true;
  }
  bool Str(std::string_view* s) {
    uint64_t n;
    if (!U64(&n) || n > data_.size()) return false;
    *s = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  bool Str(std::string* s) {
    std::string_view v;
    if (!Str(&v)) return false;
    s->assign(v);
    return true;
  }
  bool Magic() {
    if (data_.substr(0, kMagic.size()) != kMagic) return false;
    data_.remove_prefix(kMagic.size());
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::string_view data_;
};

struct Imported {
  StreamRecord record;  // id and source_id unused; source_index instead
  uint64_t source_index = 0;
  std::vector<ProducerRecord> producers;
  std::string_view bytes;
};

}  // namespace

// The group's streams (soft-deleted sources included), by id: a fork
// always has a larger id than its source.
std::vector<std::shared_ptr<Stream>> Engine::GroupStreams(const std::string& group) const {
  std::vector<StreamPtr> out;
  {
    std::shared_lock registry(registry_mu_);
    for (const auto& [path, stream] : streams_) {
      if (!stream->deleted && usage_.GroupOf(path) == group) out.push_back(stream);
    }
  }
  std::sort(out.begin(), out.end(), [](const StreamPtr& a, const StreamPtr& b) { return a->id < b->id; });
  return out;
}

Status Engine::ExportGroup(const std::string& group, std::string* out) {
  std::vector<StreamPtr> streams = GroupStreams(group);
  std::unordered_map<uint64_t, uint64_t> index;  // stream id -> 1-based position
  out->assign(kMagic);
  PutU64(out, streams.size());
  for (const StreamPtr& stream : streams) {
    std::lock_guard lock(stream->mu);
    if (stream->deleted) return Status::InvalidArgument("stream " + stream->path + " went away during the export");
    StreamRecord rec = stream->Record();
    uint64_t source = 0;
    if (stream->source) {
      auto it = index.find(stream->source->id);
      if (it == index.end()) {
        return Status::InvalidArgument("stream " + stream->path + " forks " + stream->source->path +
                                       ", which is not in group \"" + group +
                                       "\": a group with forks of other groups cannot move");
      }
      source = it->second;
    }
    // Committed state only (see the file comment).
    const uint64_t tail = stream->tail.load(std::memory_order_acquire);
    const uint64_t start = stream->log->start();
    PutStr(out, rec.path);
    PutStr(out, rec.content_type);
    PutU8(out, rec.ttl_seconds.has_value());
    PutU64(out, rec.ttl_seconds.value_or(0));
    PutU8(out, rec.expires_at_ms.has_value());
    PutU64(out, static_cast<uint64_t>(rec.expires_at_ms.value_or(0)));
    PutU64(out, static_cast<uint64_t>(rec.last_access_ms));
    PutU8(out, stream->closed_visible);
    PutU8(out, rec.soft_deleted);
    PutStr(out, rec.last_stream_seq);
    PutU64(out, source);
    PutU64(out, rec.fork_offset);
    PutU64(out, start);
    PutU64(out, tail);
    PutU64(out, stream->producers.size());
    std::vector<std::pair<std::string, ProducerState>> producers(stream->producers.begin(),
                                                                 stream->producers.end());
    std::sort(producers.begin(), producers.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [id, state] : producers) {
      PutStr(out, id);
      PutU64(out, state.epoch);
      PutU64(out, state.last_seq);
    }
    const uint64_t own_from = std::max(start, rec.fork_offset);
    const uint64_t len = tail > own_from ? tail - own_from : 0;
    PutU64(out, len);
    for (uint64_t at = own_from; at < tail;) {
      const uint64_t n = std::min(kCopyChunk, tail - at);
      Status s = stream->log->Read(at, static_cast<size_t>(n), out);
      if (!s.ok()) return s;
      at += n;
    }
    index[stream->id] = index.size() + 1;
  }
  return Status::OK();
}

Status Engine::ImportStreams(std::string_view data, uint64_t* imported_count) {
  *imported_count = 0;
  Reader in(data);
  uint64_t count = 0;
  if (!in.Magic() || !in.U64(&count)) return Status::InvalidArgument("not a group export (DSGROUP1)");
  std::vector<Imported> items;
  for (uint64_t i = 0; i < count; ++i) {
    Imported it;
    StreamRecord& r = it.record;
    bool has_ttl = false, has_expires = false;
    uint64_t ttl = 0, n_producers = 0;
    int64_t expires = 0;
    bool ok = in.Str(&r.path) && in.Str(&r.content_type) && in.U8(&has_ttl) && in.U64(&ttl) &&
              in.U8(&has_expires) && in.I64(&expires) && in.I64(&r.last_access_ms) &&
              in.U8(&r.closed) && in.U8(&r.soft_deleted) && in.Str(&r.last_stream_seq) &&
              in.U64(&it.source_index) && in.U64(&r.fork_offset) && in.U64(&r.start) &&
              in.U64(&r.tail) && in.U64(&n_producers);
    for (uint64_t p = 0; ok && p < n_producers; ++p) {
      ProducerRecord pr;
      ok = in.Str(&pr.producer_id) && in.U64(&pr.epoch) && in.U64(&pr.last_seq);
      it.producers.push_back(std::move(pr));
    }
    ok = ok && in.Str(&it.bytes);
    if (!ok) return Status::InvalidArgument("group export truncated at stream " + std::to_string(i));
    if (has_ttl) r.ttl_seconds = ttl;
    if (has_expires) r.expires_at_ms = expires;
    if (it.source_index > i) return Status::InvalidArgument("group export: a fork before its source");
    const uint64_t own_from = std::max(r.start, r.fork_offset);
    if (r.tail < own_from || r.tail - own_from != it.bytes.size()) {
      return Status::InvalidArgument("group export: stream " + r.path + " has " +
                                     std::to_string(it.bytes.size()) + " bytes for [" +
                                     std::to_string(own_from) + ", " + std::to_string(r.tail) + ")");
    }
    if (!IsSafeStreamPath(r.path) || IsReservedPath(r.path)) {
      return Status::InvalidArgument("group export: invalid stream path " + r.path);
    }
    items.push_back(std::move(it));
  }
  if (!in.done()) return Status::InvalidArgument("group export: trailing bytes");
  if (auto refused = RefuseWrites()) return Status::IoError("storage failed earlier; writes are refused");

  // Every path must be free: an import never replaces a stream.
  {
    std::shared_lock registry(registry_mu_);
    for (const Imported& it : items) {
      auto found = streams_.find(it.record.path);
      if (found != streams_.end() && !found->second->deleted) {
        return Status::InvalidArgument("stream " + it.record.path + " already exists here");
      }
    }
  }
  // Nothing of a failed import stays: its streams were never registered,
  // and Recover drops segment files no record names.
  std::vector<StreamPtr> made;
  auto abandon = [&](Status failure) {
    for (const StreamPtr& stream : made) {
      std::lock_guard lock(stream->mu);
      stream->deleted = true;
      Uncharge(*stream);
      stream->log->Rewind(stream->log->start());
    }
    return failure;
  };
  const int64_t now_ms = clock_->NowMs();
  for (Imported& it : items) {
    const StreamRecord& r = it.record;
    StreamPtr source = it.source_index ? made[it.source_index - 1] : nullptr;
    uint64_t id;
    {
      std::unique_lock registry(registry_mu_);
      id = next_stream_id_++;
    }
    std::unique_ptr<StreamLog> log;
    // A fork's own log starts at its fork offset; retention may have
    // dropped more, and the copy holds only what is left.
    Status s = store_->CreateLog(id, std::max(r.start, r.fork_offset), &log);
    for (size_t at = 0; s.ok() && at < it.bytes.size(); at += kCopyChunk) {
      s = log->Append(it.bytes.substr(at, kCopyChunk), now_ms);
    }
    if (!s.ok()) return abandon(s);
    StreamConfig config{r.content_type, r.ttl_seconds, r.expires_at_ms};
    auto stream = std::make_shared<Stream>(r.path, id, std::move(config), source, r.fork_offset,
                                           std::move(log));
    {
      std::lock_guard lock(stream->mu);
      stream->closed = stream->closed_visible = r.closed;
      stream->soft_deleted = r.soft_deleted;
      stream->last_stream_seq = r.last_stream_seq;
      stream->last_access_ms = r.last_access_ms;
      for (const ProducerRecord& p : it.producers) {
        stream->producers[p.producer_id] = ProducerState{p.epoch, p.last_seq};
      }
      stream->group = usage_.AdoptStream(r.path);
      stream->charged = stream->log->tail() - stream->log->start();
      usage_.Charge(*stream->group, stream->charged);
    }
    if (source) {
      std::lock_guard source_lock(source->mu);
      ++source->fork_refs;
    }
    made.push_back(stream);
  }
  // One commit for the whole group (the writes to it wait meanwhile): the
  // streams exist here only once it is durable; if it fails, none does.
  if (durable_) {
    std::vector<StreamMutation> batch;
    for (size_t i = 0; i < made.size(); ++i) {
      std::lock_guard lock(made[i]->mu);
      batch.push_back({StreamMutation::Kind::kUpsert, made[i]->Record(), items[i].producers,
                       made[i]->log.get()});
    }
    Status s = Await(Submit(std::move(batch)));
    if (!s.ok()) return abandon(s);
  }
  // The paths were free above; the router sends this group nowhere else
  // while it moves, so nothing created them since.
  {
    std::unique_lock registry(registry_mu_);
    for (const StreamPtr& stream : made) {
      std::lock_guard lock(stream->mu);
      streams_[stream->path] = stream;
      NoteSegments(stream);
      if (!stream->soft_deleted) QueueExpiry(stream);
    }
  }
  *imported_count = made.size();
  return Status::OK();
}

Status Engine::ForgetGroup(const std::string& group, uint64_t* forgotten) {
  *forgotten = 0;
  std::vector<StreamPtr> streams = GroupStreams(group);
  // Forks first, so that each source has no fork left when its turn comes
  // (soft-deleted sources go with their last fork).
  // All removals first, then their commits: they share group commits.
  std::reverse(streams.begin(), streams.end());
  std::vector<Removal> removals;
  for (const StreamPtr& stream : streams) {
    {
      std::lock_guard lock(stream->mu);
      if (stream->deleted) continue;
      // A soft-deleted source is collected with its last fork; one whose
      // forks are elsewhere (another group) stays soft-deleted.
      if (stream->soft_deleted) continue;
    }
    removals.push_back(BeginRemoval(stream));
    ++*forgotten;
  }
  Status first;
  for (Removal& removal : removals) {
    Status s = FinishRemoval(std::move(removal));
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

}  // namespace ds
