#include "segment_log.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

#include "crc32c.h"

namespace ds {
namespace {

constexpr std::string_view kSegmentSuffix = ".seg";
constexpr std::string_view kLostSuffix = ".lost";
// The most unsynced bytes a log keeps in memory for its WAL entries: what
// LmdbStore puts in one entry at most (kWalMaxLogBytes); a longer range is
// synced in place, not copied.
constexpr size_t kWalTailMaxBytes = 64 << 10;

// Storage warnings go to stderr: the server's log collects it, and nothing
// here may fail an operation just because it could not report.
void Warn(const std::string& message) {
  std::fprintf(stderr, "durable-streams storage: %s\n", message.c_str());
}

Status Dropped(uint64_t stream_id, uint64_t pos) {
  return Status::Gone("position " + std::to_string(pos) + " of stream " + std::to_string(stream_id) +
                      " was dropped by retention");
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::string SegmentFileName(uint64_t base) {
  std::string name = ZeroPadded(base);
  name += kSegmentSuffix;
  return name;
}

bool ParseSegmentFileName(std::string_view name, uint64_t* base) {
  if (!EndsWith(name, kSegmentSuffix)) return false;
  return ParseZeroPadded(name.substr(0, name.size() - kSegmentSuffix.size()), base);
}

// ---- SegmentFdCache ------------------------------------------------------

SegmentFdCache::Handle SegmentFdCache::InsertLocked(const SegmentKey& key, Handle fd,
                                                    std::vector<Handle>* evicted) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    // Only Put gets here (Get checks first): a file was just created under
    // this name, so its descriptor replaces the cached one.
    lru_.splice(lru_.begin(), lru_, it->second);
    evicted->push_back(std::move(it->second->fd));
    it->second->fd = std::move(fd);
    return it->second->fd;
  }
  lru_.push_front(Entry{key, std::move(fd)});
  index_.emplace(key, lru_.begin());
  while (lru_.size() > capacity_) {
    Entry& victim = lru_.back();
    index_.erase(victim.key);
    evicted->push_back(std::move(victim.fd));
    lru_.pop_back();
  }
  return lru_.front().fd;
}

bool SegmentFdCache::Find(const SegmentKey& key, Handle* out) {
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  lru_.splice(lru_.begin(), lru_, it->second);
  *out = it->second->fd;
  return true;
}

Status SegmentFdCache::Get(const SegmentKey& key, const std::string& path, Handle* out) {
  if (Find(key, out)) return Status::OK();
  // Open outside the lock: a slow open must not stall every other stream.
  UniqueFd fd;
  Status s = OpenFile(path, O_RDWR, 0, &fd);
  if (!s.ok()) return s;
  auto opened = std::make_shared<const UniqueFd>(std::move(fd));
  std::vector<Handle> evicted;  // closed after the lock is released
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it != index_.end()) {
    // Another thread opened it first; use theirs, ours closes on return.
    lru_.splice(lru_.begin(), lru_, it->second);
    *out = it->second->fd;
    return Status::OK();
  }
  *out = InsertLocked(key, std::move(opened), &evicted);
  return Status::OK();
}

Status SegmentFdCache::Peek(const SegmentKey& key, const std::string& path, Handle* out) {
  {
    std::lock_guard lock(mu_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      *out = it->second->fd;
      return Status::OK();
    }
  }
  UniqueFd fd;
  Status s = OpenFile(path, O_RDWR, 0, &fd);
  if (!s.ok()) return s;
  *out = std::make_shared<const UniqueFd>(std::move(fd));
  return Status::OK();
}

SegmentFdCache::Handle SegmentFdCache::Put(const SegmentKey& key, UniqueFd fd) {
  auto handle = std::make_shared<const UniqueFd>(std::move(fd));
  std::vector<Handle> evicted;
  std::lock_guard lock(mu_);
  return InsertLocked(key, std::move(handle), &evicted);
}

void SegmentFdCache::Forget(const SegmentKey& key) {
  Handle dropped;
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return;
  dropped = std::move(it->second->fd);
  lru_.erase(it->second);
  index_.erase(it);
}

size_t SegmentFdCache::size() const {
  std::lock_guard lock(mu_);
  return lru_.size();
}

// ---- SegmentFiles --------------------------------------------------------

std::string SegmentFiles::StreamDir(uint64_t stream_id) const {
  return JoinPath(options_.segments_dir, ZeroPadded(stream_id));
}

std::string SegmentFiles::FilePath(const SegmentKey& key) const {
  return JoinPath(StreamDir(key.stream_id), SegmentFileName(key.base));
}

void SegmentFiles::NoteUnsyncedFile(const SegmentKey& key) {
  std::lock_guard lock(unsynced_mu_);
  unsynced_files_.insert(key);
}

void SegmentFiles::NoteUnsyncedStreamDir(uint64_t stream_id) {
  std::lock_guard lock(unsynced_mu_);
  unsynced_stream_dirs_.insert(stream_id);
}

void SegmentFiles::NoteUnsyncedSegmentsDir() {
  std::lock_guard lock(unsynced_mu_);
  unsynced_segments_dir_ = true;
}

size_t SegmentFiles::unsynced_files() const {
  std::lock_guard lock(unsynced_mu_);
  return unsynced_files_.size();
}

Status SegmentFiles::SyncUnsynced() {
  std::unordered_set<SegmentKey, SegmentKeyHash> files;
  std::unordered_set<uint64_t> dirs;
  bool segments_dir = false;
  {
    std::lock_guard lock(unsynced_mu_);
    files.swap(unsynced_files_);
    dirs.swap(unsynced_stream_dirs_);
    std::swap(segments_dir, unsynced_segments_dir_);
  }
  if (files.size() > kSyncfsThreshold) {
    // One journal commit for everything (names included) instead of one
    // per file.
    return SyncFileSystem(options_.segments_dir);
  }
  for (const SegmentKey& key : files) {
    const std::string path = FilePath(key);
    SegmentFdCache::Handle fd;
    Status s = fds_.Peek(key, path, &fd);
    if (!s.ok()) {
      if (!PathExists(path)) continue;  // deleted since (erase, rollback)
      return s;
    }
    s = SyncData(fd->get(), path);
    if (!s.ok()) return s;
  }
  for (uint64_t id : dirs) {
    const std::string path = StreamDir(id);
    Status s = SyncDir(path);
    if (!s.ok() && PathExists(path)) return s;
  }
  if (segments_dir) return SyncDir(options_.segments_dir);
  return Status::OK();
}

void SegmentFiles::SetChecksumSource(ChecksumSource source) {
  std::unique_lock lock(checksum_mu_);
  checksum_source_ = std::move(source);
}

void SegmentFiles::NoteCommittedTail(uint64_t stream_id, const TailChecksum& at) {
  std::lock_guard lock(committed_tails_mu_);
  TailChecksum& t = committed_tails_[stream_id];
  if (at.tail >= t.tail) t = at;
}

std::unordered_map<uint64_t, SegmentFiles::TailChecksum> SegmentFiles::TakeCommittedTails() {
  std::unordered_map<uint64_t, TailChecksum> out;
  std::lock_guard lock(committed_tails_mu_);
  out.swap(committed_tails_);
  return out;
}

void SegmentFiles::SetInlineSource(InlineSource source) {
  std::unique_lock lock(checksum_mu_);
  inline_source_ = std::move(source);
}

Status SegmentFiles::LoadInline(uint64_t stream_id, uint64_t from, size_t len, std::string* out) const {
  std::shared_lock lock(checksum_mu_);
  if (!inline_source_) return Status::IoError("stream " + std::to_string(stream_id) + "'s inline bytes are unavailable (the store is closed)");
  return inline_source_(stream_id, from, len, out);
}

Status SegmentFiles::LoadChecksums(uint64_t stream_id, uint64_t first, uint64_t last,
                                   std::vector<std::pair<uint64_t, uint32_t>>* out) const {
  std::shared_lock lock(checksum_mu_);
  if (!checksum_source_) return Status::NotSupported("no checksums");
  return checksum_source_(stream_id, first, last, out);
}

