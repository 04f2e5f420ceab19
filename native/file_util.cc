#include "file_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace ds {

void UniqueFd::Reset() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

Status ErrnoStatus(std::string_view what, const std::string& path, int err) {
  std::string msg(what);
  if (!path.empty()) {
    msg += ' ';
    msg += path;
  }
  msg += ": ";
  msg += std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Status::NoSpace(std::move(msg));
  return Status::IoError(std::move(msg));
}

Status OpenFile(const std::string& path, int flags, int mode, UniqueFd* out) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  *out = UniqueFd(fd);
  return Status::OK();
}

int WriteAtErrno(int fd, std::string_view bytes, uint64_t offset) {
  while (!bytes.empty()) {
    ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    // A zero-byte write with bytes left makes no progress; the kernel only
    // does that when the device is out of room.
    if (n == 0) return ENOSPC;
    bytes.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

Status WriteAt(int fd, std::string_view bytes, uint64_t offset, const std::string& path) {
  const int err = WriteAtErrno(fd, bytes, offset);
  return err == 0 ? Status::OK() : ErrnoStatus("pwrite", path, err);
}

Status ReadAt(int fd, char* buf, size_t len, uint64_t offset, const std::string& path,
              size_t* got) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("pread", path, errno);
    }
    if (n == 0) break;  // end of file
    done += static_cast<size_t>(n);
  }
  *got = done;
  return Status::OK();
}

Status CopyFileBytes(int src, int dst, uint64_t len, const std::string& src_path,
                     const std::string& dst_path, uint64_t* copied) {
  uint64_t done = 0;
#if defined(__linux__)
  bool kernel_copy = true;  // copy_file_range(2) is Linux's
#endif
  std::string buf;
  while (done < len) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(len - done, 1u << 20));
#if defined(__linux__)
    if (kernel_copy) {
      loff_t in = static_cast<loff_t>(done), out = static_cast<loff_t>(done);
      ssize_t n = ::copy_file_range(src, &in, dst, &out, want, 0);
      if (n > 0) {
        done += static_cast<uint64_t>(n);
        continue;
      }
      if (n == 0) break;  // end of the source
      if (errno == EINTR) continue;
      // Not supported across these file systems (or by this kernel): fall
      // back to copying through user space.
      if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP) {
        kernel_copy = false;
        continue;
      }
      return ErrnoStatus("copy_file_range to " + dst_path + " from", src_path, errno);
    }
#endif
    buf.resize(want);
    size_t got = 0;
    Status s = ReadAt(src, buf.data(), want, done, src_path, &got);
    if (!s.ok()) return s;
    if (got == 0) break;
    s = WriteAt(dst, std::string_view(buf.data(), got), done, dst_path);
    if (!s.ok()) return s;
    done += got;
  }
  *copied = done;
  return Status::OK();
}

namespace {

// A failed fsync is an I/O error whatever its errno, ENOSPC included: the
// kernel may have dropped the pages it could not write back and cleared
// the error, so nothing written since the last good sync can be trusted
// to be on disk, and a later sync succeeding proves nothing
// (STORAGE_FORMAT.md, "Commit protocol"). Not a full disk to wait out.
Status SyncFailure(std::string_view what, const std::string& path, int err) {
  Status s = ErrnoStatus(what, path, err);
  return s.code() == Status::Code::kNoSpace ? Status::IoError(s.message()) : s;
}

}  // namespace

// macOS: fsync(2) only hands the data to the drive, whose cache may still
// lose it; F_FULLFSYNC asks the drive to flush too (fsync where the file
// system cannot). Windows: _commit is FlushFileBuffers (win32_compat.h).
#if defined(__APPLE__)
static int FullSync(int fd) {
  if (::fcntl(fd, F_FULLFSYNC) == 0) return 0;
  return ::fsync(fd);
}
#endif

Status SyncData(int fd, const std::string& path) {
#if defined(__APPLE__)
  if (FullSync(fd) != 0) return SyncFailure("fcntl F_FULLFSYNC", path, errno);
#elif defined(_WIN32)
  if (::_commit(fd) != 0) return SyncFailure("FlushFileBuffers", path, errno);
#else
  if (::fdatasync(fd) != 0) return SyncFailure("fdatasync", path, errno);
#endif
  return Status::OK();
}

Status SyncFile(int fd, const std::string& path) {
#if defined(__APPLE__)
  if (FullSync(fd) != 0) return SyncFailure("fcntl F_FULLFSYNC", path, errno);
#elif defined(_WIN32)
  if (::_commit(fd) != 0) return SyncFailure("FlushFileBuffers", path, errno);
#else
  if (::fsync(fd) != 0) return SyncFailure("fsync", path, errno);
#endif
  return Status::OK();
}

