// ds_verify: checks every stream's segment bytes against their stored
// checksums (STORAGE_FORMAT.md, "Checksums"), offline or while a server
// writes to the directory, without its LOCK.
//
// Why this works online: one LMDB read transaction fixes every stream's
// tail and checksums; bytes below a committed tail are never rewritten, so
// reading them afterwards compares like with like. What can happen to them
// meanwhile is deletion (the stream was deleted, or retention dropped its
// oldest file): a range found missing is checked against a second, newer
// snapshot and skipped if the stream is gone or starts past it.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "crc32c.h"
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

struct VerifyTotals {
  uint64_t streams = 0;
  uint64_t blocks = 0;
  uint64_t bytes = 0;
  uint64_t problems = 0;
  std::string report;  // one line per problem
};

// Reads positions of one stream's log from its inline bytes (kept in LMDB,
// positions [base, base + inline_bytes.size())) and its segment files.
class StreamFiles {
 public:
  StreamFiles(std::string dir, uint64_t base, std::string_view inline_bytes)
      : dir_(std::move(dir)), inline_base_(base), inline_(inline_bytes) {
    std::vector<std::string> names;
    bool missing = false;
    if (!ListDir(dir_, &names, &missing).ok()) return;
    for (const std::string& name : names) {
      uint64_t base = 0;
      if (ParseSegmentFileName(name, &base)) bases_.push_back(base);
    }
    std::sort(bases_.begin(), bases_.end());
  }

  // Reads [from, to) into `out`; false if any byte is missing.
  bool Read(uint64_t from, uint64_t to, std::string* out) {
    out->assign(static_cast<size_t>(to - from), '\0');
    uint64_t pos = from;
    const uint64_t inline_end = inline_base_ + inline_.size();
    if (pos < inline_end && pos >= inline_base_) {
      const uint64_t n = std::min(to, inline_end) - pos;
      std::memcpy(out->data(), inline_.data() + (pos - inline_base_), static_cast<size_t>(n));
      pos += n;
    }
    while (pos < to) {
      auto next = std::upper_bound(bases_.begin(), bases_.end(), pos);
      if (next == bases_.begin()) return false;
      const uint64_t base = *(next - 1);
      const uint64_t end = next == bases_.end() ? to : std::min(to, *next);
      if (fd_base_ != base || !fd_.valid()) {
        fd_.Reset();
        if (!OpenFile(JoinPath(dir_, SegmentFileName(base)), O_RDONLY, 0, &fd_).ok()) return false;
        fd_base_ = base;
      }
      size_t got = 0;
      const std::string path = JoinPath(dir_, SegmentFileName(base));
      if (!ReadAt(fd_.get(), out->data() + (pos - from), static_cast<size_t>(end - pos), pos - base, path, &got)
               .ok() ||
          got < end - pos) {
        return false;
      }
      pos = end;
    }
    return true;
  }

 private:
  std::string dir_;
  uint64_t inline_base_ = 0;
  std::string_view inline_;  // valid for the verification's read transaction
  std::vector<uint64_t> bases_;
  UniqueFd fd_;
  uint64_t fd_base_ = UINT64_MAX;
};

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Whether [from, ...) of stream `id` is still recorded in a newer snapshot.
bool StillRecorded(MDB_env* env, const lmdb::Dbs& dbs, uint64_t id, uint64_t from) {
  lmdb::Txn txn;
  if (txn.Begin(env, MDB_RDONLY) != 0) return true;
  const std::string key = StreamKey(id);
  MDB_val k = lmdb::Val(key), v;
  if (mdb_get(txn.get(), dbs.streams, &k, &v) != 0) return false;  // deleted since
  StreamRecord record;
  if (!DecodeStreamRecord(lmdb::View(v), &record).ok()) return true;
  return record.start <= from;
}