Status SegmentFiles::RemoveStream(uint64_t stream_id) {
  const std::string dir = StreamDir(stream_id);
  std::vector<std::string> names;
  bool missing = false;
  Status s = ListDir(dir, &names, &missing);
  if (!s.ok() || missing) return s;
  for (const std::string& name : names) {
    uint64_t base;
    // Cached descriptors would keep the deleted files' space allocated.
    if (ParseSegmentFileName(name, &base)) fds_.Forget(SegmentKey{stream_id, base});
  }
  s = RemoveTree(dir);
  if (!s.ok()) return s;
  return SyncDir(options_.segments_dir);
}

void SegmentFiles::ForgetStreamFds(uint64_t stream_id) {
  std::vector<std::string> names;
  bool missing = false;
  if (!ListDir(StreamDir(stream_id), &names, &missing).ok()) return;
  for (const std::string& name : names) {
    uint64_t base;
    if (ParseSegmentFileName(name, &base)) fds_.Forget(SegmentKey{stream_id, base});
  }
}

Status SegmentFiles::RemoveCommittedStream(uint64_t stream_id) {
  switch (options_.removal) {
    case SegmentFilesOptions::Removal::kImmediate:
      return RemoveStream(stream_id);
    case SegmentFilesOptions::Removal::kAfterBarrier: {
      Status s = options_.removal_barrier ? options_.removal_barrier() : Status::OK();
      if (!s.ok()) return s;  // the files stay; Recover removes the orphan
      return RemoveStream(stream_id);
    }
    case SegmentFilesOptions::Removal::kDeferred:
      break;
  }
  ForgetStreamFds(stream_id);  // no cached descriptor outlives the stream
  std::lock_guard lock(removal_mu_);
  pending_removals_.push_back(PendingRemoval{stream_id, true, 0});
  return Status::OK();
}

Status SegmentFiles::RemoveCommittedFile(const SegmentKey& key) {
  // A read in flight keeps its descriptor (and so the file's blocks)
  // until it finishes; the space is freed after that.
  fds_.Forget(key);
  switch (options_.removal) {
    case SegmentFilesOptions::Removal::kImmediate:
      return RemoveFile(FilePath(key));
    case SegmentFilesOptions::Removal::kAfterBarrier: {
      Status s = options_.removal_barrier ? options_.removal_barrier() : Status::OK();
      if (!s.ok()) return s;  // the file stays; Recover removes it (below the start)
      return RemoveFile(FilePath(key));
    }
    case SegmentFilesOptions::Removal::kDeferred:
      break;
  }
  std::lock_guard lock(removal_mu_);
  pending_removals_.push_back(PendingRemoval{key.stream_id, false, key.base});
  return Status::OK();
}

std::vector<SegmentFiles::PendingRemoval> SegmentFiles::TakePendingRemovals() {
  std::lock_guard lock(removal_mu_);
  std::vector<PendingRemoval> out;
  out.swap(pending_removals_);
  return out;
}

size_t SegmentFiles::pending_removals() const {
  std::lock_guard lock(removal_mu_);
  return pending_removals_.size();
}

Status SegmentFiles::RemovePending(const std::vector<PendingRemoval>& removals) {
  Status result;
  bool removed_dir = false;
  for (const PendingRemoval& r : removals) {
    Status s;
    if (r.whole_stream) {
      // Something may have opened a file since it was queued (a sync).
      ForgetStreamFds(r.stream_id);
      s = RemoveTree(StreamDir(r.stream_id));
      removed_dir = true;
    } else {
      fds_.Forget(SegmentKey{r.stream_id, r.base});
      s = RemoveFile(FilePath(SegmentKey{r.stream_id, r.base}));
    }
    if (!s.ok() && result.ok()) result = s;
  }
  // As RemoveStream: a removed directory's name is synced away (a trim's
  // unlinks need not be, see SegmentLog::Trim).
  if (removed_dir) {
    Status s = SyncDir(options_.segments_dir);
    if (!s.ok() && result.ok()) result = s;
  }
  return result;
}

// ---- SegmentLog ----------------------------------------------------------

SegmentLog::SegmentLog(std::shared_ptr<SegmentFiles> files, uint64_t stream_id, uint64_t base)
    : files_(std::move(files)),
      stream_id_(stream_id),
      base_(base),
      start_(base),
      tail_(base),
      synced_(base),
      crc_block_(base / kChecksumBlockBytes),
      committed_crc_block_(base / kChecksumBlockBytes),
      committed_crc_end_(base) {
  base_checkpoint_due_.store(files_->tracks_unsynced(), std::memory_order_relaxed);
  inline_end_.store(base, std::memory_order_relaxed);
  inline_committed_ = base;
  inline_open_ = files_->inline_stream_bytes() > 0;
}

size_t SegmentLog::segment_count() const {
  const bool has_inline = inline_end_.load(std::memory_order_acquire) > base_;
  std::shared_lock lock(table_mu_);
  return bases_.size() + (has_inline ? 1 : 0);
}

std::vector<LogSegment> SegmentLog::Segments() const {
  const uint64_t tail = tail_.load(std::memory_order_acquire);
  const uint64_t start = start_.load(std::memory_order_acquire);
  const uint64_t inline_end = inline_end_.load(std::memory_order_acquire);
  std::shared_lock lock(table_mu_);
  std::vector<LogSegment> out;
  out.reserve(bases_.size() + 1);
  if (inline_end > base_) {
    // The inline bytes count as the first segment (retention may cut past
    // them; their LMDB value stays, at most inline_stream_bytes).
    const bool active = bases_.empty();
    const uint64_t end = active ? tail : inline_end;
    out.push_back(LogSegment{std::min(std::max(base_, start), end), end,
                             active ? active_write_ms_.load(std::memory_order_relaxed) : inline_write_ms_});
  }
  for (size_t i = 0; i < bases_.size(); ++i) {
    const bool active = i + 1 == bases_.size();
    // An append in flight may have added a file past the tail we loaded;
    // it holds nothing readable yet.
    if (bases_[i] >= tail && i > 0) break;
    out.push_back(LogSegment{std::max(bases_[i], start), active ? tail : bases_[i + 1],
                             active ? active_write_ms_.load(std::memory_order_relaxed)
                                    : write_ms_[i]});
  }
  return out;
}

Status SegmentLog::Trim(uint64_t new_start) {
  std::lock_guard append_lock(append_mu_);  // bases_ only changes under it
  if (new_start <= start_.load(std::memory_order_relaxed)) return Status::OK();
  if (new_start > tail_.load(std::memory_order_relaxed)) {
    return Status::InvalidArgument("trim of stream " + std::to_string(stream_id_) +
                                   " past its tail");
  }
  // Readers check start_ before they look for a file, so once it is raised
  // no new read reaches the files deleted below.
  start_.store(new_start, std::memory_order_release);
  size_t drop = 0;  // never the active (last) file: appends continue in it
  while (drop + 1 < bases_.size() && bases_[drop + 1] <= new_start) ++drop;
  if (drop == 0) return Status::OK();
  std::vector<uint64_t> dropped(bases_.begin(), bases_.begin() + static_cast<ptrdiff_t>(drop));
  {
    std::unique_lock lock(table_mu_);
    bases_.erase(bases_.begin(), bases_.begin() + static_cast<ptrdiff_t>(drop));
    write_ms_.erase(write_ms_.begin(), write_ms_.begin() + static_cast<ptrdiff_t>(drop));
  }
  Status result;
  for (uint64_t seg_base : dropped) {
    Status s = files_->RemoveCommittedFile(Key(seg_base));
    if (!s.ok() && result.ok()) result = s;
  }
  return result;
}

size_t SegmentLog::memory_bytes() const {
  size_t pending = 0;
  {
    std::lock_guard lock(inline_mu_);
    pending = inline_pending_.capacity();
  }
  {
    std::lock_guard lock(wal_tail_mu_);
    pending += wal_tail_.capacity();
  }
  std::shared_lock lock(table_mu_);
  return bases_.capacity() * sizeof(uint64_t) + pending;
}

