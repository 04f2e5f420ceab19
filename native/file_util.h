// POSIX file plumbing for the durable store: an owning file descriptor, I/O
// loops that survive short reads/writes and EINTR, and the fsync discipline a
// crash-safe layout needs (data with fdatasync, names with an fsync of the
// directory that holds them).
//
// Every function returns a Status whose message names the path and the
// failing call; ENOSPC and EDQUOT become Status::NoSpace so the engine can
// tell "disk full" from "disk broken".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"

namespace ds {

// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = other.Release();
    }
    return *this;
  }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the descriptor. A close error is ignored: every byte that must
  // be durable has been fdatasync'ed (and checked) before we get here.
  void Reset();

 private:
  int fd_ = -1;
};

// A Status for a failed system call: `what` is the call and its subject,
// e.g. "pwrite /data/segments/…/0000000000000000.seg".
Status ErrnoStatus(std::string_view what, const std::string& path, int err);

// open(2) with O_CLOEXEC added.
Status OpenFile(const std::string& path, int flags, int mode, UniqueFd* out);

// Writes all of `bytes` at `offset` (pwrite loop).
Status WriteAt(int fd, std::string_view bytes, uint64_t offset, const std::string& path);
// The same, returning 0 or the errno, for callers that name the file only
// when the write failed (building a path costs allocations per write).
int WriteAtErrno(int fd, std::string_view bytes, uint64_t offset);

// Reads up to `len` bytes at `offset` into `buf`; `*got` < len only at end
// of file.
Status ReadAt(int fd, char* buf, size_t len, uint64_t offset, const std::string& path,
              size_t* got);

// Copies `len` bytes from the start of `src` to the start of `dst`
// (copy_file_range where the kernel can, pread/pwrite otherwise). `*copied`
// < len only if `src` ends early.
Status CopyFileBytes(int src, int dst, uint64_t len, const std::string& src_path,
                     const std::string& dst_path, uint64_t* copied);

Status SyncData(int fd, const std::string& path);  // fdatasync
Status SyncFile(int fd, const std::string& path);  // fsync
// fsync of a directory: makes the names created, renamed or removed in it
// durable.
Status SyncDir(const std::string& path);
// syncfs(2) of the file system holding `path`: one journal commit instead of
// thousands of fdatasyncs when many files are dirty.
Status SyncFileSystem(const std::string& path);

Status FileSize(int fd, const std::string& path, uint64_t* size);
Status Truncate(int fd, uint64_t size, const std::string& path);

bool PathExists(const std::string& path);

// mkdir; `*created` says whether it was made now (an existing directory is
// fine). Does not sync anything.
Status CreateDir(const std::string& path, bool* created);
// mkdir -p, then fsync the parent of every directory it created, so the new
// names survive a power loss.
Status CreateDirsDurably(const std::string& path);

// The names in a directory, without "." and "..". `*missing` (if given) is
// set when the directory does not exist, which is then not an error.
Status ListDir(const std::string& path, std::vector<std::string>* names,
               bool* missing = nullptr);

// unlink(2); a missing file is not an error.
Status RemoveFile(const std::string& path);
// rm -rf. A missing path is not an error. Does not sync the parent.
Status RemoveTree(const std::string& path);

std::string JoinPath(const std::string& dir, std::string_view name);
// "/a/b/c" -> "/a/b"; "c" -> ".".
std::string ParentDir(const std::string& path);

// Names in the data directory carry numbers as 16 zero-padded decimal
// digits, so `ls` lists them in numeric order. Numbers above 10^16 - 1 get
// more digits.
std::string ZeroPadded(uint64_t value);
// Parses a name made only of at least 16 decimal digits; false otherwise.
bool ParseZeroPadded(std::string_view name, uint64_t* value);

}  // namespace ds
