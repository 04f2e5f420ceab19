// One stream's state (PROTOCOL.md §4): its configuration, its bytes (own log
// plus, for a fork, a prefix of its source), closure, writer state, expiry
// anchor, fork references and the live readers parked on it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "producer.h"
#include "store.h"
#include "stream_log.h"

namespace ds {

struct StreamConfig {
  std::string content_type;
  std::optional<uint64_t> ttl_seconds;
  std::optional<int64_t> expires_at_ms;
};

struct GroupUsage;  // usage.h

struct Stream {
  Stream(std::string path_in, uint64_t id_in, StreamConfig config_in,
         std::shared_ptr<Stream> source_in, uint64_t fork_offset_in,
         std::unique_ptr<StreamLog> log_in);

  const std::string path;
  const uint64_t id;  // unique per engine; names the stream in ETags
  const StreamConfig config;
  const bool json;       // application/json: message framing applies
  const bool sse_text;   // SSE carries text, not base64
  // A fork reads [0, fork_offset) from `source`, the rest from `log`.
  const std::shared_ptr<Stream> source;
  const uint64_t fork_offset;
  const std::unique_ptr<StreamLog> log;

  // Everything below is guarded by `mu`, except `tail` which readers may
  // load without it (it only grows, and only once its bytes are committed).
  //
  // Writers decide on the pending state (log->tail(), `closed`, producers):
  // it runs ahead of what is durable while a group commit is in flight, so
  // pipelined appends validate against their predecessors. Readers only
  // ever see committed state: `tail` and `closed_visible`.
  std::mutex mu;
  std::atomic<uint64_t> tail;
  bool closed = false;          // pending: decides appends
  bool closed_visible = false;  // committed: what readers are told
  std::string last_stream_seq;
  std::unordered_map<std::string, ProducerState> producers;
  int64_t last_access_ms = 0;  // the sliding TTL counts from here
  bool access_dirty = false;   // last_access_ms moved since it was stored
  bool deleted = false;        // gone from the registry: parked readers end
  bool soft_deleted = false;   // deleted by its owner, kept for its forks
  // Set when recovery found fewer bytes than a fork inherits from this
  // stream: the missing positions are part of the fork's history, so they
  // must never be handed out again for new bytes.
  bool lost_forked_bytes = false;
  uint32_t fork_refs = 0;      // forks whose `source` is this stream
  // Pending first retained position of the own log: raised (and recorded)
  // by retention before log->Trim makes it visible to readers.
  uint64_t retained_start = 0;
  // In the engine's list of streams with more than one segment, the only
  // ones retention can trim.
  bool retention_listed = false;
  // The placement group it is counted in and the bytes it is charged
  // there (usage.h): its own bytes, log->tail() - log->start(). Null once
  // the stream is deleted and its charge given back.
  std::shared_ptr<GroupUsage> group;
  uint64_t charged = 0;
  // Bumped (under mu, on the committer thread) each time a failed commit's
  // pending state is undone (Engine::RollBack): a queued commit built on
  // the pending state of an older generation is dropped uncommitted.
  std::atomic<uint64_t> undo_generation{0};
  std::vector<uint64_t> waiters;  // parked sessions to wake on change
  // Bumped each time `waiters` is handed to the wake callback, so a session
  // knows whether its registration is still in the list.
  uint64_t wake_generation = 0;

  // Where the engine's ExpiryQueue holds this stream, if it does. Guarded
  // by the queue's own mutex, not by `mu`.
  static constexpr size_t kNotQueued = SIZE_MAX;
  size_t expiry_slot = kNotQueued;

  // Takes the parked sessions for waking. Requires mu.
  std::vector<uint64_t> TakeWaiters() {
    ++wake_generation;
    std::vector<uint64_t> out;
    out.swap(waiters);
    return out;
  }

  // The durable form of the pending state. Requires mu.
  StreamRecord Record() const;

  // When the stream expires as things stand (its Expires-At, or its last
  // access plus its TTL, whichever is first); none without either.
  std::optional<int64_t> ExpiryDeadline() const;  // requires mu
  // Whether the stream has outlived its TTL or Expires-At at `now_ms`.
  bool ExpiredAt(int64_t now_ms) const;  // requires mu

  // Appends the logical bytes [from, to) to `out`, stitching the source's
  // bytes below fork_offset. Requires to <= tail. Takes no metadata lock.
  // A range starting below EarliestOffset() fails with Gone.
  Status ReadRange(uint64_t from, uint64_t to, std::string* out) const;
  // The same bytes as file ranges for sendfile (StreamLog::OpenFiles),
  // stitched the same way. Any failure (NotSupported: memory logs, blocks
  // not checked yet) leaves `out` as it was; the caller then uses
  // ReadRange, which answers with the proper error if there is one.
  Status OpenFiles(uint64_t from, uint64_t to, std::vector<FileRange>* out) const;
  // The same bytes as pinned views of memory blocks (StreamLog::PinRange),
  // stitched the same way; a failure leaves `out` as it was.
  Status PinRange(uint64_t from, uint64_t to, std::vector<MemoryRange>* out) const;
  // Whether every byte of the stream (its source's too) can be read
  // without a copy (StreamLog::zero_copy).
  bool ZeroCopyReads() const {
    return log->zero_copy() && (source == nullptr || source->ZeroCopyReads());
  }

  // The first readable position: 0 for a stream retention never touched.
  // A fork whose own log is untrimmed reads below fork_offset from its
  // source, so it can read as far back as the source can. Takes no lock.
  uint64_t EarliestOffset() const;
};

}  // namespace ds
