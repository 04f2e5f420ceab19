// Win32 implementations of the POSIX calls in win32_compat.h.
#if defined(_WIN32)

#include "win32_compat.h"

#define WIN32_LEAN_AND_MEAN
#define NOMINMAX
#include <windows.h>

#include <cstdarg>
#include <string>

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
    case ERROR_INVALID_NAME:
      return ENOENT;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
      return EEXIST;
    case ERROR_DIR_NOT_EMPTY:
      return ENOTEMPTY;
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

// UTF-8 (what Go hands the engine) to the UTF-16 Windows' W calls take.
bool Wide(const char* path, std::wstring* out) {
  int n = ::MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, nullptr, 0);
  if (n <= 0) return false;
  out->resize(static_cast<size_t>(n));
  if (::MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, out->data(), n) != n) return false;
  out->resize(static_cast<size_t>(n - 1));  // without the terminator
  return true;
}

constexpr DWORD kShareAll = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;

}  // namespace

int open(const char* path, int flags, int mode) {
  (void)mode;  // no POSIX permission bits on Windows
  std::wstring wide;
  if (!Wide(path, &wide)) {
    errno = EINVAL;
    return -1;
  }
  DWORD access = 0;
  switch (flags & (O_RDONLY | O_WRONLY | O_RDWR)) {
    case O_WRONLY:
      access = GENERIC_WRITE;
      break;
    case O_RDWR:
      access = GENERIC_READ | GENERIC_WRITE;
      break;
    default:
      access = GENERIC_READ;
  }
  DWORD disposition = OPEN_EXISTING;
  if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
    disposition = CREATE_NEW;
  } else if ((flags & (O_CREAT | O_TRUNC)) == (O_CREAT | O_TRUNC)) {
    disposition = CREATE_ALWAYS;
  } else if (flags & O_CREAT) {
    disposition = OPEN_ALWAYS;
  } else if (flags & O_TRUNC) {
    disposition = TRUNCATE_EXISTING;
  }
  // Directories open only with backup semantics (see SyncDir: never done).
  DWORD attributes = FILE_ATTRIBUTE_NORMAL;
  if (flags & O_DIRECTORY) attributes |= FILE_FLAG_BACKUP_SEMANTICS;
  // A null SECURITY_ATTRIBUTES: the handle is not inherited (O_NOINHERIT).
  HANDLE h = ::CreateFileW(wide.c_str(), access, kShareAll, nullptr, disposition, attributes, nullptr);
  if (h == INVALID_HANDLE_VALUE) {
    DWORD error = ::GetLastError();
    errno = error == ERROR_SHARING_VIOLATION ? EACCES : ErrnoOf(error);
    return -1;
  }
  // Binary mode: _open_osfhandle sets text mode only when asked (_O_TEXT).
  int fd = ::_open_osfhandle(reinterpret_cast<intptr_t>(h), flags & (O_APPEND | O_NOINHERIT));
  if (fd < 0) {
    ::CloseHandle(h);
    errno = EMFILE;
    return -1;
  }
  return fd;
}

int ds_win32_rename(const char* from, const char* to) {
  std::wstring wfrom, wto;
  if (!Wide(from, &wfrom) || !Wide(to, &wto)) {
    errno = EINVAL;
    return -1;
  }
  // Works while the source (or a replaced target) is open by handles that
  // share delete access, which every open above does.
  if (!::MoveFileExW(wfrom.c_str(), wto.c_str(), MOVEFILE_REPLACE_EXISTING)) {
    errno = ErrnoOf(::GetLastError());
    return -1;
  }
  return 0;
}

int ds_win32_unlink(const char* path) {
  std::wstring wide;
  if (!Wide(path, &wide)) {
    errno = EINVAL;
    return -1;
  }
  HANDLE h = ::CreateFileW(wide.c_str(), DELETE, kShareAll, nullptr, OPEN_EXISTING,
                           FILE_FLAG_OPEN_REPARSE_POINT, nullptr);
  if (h == INVALID_HANDLE_VALUE) {
    DWORD error = ::GetLastError();
    errno = error == ERROR_SHARING_VIOLATION ? EACCES : ErrnoOf(error);
    return -1;
  }
  FILE_DISPOSITION_INFO_EX posix{};
  posix.Flags = FILE_DISPOSITION_FLAG_DELETE | FILE_DISPOSITION_FLAG_POSIX_SEMANTICS;
  BOOL ok = ::SetFileInformationByHandle(h, FileDispositionInfoEx, &posix, sizeof posix);
  if (!ok) {  // older Windows, FAT, Wine: deleted when the last handle closes
    FILE_DISPOSITION_INFO classic{};
    classic.DeleteFile = TRUE;
    ok = ::SetFileInformationByHandle(h, FileDispositionInfo, &classic, sizeof classic);
  }
  DWORD error = ok ? 0 : ::GetLastError();
  ::CloseHandle(h);
  if (!ok) {
    errno = ErrnoOf(error);
    return -1;
  }
  return 0;
}

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
