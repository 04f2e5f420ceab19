// What the workload did, as the oracle needs it: every event with the log
// positions of its begin and acknowledgement markers, and every stream with
// the bytes issued to it. Built by workload.cc, read by oracle.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "durable_streams.h"

namespace dssim {

constexpr uint64_t kNever = ~0ull;

struct Event {
  enum Kind { kCreate, kAppend, kRetry, kClose, kDelete, kSweep, kRetention, kFlush, kRestart, kBackup, kCloseEngine };
  Kind kind;
  int stream = -1;       // index into Model::streams
  uint64_t begin = 0;    // log index of the begin marker
  uint64_t ack = kNever; // log index of the acknowledgement marker
  int64_t now_ms = 0;    // the clock when it was issued
};

struct ProducerAppend {
  std::string producer;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  std::string body;        // what was POSTed
  uint64_t from = 0, to = 0;  // the stream positions its bytes occupy
  int event = -1;
};

struct Chunk {         // one atomic piece of a stream's own bytes
  uint64_t to;         // stream position after it
  int event;           // the create or append that wrote it
};

struct StreamModel {
  std::string path;
  bool json = false;
  std::string content_type;
  int source = -1;            // a fork's source stream
  uint64_t fork_offset = 0;
  std::optional<int64_t> earliest_expiry_ms;  // TTL/Expires-At: gone no sooner
  int create = -1, close = -1, del = -1;      // events (-1: none)
  std::string bytes;          // the whole logical byte sequence, final
  std::vector<Chunk> chunks;  // own appends, in order
  std::vector<ProducerAppend> producer_appends;
  bool has_forks = false;
};

struct Model {
  ds_fsync fsync = DS_FSYNC_ALWAYS;
  uint64_t segment_bytes = 0;
  uint64_t retention_bytes = 0;
  uint64_t wal_checkpoint_bytes = 0;
  std::vector<Event> events;
  std::vector<StreamModel> streams;
  // ds_backup calls: the event and the backup's directory under the root.
  std::vector<std::pair<int, std::string>> backups;
  uint64_t unexpected_answers = 0;  // workload answers the model did not predict
};

}  // namespace dssim