Status VerifyWith(MDB_env* env, const std::string& data_dir, VerifyTotals* totals) {
  lmdb::Txn txn;
  int rc = txn.Begin(env, MDB_RDONLY);
  lmdb::Dbs dbs;
  if (rc == 0) rc = lmdb::OpenDbs(txn.get(), /*create=*/false, &dbs);
  if (rc != 0) return lmdb::ToStatus("read " + JoinPath(data_dir, kEnvDir), rc);
  uint64_t format = 0;
  bool found = false;
  rc = lmdb::GetU64(txn.get(), dbs.meta, lmdb::kFormatVersionKey, &format, &found);
  if (rc != 0) return lmdb::ToStatus("read format_version", rc);
  if (!found || format < lmdb::kFirstFormatWithChecksums || !dbs.has_crc) {
    return Status::NotSupported(data_dir + " has storage format " + std::to_string(format) +
                                ", which has no checksums; start a server on it once to upgrade it");
  }
  if (format > lmdb::kFormatVersion) {
    return Status::NotSupported(data_dir + " has storage format " + std::to_string(format) +
                                "; this verifier reads version " + std::to_string(lmdb::kFormatVersion));
  }
  std::vector<RecoveredStream> streams;
  std::vector<std::string> orphans;
  Status s = lmdb::ReadStreams(txn.get(), dbs, &streams, &orphans);
  if (!s.ok()) return s;
  const std::string segments = JoinPath(data_dir, kSegmentsDir);
  constexpr uint64_t B = kChecksumBlockBytes;
  for (const RecoveredStream& r : streams) {
    const StreamRecord& rec = r.record;
    const uint64_t base = rec.fork_offset;
    const uint64_t tail = std::max(rec.tail, base);
    const uint64_t start = std::clamp(rec.start, base, tail);
    ++totals->streams;
    if (tail == start) continue;
    const std::string who = "stream " + std::to_string(rec.id) + " " + rec.path;
    auto problem = [&](const std::string& what) {
      ++totals->problems;
      totals->report += who + ": " + what + "\n";
    };
    std::vector<std::pair<uint64_t, uint32_t>> stored;
    rc = lmdb::GetCrcs(txn.get(), dbs, rec.id, start / B, (tail - 1) / B, &stored);
    if (rc != 0) return lmdb::ToStatus("read the checksums of stream " + std::to_string(rec.id), rc);
    std::string_view inline_bytes;
    rc = lmdb::GetInline(txn.get(), dbs, rec.id, &inline_bytes);
    if (rc != 0) return lmdb::ToStatus("read the inline bytes of stream " + std::to_string(rec.id), rc);
    StreamFiles files(JoinPath(segments, ZeroPadded(rec.id)), base, inline_bytes);
    size_t j = 0;
    std::string bytes;
    for (uint64_t b = start / B; b <= (tail - 1) / B; ++b) {
      const uint64_t lo = std::max(b * B, base), hi = std::min((b + 1) * B, tail);
      if (lo < start) continue;  // retention dropped its first bytes: nothing to check against
      const std::string range = "bytes [" + std::to_string(lo) + ", " + std::to_string(hi) + ")";
      while (j < stored.size() && stored[j].first < b) ++j;
      if (!files.Read(lo, hi, &bytes)) {
        if (StillRecorded(env, dbs, rec.id, lo)) problem(range + " are missing from the stream's inline bytes and segment files");
        break;  // deleted or trimmed meanwhile, or the rest is missing too
      }
      ++totals->blocks;
      totals->bytes += hi - lo;
      if (j == stored.size() || stored[j].first != b) {
        // Inline bytes alone (format 5) have none: LMDB holds them.
        if (hi <= base + inline_bytes.size()) continue;
        problem(range + " have no stored checksum");
        continue;
      }
      const uint32_t crc = crc32c::Value(bytes);
      if (crc != stored[j].second) {
        problem(range + " do not match their checksum (stored " + Hex(stored[j].second) + ", on disk " +
                Hex(crc) + ")");
      }
    }
  }
  return Status::OK();
}

}  // namespace

Status VerifyDataDir(const std::string& data_dir, VerifyTotals* totals) {
  const std::string env_dir = JoinPath(data_dir, kEnvDir);
  if (!PathExists(JoinPath(env_dir, "data.mdb"))) {
    return Status::InvalidArgument(data_dir + " is not a data directory (no " + env_dir + "/data.mdb)");
  }
  return LmdbStore::WithEnvironment(data_dir, [&](MDB_env* open_env) -> Status {
    if (open_env != nullptr) return VerifyWith(open_env, data_dir, totals);
    // Not open in this process: open it as a reader, beside any server.
    MDB_env* raw = nullptr;
    int rc = mdb_env_create(&raw);
    if (rc != 0) return lmdb::ToStatus("mdb_env_create", rc);
    lmdb::Env env(raw);
    rc = mdb_env_set_maxdbs(raw, lmdb::kMaxDbs);
    if (rc == 0) rc = mdb_env_open(raw, env_dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0644);
    if (rc != 0) return lmdb::ToStatus("open " + env_dir + " for reading", rc);
    return VerifyWith(raw, data_dir, totals);
  });
}

}  // namespace ds

namespace {

void ReportError(ds_error* err, ds_code code, const char* message) {
  if (err == nullptr) return;
  err->code = code;
  std::snprintf(err->message, sizeof err->message, "%s", message);
}

}  // namespace

extern "C" ds_code ds_verify(const char* data_dir, ds_verify_result* out, ds_error* err) {
  // Nothing may escape into Go: every exception becomes DS_ERR_INTERNAL.
  try {
    ReportError(err, DS_OK, "");
    if (out != nullptr) *out = ds_verify_result{};
    if (data_dir == nullptr || data_dir[0] == '\0' || out == nullptr) {
      ReportError(err, DS_ERR_INVALID_ARGUMENT, "data_dir and out are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    ds::VerifyTotals totals;
    ds::Status s = ds::VerifyDataDir(data_dir, &totals);
    ds_code code = ds::CodeOf(s);
    ReportError(err, code, s.message().c_str());
    if (!s.ok()) return code;
    out->streams = totals.streams;
    out->blocks = totals.blocks;
    out->bytes = totals.bytes;
    out->problems = totals.problems;
    out->report = static_cast<char*>(std::malloc(totals.report.size() + 1));
    if (out->report == nullptr) throw std::bad_alloc();
    std::memcpy(out->report, totals.report.c_str(), totals.report.size() + 1);
    return DS_OK;
  } catch (const std::bad_alloc&) {
    ReportError(err, DS_ERR_INTERNAL, "out of memory");
  } catch (const std::exception& e) {
    ReportError(err, DS_ERR_INTERNAL, e.what());
  } catch (...) {
    ReportError(err, DS_ERR_INTERNAL, "unknown C++ exception");
  }
  return DS_ERR_INTERNAL;
}

extern "C" void ds_verify_result_free(ds_verify_result* result) {
  if (result == nullptr) return;
  std::free(result->report);
  result->report = nullptr;
}
