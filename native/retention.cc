// Retention (PROTOCOL.md §4: servers MAY drop data older than a certain age
// while the stream continues; §5.6: reads before the earliest retained
// offset answer 410). The unit is the whole segment: dropping one is an
// unlink (or freeing a memory block), never a rewrite, and the stream's
// offsets never move.
//
// Order of a trim: decide the new first offset under the stream's lock,
// commit it with the stream's record, and only then make it visible and
// delete files. A crash in between leaves files below the recorded start,
// which recovery deletes; it never leaves a record pointing at missing bytes.
#include <algorithm>
#include <cstdio>

#include "engine.h"

namespace ds {
namespace {

constexpr size_t kBoundaryScanBytes = 64 << 10;

// The first JSON message boundary at or after `pos` in the stream's own
// log, or 0 if none is committed yet. Messages are stored one per line
// (json_mode.h), so a boundary is the position after a '\n'.
uint64_t NextMessageBoundary(const Stream& stream, uint64_t pos, uint64_t tail) {
  std::string window;
  if (!stream.log->Read(pos - 1, 1, &window).ok()) return 0;
  if (window == "\n") return pos;
  while (pos < tail) {
    const uint64_t end = std::min<uint64_t>(tail, pos + kBoundaryScanBytes);
    window.clear();
    if (!stream.log->Read(pos, static_cast<size_t>(end - pos), &window).ok()) return 0;
    const size_t nl = window.find('\n');
    if (nl != std::string::npos) return pos + nl + 1;
    pos = end;
  }
  return 0;
}

}  // namespace

uint64_t Engine::RetentionStart(const Stream& stream, int64_t now_ms) const {
  const uint64_t current = stream.retained_start;
  // Only committed bytes count, so a trim never outruns what readers see.
  const uint64_t tail = stream.tail.load(std::memory_order_acquire);
  const std::vector<LogSegment> segments = stream.log->Segments();
  const int64_t age_ms = retention_age_ms_.load(std::memory_order_relaxed);
  const uint64_t max_bytes = retention_bytes_.load(std::memory_order_relaxed);
  uint64_t cut = current;
  // The last segment is the active one: appends continue in it.
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    const LogSegment& segment = segments[i];
    if (segment.end <= cut) continue;
    if (segment.end > tail) break;
    const bool too_old = age_ms > 0 && segment.last_write_ms <= now_ms - age_ms;
    const bool over_size = max_bytes > 0 && tail - segment.end >= max_bytes;
    if (!too_old && !over_size) break;
    cut = segment.end;
  }
  if (cut <= current) return current;
  if (stream.json) {
    // A JSON stream's offsets are message boundaries: start at the first
    // whole message of what is kept.
    const uint64_t boundary = NextMessageBoundary(stream, cut, tail);
    if (boundary == 0) return current;
    cut = boundary;
  }
  return cut;
}

Engine::PendingTrim Engine::BeginTrim(const StreamPtr& stream, int64_t now_ms) {
  PendingTrim trim;
  std::lock_guard lock(stream->mu);
  // Forks read their source's bytes below their fork offsets: a stream
  // with forks keeps its whole history (as a soft-deleted one does).
  if (stream->deleted || stream->soft_deleted || stream->fork_refs > 0) return trim;
  const uint64_t new_start = RetentionStart(*stream, now_ms);
  if (new_start <= stream->retained_start) return trim;
  trim.old_start = stream->retained_start;
  stream->retained_start = new_start;
  trim.stream = stream;
  trim.new_start = new_start;
  if (durable_) {
    trim.ticket = Submit({{StreamMutation::Kind::kUpsert, stream->Record(), {}, nullptr}},
                         nullptr, Unchanged(stream));
  }
  return trim;
}

Status Engine::FinishTrim(const PendingTrim& trim) {
  if (!trim.stream) return Status::OK();  // nothing was due
  if (trim.ticket) {
    Status s = Await(trim.ticket);
    if (!s.ok()) {
      // Not recorded: the next pass tries again (a full disk is when
      // retention matters most).
      std::lock_guard lock(trim.stream->mu);
      if (trim.stream->retained_start == trim.new_start) trim.stream->retained_start = trim.old_start;
      return s;
    }
  }
  Status s = trim.stream->log->Trim(trim.new_start);
  std::lock_guard lock(trim.stream->mu);
  Recharge(*trim.stream);  // the dropped bytes leave the budget and quota
  return s;
}

void Engine::NoteSegments(const StreamPtr& stream) {
  // A single segment is the active one: nothing to drop. Most streams stay
  // there, and the sweep never looks at them. Listed even while retention
  // is off (once per stream), so a reload that turns it on finds them.
  if (stream->retention_listed || stream->log->segment_count() < 2) return;
  stream->retention_listed = true;
  std::lock_guard lock(segmented_mu_);
  segmented_.push_back(stream);
}

void Engine::ApplyRetention() {
  if (!retention_on()) return;
  std::vector<StreamPtr> candidates;
  {
    std::lock_guard lock(segmented_mu_);
    candidates.swap(segmented_);
  }
  const int64_t now = clock_->NowMs();
  // Queue every new start, then wait: the streams share group commits.
  std::vector<PendingTrim> trims;
  trims.reserve(candidates.size());
  for (const StreamPtr& stream : candidates) trims.push_back(BeginTrim(stream, now));
  std::vector<StreamPtr> still;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const StreamPtr& stream = candidates[i];
    Status s = FinishTrim(trims[i]);
    if (!s.ok() && s.code() != Status::Code::kGone) {
      std::fprintf(stderr, "durable-streams: retention of %s: %s\n", stream->path.c_str(),
                   s.message().c_str());
    }
    // Down to its active segment (or gone): an append that starts the next
    // segment lists it again.
    std::lock_guard lock(stream->mu);
    if (stream->deleted || stream->log->segment_count() < 2) {
      stream->retention_listed = false;
    } else {
      still.push_back(stream);
    }
  }
  std::lock_guard lock(segmented_mu_);
  segmented_.insert(segmented_.end(), still.begin(), still.end());
}

}  // namespace ds