bool SegmentLog::Locate(uint64_t pos, uint64_t* seg_base, uint64_t* seg_end) const {
  std::shared_lock lock(table_mu_);
  auto it = std::upper_bound(bases_.begin(), bases_.end(), pos);
  if (it == bases_.begin()) return false;
  *seg_end = it == bases_.end() ? std::numeric_limits<uint64_t>::max() : *it;
  *seg_base = *(it - 1);
  return true;
}

Status SegmentLog::Read(uint64_t from, size_t len, std::string* out) const {
  const size_t old_size = out->size();
  Status s = ReadUnchecked(from, len, out);
  if (!s.ok() || verify_count_ == 0 || len == 0) return s;
  s = CheckRead(from, len, out->data() + old_size);
  if (!s.ok()) out->resize(old_size);
  return s;
}

bool SegmentLog::Verified(uint64_t block) const {
  if (block < verify_first_ || block - verify_first_ >= verify_count_) return true;
  const uint64_t i = block - verify_first_;
  return (verified_[i / 64].load(std::memory_order_acquire) >> (i % 64)) & 1;
}

void SegmentLog::MarkVerified(uint64_t block) const {
  if (block < verify_first_ || block - verify_first_ >= verify_count_) return;
  const uint64_t i = block - verify_first_;
  verified_[i / 64].fetch_or(uint64_t{1} << (i % 64), std::memory_order_acq_rel);
}

Status SegmentLog::CheckRead(uint64_t from, size_t len, const char* data) const {
  const uint64_t first = std::max(from / kChecksumBlockBytes, verify_first_);
  const uint64_t last = std::min((from + len - 1) / kChecksumBlockBytes, verify_first_ + verify_count_ - 1);
  std::vector<uint64_t> todo;
  for (uint64_t b = first; b <= last && first <= last; ++b) {
    if (!Verified(b)) todo.push_back(b);
  }
  if (todo.empty()) return Status::OK();
  std::vector<std::pair<uint64_t, uint32_t>> stored;
  Status s = files_->LoadChecksums(stream_id_, todo.front(), todo.back(), &stored);
  if (s.code() == Status::Code::kNotSupported) return Status::OK();  // no store behind us
  if (!s.ok()) return s;
  size_t j = 0;
  for (uint64_t b : todo) {
    // Every block in the checked range is whole: the one holding the tail
    // at open was checked by recovery.
    const uint64_t lo = BlockStart(b), hi = (b + 1) * kChecksumBlockBytes;
    while (j < stored.size() && stored[j].first < b) ++j;
    if (lo < start() || j == stored.size() || stored[j].first != b) {
      // Retention dropped the block's first bytes, or it has no checksum:
      // nothing to check it against.
      MarkVerified(b);
      continue;
    }
    uint32_t crc = 0;
    if (lo >= from && hi <= from + len) {
      crc = crc32c::Extend(0, data + (lo - from), hi - lo);
    } else {
      std::string block;
      s = ReadUnchecked(lo, hi - lo, &block);
      if (!s.ok()) return s;
      crc = crc32c::Value(block);
    }
    if (crc != stored[j].second) {
      files_->NoteChecksumFailure();
      const std::string range = "bytes [" + std::to_string(lo) + ", " + std::to_string(hi) + ") of stream " +
                                std::to_string(stream_id_);
      Warn(range + " do not match their checksum; refusing to serve them (" +
           files_->StreamDir(stream_id_) + ")");
      return Status::Corruption(range + " do not match their checksum");
    }
    MarkVerified(b);
  }
  return Status::OK();
}

Status SegmentLog::ReadUnchecked(uint64_t from, size_t len, std::string* out) const {
  if (len == 0) return Status::OK();
  const uint64_t tail = tail_.load(std::memory_order_acquire);
  if (from >= base_ && from < start_.load(std::memory_order_acquire)) {
    return Dropped(stream_id_, from);
  }
  if (from < base_ || from > tail || len > tail - from) {
    return Status::InvalidArgument("read of [" + std::to_string(from) + ", +" +
                                   std::to_string(len) + ") outside stream " +
                                   std::to_string(stream_id_) + "'s log [" +
                                   std::to_string(base_) + ", " + std::to_string(tail) + ")");
  }
  const size_t old_size = out->size();
  out->resize(old_size + len);
  char* dst = out->data() + old_size;
  uint64_t pos = from;
  size_t left = len;
  // Loaded after the tail: an append publishes inline_end_ before its tail.
  const uint64_t inline_end = inline_end_.load(std::memory_order_acquire);
  if (pos < inline_end) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, inline_end - pos));
    Status s = ReadInline(pos, n, dst);
    if (!s.ok()) {
      out->resize(old_size);
      return s;
    }
    dst += n;
    pos += n;
    left -= n;
  }
  while (left > 0) {
    uint64_t seg_base = 0, seg_end = 0;
    if (!Locate(pos, &seg_base, &seg_end)) {
      out->resize(old_size);
      if (from < start_.load(std::memory_order_acquire)) return Dropped(stream_id_, from);
      return Status::Corruption("stream " + std::to_string(stream_id_) + " has no segment for position " +
                                std::to_string(pos));
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, seg_end - pos));
    const SegmentKey key = Key(seg_base);
    const std::string path = files_->FilePath(key);
    SegmentFdCache::Handle fd;
    Status s = files_->fds().Get(key, path, &fd);
    size_t got = 0;
    if (s.ok()) s = ReadAt(fd->get(), dst, n, pos - seg_base, path, &got);
    if (s.ok() && got < n) {
      s = Status::Corruption(path + " ends at " + std::to_string(seg_base + got) +
                             " but the stream's tail is " + std::to_string(tail));
    }
    if (!s.ok()) {
      out->resize(old_size);
      // Trim deleted the file between our check and our open.
      if (from < start_.load(std::memory_order_acquire)) return Dropped(stream_id_, from);
      return s;
    }
    dst += n;
    pos += n;
    left -= n;
  }
  return Status::OK();
}

Status SegmentLog::ReadInline(uint64_t from, size_t len, char* dst) const {
  // The pending part is copied under the lock; the committed part comes
  // from LMDB, whose value only grows while this log lives (a commit
  // raises inline_committed_ after its transaction is in).
  uint64_t committed = 0;
  {
    std::lock_guard lock(inline_mu_);
    committed = inline_committed_;
    if (from + len > committed) {
      const uint64_t lo = std::max(from, committed);
      if (lo - committed + (from + len - lo) > inline_pending_.size()) {
        return Status::Corruption("stream " + std::to_string(stream_id_) + ": inline bytes [" +
                                  std::to_string(lo) + ", " + std::to_string(from + len) + ") are not held");
      }
      std::memcpy(dst + (lo - from), inline_pending_.data() + (lo - committed), static_cast<size_t>(from + len - lo));
    }
  }
  if (from >= committed) return Status::OK();
  const size_t n = static_cast<size_t>(std::min<uint64_t>(from + len, committed) - from);
  std::string bytes;
  Status s = files_->LoadInline(stream_id_, from - base_, n, &bytes);
  if (!s.ok()) return s;
  std::memcpy(dst, bytes.data(), n);
  return Status::OK();
}

void SegmentLog::InlineRange(uint64_t to, uint64_t* from, std::string* bytes) const {
  bytes->clear();
  std::lock_guard lock(inline_mu_);
  *from = inline_committed_;
  const uint64_t end = std::min(to, inline_committed_ + inline_pending_.size());
  if (end > inline_committed_) bytes->assign(inline_pending_, 0, static_cast<size_t>(end - inline_committed_));
}

void SegmentLog::InlineCommitted(uint64_t to) {
  std::lock_guard lock(inline_mu_);
  if (to <= inline_committed_) return;
  const uint64_t n = std::min<uint64_t>(to - inline_committed_, inline_pending_.size());
  inline_pending_.erase(0, static_cast<size_t>(n));
  if (inline_pending_.empty()) inline_pending_.shrink_to_fit();  // 100,000 idle streams hold nothing
  inline_committed_ += n;
}

