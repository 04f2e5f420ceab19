// A fault injector for tests: an LD_PRELOAD library that makes the write
// and sync calls of a process fail on files whose path matches, so tests can
// drive the server's disk-full and I/O-error paths, LMDB's own I/O included
// (it calls libc like everything else in the engine).
//
// DS_FAULT_CONTROL names a control file, read on each intercepted call
// (tests only: it costs an open and a read per write). Missing or empty: no
// faults. Otherwise its first line is
//
//     <calls> <fault> <path substring>
//
//   calls   write (write, pwrite, pwrite64, writev, pwritev, pwritev64) or
//           sync (fsync, fdatasync, syncfs)
//   fault   ENOSPC, EDQUOT or EIO: the call fails with that errno and
//           writes nothing; SHORT (writes only): it writes the first half
//           of the bytes (at least one) and returns that count, as a
//           filesystem that fills up mid-write does
//   path    the call fails only if the file's path (readlink of
//           /proc/self/fd/N; for syncfs, any file of the filesystem, so
//           the directory's path) contains it
//
// Build: cc -shared -fPIC -O2 -o faultinject.so faultinject.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum calls { CALLS_WRITE, CALLS_SYNC };
enum fault { FAULT_NONE, FAULT_ERRNO, FAULT_SHORT };

// The fault to apply to a call of kind `calls` on `fd`; *err is the errno.
static enum fault Decide(enum calls calls, int fd, int* err) {
  const char* control = getenv("DS_FAULT_CONTROL");
  if (control == NULL || fd < 0) return FAULT_NONE;
  const int saved = errno;
  enum fault result = FAULT_NONE;
  char rule[4096];
  ssize_t got = -1;
  int cfd = open(control, O_RDONLY | O_CLOEXEC);
  if (cfd >= 0) {
    got = read(cfd, rule, sizeof rule - 1);
    close(cfd);
  }
  if (got > 0) {
    rule[got] = '\0';
    char* nl = strchr(rule, '\n');
    if (nl != NULL) *nl = '\0';
    char which[16], kind[16], pattern[4000];
    if (sscanf(rule, "%15s %15s %3999s", which, kind, pattern) == 3 &&
        strcmp(which, calls == CALLS_WRITE ? "write" : "sync") == 0) {
      char link[64], path[4096];
      snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
      ssize_t n = readlink(link, path, sizeof path - 1);
      if (n > 0) {
        path[n] = '\0';
        if (strstr(path, pattern) != NULL) {
          if (strcmp(kind, "ENOSPC") == 0) {
            result = FAULT_ERRNO, *err = ENOSPC;
          } else if (strcmp(kind, "EDQUOT") == 0) {
            result = FAULT_ERRNO, *err = EDQUOT;
          } else if (strcmp(kind, "EIO") == 0) {
            result = FAULT_ERRNO, *err = EIO;
          } else if (strcmp(kind, "SHORT") == 0 && calls == CALLS_WRITE) {
            result = FAULT_SHORT;
          }
        }
      }
    }
  }
  errno = saved;
  return result;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

static size_t Half(size_t n) { return n > 1 ? n / 2 : n; }

ssize_t write(int fd, const void* buf, size_t count) {
  int err = 0;
  switch (Decide(CALLS_WRITE, fd, &err)) {
    case FAULT_ERRNO: errno = err; return -1;
    case FAULT_SHORT: count = Half(count); break;
    case FAULT_NONE: break;
  }
  return REAL(write)(fd, buf, count);
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  int err = 0;
  switch (Decide(CALLS_WRITE, fd, &err)) {
    case FAULT_ERRNO: errno = err; return -1;
    case FAULT_SHORT: count = Half(count); break;
    case FAULT_NONE: break;
  }
  return REAL(pwrite)(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off64_t offset) {
  int err = 0;
  switch (Decide(CALLS_WRITE, fd, &err)) {
    case FAULT_ERRNO: errno = err; return -1;
    case FAULT_SHORT: count = Half(count); break;
    case FAULT_NONE: break;
  }
  return REAL(pwrite64)(fd, buf, count, offset);
}

// A vector write cut short: only the first iovec, halved.
static int ShortVector(const struct iovec* iov, int iovcnt, struct iovec* one) {
  if (iovcnt < 1) return iovcnt;
  one->iov_base = iov[0].iov_base;
  one->iov_len = Half(iov[0].iov_len);
  return 1;
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  int err = 0;
  struct iovec one;
  switch (Decide(CALLS_WRITE, fd, &err)) {
    case FAULT_ERRNO: errno = err; return -1;
    case FAULT_SHORT: return REAL(writev)(fd, &one, ShortVector(iov, iovcnt, &one));
    case FAULT_NONE: break;
  }
  return REAL(writev)(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  int err = 0;
  struct iovec one;
  switch (Decide(CALLS_WRITE, fd, &err)) {
    case FAULT_ERRNO: errno = err; return -1;
    case FAULT_SHORT: return REAL(pwritev)(fd, &one, ShortVector(iov, iovcnt, &one), offset);
    case FAULT_NONE: break;
  }
  return REAL(pwritev)(fd, iov, iovcnt, offset);
}

ssize_t pwritev64(int fd, const struct iovec* iov, int iovcnt, off64_t offset) {
  int err = 0;
  struct iovec one;
  switch (Decide(CALLS_WRITE, fd, &err)) {
    case FAULT_ERRNO: errno = err; return -1;
    case FAULT_SHORT: return REAL(pwritev64)(fd, &one, ShortVector(iov, iovcnt, &one), offset);
    case FAULT_NONE: break;
  }
  return REAL(pwritev64)(fd, iov, iovcnt, offset);
}

static int SyncFault(int fd) {
  int err = 0;
  if (Decide(CALLS_SYNC, fd, &err) == FAULT_ERRNO) {
    errno = err;
    return -1;
  }
  return 0;
}

int fsync(int fd) { return SyncFault(fd) != 0 ? -1 : REAL(fsync)(fd); }
int fdatasync(int fd) { return SyncFault(fd) != 0 ? -1 : REAL(fdatasync)(fd); }
int syncfs(int fd) { return SyncFault(fd) != 0 ? -1 : REAL(syncfs)(fd); }
