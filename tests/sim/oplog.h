// The operation log the recorder (recorder.cc, LD_PRELOADed) keeps of every
// mutating file operation under the watched root, and the driver's
// acknowledgement markers, in the order they happened. Shared by the
// recorder and the simulator; both are built by the same compiler, and the
// log crosses between them as a pointer within one process.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dssim {

enum class OpKind : uint8_t {
  kOpen,      // path, flags, fd (result); O_CREAT may create, O_TRUNC truncates
  kClose,     // fd
  kWrite,     // fd, off, data (write, pwrite, writev, pwritev, copy_file_range)
  kTruncate,  // fd (or -1 with path), len: size change
  kFallocate, // fd, off, len, flags = mode
  kFsync,     // fd, cover: fsync/fdatasync; ops with index < cover on that file are durable
  kSyncfs,    // cover: everything with index < cover is durable (sync(2) too)
  kRename,    // path -> path2
  kUnlink,    // path
  kMkdir,     // path
  kRmdir,     // path
  kLink,      // path -> path2 (new name)
  kAck,       // data: the driver's marker text
};

struct Op {
  Op() = default;
  explicit Op(OpKind k) : kind(k) {}
  OpKind kind = OpKind::kAck;
  int fd = -1;
  uint32_t flags = 0;
  uint64_t off = 0;
  uint64_t len = 0;
  uint64_t cover = 0;
  std::string path;   // relative to the root ("" is the root itself)
  std::string path2;
  std::string data;
};

using OpLog = std::vector<Op>;

}  // namespace dssim

// Exported by the recorder; the simulator finds them with dlsym (absent when
// the recorder is not preloaded).
extern "C" {
typedef void (*dsrec_set_active_fn)(int active);
typedef uint64_t (*dsrec_ack_fn)(const char* text, size_t len);  // returns its log index
typedef dssim::OpLog* (*dsrec_log_fn)(void);
typedef void (*dsrec_reset_fn)(const char* root);
}