Status SegmentLog::StartSegment(uint64_t seg_base) {
  if (!dir_exists_) {
    bool created = false;
    Status s = CreateDir(files_->StreamDir(stream_id_), &created);
    if (!s.ok()) return s;
    dir_exists_ = true;
    if (created) {
      stream_dir_unsynced_.store(true, std::memory_order_relaxed);
      if (files_->tracks_unsynced()) files_->NoteUnsyncedSegmentsDir();
    }
  }
  const SegmentKey key = Key(seg_base);
  UniqueFd fd;
  // O_TRUNC: a leftover file of a rolled-back append must not contribute
  // stale bytes.
  Status s = OpenFile(files_->FilePath(key), O_RDWR | O_CREAT | O_TRUNC, 0644, &fd);
  if (!s.ok()) return s;
  segment_name_unsynced_.store(true, std::memory_order_relaxed);
  if (files_->tracks_unsynced()) files_->NoteUnsyncedStreamDir(stream_id_);
  files_->fds().Put(key, std::move(fd));
  std::unique_lock lock(table_mu_);
  // The file being sealed got its newest byte at the active time.
  if (!write_ms_.empty()) {
    write_ms_.back() = active_write_ms_.load(std::memory_order_relaxed);
  } else {
    inline_write_ms_ = active_write_ms_.load(std::memory_order_relaxed);
  }
  bases_.push_back(seg_base);
  write_ms_.push_back(0);
  return Status::OK();
}

void SegmentLog::RollBack(uint64_t old_tail, size_t old_count) {
  // bases_ only changes under append_mu_, which we hold, so reading it
  // without table_mu_ is race-free.
  std::vector<uint64_t> added(bases_.begin() + static_cast<ptrdiff_t>(old_count), bases_.end());
  {
    std::unique_lock lock(table_mu_);
    bases_.resize(old_count);
    write_ms_.resize(old_count);
  }
  for (uint64_t seg_base : added) {
    files_->fds().Forget(Key(seg_base));
    RemoveFile(files_->FilePath(Key(seg_base)));  // best effort, see below
  }
  // Best effort: tail() is unchanged whatever happens here, the next append
  // overwrites these positions, and Recover cuts past the recorded tail.
  if (old_count > 0) {
    const uint64_t active = bases_[old_count - 1];
    const std::string path = files_->FilePath(Key(active));
    SegmentFdCache::Handle fd;
    if (files_->fds().Get(Key(active), path, &fd).ok()) Truncate(fd->get(), old_tail - active, path);
  }
}

Status SegmentLog::Append(std::string_view bytes, int64_t now_ms) {
  if (bytes.empty()) return Status::OK();
  std::lock_guard append_lock(append_mu_);
  const uint64_t old_tail = tail_.load(std::memory_order_relaxed);
  const int64_t old_write_ms = active_write_ms_.load(std::memory_order_relaxed);
  if (bytes.size() > std::numeric_limits<uint64_t>::max() - old_tail) {
    return Status::InvalidArgument("append would overflow stream positions");
  }
  const size_t old_count = bases_.size();  // only this thread writes bases_
  const uint64_t segment_bytes = files_->segment_bytes();
  uint64_t pos = old_tail;
  Status s;
  // The checksums as of this append's end, per block it touches: taken by
  // the commit that records the new tail. Kept only if the append succeeds.
  uint64_t crc_block = crc_block_;
  uint32_t crc_value = crc_value_;
  bool crc_known = crc_known_;
  std::vector<PendingChecksum> crcs;
  auto checksum = [&](uint64_t at, std::string_view piece) {
    while (!piece.empty()) {
      const uint64_t b = at / kChecksumBlockBytes;
      if (b != crc_block) {
        crc_block = b;
        crc_value = 0;
        crc_known = true;
      }
      const size_t m = static_cast<size_t>(std::min<uint64_t>(piece.size(), (b + 1) * kChecksumBlockBytes - at));
      crc_value = crc32c::Extend(crc_value, piece.substr(0, m));
      at += m;
      piece.remove_prefix(m);
      if (!crc_known) continue;
      if (!crcs.empty() && crcs.back().block == b) {
        crcs.back() = PendingChecksum{at, b, crc_value};
      } else {
        crcs.push_back(PendingChecksum{at, b, crc_value});
      }
    }
  };
  const bool old_inline_open = inline_open_;
  if (inline_open_ && bases_.empty()) {
    if (bytes.size() <= files_->inline_stream_bytes() &&
        old_tail - base_ <= files_->inline_stream_bytes() - bytes.size()) {
      // Inline: the bytes wait in memory for the commit that puts them in
      // LMDB; no file is touched.
      {
        std::lock_guard lock(inline_mu_);
        inline_pending_.append(bytes);
      }
      checksum(pos, bytes);
      active_write_ms_.store(now_ms, std::memory_order_relaxed);
      pos += bytes.size();
      inline_end_.store(pos, std::memory_order_release);
      bytes = {};
    } else {
      inline_open_ = false;  // this append starts the first file, at the inline end
    }
  }
  const uint64_t file_pos = pos;
  const std::string_view file_bytes = bytes;
  while (!bytes.empty()) {
    if (bases_.empty() || pos - bases_.back() >= segment_bytes) {
      s = StartSegment(pos);
      if (!s.ok()) break;
    }
    const uint64_t seg_base = bases_.back();
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>(bytes.size(), segment_bytes - (pos - seg_base)));
    const SegmentKey key = Key(seg_base);
    // The file's path only on a miss or a failure: every durable append
    // comes here, with the stream's lock held.
    SegmentFdCache::Handle fd;
    if (!files_->fds().Find(key, &fd)) s = files_->fds().Get(key, files_->FilePath(key), &fd);
    if (s.ok()) {
      if (const int err = WriteAtErrno(fd->get(), bytes.substr(0, n), pos - seg_base); err != 0) {
        s = ErrnoStatus("pwrite", files_->FilePath(key), err);
      }
    }
    if (!s.ok()) break;
    checksum(pos, bytes.substr(0, n));
    active_write_ms_.store(now_ms, std::memory_order_relaxed);
    if (files_->tracks_unsynced()) files_->NoteUnsyncedFile(key);
    pos += n;
    bytes.remove_prefix(n);
  }
  if (!s.ok()) {
    RollBack(old_tail, old_count);
    inline_open_ = old_inline_open;
    active_write_ms_.store(old_write_ms, std::memory_order_relaxed);
    return s;
  }
  crc_block_ = crc_block;
  crc_value_ = crc_value;
  crc_known_ = crc_known;
  if (!crcs.empty()) {
    std::lock_guard lock(crc_mu_);
    pending_crcs_.insert(pending_crcs_.end(), crcs.begin(), crcs.end());
  }
  // Before the tail is published: a commit recording it finds the bytes.
  if (!file_bytes.empty() && wal_tail_wanted_.load(std::memory_order_relaxed)) {
    KeepWalTail(file_pos, file_bytes);
  }
  // Publish the whole append at once (release: a reader that sees the new
  // tail sees the bytes, the file table entry and the unsynced flags).
  tail_.store(pos, std::memory_order_release);
  return Status::OK();
}