Status SyncDir(const std::string& path) {
#if defined(_WIN32)
  // A directory cannot be opened as a file descriptor on Windows; NTFS
  // journals its names itself, so there is nothing to sync here.
  (void)path;
  return Status::OK();
#else
  UniqueFd fd;
  Status s = OpenFile(path, O_RDONLY | O_DIRECTORY, 0, &fd);
  if (!s.ok()) return s;
  return SyncFile(fd.get(), path);
#endif
}

#if defined(__linux__)
Status SyncFileSystem(const std::string& path) {
  UniqueFd fd;
  Status s = OpenFile(path, O_RDONLY | O_DIRECTORY, 0, &fd);
  if (!s.ok()) return s;
  if (::syncfs(fd.get()) != 0) return SyncFailure("syncfs", path, errno);
  return Status::OK();
}
#else
// Without syncfs(2): what callers need from it is that every file and name
// under `path` is durable, so sync each of them (slower, as many syncs as
// files, but the same guarantee).
Status SyncFileSystem(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat", path, errno);
  if (!S_ISDIR(st.st_mode)) {
    UniqueFd fd;
#if defined(_WIN32)
    const int flags = O_RDWR;  // FlushFileBuffers needs write access
#else
    const int flags = O_RDONLY;
#endif
    Status s = OpenFile(path, flags, 0, &fd);
    if (!s.ok()) return s;
    return SyncFile(fd.get(), path);
  }
  std::vector<std::string> names;
  Status s = ListDir(path, &names, nullptr);
  if (!s.ok()) return s;
  for (const std::string& name : names) {
    s = SyncFileSystem(JoinPath(path, name));
    if (!s.ok()) return s;
  }
  return SyncDir(path);
}
#endif

Status FileSize(int fd, const std::string& path, uint64_t* size) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus("fstat", path, errno);
  *size = static_cast<uint64_t>(st.st_size);
  return Status::OK();
}

Status Truncate(int fd, uint64_t size, const std::string& path) {
  while (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    if (errno != EINTR) return ErrnoStatus("ftruncate", path, errno);
  }
  return Status::OK();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Status CreateDir(const std::string& path, bool* created) {
  *created = false;
  if (::mkdir(path.c_str(), 0755) == 0) {
    *created = true;
    return Status::OK();
  }
  int err = errno;
  struct stat st;
  if (err == EEXIST && ::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::OK();
    return Status::IoError(path + " exists and is not a directory");
  }
  return ErrnoStatus("mkdir", path, err);
}

Status CreateDirsDurably(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::OK();
    return Status::IoError(path + " exists and is not a directory");
  }
  const std::string parent = ParentDir(path);
  if (parent != path) {
    Status s = CreateDirsDurably(parent);
    if (!s.ok()) return s;
  }
  bool created = false;
  Status s = CreateDir(path, &created);
  if (!s.ok() || !created) return s;
  return SyncDir(parent);
}

Status ListDir(const std::string& path, std::vector<std::string>* names, bool* missing) {
  names->clear();
  if (missing != nullptr) *missing = false;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    if (errno == ENOENT && missing != nullptr) {
      *missing = true;
      return Status::OK();
    }
    return ErrnoStatus("opendir", path, errno);
  }
  // closedir on every path out.
  struct Closer {
    DIR* d;
    ~Closer() { ::closedir(d); }
  } closer{dir};
  for (;;) {
    errno = 0;
    struct dirent* e = ::readdir(dir);
    if (e == nullptr) {
      if (errno != 0) return ErrnoStatus("readdir", path, errno);
      break;
    }
    std::string_view name(e->d_name);
    if (name == "." || name == "..") continue;
    names->emplace_back(name);
  }
  return Status::OK();
}

Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink", path, errno);
  return Status::OK();
}

Status RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::OK();
    return ErrnoStatus("lstat", path, errno);
  }
  if (!S_ISDIR(st.st_mode)) return RemoveFile(path);
  std::vector<std::string> names;
  bool missing = false;
  Status s = ListDir(path, &names, &missing);
  if (!s.ok() || missing) return s;
  for (const std::string& name : names) {
    s = RemoveTree(JoinPath(path, name));
    if (!s.ok()) return s;
  }
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("rmdir", path, errno);
  return Status::OK();
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  std::string out = dir;
  if (out.empty() || out.back() != '/') out += '/';
  out += name;
  return out;
}

std::string ParentDir(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

std::string ZeroPadded(uint64_t value) {
  char buf[24];
  int n = std::snprintf(buf, sizeof buf, "%016llu", static_cast<unsigned long long>(value));
  return std::string(buf, static_cast<size_t>(n));
}

bool ParseZeroPadded(std::string_view name, uint64_t* value) {
  if (name.size() < 16 || name.size() > 20) return false;
  uint64_t v = 0;
  for (char c : name) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *value = v;
  return true;
}

}  // namespace ds
