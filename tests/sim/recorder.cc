// An LD_PRELOAD interposer that records every mutating file operation the
// process makes under the directory named by $DSREC_ROOT (and the driver's
// acknowledgement markers) into an in-memory OpLog, in the order the
// operations completed. It never changes what the calls do.
//
// Ordering: a data or namespace operation is logged after it returned, under
// one mutex, so the log order is a valid completion order. A sync is logged
// when it returns with `cover` = the log length when it *started*: only
// operations that had completed before the sync began are guaranteed to be
// covered by it (a write racing with an fsync on another thread may miss
// it). The recorder is off until the driver calls dsrec_set_active(1).
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oplog.h"

using dssim::Op;
using dssim::OpKind;

namespace {

template <typename F>
F Real(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}
#define REAL(name) \
  static auto real = Real<decltype(&::name)>(#name)

struct State {
  std::mutex mu;
  dssim::OpLog log;
  std::string root;  // absolute, normalised, no trailing slash
  std::unordered_map<int, std::string> fds;  // tracked fd -> path relative to root
  std::unordered_map<int, bool> dsync;       // tracked fd opened O_DSYNC/O_SYNC
};

State& S() {
  static State* s = [] {
    auto* st = new State;
    const char* r = getenv("DSREC_ROOT");
    if (r != nullptr) st->root = r;
    while (st->root.size() > 1 && st->root.back() == '/') st->root.pop_back();
    return st;
  }();
  return *s;
}

std::atomic<bool> g_active{false};

// Lexical normalisation: collapses "//", "." and "..".
std::string Normalize(const std::string& p) {
  std::string out;
  size_t i = 0;
  std::vector<std::string> parts;
  while (i < p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    std::string c = p.substr(i, j - i);
    if (c == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!c.empty() && c != ".") {
      parts.push_back(c);
    }
    i = j + 1;
  }
  for (auto& c : parts) out += "/" + c;
  return out.empty() ? "/" : out;
}

std::string FdPath(int fd) {
  char link[64], buf[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  REAL(readlink);
  ssize_t n = real(link, buf, sizeof buf - 1);
  if (n < 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

// Absolute path of (dirfd, path); "" if it cannot be resolved.
std::string Absolute(int dirfd, const char* path) {
  if (path == nullptr) return "";
  if (path[0] == '/') return Normalize(path);
  std::string base;
  if (dirfd == AT_FDCWD) {
    char buf[PATH_MAX];
    if (getcwd(buf, sizeof buf) == nullptr) return "";
    base = buf;
  } else {
    State& s = S();
    {
      std::lock_guard lock(s.mu);
      auto it = s.fds.find(dirfd);
      if (it != s.fds.end()) base = it->second.empty() ? s.root : s.root + "/" + it->second;
    }
    if (base.empty()) base = FdPath(dirfd);
  }
  return Normalize(base + "/" + path);
}

// Path relative to the root, or false when outside it.
bool Relative(const std::string& abs, std::string* rel) {
  const std::string& root = S().root;
  if (root.empty() || abs.empty()) return false;
  if (abs == root) {
    *rel = "";
    return true;
  }
  if (abs.size() > root.size() && abs.compare(0, root.size(), root) == 0 && abs[root.size()] == '/') {
    *rel = abs.substr(root.size() + 1);
    return true;
  }
  return false;
}

bool Tracked(int fd, std::string* rel = nullptr) {
  if (!g_active.load(std::memory_order_relaxed)) return false;
  State& s = S();
  std::lock_guard lock(s.mu);
  auto it = s.fds.find(fd);
  if (it == s.fds.end()) return false;
  if (rel) *rel = it->second;
  return true;
}

void Push(Op op) {
  State& s = S();
  std::lock_guard lock(s.mu);
  s.log.push_back(std::move(op));
}

uint64_t Mark() {
  State& s = S();
  std::lock_guard lock(s.mu);
  return s.log.size();
}

void RecordOpen(int dirfd, const char* path, int flags, int fd) {
  if (fd < 0 || !g_active.load()) return;
  std::string rel;
  if (!Relative(Absolute(dirfd, path), &rel)) return;
  State& s = S();
  std::lock_guard lock(s.mu);
  s.fds[fd] = rel;
  s.dsync[fd] = (flags & (O_DSYNC | O_SYNC)) != 0;
  Op op{OpKind::kOpen};
  op.fd = fd;
  op.flags = static_cast<uint32_t>(flags);
  op.path = rel;
  s.log.push_back(std::move(op));
}

void RecordWrite(int fd, uint64_t off, std::string data) {
  Op op{OpKind::kWrite};
  op.fd = fd;
  op.off = off;
  op.len = data.size();
  op.data = std::move(data);
  Push(std::move(op));
}

void RecordPath(OpKind kind, int dirfd, const char* path, int dirfd2 = AT_FDCWD,
                const char* path2 = nullptr) {
  if (!g_active.load()) return;
  std::string rel, rel2;
  bool in1 = Relative(Absolute(dirfd, path), &rel);
  bool in2 = path2 != nullptr && Relative(Absolute(dirfd2, path2), &rel2);
  if (!in1 && !in2) return;
  Op op{kind};
  op.path = in1 ? rel : "\x01outside";
  op.path2 = in2 ? rel2 : (path2 ? "\x01outside" : "");
  Push(std::move(op));
}

std::string Gather(const struct iovec* iov, int iovcnt, size_t n) {
  std::string out;
  out.reserve(n);
  for (int i = 0; i < iovcnt && out.size() < n; ++i) {
    size_t take = std::min(iov[i].iov_len, n - out.size());
    out.append(static_cast<const char*>(iov[i].iov_base), take);
  }
  return out;
}

uint64_t CurrentOffset(int fd) {
  REAL(lseek);
  off_t o = real(fd, 0, SEEK_CUR);
  return o < 0 ? 0 : static_cast<uint64_t>(o);
}

void RecordSync(int fd, uint64_t cover) {
  Op op{OpKind::kFsync};
  op.fd = fd;
  op.cover = cover;
  Push(std::move(op));
}

}  // namespace

extern "C" {

void dsrec_set_active(int active) { g_active.store(active != 0); }

uint64_t dsrec_ack(const char* text, size_t len) {
  Op op{OpKind::kAck};
  op.data.assign(text, len);
  State& s = S();
  std::lock_guard lock(s.mu);
  s.log.push_back(std::move(op));
  return s.log.size() - 1;
}

dssim::OpLog* dsrec_log(void) { return &S().log; }

// Starts a new log watching `root` (absolute); forgets every descriptor.
void dsrec_reset(const char* root) {
  State& s = S();
  std::lock_guard lock(s.mu);
  s.log.clear();
  s.fds.clear();
  s.dsync.clear();
  s.root = Normalize(root);
}

int open(const char* path, int flags, ...) {
  REAL(open);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  int fd = real(path, flags, mode);
  RecordOpen(AT_FDCWD, path, flags, fd);
  return fd;
}

int open64(const char* path, int flags, ...) {
  REAL(open64);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  int fd = real(path, flags, mode);
  RecordOpen(AT_FDCWD, path, flags, fd);
  return fd;
}

int openat(int dirfd, const char* path, int flags, ...) {
  REAL(openat);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  int fd = real(dirfd, path, flags, mode);
  RecordOpen(dirfd, path, flags, fd);
  return fd;
}

int openat64(int dirfd, const char* path, int flags, ...) {
  REAL(openat64);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  int fd = real(dirfd, path, flags, mode);
  RecordOpen(dirfd, path, flags, fd);
  return fd;
}

int creat(const char* path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
int creat64(const char* path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }

int close(int fd) {
  REAL(close);
  bool tracked = Tracked(fd);
  int rc = real(fd);
  if (tracked) {
    State& s = S();
    std::lock_guard lock(s.mu);
    s.fds.erase(fd);
    s.dsync.erase(fd);
    Op op{OpKind::kClose};
    op.fd = fd;
    s.log.push_back(std::move(op));
  }
  return rc;
}

ssize_t write(int fd, const void* buf, size_t n) {
  REAL(write);
  ssize_t rc = real(fd, buf, n);
  if (rc > 0 && Tracked(fd)) {
    RecordWrite(fd, CurrentOffset(fd) - static_cast<uint64_t>(rc),
                std::string(static_cast<const char*>(buf), static_cast<size_t>(rc)));
  }
  return rc;
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  REAL(pwrite);
  ssize_t rc = real(fd, buf, n, off);
  if (rc > 0 && Tracked(fd)) {
    RecordWrite(fd, static_cast<uint64_t>(off),
                std::string(static_cast<const char*>(buf), static_cast<size_t>(rc)));
  }
  return rc;
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  REAL(pwrite64);
  ssize_t rc = real(fd, buf, n, off);
  if (rc > 0 && Tracked(fd)) {
    RecordWrite(fd, static_cast<uint64_t>(off),
                std::string(static_cast<const char*>(buf), static_cast<size_t>(rc)));
  }
  return rc;
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  REAL(writev);
  ssize_t rc = real(fd, iov, iovcnt);
  if (rc > 0 && Tracked(fd)) {
    RecordWrite(fd, CurrentOffset(fd) - static_cast<uint64_t>(rc),
                Gather(iov, iovcnt, static_cast<size_t>(rc)));
  }
  return rc;
}

ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t off) {
  REAL(pwritev);
  ssize_t rc = real(fd, iov, iovcnt, off);
  if (rc > 0 && Tracked(fd)) {
    RecordWrite(fd, static_cast<uint64_t>(off), Gather(iov, iovcnt, static_cast<size_t>(rc)));
  }
  return rc;
}

ssize_t pwritev64(int fd, const struct iovec* iov, int iovcnt, off_t off) {
  REAL(pwritev64);
  ssize_t rc = real(fd, iov, iovcnt, off);
  if (rc > 0 && Tracked(fd)) {
    RecordWrite(fd, static_cast<uint64_t>(off), Gather(iov, iovcnt, static_cast<size_t>(rc)));
  }
  return rc;
}

ssize_t copy_file_range(int fd_in, off_t* off_in, int fd_out, off_t* off_out, size_t len,
                        unsigned int flags) {
  REAL(copy_file_range);
  off_t in0 = off_in ? *off_in : 0, out0 = off_out ? *off_out : 0;
  ssize_t rc = real(fd_in, off_in, fd_out, off_out, len, flags);
  if (rc > 0 && Tracked(fd_out)) {
    uint64_t src = off_in ? static_cast<uint64_t>(in0) : CurrentOffset(fd_in) - static_cast<uint64_t>(rc);
    uint64_t dst = off_out ? static_cast<uint64_t>(out0) : CurrentOffset(fd_out) - static_cast<uint64_t>(rc);
    std::string data(static_cast<size_t>(rc), '\0');
    REAL(pread);
    ssize_t got = real(fd_in, data.data(), data.size(), static_cast<off_t>(src));
    if (got != rc) data.assign("\x01unreadable copy source");  // the checker flags it
    RecordWrite(fd_out, dst, std::move(data));
  }
  return rc;
}

int ftruncate(int fd, off_t len) {
  REAL(ftruncate);
  int rc = real(fd, len);
  if (rc == 0 && Tracked(fd)) {
    Op op{OpKind::kTruncate};
    op.fd = fd;
    op.len = static_cast<uint64_t>(len);
    Push(std::move(op));
  }
  return rc;
}

int ftruncate64(int fd, off_t len) { return ftruncate(fd, len); }

int truncate(const char* path, off_t len) {
  REAL(truncate);
  int rc = real(path, len);
  if (rc == 0 && g_active.load()) {
    std::string rel;
    if (Relative(Absolute(AT_FDCWD, path), &rel)) {
      Op op{OpKind::kTruncate};
      op.path = rel;
      op.len = static_cast<uint64_t>(len);
      Push(std::move(op));
    }
  }
  return rc;
}

int fallocate(int fd, int mode, off_t off, off_t len) {
  REAL(fallocate);
  int rc = real(fd, mode, off, len);
  if (rc == 0 && Tracked(fd)) {
    Op op{OpKind::kFallocate};
    op.fd = fd;
    op.flags = static_cast<uint32_t>(mode);
    op.off = static_cast<uint64_t>(off);
    op.len = static_cast<uint64_t>(len);
    Push(std::move(op));
  }
  return rc;
}

int fallocate64(int fd, int mode, off_t off, off_t len) { return fallocate(fd, mode, off, len); }

int posix_fallocate(int fd, off_t off, off_t len) {
  REAL(posix_fallocate);
  int rc = real(fd, off, len);
  if (rc == 0 && Tracked(fd)) {
    Op op{OpKind::kFallocate};
    op.fd = fd;
    op.off = static_cast<uint64_t>(off);
    op.len = static_cast<uint64_t>(len);
    Push(std::move(op));
  }
  return rc;
}

int fsync(int fd) {
  REAL(fsync);
  bool tracked = Tracked(fd);
  uint64_t cover = tracked ? Mark() : 0;
  int rc = real(fd);
  if (rc == 0 && tracked) RecordSync(fd, cover);
  return rc;
}

int fdatasync(int fd) {
  REAL(fdatasync);
  bool tracked = Tracked(fd);
  uint64_t cover = tracked ? Mark() : 0;
  int rc = real(fd);
  if (rc == 0 && tracked) RecordSync(fd, cover);
  return rc;
}

int syncfs(int fd) {
  REAL(syncfs);
  bool active = g_active.load();
  uint64_t cover = active ? Mark() : 0;
  int rc = real(fd);
  // Any descriptor on the watched file system syncs all of it; the driver
  // keeps the root on one file system.
  if (rc == 0 && active) {
    Op op{OpKind::kSyncfs};
    op.cover = cover;
    Push(std::move(op));
  }
  return rc;
}

void sync(void) {
  REAL(sync);
  bool active = g_active.load();
  uint64_t cover = active ? Mark() : 0;
  real();
  if (active) {
    Op op{OpKind::kSyncfs};
    op.cover = cover;
    Push(std::move(op));
  }
}

// sync_file_range starts writeback but makes nothing durable (no flush of the
// disk cache, no metadata): recorded as nothing. msync without MAP_SHARED
// writes through a descriptor would only matter with MDB_WRITEMAP, which the
// store does not use; it is passed through.

int rename(const char* a, const char* b) {
  REAL(rename);
  int rc = real(a, b);
  if (rc == 0) RecordPath(OpKind::kRename, AT_FDCWD, a, AT_FDCWD, b);
  return rc;
}

int renameat(int da, const char* a, int db, const char* b) {
  REAL(renameat);
  int rc = real(da, a, db, b);
  if (rc == 0) RecordPath(OpKind::kRename, da, a, db, b);
  return rc;
}

int renameat2(int da, const char* a, int db, const char* b, unsigned int flags) {
  REAL(renameat2);
  int rc = real(da, a, db, b, flags);
  if (rc == 0) RecordPath(OpKind::kRename, da, a, db, b);
  return rc;
}

int unlink(const char* p) {
  REAL(unlink);
  int rc = real(p);
  if (rc == 0) RecordPath(OpKind::kUnlink, AT_FDCWD, p);
  return rc;
}

int unlinkat(int d, const char* p, int flags) {
  REAL(unlinkat);
  int rc = real(d, p, flags);
  if (rc == 0) RecordPath((flags & AT_REMOVEDIR) ? OpKind::kRmdir : OpKind::kUnlink, d, p);
  return rc;
}

int mkdir(const char* p, mode_t mode) {
  REAL(mkdir);
  int rc = real(p, mode);
  if (rc == 0) RecordPath(OpKind::kMkdir, AT_FDCWD, p);
  return rc;
}

int mkdirat(int d, const char* p, mode_t mode) {
  REAL(mkdirat);
  int rc = real(d, p, mode);
  if (rc == 0) RecordPath(OpKind::kMkdir, d, p);
  return rc;
}

int rmdir(const char* p) {
  REAL(rmdir);
  int rc = real(p);
  if (rc == 0) RecordPath(OpKind::kRmdir, AT_FDCWD, p);
  return rc;
}

int link(const char* a, const char* b) {
  REAL(link);
  int rc = real(a, b);
  if (rc == 0) RecordPath(OpKind::kLink, AT_FDCWD, a, AT_FDCWD, b);
  return rc;
}

int linkat(int da, const char* a, int db, const char* b, int flags) {
  REAL(linkat);
  int rc = real(da, a, db, b, flags);
  if (rc == 0) RecordPath(OpKind::kLink, da, a, db, b);
  return rc;
}

}  // extern "C"