Status SegmentLog::Rewind(uint64_t to) {
  std::lock_guard append_lock(append_mu_);
  // Sync (the INTERVAL syncer's too) must not look for a file we drop.
  std::lock_guard sync_lock(sync_mu_);
  const uint64_t tail = tail_.load(std::memory_order_relaxed);
  if (to >= tail) return Status::OK();
  if (to < start_.load(std::memory_order_acquire)) {
    return Status::InvalidArgument("rewind below the log's start");
  }
  {
    std::lock_guard lock(inline_mu_);
    if (to < inline_committed_) {
      return Status::InvalidArgument("rewind of stream " + std::to_string(stream_id_) +
                                     " below its committed inline bytes");
    }
  }
  // Files starting at or past `to` hold no byte below it: drop them (the
  // next append starts a file at `to` again if the one before is full).
  size_t keep = bases_.size();
  while (keep > 0 && bases_[keep - 1] >= to) --keep;
  std::vector<uint64_t> dropped(bases_.begin() + static_cast<ptrdiff_t>(keep), bases_.end());
  {
    std::unique_lock lock(table_mu_);
    bases_.resize(keep);
    write_ms_.resize(keep);
  }
  if (!dropped.empty() && keep > 0) {
    active_write_ms_.store(write_ms_[keep - 1], std::memory_order_relaxed);
  }
  if (to < inline_end_.load(std::memory_order_relaxed)) {
    std::lock_guard lock(inline_mu_);
    inline_pending_.resize(static_cast<size_t>(to - inline_committed_));
    inline_end_.store(to, std::memory_order_release);
  }
  // No file left (they all began at or past `to`, so the inline bytes end
  // there): appends go inline again while there is room.
  if (keep == 0) inline_open_ = files_->inline_stream_bytes() > 0 && to - base_ < files_->inline_stream_bytes();
  tail_.store(to, std::memory_order_release);
  RewindChecksumsLocked(to);
  synced_ = std::min(synced_, to);
  wal_covered_ = std::min(wal_covered_, to);
  {
    // The next append writes these positions again.
    std::lock_guard lock(wal_tail_mu_);
    if (to <= wal_tail_from_) {
      std::string().swap(wal_tail_);  // frees (move assignment of an empty string may not)
      wal_tail_from_ = to;
    } else if (to - wal_tail_from_ < wal_tail_.size()) {
      wal_tail_.resize(static_cast<size_t>(to - wal_tail_from_));
    }
  }
  for (uint64_t seg_base : dropped) {
    files_->fds().Forget(Key(seg_base));
    RemoveFile(files_->FilePath(Key(seg_base)));  // best effort, as in RollBack
  }
  if (keep == 0) return Status::OK();
  const uint64_t active = bases_[keep - 1];
  const std::string path = files_->FilePath(Key(active));
  SegmentFdCache::Handle fd;
  Status s = files_->fds().Get(Key(active), path, &fd);
  if (s.ok()) s = Truncate(fd->get(), to - active, path);
  return s;
}

Status SegmentLog::Sync() {
  std::lock_guard lock(sync_mu_);
  if (!sync_error_.ok()) return sync_error_;
  // Load the tail before taking the flags: the appender sets a flag before
  // publishing any tail that depends on the new name.
  const uint64_t tail = tail_.load(std::memory_order_acquire);
  const bool stream_dir = stream_dir_unsynced_.exchange(false);
  const bool segment_name = segment_name_unsynced_.exchange(false);
  Status s;
  // Bytes below start_ may already be deleted; nobody needs them durable.
  // Inline bytes are in LMDB, which their commit makes durable.
  uint64_t pos = std::max({synced_, start_.load(std::memory_order_acquire), inline_end_.load(std::memory_order_acquire)});
  while (s.ok() && pos < tail) {
    uint64_t seg_base = 0, seg_end = 0;
    bool found = Locate(pos, &seg_base, &seg_end);
    if (found) {
      const SegmentKey key = Key(seg_base);
      const std::string path = files_->FilePath(key);
      SegmentFdCache::Handle fd;
      s = files_->fds().Get(key, path, &fd);
      if (s.ok()) s = SyncData(fd->get(), path);
    }
    const uint64_t start = start_.load(std::memory_order_acquire);
    if ((!found || !s.ok()) && pos < start) {
      // Trim dropped this file while we synced: skip to what is left.
      s = Status::OK();
      pos = start;
      continue;
    }
    if (!found) {
      s = Status::Corruption("stream " + std::to_string(stream_id_) +
                             " has no segment for position " + std::to_string(pos));
      break;
    }
    pos = seg_end;
  }
  if (s.ok() && segment_name) s = SyncDir(files_->StreamDir(stream_id_));
  if (s.ok() && stream_dir) s = SyncDir(files_->dir());
  if (!s.ok()) {
    sync_error_ = s;
    return s;
  }
  synced_ = tail;
  DropWalTailBelow(tail);
  return Status::OK();
}

bool SegmentLog::WalRange(uint64_t to, size_t max_bytes, uint64_t* from, std::string* bytes) {
  std::lock_guard lock(sync_mu_);
  if (!sync_error_.ok()) return false;  // Sync reports the error
  // The flags after `to`: the appender sets one before publishing a tail
  // that depends on the new name, and `to` was read from a published tail.
  if (stream_dir_unsynced_.load() || segment_name_unsynced_.load()) return false;
  *from = std::max({synced_, wal_covered_, start_.load(std::memory_order_acquire),
                    inline_end_.load(std::memory_order_acquire)});
  bytes->clear();
  // From now on appends keep their bytes for the next call.
  wal_tail_wanted_.store(true, std::memory_order_relaxed);
  if (to <= *from) return true;
  if (to - *from > max_bytes) return false;
  {
    std::lock_guard tail_lock(wal_tail_mu_);
    if (*from >= wal_tail_from_ && to <= wal_tail_from_ + wal_tail_.size()) {
      bytes->assign(wal_tail_, static_cast<size_t>(*from - wal_tail_from_), static_cast<size_t>(to - *from));
      return true;
    }
  }
  return Read(*from, to - *from, bytes).ok();
}

void SegmentLog::WalCommitted(uint64_t to) {
  std::lock_guard lock(sync_mu_);
  wal_covered_ = std::max(wal_covered_, to);
  DropWalTailBelow(wal_covered_);
}

void SegmentLog::KeepWalTail(uint64_t pos, std::string_view bytes) {
  std::lock_guard lock(wal_tail_mu_);
  if (pos != wal_tail_from_ + wal_tail_.size() || wal_tail_.size() + bytes.size() > kWalTailMaxBytes) {
    // Not contiguous (inline bytes came before, or a rewind), or over the
    // cap: start again here; ranges from before are read from the files.
    wal_tail_.clear();
    wal_tail_from_ = pos;
    if (bytes.size() > kWalTailMaxBytes) {
      std::string().swap(wal_tail_);  // frees (move assignment of an empty string may not)
      wal_tail_from_ = pos + bytes.size();
      return;
    }
  }
  wal_tail_.append(bytes);
}

void SegmentLog::DropWalTailBelow(uint64_t pos) {
  std::lock_guard lock(wal_tail_mu_);
  if (pos <= wal_tail_from_) return;
  if (pos - wal_tail_from_ >= wal_tail_.size()) {
    // All of it is durable or covered: give the memory back (a stream
    // appended to once keeps nothing).
    std::string().swap(wal_tail_);  // frees (move assignment of an empty string may not)
    wal_tail_from_ = pos;
    return;
  }
  wal_tail_.erase(0, static_cast<size_t>(pos - wal_tail_from_));
  wal_tail_from_ = pos;
}

Status SegmentLog::BeginFilesystemSync(uint64_t* tail) {
  std::lock_guard lock(sync_mu_);
  if (!sync_error_.ok()) return sync_error_;
  // As in Sync: the tail first, then the flags (a syncfs covers names too).
  *tail = tail_.load(std::memory_order_acquire);
  stream_dir_unsynced_.store(false);
  segment_name_unsynced_.store(false);
  return Status::OK();
}

void SegmentLog::EndFilesystemSync(uint64_t tail, const Status& synced) {
  std::lock_guard lock(sync_mu_);
  if (!synced.ok()) {
    if (sync_error_.ok()) sync_error_ = synced;
    return;
  }
  synced_ = std::max(synced_, tail);
  DropWalTailBelow(synced_);
}

// ---- Checksums -----------------------------------------------------------

void SegmentLog::PendingChecksums(uint64_t to, std::vector<BlockChecksum>* out) const {
  const uint64_t inline_end = inline_end_.load(std::memory_order_acquire);
  std::lock_guard lock(crc_mu_);
  for (const PendingChecksum& p : pending_crcs_) {
    if (p.end > to) break;  // appended after the record was taken
    // A block whose bytes up to `to` are all inline gets no checksum: they
    // are in LMDB, committed with the tail (one leaf page less per stream
    // and commit). The first commit past the inline end stores the block's
    // value, which the appender computed over the inline bytes too.
    if (std::min((p.block + 1) * kChecksumBlockBytes, to) <= inline_end) continue;
    if (!out->empty() && out->back().block == p.block) {
      out->back().crc = p.crc;
    } else {
      out->push_back(BlockChecksum{p.block, p.crc});
    }
  }
}

