// The seeded workload: drives the real engine over a real LmdbStore in
// `data_dir` (under the recorder's watched root) and builds the Model the
// oracle checks crash states against.
#pragma once

#include <cstdint>
#include <string>

#include "model.h"
#include "oplog.h"

namespace dssim {

struct Recorder {
  dsrec_set_active_fn set_active = nullptr;
  dsrec_ack_fn ack = nullptr;
  dsrec_log_fn log = nullptr;
  dsrec_reset_fn reset = nullptr;
};

struct WorkloadConfig {
  uint64_t seed = 1;
  ds_fsync fsync = DS_FSYNC_ALWAYS;
  int operations = 80;
};

// The engine options the workload uses and a checker must reuse.
struct SimOptions {
  uint64_t segment_bytes;
  uint64_t retention_bytes;
  uint64_t wal_checkpoint_bytes;
};

// Returns false (with *error) if the engine could not even be opened.
bool RunWorkload(const WorkloadConfig& config, const std::string& data_dir, const Recorder& rec,
                 Model* model, std::string* error);

constexpr int64_t kStartMs = 1767225600000;  // 2026-01-01T00:00:00Z
constexpr const char* kRoot = "/v1/stream";

}  // namespace dssim
