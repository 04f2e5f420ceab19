// POST: append, close, and idempotent producers (§5.2, §5.2.1, §5.3).
#include <optional>

#include "body_refusal.h"
#include "content_type.h"
#include "engine.h"
#include "json_mode.h"
#include "offset.h"

namespace ds {
namespace {

struct ProducerHeaders {
  ProducerClaim claim;
  bool present = false;
};

// All three producer headers or none (§5.2.1). On a bad set returns the 400.
std::optional<Response> ParseProducer(const Request& request, ProducerHeaders* out) {
  auto id = request.header(DS_FIELD_PRODUCER_ID);
  auto epoch = request.header(DS_FIELD_PRODUCER_EPOCH);
  auto seq = request.header(DS_FIELD_PRODUCER_SEQ);
  int given = (id ? 1 : 0) + (epoch ? 1 : 0) + (seq ? 1 : 0);
  if (given == 0) return std::nullopt;
  if (given != 3) {
    return ErrorResponse(400,
                         "Producer-Id, Producer-Epoch and Producer-Seq must be sent together");
  }
  if (id->empty()) return ErrorResponse(400, "Producer-Id must not be empty");
  auto epoch_value = ParseProducerNumber(*epoch);
  if (!epoch_value) {
    return ErrorResponse(400, "Producer-Epoch must be an integer from 0 to 2^53-1");
  }
  auto seq_value = ParseProducerNumber(*seq);
  if (!seq_value) return ErrorResponse(400, "Producer-Seq must be an integer from 0 to 2^53-1");
  out->present = true;
  out->claim = ProducerClaim{std::string(*id), *epoch_value, *seq_value};
  return std::nullopt;
}

void SetProducerHeaders(Response* r, uint64_t epoch, uint64_t seq) {
  r->Set(header::kProducerEpoch, std::to_string(epoch));
  r->Set(header::kProducerSeq, std::to_string(seq));
}

Response ClosedConflict(uint64_t tail) {
  Response r = ErrorResponse(409, "stream is closed");
  r.Set(header::kStreamClosed, "true");
  r.Set(header::kStreamNextOffset, EncodeOffset(tail));
  return r;
}

}  // namespace

Response Engine::Append(const Request& request, uint64_t session_id) {
  if (auto refused = RefuseUnreadBody(request, max_append_bytes_.load(std::memory_order_relaxed))) return *refused;
  StreamPtr stream = Lookup(std::string(request.path));
  if (stream == nullptr) return ErrorResponse(404, "stream not found");
  if (auto refused = RefuseWrites()) return *refused;

  bool close = HeaderIsTrue(request.header(DS_FIELD_STREAM_CLOSED));
  ProducerHeaders producer;
  if (auto error = ParseProducer(request, &producer)) return *error;
  bool has_body = !request.body.empty();
  if (!has_body && !close) {
    return ErrorResponse(400, "empty body: an append needs bytes, or Stream-Closed: true");
  }
  auto content_type = request.header(DS_FIELD_CONTENT_TYPE);

  // Validate and frame JSON before taking the stream lock; a JSON error is
  // reported only after the closed and content-type checks (§5.2 precedence).
  std::string framed;
  std::string json_error;
  std::string_view bytes = request.body;
  if (has_body && stream->json) {
    size_t messages;
    json_error = EncodeJsonMessages(request.body, JsonAppendKind::kAppend, &framed, &messages);
    bytes = framed;
  }

  std::vector<uint64_t> woken;
  Response response;
  CommitQueue::Ticket ticket;
  bool answered_at_park = false;  // parked with its answer (answer_at_park)
  uint64_t tail;
  {
    std::lock_guard lock(stream->mu);
    if (stream->deleted) return ErrorResponse(404, "stream not found");
    if (stream->soft_deleted) return ErrorResponse(410, "stream was deleted");
    if (stream->lost_forked_bytes) {
      return ErrorResponse(500, "storage lost bytes of this stream that its forks inherit; "
                                "it accepts no more appends");
    }
    // Decide on the pending state: appends still in a group commit count.
    tail = stream->log->tail();
    const int64_t now_ms = clock_->NowMs();
    stream->last_access_ms = now_ms;

    // A producer's retry is recognised first, even on a closed stream, so a
    // retried closing append is a success (§5.2.1). Then the §5.2
    // precedence: closed, content type, producer sequence, Stream-Seq.
    std::optional<ProducerState> current;
    ProducerDecision decision{ProducerVerdict::kAccept, {}, 0};
    if (producer.present) {
      if (auto it = stream->producers.find(producer.claim.id); it != stream->producers.end()) {
        current = it->second;
      }
      decision = DecideProducer(current, producer.claim.epoch, producer.claim.seq);
      if (decision.verdict == ProducerVerdict::kDuplicate) {
        Response r;
        r.status = 204;
        r.Set(header::kStreamNextOffset, EncodeOffset(tail));
        if (stream->closed) r.Set(header::kStreamClosed, "true");
        SetProducerHeaders(&r, current->epoch, current->last_seq);
        return r;
      }
    }
    if (stream->closed) {
      if (!has_body && close && !producer.present) {
        // Closing a closed stream is idempotent (§5.3).
        Response r;
        r.status = 204;
        r.Set(header::kStreamNextOffset, EncodeOffset(tail));
        r.Set(header::kStreamClosed, "true");
        return r;
      }
      return ClosedConflict(tail);
    }
    if (has_body) {
      if (!content_type || content_type->empty()) {
        return ErrorResponse(400, "Content-Type is required when appending bytes");
      }
      if (!SameMediaType(*content_type, stream->config.content_type)) {
        return ErrorResponse(409, "Content-Type does not match the stream's");
      }
      if (!json_error.empty()) return ErrorResponse(400, json_error);
    }

    std::optional<ProducerState> next_state;
    if (producer.present) {
      switch (decision.verdict) {
        case ProducerVerdict::kStaleEpoch: {
          Response r = ErrorResponse(403, "stale producer epoch");
          r.Set(header::kProducerEpoch, std::to_string(current->epoch));
          return r;
        }
        case ProducerVerdict::kNewEpochBadSeq:
          return ErrorResponse(400, "a new producer epoch must start at Producer-Seq 0");
        case ProducerVerdict::kSequenceGap: {
          Response r = ErrorResponse(409, "producer sequence gap");
          r.Set(header::kProducerExpectedSeq, std::to_string(decision.expected_seq));
          r.Set(header::kProducerReceivedSeq, std::to_string(producer.claim.seq));
          return r;
        }
        case ProducerVerdict::kDuplicate:  // answered above
        case ProducerVerdict::kAccept:
          next_state = decision.next;
          break;
      }
    }

    auto seq = request.header(DS_FIELD_STREAM_SEQ);
    if (seq && !seq->empty() && *seq <= std::string_view(stream->last_stream_seq) &&
        !stream->last_stream_seq.empty()) {
      return ErrorResponse(409, "Stream-Seq must be greater than the last one");
    }

    // Bytes first; nothing else changes if they cannot be written.
    if (!bytes.empty()) {
      // The memory budget and the group's byte quota; reserved before the
      // write, so that concurrent appends never go past them together.
      if (auto refused = usage_.Reserve(*stream->group, bytes.size())) return *refused;
      Status s = stream->log->Append(bytes, now_ms);
      if (!s.ok()) {
        usage_.Release(*stream->group, bytes.size());
        return WriteFailure(s);
      }
      stream->charged += bytes.size();
      NoteSegments(stream);
      tail = stream->log->tail();
      appends_.fetch_add(1, std::memory_order_relaxed);
      bytes_appended_.fetch_add(bytes.size(), std::memory_order_relaxed);
    }
    if (seq && !seq->empty()) stream->last_stream_seq.assign(*seq);
    if (next_state) stream->producers[producer.claim.id] = *next_state;
    if (close) stream->closed = true;
    if (durable_) {
      // The commit point: the new tail, the producer state and the closure
      // are recorded in one transaction after the bytes are durable.
      StreamMutation m{StreamMutation::Kind::kUpsert, stream->Record(), {}, stream->log.get()};
      if (next_state) {
        m.producers.push_back({producer.claim.id, next_state->epoch, next_state->last_seq});
      }
      // Published by the committer once durable: readers never see bytes
      // a crash could take back, nor does an acknowledgement precede them.
      // A failed commit (a full disk) undoes the pending state back to the
      // committed one, so the stream takes writes again once there is room.
      const uint64_t generation = stream->undo_generation.load();
      // Moved in, not copied through an initializer list (the record holds
      // strings; this is every durable append's path).
      std::vector<StreamMutation> mutations;
      mutations.push_back(std::move(m));
      // Answered at park time (ds_request.answer_at_park): the caller gets
      // the success answer now and, from the wake, only whether the commit
      // is durable, so a committed append costs no ds_session_resume.
      const bool answer_at_park =
          session_id != 0 && session_id < DS_WAKE_COMMITTED && request.answer_at_park;
      ticket = Submit(std::move(mutations), [this, stream, tail, close, session_id, generation,
                                             answer_at_park](const Status& outcome,
                                                             std::vector<uint64_t>* wake) {
        if (!outcome.ok()) {
          RecordFailure(outcome);
          RollBack(stream, generation);
        } else {
          NoteCommitted();
          std::lock_guard lock(stream->mu);
          if (tail > stream->tail.load()) stream->tail.store(tail, std::memory_order_release);
          if (close) stream->closed_visible = true;
          std::vector<uint64_t> readers = stream->TakeWaiters();
          wake->insert(wake->end(), readers.begin(), readers.end());
          if (tail > 0) NoteSubscriptionData(stream->path);
        }
        if (session_id == 0) return;
        if (answer_at_park && outcome.ok()) {
          // Durable: the answer given at park time stands, and nothing will
          // resume the session. Its pending entry was made while the append
          // held stream->mu, which the branch above took since, so it is
          // there to forget. A failure keeps it for the resume's 5xx.
          {
            std::lock_guard lock(pending_appends_mu_);
            pending_appends_.erase(session_id);
          }
          wake->push_back(session_id | DS_WAKE_COMMITTED);
        } else {
          wake->push_back(session_id);
        }
      }, UnchangedWhileHeld(*stream));  // the OnCommit holds `stream`
      if (answer_at_park) {
        // Before stream->mu is released (see the OnCommit). Only the ticket
        // is kept: the answer goes out with the park.
        std::lock_guard lock(pending_appends_mu_);
        auto [it, inserted] = pending_appends_.try_emplace(session_id);
        if (inserted) {
          it->second.ticket = ticket;
          it->second.answered_at_park = true;
        }
        answered_at_park = inserted;
      }
    } else {
      stream->tail.store(tail, std::memory_order_release);
      if (close) stream->closed_visible = true;
      woken = stream->TakeWaiters();
      NoteSubscriptionData(stream->path);
    }

    // 200 tells a producer new data was written; everything else, including
    // a producer's close-only request, is 204.
    response.status = producer.present && !bytes.empty() ? 200 : 204;
    response.Set(header::kStreamNextOffset, EncodeOffset(tail));
    if (close) response.Set(header::kStreamClosed, "true");
    if (next_state) SetProducerHeaders(&response, next_state->epoch, next_state->last_seq);
  }
  if (answered_at_park) {
    response.live = DS_LIVE_COMMIT;
    response.session = session_id;
    return response;
  }
  if (ticket) {
    // With answer_at_park but not parked (an id still waiting or too large:
    // an ABI misuse), it blocks, as ParkAppend does for a reused id.
    if (session_id != 0 && !request.answer_at_park) {
      return ParkAppend(session_id, std::move(ticket), std::move(response));
    }
    Status s = Await(ticket);
    if (!s.ok()) return StorageFailure(s);
    return response;
  }
  Wake(std::move(woken));
  return response;
}

Response Engine::ParkAppend(uint64_t session_id, CommitQueue::Ticket ticket, Response response) {
  {
    std::lock_guard lock(pending_appends_mu_);
    auto [it, inserted] = pending_appends_.try_emplace(session_id);
    if (inserted) {
      it->second.ticket = ticket;
      it->second.response = std::move(response);
      Response parked;
      parked.status = 0;
      parked.live = DS_LIVE_COMMIT;
      parked.session = session_id;
      return parked;
    }
  }
  // The caller reused a session id that is still waiting (an ABI misuse):
  // answer this one the blocking way rather than lose either.
  Status s = Await(ticket);
  return s.ok() ? std::move(response) : StorageFailure(s);
}

std::optional<Response> Engine::ResumeAppend(uint64_t session_id) {
  PendingAppend pending;
  {
    std::lock_guard lock(pending_appends_mu_);
    auto it = pending_appends_.find(session_id);
    if (it == pending_appends_.end()) return std::nullopt;
    pending = std::move(it->second);
    pending_appends_.erase(it);
  }
  // Done already when the wake named the session; otherwise (a resume on
  // timeout) this waits for the disk.
  Status s = Await(pending.ticket);
  if (s.ok() && pending.answered_at_park) {
    // Answered at park time, and resumed before its wake (not how the ABI
    // is used): its answer was given already.
    Response r = ErrorResponse(404, "append answered at park time");
    r.done = true;
    return r;
  }
  Response r = s.ok() ? std::move(pending.response) : StorageFailure(s);
  AddCommonHeaders(&r);
  return r;
}

}  // namespace ds