void SegmentLog::ChecksumsCommitted(uint64_t to) {
  std::lock_guard lock(crc_mu_);
  auto it = pending_crcs_.begin();
  while (it != pending_crcs_.end() && it->end <= to) ++it;
  if (it != pending_crcs_.begin() && (it - 1)->end == to) {
    committed_crc_block_ = (it - 1)->block;
    committed_crc_value_ = (it - 1)->crc;
    committed_crc_known_ = true;
    committed_crc_end_ = to;
    if (files_->tracks_unsynced()) {
      // The checksum of [start of to's block, to): nothing when `to` opens
      // a block (the value then describes the block before).
      const bool opens = BlockStart(to / kChecksumBlockBytes) == to;
      files_->NoteCommittedTail(stream_id_, SegmentFiles::TailChecksum{to, opens ? 0 : (it - 1)->crc});
    }
  }
  pending_crcs_.erase(pending_crcs_.begin(), it);
}

void SegmentLog::RewindChecksumsLocked(uint64_t to) {
  std::lock_guard lock(crc_mu_);
  std::erase_if(pending_crcs_, [&](const PendingChecksum& p) { return p.end > to; });
  if (!pending_crcs_.empty() && pending_crcs_.back().end == to) {
    crc_block_ = pending_crcs_.back().block;
    crc_value_ = pending_crcs_.back().crc;
    crc_known_ = true;
  } else {
    crc_block_ = committed_crc_block_;
    crc_value_ = committed_crc_value_;
    crc_known_ = committed_crc_known_;
  }
}

Status SegmentLog::CheckChecksums(uint64_t recorded_tail,
                                  const std::vector<std::pair<uint64_t, uint64_t>>& replayed,
                                  ChecksumRecovery* out, const SyncedTail& synced) const {
  const uint64_t t = tail(), start_pos = start();
  const uint64_t recorded = std::max(recorded_tail, t);
  *out = ChecksumRecovery{};
  out->good_tail = t;
  enum class Result { kMatch, kMismatch, kUncheckable };
  std::vector<uint64_t> checked;
  std::vector<uint64_t> bad;  // mismatching blocks left for reads to refuse
  uint64_t last_block_crc_for = UINT64_MAX;  // the block last_crc describes
  // The block holding the tail, if the tail is not at its start: appends
  // extend its checksum.
  const uint64_t tail_block = BlockStart(t / kChecksumBlockBytes) < t ? t / kChecksumBlockBytes : UINT64_MAX;
  // Checks block b against its stored checksum, which covers the block's
  // bytes below the recorded tail.
  auto check = [&](uint64_t b, Result* result) -> Status {
    checked.push_back(b);
    const uint64_t lo = BlockStart(b), end = (b + 1) * kChecksumBlockBytes;
    const uint64_t hi = std::min(end, t), covered = std::min(end, recorded);
    std::vector<std::pair<uint64_t, uint32_t>> stored;
    Status s = files_->LoadChecksums(stream_id_, b, b, &stored);
    if (s.code() == Status::Code::kNotSupported) s = Status::OK();
    if (!s.ok()) return s;
    const bool have = !stored.empty();
    if (lo < start_pos) {
      // Retention dropped the block's first bytes: nothing to check, but
      // the stored value still extends if it covers exactly up to t.
      *result = Result::kUncheckable;
      if (have && hi == covered && b == tail_block) {
        last_block_crc_for = b;
        out->last_crc = stored[0].second;
      }
      return Status::OK();
    }
    std::string bytes;
    s = ReadUnchecked(lo, hi - lo, &bytes);
    if (!s.ok()) return s;
    const uint32_t crc = crc32c::Value(bytes);
    if (hi <= inline_end_.load(std::memory_order_acquire)) {
      // Only inline bytes, committed in LMDB with the tail: nothing stored
      // to check them against, and none must be (see PendingChecksums).
      *result = Result::kMatch;
      if (b == tail_block) {
        last_block_crc_for = b;
        out->last_crc = crc;
      }
      return Status::OK();
    }
    if (hi < covered || !have) {
      // The tail was lowered inside this block (its stored checksum covers
      // bytes that are gone), or it has none: the bytes kept define it.
      out->puts.push_back(BlockChecksum{b, crc});
      *result = Result::kUncheckable;
    } else {
      *result = crc == stored[0].second ? Result::kMatch : Result::kMismatch;
    }
    if (*result != Result::kMismatch && b == tail_block) {
      last_block_crc_for = b;
      out->last_crc = crc;
    }
    return Status::OK();
  };
  if (t > start_pos) {
    // The tail region: from the last block back to the first that matches.
    const uint64_t first = start_pos / kChecksumBlockBytes;
    // With a synced checkpoint, bytes from its block on may be in part
    // unsynced, so only a full match keeps them.
    const bool use_synced = synced.present;
    const uint64_t synced_block = synced.tail / kChecksumBlockBytes;
    for (uint64_t b = (t - 1) / kChecksumBlockBytes + 1; b-- > first;) {
      Result r;
      Status s = check(b, &r);
      if (!s.ok()) return s;
      // Bytes missing below the checkpoint are damage, not a power loss
      // (they were synced): handled as without a checkpoint.
      const bool past_synced = b > synced_block || (b == synced_block && synced.tail <= t);
      if (synced.present && b == synced_block && BlockStart(b) < start_pos && start_pos <= synced.tail &&
          synced.tail <= t) {
        // Retention dropped the block's first bytes, so it cannot be
        // checked whole; but the checkpoint's checksum covers them up to
        // the synced tail: extended with the bytes after it, it must give
        // the stored value, or the tail goes back to the synced tail.
        std::vector<std::pair<uint64_t, uint32_t>> stored;
        s = files_->LoadChecksums(stream_id_, b, b, &stored);
        if (s.code() == Status::Code::kNotSupported) s = Status::OK();
        if (!s.ok()) return s;
        const uint64_t hi = std::min((b + 1) * kChecksumBlockBytes, t);
        std::string bytes;
        s = ReadUnchecked(synced.tail, hi - synced.tail, &bytes);
        if (!s.ok()) return s;
        if (hi == std::min((b + 1) * kChecksumBlockBytes, recorded) && !stored.empty() &&
            crc32c::Extend(synced.crc, bytes) == stored[0].second) {
          last_block_crc_for = b;
          out->last_crc = stored[0].second;
          break;
        }
        out->good_tail = synced.tail;
        if (synced.tail > BlockStart(b)) out->puts.push_back(BlockChecksum{b, synced.crc});
        last_block_crc_for = b;
        out->last_crc = synced.crc;
        break;
      }
      // A block whose head retention dropped and that the branch above
      // could not check: kept as without a checkpoint.
      if (r == Result::kMatch || !use_synced || !past_synced || BlockStart(b) < start_pos) {
        if (r != Result::kMismatch) break;
        out->good_tail = BlockStart(b);
        continue;
      }
      // Unverified bytes at or past the checkpoint's block: never kept.
      std::erase_if(out->puts, [&](const BlockChecksum& c) { return c.block == b; });
      if (last_block_crc_for == b) last_block_crc_for = UINT64_MAX;
      out->good_tail = BlockStart(b);
      if (b == synced_block && synced.tail > BlockStart(b)) {
        std::string bytes;
        s = ReadUnchecked(BlockStart(b), synced.tail - BlockStart(b), &bytes);
        if (!s.ok()) return s;
        if (crc32c::Value(bytes) == synced.crc) {
          // Durable since the last completed sync: cut exactly there.
          out->good_tail = synced.tail;
          out->puts.push_back(BlockChecksum{b, synced.crc});
          last_block_crc_for = b;
          out->last_crc = synced.crc;
          break;
        }
      }
    }
    // Bytes written back from the wal: the rest of their blocks must agree.
    for (const auto& [from, to] : replayed) {
      const uint64_t end = std::min(to, out->good_tail);
      if (from >= end) continue;
      for (uint64_t b = from / kChecksumBlockBytes; b <= (end - 1) / kChecksumBlockBytes; ++b) {
        if (std::find(checked.begin(), checked.end(), b) != checked.end()) continue;
        Result r;
        Status s = check(b, &r);
        if (!s.ok()) return s;
        if (r != Result::kMismatch) continue;
        // Damaged below the tail region, where the wal could not repair
        // it: the range is lost, but what follows it is not. Reads of it
        // fail (and say why); the tail stays.
        bad.push_back(b);
        Warn("stream " + std::to_string(stream_id_) + " (" + files_->StreamDir(stream_id_) + "): bytes [" +
             std::to_string(BlockStart(b)) + ", " + std::to_string((b + 1) * kChecksumBlockBytes) +
             ") do not match their checksum after the write-ahead replay; reads of them will fail");
      }
    }
  }
  const uint64_t good = out->good_tail;
  std::erase_if(out->puts, [&](const BlockChecksum& c) { return BlockStart(c.block) >= good; });
  for (uint64_t b : checked) {
    if (BlockStart(b) < good && std::find(bad.begin(), bad.end(), b) == bad.end()) out->verified.push_back(b);
  }
  const uint64_t last = good / kChecksumBlockBytes;
  if (BlockStart(last) == good) {
    out->last_known = true;  // the block holding the tail is empty
    out->last_crc = 0;
  } else if (last_block_crc_for == last) {
    out->last_known = true;
  } else if (good == recorded && t == start_pos) {
    // Nothing readable (retention took it all): the stored value, if any,
    // covers exactly [block start, tail).
    std::vector<std::pair<uint64_t, uint32_t>> stored;
    Status s = files_->LoadChecksums(stream_id_, last, last, &stored);
    if (s.ok() && !stored.empty()) {
      out->last_known = true;
      out->last_crc = stored[0].second;
    }
  }
  return Status::OK();
}

