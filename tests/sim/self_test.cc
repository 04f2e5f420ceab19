// Checks of the fault model itself (crash_state.cc) on hand-written op logs:
// what a sync covers, what an O_DSYNC write, a directory fsync and a syncfs
// make durable, and what is lost without them. Run by `--self-test` (and by
// make test-sim before the seeds).
#include "self_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "crash_state.h"
#include "file_util.h"

namespace dssim {
namespace {

struct LogBuilder {
  OpLog log;
  LogBuilder& Mkdir(const std::string& p) { return Add(OpKind::kMkdir, p); }
  LogBuilder& Open(const std::string& p, int fd, int flags) {
    Op op(OpKind::kOpen);
    op.path = p;
    op.fd = fd;
    op.flags = static_cast<uint32_t>(flags);
    log.push_back(op);
    return *this;
  }
  LogBuilder& Write(int fd, uint64_t off, const std::string& data) {
    Op op(OpKind::kWrite);
    op.fd = fd;
    op.off = off;
    op.data = data;
    op.len = data.size();
    log.push_back(op);
    return *this;
  }
  // A sync that began now (covers everything logged so far) and completed.
  LogBuilder& Fsync(int fd) {
    Op op(OpKind::kFsync);
    op.fd = fd;
    op.cover = log.size();
    log.push_back(op);
    return *this;
  }
  LogBuilder& Syncfs() {
    Op op(OpKind::kSyncfs);
    op.cover = log.size();
    log.push_back(op);
    return *this;
  }
  LogBuilder& Rename(const std::string& a, const std::string& b) {
    Op op(OpKind::kRename);
    op.path = a;
    op.path2 = b;
    log.push_back(op);
    return *this;
  }
  LogBuilder& Add(OpKind k, const std::string& p) {
    Op op(k);
    op.path = p;
    log.push_back(op);
    return *this;
  }
};

// The file's content in the materialized state, or "<absent>".
std::string Content(const OpLog& log, uint64_t variant, const std::string& file) {
  char tmpl[] = "/tmp/ds_sim_self.XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string error;
  if (!MaterializeCrashState(log, {log.size(), variant}, 1, "", dir, nullptr, &error)) {
    ds::RemoveTree(dir);
    return "<error " + error + ">";
  }
  std::ifstream in(dir + "/" + file, std::ios::binary);
  std::string out = "<absent>";
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    out = ss.str();
  }
  ds::RemoveTree(dir);
  return out;
}

int failures = 0;
void Expect(const char* what, const std::string& got, const std::string& want) {
  if (got == want) return;
  ++failures;
  printf("self-test FAILED: %s: got \"%s\", want \"%s\"\n", what, got.c_str(), want.c_str());
}

}  // namespace

int RunSelfTest() {
  failures = 0;
  // A file in a new directory, its first write synced, its second not.
  LogBuilder base;
  base.Mkdir("d").Open("", 3, O_RDONLY | O_DIRECTORY).Open("d", 4, O_RDONLY | O_DIRECTORY);
  base.Open("d/f", 5, O_CREAT | O_WRONLY).Write(5, 0, "aaaa").Fsync(5).Write(5, 4, "bbbb");

  // No directory fsync: neither d nor d/f is durable.
  Expect("unsynced names are lost", Content(base.log, 0, "d/f"), "<absent>");
  Expect("everything kept (variant 1)", Content(base.log, 1, "d/f"), "aaaabbbb");

  LogBuilder named = base;
  named.Fsync(3).Fsync(4);  // both directories: the names are durable
  Expect("synced bytes survive, unsynced are lost", Content(named.log, 0, "d/f"), "aaaa");

  LogBuilder all = base;
  all.Syncfs();
  Expect("syncfs covers everything before it", Content(all.log, 0, "d/f"), "aaaabbbb");

  // A sync covers what completed before it *began*: a write logged after
  // its start (cover) is not covered.
  LogBuilder late = named;
  late.Write(5, 8, "cccc");
  Op sync(OpKind::kFsync);
  sync.fd = 5;
  sync.cover = late.log.size() - 1;  // began before the write completed
  late.log.push_back(sync);
  Expect("a write racing a sync is not covered", Content(late.log, 0, "d/f"), "aaaabbbb");

  // O_DSYNC writes are durable at once.
  LogBuilder dsync = named;
  dsync.Open("d/f", 6, O_WRONLY | O_DSYNC).Write(6, 0, "XY");
  Expect("O_DSYNC write is durable", Content(dsync.log, 0, "d/f"), "XYaa");

  // A rename is durable only once its directory is synced.
  LogBuilder moved = named;
  moved.Rename("d/f", "d/g");
  Expect("unsynced rename: old name stays", Content(moved.log, 0, "d/f"), "aaaa");
  Expect("unsynced rename: new name absent", Content(moved.log, 0, "d/g"), "<absent>");
  moved.Fsync(4);
  Expect("synced rename", Content(moved.log, 0, "d/g"), "aaaa");

  // An unsynced unlink may be undone by the power loss.
  LogBuilder gone = named;
  gone.Add(OpKind::kUnlink, "d/f");
  Expect("unsynced unlink is undone", Content(gone.log, 0, "d/f"), "aaaa");
  gone.Fsync(4);
  Expect("synced unlink", Content(gone.log, 0, "d/f"), "<absent>");

  printf("self-test: %s\n", failures == 0 ? "fault model rules hold" : "FAILED");
  return failures;
}

}  // namespace dssim
