#include "stream.h"

#include <algorithm>

#include "content_type.h"

namespace ds {

Stream::Stream(std::string path_in, uint64_t id_in, StreamConfig config_in,
               std::shared_ptr<Stream> source_in, uint64_t fork_offset_in,
               std::unique_ptr<StreamLog> log_in)
    : path(std::move(path_in)),
      id(id_in),
      config(std::move(config_in)),
      json(IsJsonMediaType(config.content_type)),
      sse_text(IsSseTextType(config.content_type)),
      source(std::move(source_in)),
      fork_offset(fork_offset_in),
      log(std::move(log_in)),
      tail(log->tail()),
      retained_start(log->start()) {}

uint64_t Stream::EarliestOffset() const {
  const uint64_t own = log->start();
  if (source && own <= fork_offset) return std::min(source->EarliestOffset(), fork_offset);
  return own;
}

std::optional<int64_t> Stream::ExpiryDeadline() const {
  std::optional<int64_t> deadline = config.expires_at_ms;
  if (config.ttl_seconds) {
    const int64_t sliding = last_access_ms + static_cast<int64_t>(*config.ttl_seconds) * 1000;
    if (!deadline || sliding < *deadline) deadline = sliding;
  }
  return deadline;
}

bool Stream::ExpiredAt(int64_t now_ms) const {
  const std::optional<int64_t> deadline = ExpiryDeadline();
  return deadline && now_ms >= *deadline;
}

Status Stream::ReadRange(uint64_t from, uint64_t to, std::string* out) const {
  if (from >= to) return Status::OK();
  if (from < EarliestOffset()) {
    return Status::Gone("offset " + std::to_string(from) + " of " + path +
                        " is before the earliest retained offset");
  }
  // Only a store that lost bytes (a power loss under fsync interval/off, or
  // damaged files) leaves a committed range past a log's end. Say so rather
  // than serve other bytes at those positions.
  if (to > log->tail() && to > fork_offset) {
    return Status::Corruption("bytes [" + std::to_string(std::max(from, log->tail())) + ", " +
                              std::to_string(to) + ") of " + path + " were lost");
  }
  if (from < fork_offset) {
    uint64_t inherited_end = std::min(to, fork_offset);
    Status s = source->ReadRange(from, inherited_end, out);
    if (!s.ok()) return s;
    from = inherited_end;
  }
  if (from < to) return log->Read(from, static_cast<size_t>(to - from), out);
  return Status::OK();
}

namespace {

// Both zero-copy views of [from, to) walk the fork the same way: the part
// below fork_offset from the source, the rest from the stream's own log; on
// failure `out` is left as it was (a partial list could be sent as if whole).
template <typename Range>
Status GatherRanges(const Stream& stream, uint64_t from, uint64_t to, std::vector<Range>* out,
                    Status (Stream::*inherited)(uint64_t, uint64_t, std::vector<Range>*) const,
                    Status (StreamLog::*own)(uint64_t, size_t, std::vector<Range>*) const) {
  if (from >= to) return Status::OK();
  if (from < stream.EarliestOffset()) return Status::NotSupported("before the earliest offset");
  if (to > stream.log->tail() && to > stream.fork_offset) return Status::NotSupported("lost bytes");
  const size_t old_size = out->size();
  if (from < stream.fork_offset) {
    const uint64_t inherited_end = std::min(to, stream.fork_offset);
    Status s = ((*stream.source).*inherited)(from, inherited_end, out);
    if (!s.ok()) return s;
    from = inherited_end;
  }
  if (from < to) {
    Status s = ((*stream.log).*own)(from, static_cast<size_t>(to - from), out);
    if (!s.ok()) {
      out->resize(old_size);
      return s;
    }
  }
  return Status::OK();
}

}  // namespace

Status Stream::OpenFiles(uint64_t from, uint64_t to, std::vector<FileRange>* out) const {
  return GatherRanges(*this, from, to, out, &Stream::OpenFiles, &StreamLog::OpenFiles);
}

Status Stream::PinRange(uint64_t from, uint64_t to, std::vector<MemoryRange>* out) const {
  return GatherRanges(*this, from, to, out, &Stream::PinRange, &StreamLog::PinRange);
}

StreamRecord Stream::Record() const {
  StreamRecord r;
  r.id = id;
  r.path = path;
  r.content_type = config.content_type;
  r.ttl_seconds = config.ttl_seconds;
  r.expires_at_ms = config.expires_at_ms;
  r.last_access_ms = last_access_ms;
  r.tail = log->tail();
  r.closed = closed;
  r.soft_deleted = soft_deleted;
  r.last_stream_seq = last_stream_seq;
  r.source_id = source ? source->id : 0;
  r.fork_offset = fork_offset;
  r.start = retained_start;
  return r;
}

}  // namespace ds