Status SegmentLog::ComputeChecksums(ChecksumRecovery* out) const {
  const uint64_t t = tail(), start_pos = start();
  *out = ChecksumRecovery{};
  out->good_tail = t;
  if (t > start_pos) {
    for (uint64_t b = start_pos / kChecksumBlockBytes; b <= (t - 1) / kChecksumBlockBytes; ++b) {
      const uint64_t lo = BlockStart(b), hi = std::min((b + 1) * kChecksumBlockBytes, t);
      out->verified.push_back(b);  // computed from the bytes: nothing to check
      if (lo < start_pos) continue;  // its first bytes are gone: no checksum
      std::string bytes;
      Status s = ReadUnchecked(lo, hi - lo, &bytes);
      if (!s.ok()) return s;
      out->puts.push_back(BlockChecksum{b, crc32c::Value(bytes)});
    }
  }
  const uint64_t last = t / kChecksumBlockBytes;
  if (BlockStart(last) == t) {
    out->last_known = true;
  } else if (!out->puts.empty() && out->puts.back().block == last) {
    out->last_known = true;
    out->last_crc = out->puts.back().crc;
  }
  return Status::OK();
}

void SegmentLog::InitChecksums(const ChecksumRecovery& found) {
  std::lock_guard append_lock(append_mu_);
  const uint64_t t = tail(), start_pos = start();
  crc_block_ = t / kChecksumBlockBytes;
  crc_known_ = found.last_known;
  crc_value_ = BlockStart(crc_block_) == t ? 0 : found.last_crc;
  if (BlockStart(crc_block_) == t) crc_known_ = true;
  {
    std::lock_guard lock(crc_mu_);
    committed_crc_block_ = crc_block_;
    committed_crc_value_ = crc_value_;
    committed_crc_known_ = crc_known_;
    committed_crc_end_ = t;
  }
  // Every whole block below the one holding the tail is checked on its
  // first read, unless recovery checked it already.
  verify_first_ = start_pos / kChecksumBlockBytes;
  verify_count_ = t > start_pos ? static_cast<size_t>((t - 1) / kChecksumBlockBytes - verify_first_) : 0;
  verified_.reset();
  if (verify_count_ > 0) {
    const size_t words = (verify_count_ + 63) / 64;
    verified_ = std::make_unique<std::atomic<uint64_t>[]>(words);
    for (size_t i = 0; i < words; ++i) verified_[i].store(0, std::memory_order_relaxed);
    for (uint64_t b : found.verified) MarkVerified(b);
  }
}

// ---- Recovery ------------------------------------------------------------

namespace {

struct FoundSegment {
  uint64_t base = 0;
  uint64_t size = 0;
  int64_t mtime_ms = 0;
  std::string name;
};

// Renames an unusable file out of the way (kept for inspection) without
// clobbering an earlier one.
Status SetAside(const std::string& dir, const std::string& name) {
  const std::string from = JoinPath(dir, name);
  std::string to = from + std::string(kLostSuffix);
  for (int i = 1; PathExists(to) && i < 1000; ++i) {
    to = from + std::string(kLostSuffix) + "." + std::to_string(i);
  }
  if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoStatus("rename", from, errno);
  return Status::OK();
}

Status CutFile(const std::string& path, uint64_t size) {
  UniqueFd fd;
  Status s = OpenFile(path, O_RDWR, 0, &fd);
  if (s.ok()) s = Truncate(fd.get(), size, path);
  if (s.ok()) s = SyncFile(fd.get(), path);
  return s;
}

}  // namespace

namespace {

// The end of the bytes present without a gap from `start`, given each
// file's base (ascending) and size.
uint64_t ContiguousEnd(const std::vector<uint64_t>& bases, const std::vector<uint64_t>& sizes,
                       uint64_t start) {
  auto it = std::upper_bound(bases.begin(), bases.end(), start);
  if (it == bases.begin()) return start;
  uint64_t pos = start;
  for (size_t i = static_cast<size_t>(it - bases.begin()) - 1; i < bases.size(); ++i) {
    if (bases[i] > pos) break;  // a missing file
    const uint64_t next = i + 1 < bases.size() ? bases[i + 1] : UINT64_MAX;
    const uint64_t end = bases[i] + sizes[i];
    pos = std::max(pos, std::min(end, next));
    if (end < next) break;  // a short file
  }
  return pos;
}

}  // namespace

