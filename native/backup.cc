// ds_backup: a consistent copy of a data directory that a server may be
// writing to, without stopping it and without its LOCK.
//
// Why this is consistent: the LMDB snapshot (mdb_env_copyfd2 runs in one
// read transaction) fixes every stream's tail; segment bytes below a
// committed tail are never rewritten, so copying them afterwards yields
// exactly the snapshot's bytes. The only thing that can happen to them
// meanwhile is deletion (the stream was erased after the snapshot): such a
// stream is dropped from the backup, as if erased. Streams are copied in id
// order, sources before their forks, and a source is only erased after all
// its forks, so a fork in the backup never lacks its source.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <new>
#include <string>
#include <vector>

#include "durable_streams.h"
#include "file_util.h"
#include "lmdb_env.h"
#include "lmdb_store.h"
#include "record_codec.h"
#include "segment_log.h"
#include "status_code.h"

namespace ds {
namespace {

constexpr const char* kEnvDir = "streams.db";
constexpr const char* kSegmentsDir = "segments";

void Note(const std::string& message) {
  std::fprintf(stderr, "durable-streams backup: %s\n", message.c_str());
}

Status PrepareDestination(const std::string& dest) {
  std::vector<std::string> names;
  bool missing = false;
  Status s = ListDir(dest, &names, &missing);
  if (!s.ok()) return s;
  if (!missing && !names.empty()) {
    return Status::InvalidArgument("backup destination " + dest + " exists and is not empty");
  }
  s = CreateDirsDurably(dest);
  if (s.ok()) s = CreateDirsDurably(JoinPath(dest, kEnvDir));
  if (s.ok()) s = CreateDirsDurably(JoinPath(dest, kSegmentsDir));
  return s;
}

// mdb_env_copyfd2 from `env` into `fd`, restarting if the writer grew the
// map under a separately opened environment.
Status CopyInto(MDB_env* env, int fd, const std::string& dest_path) {
  for (;;) {
#if defined(_WIN32)
    // LMDB takes a Win32 HANDLE there, not a C runtime descriptor.
    int rc = mdb_env_copyfd2(env, reinterpret_cast<mdb_filehandle_t>(::_get_osfhandle(fd)), 0);
#else
    int rc = mdb_env_copyfd2(env, fd, 0);
#endif
    if (rc == 0) return Status::OK();
    if (rc != MDB_MAP_RESIZED) return lmdb::ToStatus("copy LMDB environment to " + dest_path, rc);
    rc = mdb_env_set_mapsize(env, 0);
    if (rc != 0) return lmdb::ToStatus("adopt the new LMDB map size", rc);
    Status s = Truncate(fd, 0, dest_path);
    if (!s.ok()) return s;
    if (::lseek(fd, 0, SEEK_SET) != 0) return ErrnoStatus("lseek", dest_path, errno);
  }
}

Status CopyEnvironment(const std::string& data_dir, const std::string& dest) {
  const std::string src_env = JoinPath(data_dir, kEnvDir);
  const std::string dest_path = JoinPath(JoinPath(dest, kEnvDir), "data.mdb");
  UniqueFd fd;
  Status s = OpenFile(dest_path, O_WRONLY | O_CREAT | O_EXCL, 0644, &fd);
  if (!s.ok()) return s;
  s = LmdbStore::WithEnvironment(data_dir, [&](MDB_env* open_env) -> Status {
    if (open_env != nullptr) return CopyInto(open_env, fd.get(), dest_path);
    // Not open in this process: open it as a reader (LMDB supports readers
    // in other processes than the writer).
    MDB_env* raw = nullptr;
    int rc = mdb_env_create(&raw);
    if (rc != 0) return lmdb::ToStatus("mdb_env_create", rc);
    lmdb::Env env(raw);
    rc = mdb_env_set_maxdbs(raw, lmdb::kMaxDbs);
    if (rc == 0) rc = mdb_env_open(raw, src_env.c_str(), MDB_RDONLY | MDB_NOTLS, 0644);
    if (rc != 0) return lmdb::ToStatus("open " + src_env + " for reading", rc);
    return CopyInto(raw, fd.get(), dest_path);
  });
  if (s.ok()) s = SyncFile(fd.get(), dest_path);
  return s;
}

// What the copied snapshot says about each stream.
struct SnapshotStream {
  uint64_t id = 0;
  uint64_t base = 0;
  uint64_t start = 0;  // first retained position (retention), >= base
  uint64_t tail = 0;
  bool start_raised = false;  // retention moved on during the backup
};

Status ReadSnapshot(const std::string& env_dir, std::vector<SnapshotStream>* out) {
  MDB_env* raw = nullptr;
  int rc = mdb_env_create(&raw);
  if (rc != 0) return lmdb::ToStatus("mdb_env_create", rc);
  lmdb::Env env(raw);
  rc = mdb_env_set_maxdbs(raw, lmdb::kMaxDbs);
  // Our private copy: no lock file needed, none left behind.
  if (rc == 0) rc = mdb_env_open(raw, env_dir.c_str(), MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0644);
  if (rc != 0) return lmdb::ToStatus("open the copied environment " + env_dir, rc);
  lmdb::Txn txn;
  rc = txn.Begin(raw, MDB_RDONLY);
  lmdb::Dbs dbs;
  if (rc == 0) rc = lmdb::OpenDbs(txn.get(), /*create=*/false, &dbs);
  if (rc != 0) return lmdb::ToStatus("read the copied environment " + env_dir, rc);
  std::vector<RecoveredStream> streams;
  std::vector<std::string> orphans;
  Status s = lmdb::ReadStreams(txn.get(), dbs, &streams, &orphans);
  if (!s.ok()) return s;
  out->clear();
  for (const RecoveredStream& r : streams) {
    const uint64_t tail = std::max(r.record.tail, r.record.fork_offset);
    // Inline bytes (format 5) came with the environment: the files hold
    // only the positions from where they end.
    std::string_view inline_bytes;
    rc = lmdb::GetInline(txn.get(), dbs, r.record.id, &inline_bytes);
    if (rc != 0) return lmdb::ToStatus("read the copied environment " + env_dir, rc);
    const uint64_t files_base = std::min(r.record.fork_offset + inline_bytes.size(), tail);
    out->push_back(SnapshotStream{r.record.id, files_base,
                                  std::clamp(r.record.start, files_base, tail), tail});
  }
  return Status::OK();
}

// Brings the copied environment in line with the copied files: drops
// streams erased while the backup ran, and raises the start of streams that
// retention trimmed meanwhile (their older files were gone).
Status FixSnapshot(const std::string& env_dir, const std::vector<uint64_t>& ids,
                   const std::vector<SnapshotStream>& raised) {
  MDB_env* raw = nullptr;
  int rc = mdb_env_create(&raw);
  if (rc != 0) return lmdb::ToStatus("mdb_env_create", rc);
  lmdb::Env env(raw);
  rc = mdb_env_set_maxdbs(raw, lmdb::kMaxDbs);
  if (rc == 0) rc = mdb_env_open(raw, env_dir.c_str(), MDB_NOLOCK | MDB_NOTLS, 0644);
  lmdb::Txn txn;
  if (rc == 0) rc = txn.Begin(raw, 0);
  lmdb::Dbs dbs;
  if (rc == 0) rc = lmdb::OpenDbs(txn.get(), /*create=*/false, &dbs);
  for (size_t i = 0; rc == 0 && i < ids.size(); ++i) rc = lmdb::EraseStream(txn.get(), dbs, ids[i]);
  for (size_t i = 0; rc == 0 && i < raised.size(); ++i) {
    const std::string key = StreamKey(raised[i].id);
    MDB_val k = lmdb::Val(key), v;
    rc = mdb_get(txn.get(), dbs.streams, &k, &v);
    if (rc != 0) break;
    StreamRecord record;
    Status s = DecodeStreamRecord(
        std::string_view(static_cast<const char*>(v.mv_data), v.mv_size), &record);
    if (!s.ok()) return s;
    record.start = raised[i].start;
    rc = lmdb::PutStream(txn.get(), dbs, record);
  }
  if (rc == 0) rc = txn.Commit();  // synced: the environment has MDB_NOSYNC off
  if (rc != 0) return lmdb::ToStatus("update the copied environment " + env_dir, rc);
  return Status::OK();
}

// Whether the live data_dir still has a record for stream `id`, and its
// retained start if so: tells a stream erased during the backup (its files
// go after its record), or trimmed by retention (its old files go after its
// new start is recorded), from damaged source files.
Status LiveRecord(const std::string& data_dir, uint64_t id, bool* recorded, uint64_t* start) {
  const std::string src_env = JoinPath(data_dir, kEnvDir);
  return LmdbStore::WithEnvironment(data_dir, [&](MDB_env* open_env) -> Status {
    lmdb::Env own;
    MDB_env* env = open_env;
    if (env == nullptr) {
      MDB_env* raw = nullptr;
      int rc = mdb_env_create(&raw);
      if (rc != 0) return lmdb::ToStatus("mdb_env_create", rc);
      own.reset(raw);
      rc = mdb_env_set_maxdbs(raw, lmdb::kMaxDbs);
      if (rc == 0) rc = mdb_env_open(raw, src_env.c_str(), MDB_RDONLY | MDB_NOTLS, 0644);
      if (rc != 0) return lmdb::ToStatus("open " + src_env + " for reading", rc);
      env = raw;
    }
    for (;;) {
      lmdb::Txn txn;
      int rc = txn.Begin(env, MDB_RDONLY);
      if (rc == MDB_MAP_RESIZED && own != nullptr) {
        rc = mdb_env_set_mapsize(env, 0);
        if (rc == 0) continue;
      }
      lmdb::Dbs dbs;
      if (rc == 0) rc = lmdb::OpenDbs(txn.get(), /*create=*/false, &dbs);
      if (rc != 0) return lmdb::ToStatus("read " + src_env, rc);
      const std::string key = StreamKey(id);
      MDB_val k = lmdb::Val(key), v;
      rc = mdb_get(txn.get(), dbs.streams, &k, &v);
      if (rc != 0 && rc != MDB_NOTFOUND) return lmdb::ToStatus("read " + src_env, rc);
      *recorded = rc == 0;
      if (rc != 0) return Status::OK();
      StreamRecord record;
      Status s = DecodeStreamRecord(
          std::string_view(static_cast<const char*>(v.mv_data), v.mv_size), &record);
      if (!s.ok()) return s;
      *start = std::max(record.start, record.fork_offset);
      return Status::OK();
    }
  });
}

enum class CopyResult { kCopied, kVanished };

struct SourceSegment {
  uint64_t base = 0;
  std::string name;
};

// Copies the files holding stream `s`'s bytes [start, tail) from src_dir
// into dst_dir; *copied_to is where the contiguous copy from start ends.
Status CopyRange(const SnapshotStream& s, const std::string& src_dir, const std::string& dst_dir,
                 uint64_t* copied_to) {
  *copied_to = s.start;
  std::vector<std::string> names;
  bool missing = false;
  Status st = ListDir(src_dir, &names, &missing);
  if (!st.ok()) return st;
  std::vector<SourceSegment> segments;
  for (std::string& name : names) {
    uint64_t base;
    if (ParseSegmentFileName(name, &base) && base >= s.base && base < s.tail) {
      segments.push_back(SourceSegment{base, std::move(name)});
    }
  }
  std::sort(segments.begin(), segments.end(),
            [](const SourceSegment& a, const SourceSegment& b) { return a.base < b.base; });
  size_t i = 0;  // skip files wholly below start (trim leftovers)
  while (i + 1 < segments.size() && segments[i + 1].base <= s.start) ++i;
  for (; i < segments.size() && *copied_to < s.tail; ++i) {
    const SourceSegment& seg = segments[i];
    // The first file may begin below start; every later one where the
    // previous one ended. Anything else is a gap: handled by the caller.
    if (seg.base > *copied_to) break;
    const uint64_t end = i + 1 < segments.size() ? std::min(segments[i + 1].base, s.tail) : s.tail;
    const std::string src = JoinPath(src_dir, seg.name);
    const std::string dst = JoinPath(dst_dir, seg.name);
    UniqueFd in, out;
    st = OpenFile(src, O_RDONLY, 0, &in);
    if (!st.ok() && PathExists(src)) return st;
    if (!st.ok()) break;  // gone: handled by the caller
    st = OpenFile(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644, &out);
    uint64_t copied = 0;
    if (st.ok()) st = CopyFileBytes(in.get(), out.get(), end - seg.base, src, dst, &copied);
    if (st.ok()) st = SyncData(out.get(), dst);
    if (!st.ok()) return st;
    *copied_to = seg.base + copied;
    if (copied < end - seg.base) break;
  }
  return Status::OK();
}

// Copies stream `s`'s bytes [start, tail) from src_dir into dst_dir,
// following retention if it trims the stream while we copy (s.start is then
// raised to the live start, at most to the snapshot's tail).
Status CopyStream(const std::string& data_dir, SnapshotStream& s, const std::string& src_dir,
                  const std::string& dst_dir, CopyResult* result) {
  *result = CopyResult::kCopied;
  bool created = false;
  Status st = CreateDir(dst_dir, &created);
  if (!st.ok()) return st;
  for (;;) {
    uint64_t copied_to = s.start;
    st = CopyRange(s, src_dir, dst_dir, &copied_to);
    if (!st.ok()) return st;
    if (copied_to >= s.tail) break;
    // Bytes below a committed tail disappear when the stream is erased, or
    // below a newly committed start when retention trims it; otherwise the
    // source is damaged and we keep what there is.
    bool recorded = true;
    uint64_t live_start = s.start;
    st = LiveRecord(data_dir, s.id, &recorded, &live_start);
    if (!st.ok()) return st;
    if (!recorded) {
      *result = CopyResult::kVanished;
      return Status::OK();
    }
    if (live_start > s.start) {
      // A start only grows, so this loop ends (at the tail at the latest).
      s.start = std::min(live_start, s.tail);
      s.start_raised = true;
      continue;
    }
    Note("stream " + std::to_string(s.id) + ": the source holds only bytes [" + std::to_string(s.start) +
         ", " + std::to_string(copied_to) + ") of its recorded [" + std::to_string(s.start) + ", " +
         std::to_string(s.tail) + "); a server started on the backup will lower its tail");
    break;
  }
  return SyncDir(dst_dir);
}

}  // namespace

Status BackupDataDir(const std::string& data_dir, const std::string& dest) {
  if (data_dir.empty() || dest.empty()) return Status::InvalidArgument("data_dir and dest are required");
  if (!PathExists(JoinPath(JoinPath(data_dir, kEnvDir), "data.mdb"))) {
    return Status::InvalidArgument(data_dir + " is not a durable-streams data_dir (no " +
                                   JoinPath(data_dir, kEnvDir) + "/data.mdb)");
  }
  // On failure `dest` is left incomplete; the caller deletes it.
  Status s = PrepareDestination(dest);
  if (!s.ok()) return s;
  s = CopyEnvironment(data_dir, dest);
  if (!s.ok()) return s;

  const std::string dest_env = JoinPath(dest, kEnvDir);
  std::vector<SnapshotStream> streams;
  s = ReadSnapshot(dest_env, &streams);
  if (!s.ok()) return s;

  const std::string src_segments = JoinPath(data_dir, kSegmentsDir);
  const std::string dst_segments = JoinPath(dest, kSegmentsDir);
  std::vector<uint64_t> vanished;
  std::vector<SnapshotStream> raised;
  for (SnapshotStream& stream : streams) {  // id order: sources first
    if (stream.tail == stream.base) continue;  // no bytes of its own
    const std::string name = ZeroPadded(stream.id);
    const std::string dst_dir = JoinPath(dst_segments, name);
    CopyResult result;
    s = CopyStream(data_dir, stream, JoinPath(src_segments, name), dst_dir, &result);
    if (!s.ok()) return s;
    if (result == CopyResult::kVanished) {
      Note("stream " + std::to_string(stream.id) + " was deleted during the backup; leaving it out");
      vanished.push_back(stream.id);
      s = RemoveTree(dst_dir);
      if (!s.ok()) return s;
    } else if (stream.start_raised) {
      Note("stream " + std::to_string(stream.id) + " was trimmed by retention during the backup; it starts at " +
           std::to_string(stream.start) + " in the copy");
      raised.push_back(stream);
    }
  }
  if (!vanished.empty() || !raised.empty()) {
    s = FixSnapshot(dest_env, vanished, raised);
    if (!s.ok()) return s;
  }
  s = SyncDir(dst_segments);
  if (s.ok()) s = SyncDir(dest_env);
  if (s.ok()) s = SyncDir(dest);
  if (s.ok()) s = SyncDir(ParentDir(dest));
  return s;
}

}  // namespace ds

namespace {


void Report(ds_error* err, ds_code code, const char* message) {
  if (err == nullptr) return;
  err->code = code;
  std::snprintf(err->message, sizeof err->message, "%s", message);
}

}  // namespace

extern "C" ds_code ds_backup(const char* data_dir, const char* dest, ds_error* err) {
  // Nothing may escape into Go: every exception becomes DS_ERR_INTERNAL.
  try {
    Report(err, DS_OK, "");
    if (data_dir == nullptr || data_dir[0] == '\0' || dest == nullptr || dest[0] == '\0') {
      Report(err, DS_ERR_INVALID_ARGUMENT, "data_dir and dest are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    ds::Status s = ds::BackupDataDir(data_dir, dest);
    ds_code code = ds::CodeOf(s);
    Report(err, code, s.message().c_str());
    return code;
  } catch (const std::bad_alloc&) {
    Report(err, DS_ERR_INTERNAL, "out of memory");
  } catch (const std::exception& e) {
    Report(err, DS_ERR_INTERNAL, e.what());
  } catch (...) {
    Report(err, DS_ERR_INTERNAL, "unknown C++ exception");
  }
  return DS_ERR_INTERNAL;
}
