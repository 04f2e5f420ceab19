// The POSIX calls the durable store makes, on Windows (mingw-w64), for the
// windows_amd64 release build only: cgo force-includes this header into
// every C++ file there (bridge.go, `#cgo windows CXXFLAGS: -include`), and
// native/compat/win32/ stands in for <sys/file.h> and <sys/socket.h>.
//
// The store's files go through the C runtime's descriptors, opened binary
// and not inherited; positioned I/O, flock and fsync map to their Win32
// equivalents (win32_compat.cc). What Windows cannot do the POSIX way is
// handled where it is used: a directory cannot be synced (NTFS journals
// names; SyncDir is a no-op), SSE connection takeover is off.
#pragma once

#if defined(_WIN32)

#include <direct.h>
#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <limits.h>
#include <process.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

// Every open goes through ds::OpenFile, which adds O_CLOEXEC: on Windows
// that means binary mode (no newline translation) and not inherited.
#define O_CLOEXEC (O_NOINHERIT | O_BINARY)
// Directories are never opened as files on Windows (see SyncDir).
#define O_DIRECTORY 0x10000000
#ifndef EDQUOT
#define EDQUOT 10069  // WSAEDQUOT: never an errno here, but a distinct case value
#endif
#ifndef EWOULDBLOCK
#define EWOULDBLOCK EAGAIN
#endif
#define F_GETFL 3
#define F_SETFL 4
#define O_NONBLOCK 0x20000000

// pread/pwrite through ReadFile/WriteFile at an OVERLAPPED offset: the
// descriptor's file position is neither used nor moved, as in POSIX.
ssize_t pread(int fd, void* buf, size_t len, int64_t offset);
ssize_t pwrite(int fd, const void* buf, size_t len, int64_t offset);
// LockFileEx/UnlockFileEx on the first byte; LOCK_NB fails with
// EWOULDBLOCK when another process holds it.
int flock(int fd, int operation);
// GetFullPathName: absolute and normalized (symbolic links are not
// resolved; the result is only the key of a per-process registry).
char* realpath(const char* path, char* resolved);
// File status flags are a socket matter here, and sockets are never
// adopted on Windows: always fails with ENOSYS.
int fcntl(int fd, int cmd, ...);

#ifdef __cplusplus
// Files that are open can be deleted and renamed, as on POSIX: the store
// unlinks segment files of a deleted stream or a retention trim and renames
// files into place while readers may hold them open. The C runtime's open
// does not share FILE_SHARE_DELETE, and its rename/unlink do not replace a
// target or free a name at once, so:
//  - open(path, flags, mode) (three arguments, C++ linkage) is chosen over
//    the C runtime's variadic open by overload resolution: CreateFileW with
//    FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, UTF-8 path.
//  - rename and unlink are macros for ds_win32_rename / ds_win32_unlink,
//    defined after every C runtime header that declares them is included
//    (here, first), so only calls are rewritten. rename replaces an existing
//    target (MoveFileExW, MOVEFILE_REPLACE_EXISTING); unlink deletes with
//    POSIX semantics where the filesystem has them (Windows 10 1607+ NTFS:
//    the name is gone at once, open handles keep the data), and otherwise
//    marks the file deleted when its last handle closes.
#include <cstdio>
#include <stdio.h>
int open(const char* path, int flags, int mode);
int ds_win32_rename(const char* from, const char* to);
int ds_win32_unlink(const char* path);
#define rename(from, to) ds_win32_rename(from, to)
#define unlink(path) ds_win32_unlink(path)
#endif

inline int mkdir(const char* path, int mode) {
  (void)mode;
  return ::_mkdir(path);
}
inline int lstat(const char* path, struct stat* st) { return ::stat(path, st); }
// The C runtime's gmtime returns a per-thread buffer, so copying it out is
// as safe as POSIX gmtime_r.
inline struct tm* gmtime_r(const time_t* t, struct tm* out) {
  const struct tm* r = ::gmtime(t);
  if (r == nullptr) return nullptr;
  *out = *r;
  return out;
}

#endif  // _WIN32