Status SegmentLog::ReplayWal(const std::shared_ptr<SegmentFiles>& files, uint64_t stream_id,
                             uint64_t start, uint64_t tail, const std::vector<WalEntry>& entries,
                             std::vector<std::pair<uint64_t, uint64_t>>* replayed) {
  const std::string dir = files->StreamDir(stream_id);
  const std::string who = "stream " + std::to_string(stream_id) + " (" + dir + ")";
  std::vector<std::string> names;
  bool missing = false;
  Status s = ListDir(dir, &names, &missing);
  if (!s.ok()) return s;
  std::vector<uint64_t> bases;
  for (const std::string& name : names) {
    uint64_t seg_base;
    if (ParseSegmentFileName(name, &seg_base)) bases.push_back(seg_base);
  }
  std::sort(bases.begin(), bases.end());
  std::vector<uint64_t> sizes(bases.size());
  for (size_t i = 0; i < bases.size(); ++i) {
    const std::string path = files->FilePath(SegmentKey{stream_id, bases[i]});
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat", path, errno);
    sizes[i] = static_cast<uint64_t>(st.st_size);
  }

  // In position order, and never past a gap: an entry written beyond the
  // end of what a file holds would extend it with a hole that reads as NUL
  // bytes, and the hole would then pass for data (the file is no longer
  // short). Bytes after a gap are left out; Recover lowers the tail there.
  std::vector<const WalEntry*> ordered;
  ordered.reserve(entries.size());
  for (const WalEntry& e : entries) ordered.push_back(&e);
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const WalEntry* a, const WalEntry* b) { return a->position < b->position; });
  uint64_t frontier = ContiguousEnd(bases, sizes, start);
  std::vector<uint64_t> touched;
  for (const WalEntry* e : ordered) {
    const uint64_t end = std::min(e->position + e->bytes.size(), tail);
    uint64_t pos = std::max(e->position, start);
    if (pos < end && pos > frontier) {
      Warn(who + ": bytes [" + std::to_string(frontier) + ", " + std::to_string(pos) +
           ") are missing before a write-ahead entry; not replaying from " + std::to_string(pos));
      break;
    }
    while (pos < end) {
      auto next = std::upper_bound(bases.begin(), bases.end(), pos);
      if (next == bases.begin()) {
        Warn(who + ": no segment file holds position " + std::to_string(pos) +
             " of a write-ahead entry; leaving it out");
        break;
      }
      const size_t index = static_cast<size_t>(next - bases.begin()) - 1;
      const uint64_t seg_base = bases[index];
      const uint64_t piece_end = next == bases.end() ? end : std::min(end, *next);
      const std::string path = files->FilePath(SegmentKey{stream_id, seg_base});
      UniqueFd fd;
      s = OpenFile(path, O_WRONLY, 0, &fd);
      if (s.ok()) {
        s = WriteAt(fd.get(), std::string_view(e->bytes).substr(pos - e->position, piece_end - pos),
                    pos - seg_base, path);
      }
      if (!s.ok()) return s;
      sizes[index] = std::max(sizes[index], piece_end - seg_base);
      if (touched.empty() || touched.back() != seg_base) touched.push_back(seg_base);
      if (replayed != nullptr) replayed->emplace_back(pos, piece_end);
      pos = piece_end;
    }
    frontier = ContiguousEnd(bases, sizes, start);
  }
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  for (uint64_t seg_base : touched) {
    const std::string path = files->FilePath(SegmentKey{stream_id, seg_base});
    UniqueFd fd;
    s = OpenFile(path, O_WRONLY, 0, &fd);
    if (s.ok()) s = SyncData(fd.get(), path);
    if (!s.ok()) return s;
  }
  return Status::OK();
}

Status SegmentLog::Recover(std::shared_ptr<SegmentFiles> files, uint64_t stream_id, uint64_t base,
                           uint64_t start, uint64_t* tail, std::unique_ptr<SegmentLog>* out,
                           uint64_t inline_bytes) {
  const std::string dir = files->StreamDir(stream_id);
  const uint64_t recorded = std::max(*tail, base);
  start = std::clamp(start, base, recorded);
  // The inline value is committed with the tail that covers it, so it never
  // ends past the recorded tail, except when recovery lowers the tail (the
  // store then cuts the value to match). Files begin where it ends.
  const uint64_t inline_end = std::min(base + inline_bytes, recorded);
  const std::string who = "stream " + std::to_string(stream_id) + " (" + dir + ")";

  std::vector<std::string> names;
  bool missing = false;
  Status s = ListDir(dir, &names, &missing);
  if (!s.ok()) return s;

  std::vector<FoundSegment> found;
  for (std::string& name : names) {
    uint64_t seg_base;
    if (!ParseSegmentFileName(name, &seg_base)) {
      if (name.find(kLostSuffix) == std::string::npos) {
        Warn(who + ": ignoring unexpected file " + name);
      }
      continue;
    }
    struct stat st;
    const std::string path = JoinPath(dir, name);
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat", path, errno);
#if defined(__APPLE__)
    const int64_t mtime_ms = static_cast<int64_t>(st.st_mtimespec.tv_sec) * 1000 +
                             st.st_mtimespec.tv_nsec / 1000000;
#elif defined(_WIN32)
    const int64_t mtime_ms = static_cast<int64_t>(st.st_mtime) * 1000;  // whole seconds
#else
    const int64_t mtime_ms = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 +
                             st.st_mtim.tv_nsec / 1000000;
#endif
    found.push_back(
        FoundSegment{seg_base, static_cast<uint64_t>(st.st_size), mtime_ms, std::move(name)});
  }
  std::sort(found.begin(), found.end(),
            [](const FoundSegment& a, const FoundSegment& b) { return a.base < b.base; });

  auto log = std::make_unique<SegmentLog>(files, stream_id, base);
  uint64_t contiguous = std::max(start, inline_end);  // bytes [start, contiguous) are present
  bool gap = false;             // bytes are missing at `contiguous`
  bool names_changed = false;
  for (size_t i = 0; i < found.size(); ++i) {
    const FoundSegment& f = found[i];
    const std::string path = JoinPath(dir, f.name);
    if (f.base >= recorded || f.base < inline_end || f.base < base) {
      // Past the recorded tail: a roll that was never committed. Below the
      // log's base (or its inline bytes): unreadable by construction. Either
      // way no record needs it.
      if (f.base < base) Warn(who + ": deleting " + f.name + ", below the log's base " + std::to_string(base));
      if (f.base >= base && f.base < inline_end && f.base < recorded) {
        Warn(who + ": deleting " + f.name + ", below the end of its inline bytes " + std::to_string(inline_end));
      }
      files->fds().Forget(SegmentKey{stream_id, f.base});
      s = RemoveFile(path);
      if (!s.ok()) return s;
      names_changed = true;
      continue;
    }
    const uint64_t next_base = i + 1 < found.size() ? found[i + 1].base : UINT64_MAX;
    if (next_base <= start) {
      // Wholly below the retained start: a trim committed, and then the
      // process stopped before (or a power loss undid) the unlink. Like
      // Trim's own unlinks, this one needs no directory sync.
      files->fds().Forget(SegmentKey{stream_id, f.base});
      s = RemoveFile(path);
      if (!s.ok()) return s;
      continue;
    }
    const bool first = log->bases_.empty();
    if (gap || (first ? f.base > contiguous : f.base != contiguous) || f.base + f.size < start) {
      // Bytes before this file are missing, so its bytes can never be part
      // of the log again; new appends will reuse its positions.
      gap = true;
      Warn(who + ": setting aside " + f.name + " (bytes before it are missing)");
      s = SetAside(dir, f.name);
      if (!s.ok()) return s;
      names_changed = true;
      continue;
    }
    const uint64_t span_end = std::min(next_base, recorded);
    const uint64_t end = f.base + f.size;
    if (end > span_end) {
      // The torn tail of an unacknowledged append (the normal case after a
      // crash), or bytes shadowed by the next file (not normal).
      if (span_end != recorded) Warn(who + ": " + f.name + " overlaps the next segment; cutting it");
      s = CutFile(path, span_end - f.base);
      if (!s.ok()) return s;
    }
    log->bases_.push_back(f.base);
    log->write_ms_.push_back(f.mtime_ms);
    log->active_write_ms_.store(f.mtime_ms, std::memory_order_relaxed);
    contiguous = std::min(end, span_end);
    if (end < span_end) gap = true;
  }
  if (contiguous < recorded) {
    Warn(who + ": recorded tail is " + std::to_string(recorded) + " but only bytes [" +
         std::to_string(start) + ", " + std::to_string(contiguous) +
         ") are present; bytes [" + std::to_string(contiguous) + ", " + std::to_string(recorded) +
         ") are lost; lowering the tail to " + std::to_string(contiguous) +
         " (acknowledged bytes were lost: was the disk written without fsync, or were files removed?)");
  }
  if (names_changed) {
    s = SyncDir(dir);
    if (!s.ok()) return s;
  }
  log->dir_exists_ = !missing;
  log->inline_end_.store(inline_end, std::memory_order_relaxed);
  log->inline_committed_ = inline_end;
  // Appends go on inline only where nothing but inline bytes exist.
  log->inline_open_ = files->inline_stream_bytes() > 0 && log->bases_.empty() && contiguous == inline_end &&
                      inline_end - base < files->inline_stream_bytes();
  log->start_.store(start, std::memory_order_relaxed);
  log->tail_.store(contiguous, std::memory_order_relaxed);
  log->synced_ = contiguous;
  log->wal_covered_ = contiguous;
  log->base_checkpoint_due_.store(false, std::memory_order_relaxed);  // recovery decides
  *tail = contiguous;
  *out = std::move(log);
  return Status::OK();
}

}  // namespace ds
