// Win32 implementations of the POSIX calls in win32_compat.h.
#if defined(_WIN32)

#include "win32_compat.h"

#define WIN32_LEAN_AND_MEAN
#define NOMINMAX
#include <windows.h>

#include <cstdarg>

namespace {

HANDLE HandleOf(int fd) { return reinterpret_cast<HANDLE>(::_get_osfhandle(fd)); }

int ErrnoOf(DWORD error) {
  switch (error) {
    case ERROR_HANDLE_DISK_FULL:
    case ERROR_DISK_FULL:
      return ENOSPC;
    case ERROR_LOCK_VIOLATION:
    case ERROR_SHARING_VIOLATION:
      return EWOULDBLOCK;
    case ERROR_ACCESS_DENIED:
      return EACCES;
    case ERROR_INVALID_HANDLE:
      return EBADF;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
      return ENOENT;
    default:
      return EIO;
  }
}

OVERLAPPED At(int64_t offset) {
  OVERLAPPED ov{};
  ov.Offset = static_cast<DWORD>(static_cast<uint64_t>(offset) & 0xffffffffu);
  ov.OffsetHigh = static_cast<DWORD>(static_cast<uint64_t>(offset) >> 32);
  return ov;
}

// ReadFile/WriteFile take a DWORD count; larger requests are short.
DWORD Clamp(size_t len) { return len > 0x40000000u ? 0x40000000u : static_cast<DWORD>(len); }

}  // namespace

ssize_t pread(int fd, void* buf, size_t len, int64_t offset) {
  HANDLE h = HandleOf(fd);
  if (h == INVALID_HANDLE_VALUE) {
    errno = EBADF;
    return -1;
  }
  OVERLAPPED ov = At(offset);
  DWORD got = 0;
  if (!::ReadFile(h, buf, Clamp(len), &got, &ov)) {
    DWORD error = ::GetLastError();
    if (error == ERROR_HANDLE_EOF) return 0;
    errno = ErrnoOf(error);
    return -1;
  }
  return static_cast<ssize_t>(got);
}

ssize_t pwrite(int fd, const void* buf, size_t len, int64_t offset) {
  HANDLE h = HandleOf(fd);
  if (h == INVALID_HANDLE_VALUE) {
    errno = EBADF;
    return -1;
  }
  OVERLAPPED ov = At(offset);
  DWORD put = 0;
  if (!::WriteFile(h, buf, Clamp(len), &put, &ov)) {
    errno = ErrnoOf(::GetLastError());
    return -1;
  }
  return static_cast<ssize_t>(put);
}

int flock(int fd, int operation) {
  HANDLE h = HandleOf(fd);
  if (h == INVALID_HANDLE_VALUE) {
    errno = EBADF;
    return -1;
  }
  // A byte far past the end: Windows locks are mandatory, and one on the
  // file's bytes would keep a second server from reading who holds it.
  OVERLAPPED ov = At(int64_t{1} << 62);
  BOOL ok;
  if (operation & 8 /* LOCK_UN */) {
    ok = ::UnlockFileEx(h, 0, 1, 0, &ov);
  } else {
    DWORD flags = 0;
    if (operation & 2 /* LOCK_EX */) flags |= LOCKFILE_EXCLUSIVE_LOCK;
    if (operation & 4 /* LOCK_NB */) flags |= LOCKFILE_FAIL_IMMEDIATELY;
    ok = ::LockFileEx(h, flags, 0, 1, 0, &ov);
  }
  if (!ok) {
    errno = ErrnoOf(::GetLastError());
    return -1;
  }
  return 0;
}

char* realpath(const char* path, char* resolved) {
  char* out = ::_fullpath(resolved, path, PATH_MAX);
  if (out == nullptr) return nullptr;
  DWORD attributes = ::GetFileAttributesA(out);
  if (attributes == INVALID_FILE_ATTRIBUTES) {
    errno = ENOENT;
    return nullptr;
  }
  return out;
}

int fcntl(int fd, int cmd, ...) {
  (void)fd, (void)cmd;
  errno = ENOSYS;
  return -1;
}

#endif  // _WIN32
