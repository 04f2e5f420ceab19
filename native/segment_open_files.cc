// SegmentLog::OpenFiles: catch-up reads served with sendfile(2) instead of
// a copy through the engine and Go (README, "Performance").
//
// Why a descriptor of its own per read rather than the cached one: the
// caller's sendfile uses and moves the descriptor's file position, which
// concurrent readers of one file must not share. The name is opened while
// the range is known to be in the log; if retention deletes the file
// afterwards, the descriptor keeps its bytes (they never change below the
// tail), and a file already gone means the range was dropped.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "segment_log.h"

namespace ds {
namespace {

Status DroppedRange(uint64_t stream_id, uint64_t pos) {
  return Status::Gone("position " + std::to_string(pos) + " of stream " + std::to_string(stream_id) +
                      " was dropped by retention");
}

}  // namespace

Status SegmentLog::OpenFiles(uint64_t from, size_t len, std::vector<FileRange>* out) const {
#if defined(_WIN32)
  (void)from, (void)len, (void)out;
  return Status::NotSupported("sendfile reads need POSIX files");
#else
  if (len == 0) return Status::OK();
  const uint64_t tail = tail_.load(std::memory_order_acquire);
  if (from < base_ || from < start_.load(std::memory_order_acquire) || from > tail ||
      len > tail - from) {
    return Status::NotSupported("range outside the log: the copying read reports it");
  }
  // The checksum guarantee: a block is served only once it has been read
  // and matched (or was appended by this process). The copying Read checks
  // and marks them; the next read of these bytes comes here.
  if (verify_count_ != 0) {
    const uint64_t last = (from + len - 1) / kChecksumBlockBytes;
    for (uint64_t b = from / kChecksumBlockBytes; b <= last; ++b) {
      if (!Verified(b)) return Status::NotSupported("blocks not checked yet");
    }
  }
  const size_t old_size = out->size();
  uint64_t pos = from;
  size_t left = len;
  while (left > 0) {
    uint64_t seg_base = 0, seg_end = 0;
    if (!Locate(pos, &seg_base, &seg_end)) {
      out->resize(old_size);
      return Status::NotSupported("no segment for the range: the copying read reports it");
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, seg_end - pos));
    const std::string path = files_->FilePath(Key(seg_base));
    int raw;
    do {
      raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (raw < 0 && errno == EINTR);
    UniqueFd fd(raw);
    struct stat st;
    // A file shorter than the committed bytes is damage the copying read
    // reports (a short sendfile would cut the response mid-body).
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0 ||
        static_cast<uint64_t>(st.st_size) < pos - seg_base + n) {
      out->resize(old_size);
      if (from < start_.load(std::memory_order_acquire)) return DroppedRange(stream_id_, from);
      return Status::NotSupported("cannot open " + path + " for sendfile: the copying read reports it");
    }
    out->push_back(FileRange{std::make_shared<UniqueFd>(std::move(fd)), pos - seg_base, n});
    pos += n;
    left -= n;
  }
  // Retention raises start before it deletes files: a trim that began
  // before our opens makes the range gone, as for a copying read.
  if (from < start_.load(std::memory_order_acquire)) {
    out->resize(old_size);
    return DroppedRange(stream_id_, from);
  }
  return Status::OK();
#endif
}

}  // namespace ds
