// The C ABI (durable_streams.h): converts between C structs and the engine's
// C++ types. Every entry point catches everything: an exception that reached
// Go would kill the server.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>

#include "durable_streams.h"
#include "engine.h"
#include "lmdb_store.h"
#include "status_code.h"
#include "version.h"

struct ds_engine {
  std::unique_ptr<ds::Engine> engine;
};

namespace {

// The engine-owned response: the public view first, so a ds_response*
// handed out is also a pointer to its holder.
struct ResponseHolder {
  ds_response view;
  std::string headers;
  std::string body;
  // Descriptors the caller did not take (fd still >= 0) are closed here.
  std::vector<ds_file_range> files;
  // Keep the memory behind `parts` alive until ds_response_free.
  std::vector<ds::MemoryRange> pins;
  std::vector<ds_bytes> parts;
  ~ResponseHolder() {
    for (ds_file_range& f : files) {
      if (f.fd >= 0) ds::UniqueFd(f.fd).Reset();
    }
  }
};
static_assert(offsetof(ResponseHolder, view) == 0);

void SetError(ds_error* err, ds_code code, const char* message) {
  if (err == nullptr) return;
  err->code = code;
  std::snprintf(err->message, sizeof err->message, "%s", message);
}

void ClearError(ds_error* err) {
  if (err == nullptr) return;
  err->code = DS_OK;
  err->message[0] = '\0';
}

ds_response* Export(ds::Response&& response) {
  auto holder = std::make_unique<ResponseHolder>();
  holder->headers = ds::EncodeHeaders(response);
  holder->body = std::move(response.body);
  ds_response& v = holder->view;
  v.status = response.status;
  v.headers = holder->headers.data();
  v.headers_len = holder->headers.size();
  v.body = reinterpret_cast<const uint8_t*>(holder->body.data());
  v.body_len = holder->body.size();
  v.live = response.live;
  v.session = response.session;
  v.wait_ms = response.wait_ms;
  v.done = response.done;
  holder->files.reserve(response.files.size());
  for (ds::FileRange& f : response.files) {
    holder->files.push_back(ds_file_range{f.fd ? f.fd->Release() : -1, f.offset, f.length});
  }
  v.files = holder->files.empty() ? nullptr : holder->files.data();
  v.files_len = holder->files.size();
  holder->pins = std::move(response.pieces);
  holder->parts.reserve(holder->pins.size());
  for (const ds::MemoryRange& p : holder->pins) {
    holder->parts.push_back(ds_bytes{reinterpret_cast<const uint8_t*>(p.data), p.length});
  }
  v.parts = holder->parts.empty() ? nullptr : holder->parts.data();
  v.parts_len = holder->parts.size();
  return &holder.release()->view;
}

using ds::CodeOf;

template <typename Fn>
ds_code Guard(ds_error* err, Fn fn) {
  try {
    ClearError(err);
    return fn();
  } catch (const std::bad_alloc&) {
    SetError(err, DS_ERR_INTERNAL, "out of memory");
  } catch (const std::exception& e) {
    SetError(err, DS_ERR_INTERNAL, e.what());
  } catch (...) {
    SetError(err, DS_ERR_INTERNAL, "unknown C++ exception");
  }
  return DS_ERR_INTERNAL;
}

// The ds_code (and error) for an adoption's result; `no_session` names the
// kind of session that was not found, `message` is kFailed's reason.
ds_code AdoptionCode(ds::Engine::Adoption result, const char* no_session,
                     const std::string& message, ds_error* err) {
  switch (result) {
    case ds::Engine::Adoption::kAdopted:
      return DS_OK;
    case ds::Engine::Adoption::kNoSession:
      SetError(err, DS_ERR_NOT_FOUND, no_session);
      return DS_ERR_NOT_FOUND;
    case ds::Engine::Adoption::kBadSocket:
      SetError(err, DS_ERR_INVALID_ARGUMENT, "not a connected stream socket");
      return DS_ERR_INVALID_ARGUMENT;
    case ds::Engine::Adoption::kFailed:
      SetError(err, DS_ERR_IO, message.c_str());
      return DS_ERR_IO;
  }
  return DS_ERR_INTERNAL;
}

}  // namespace

extern "C" {

const char* ds_code_name(ds_code code) {
  switch (code) {
    case DS_OK: return "ok";
    case DS_ERR_INVALID_ARGUMENT: return "invalid argument";
    case DS_ERR_NOT_SUPPORTED: return "not supported";
    case DS_ERR_IO: return "I/O error";
    case DS_ERR_LOCKED: return "data directory locked";
    case DS_ERR_NOT_FOUND: return "not found";
    case DS_ERR_INTERNAL: return "internal error";
  }
  return "unknown error";
}

ds_code ds_engine_open(const ds_options* options, ds_engine** out, ds_error* err) {
  return Guard(err, [&]() -> ds_code {
    if (options == nullptr || out == nullptr || options->wake_fn == nullptr) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "options, out and wake_fn are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    *out = nullptr;
    std::unique_ptr<ds::Store> store;
    if (options->data_dir != nullptr && options->data_dir[0] != '\0') {
      ds::LmdbStoreOptions store_options;
      store_options.data_dir = options->data_dir;
      store_options.fsync = options->fsync;
      if (options->fsync_interval_ms) {
        store_options.fsync_interval_ms = static_cast<int64_t>(options->fsync_interval_ms);
      }
      if (options->segment_bytes) store_options.segment_bytes = options->segment_bytes;
      if (options->inline_stream_bytes < 0) {
        store_options.inline_stream_bytes = 0;
      } else if (options->inline_stream_bytes > 0) {
        store_options.inline_stream_bytes = static_cast<uint64_t>(options->inline_stream_bytes);
      }
      std::unique_ptr<ds::LmdbStore> lmdb;
      ds::Status s = ds::LmdbStore::Open(store_options, &lmdb);
      if (!s.ok()) {
        ds_code code = CodeOf(s);
        SetError(err, code, s.message().c_str());
        return code;
      }
      store = std::move(lmdb);
    }
    ds::EngineOptions opts;
    if (options->stream_root != nullptr && options->stream_root[0] != '\0') {
      opts.stream_root = options->stream_root;
    }
    if (options->long_poll_timeout_ms) {
      opts.long_poll_timeout_ms = static_cast<int64_t>(options->long_poll_timeout_ms);
    }
    if (options->sse_reconnect_interval_ms) {
      opts.sse_reconnect_interval_ms = static_cast<int64_t>(options->sse_reconnect_interval_ms);
    }
    if (options->sse_keepalive_interval_ms) {
      opts.sse_keepalive_interval_ms = static_cast<int64_t>(options->sse_keepalive_interval_ms);
    }
    if (options->max_append_bytes) opts.max_append_bytes = options->max_append_bytes;
    if (options->max_read_bytes) opts.max_read_bytes = options->max_read_bytes;
    opts.retention_age_ms = static_cast<int64_t>(
        std::min<uint64_t>(options->retention_age_ms, std::numeric_limits<int64_t>::max()));
    opts.retention_bytes = options->retention_bytes;
    opts.max_memory_bytes = options->max_memory_bytes;
    opts.max_streams_per_group = options->max_streams_per_group;
    opts.max_bytes_per_group = options->max_bytes_per_group;
    opts.group_depth = static_cast<int>(std::clamp<uint64_t>(options->group_depth, 1, 64));
    if (options->subscription_token_secret != nullptr && options->subscription_token_secret_len > 0) {
      opts.subscription_token_secret.assign(
          reinterpret_cast<const char*>(options->subscription_token_secret),
          options->subscription_token_secret_len);
    }
    if (options->webhook_notify_fn != nullptr) {
      auto notify_fn = options->webhook_notify_fn;
      uintptr_t notify_ctx = options->webhook_notify_ctx;
      opts.webhook_notify = [notify_fn, notify_ctx] { notify_fn(notify_ctx); };
    }
    ds_wake_fn wake_fn = options->wake_fn;
    uintptr_t wake_ctx = options->wake_ctx;
    auto wake = [wake_fn, wake_ctx](const std::vector<uint64_t>& ids) {
      wake_fn(wake_ctx, ids.data(), ids.size());
    };
    auto engine = std::make_unique<ds_engine>();
    engine->engine = std::make_unique<ds::Engine>(
        std::move(opts), std::make_shared<ds::SystemClock>(), std::move(wake), std::move(store));
    ds::Status s = engine->engine->Recover();
    if (!s.ok()) {
      std::string message = "recovering " + std::string(options->data_dir) + ": " + s.message();
      SetError(err, CodeOf(s), message.c_str());
      return CodeOf(s);
    }
    *out = engine.release();
    return DS_OK;
  });
}

void ds_engine_close(ds_engine* engine) {
  try {
    delete engine;
  } catch (...) {
    // Nothing sensible to report from a destructor; the process goes on.
  }
}

ds_code ds_engine_handle(ds_engine* engine, const ds_request* req, const uint8_t* text,
                         size_t text_len, const uint8_t* body, size_t body_len,
                         uint64_t session_id, ds_response** out, ds_error* err) {
  return Guard(err, [&]() -> ds_code {
    if (engine == nullptr || req == nullptr || out == nullptr) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "engine, req and out are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    ds::Request request;
    const char* chars = reinterpret_cast<const char*>(text);
    for (int i = 0; i < DS_FIELD_COUNT; ++i) {
      if ((req->present & (1u << i)) == 0) continue;
      const ds_field& f = req->fields[i];
      if (static_cast<size_t>(f.offset) + f.length > text_len) {
        SetError(err, DS_ERR_INVALID_ARGUMENT, "request field outside the text buffer");
        return DS_ERR_INVALID_ARGUMENT;
      }
      request.fields[i] = std::string_view(chars + f.offset, f.length);
    }
    request.method = request.fields[DS_FIELD_METHOD].value_or("");
    request.path = request.fields[DS_FIELD_PATH].value_or("");
    request.query = request.fields[DS_FIELD_QUERY].value_or("");
    request.body = std::string_view(reinterpret_cast<const char*>(body), body != nullptr ? body_len : 0);
    request.body_too_large = req->body_too_large;
    request.body_over_budget = req->body_over_budget;
    request.answer_at_park = req->answer_at_park;
    *out = Export(engine->engine->Handle(request, session_id));
    return DS_OK;
  });
}

int ds_engine_wake_fd(ds_engine* engine) {
  if (engine == nullptr) return -1;
  return engine->engine->EnableWakeRelay();
}

size_t ds_engine_take_wakes(ds_engine* engine, uint64_t* ids, size_t cap) {
  if (engine == nullptr || ids == nullptr) return 0;
  return engine->engine->TakeRelayedWakes(ids, cap);
}

const uint32_t* ds_engine_wakes_ready(ds_engine* engine) {
  if (engine == nullptr) return nullptr;
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  return reinterpret_cast<const uint32_t*>(engine->engine->RelayReady());
}

namespace {
struct WebhookBatchHolder {
  ds_webhook_batch view;
  std::vector<ds::WebhookJob> jobs;
  std::vector<ds_webhook> items;
};
static_assert(offsetof(WebhookBatchHolder, view) == 0);
}  // namespace

ds_code ds_engine_take_webhooks(ds_engine* engine, size_t max, ds_webhook_batch** out,
                                ds_error* err) {
  return Guard(err, [&]() -> ds_code {
    if (engine == nullptr || out == nullptr) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "engine and out are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    auto holder = std::make_unique<WebhookBatchHolder>();
    holder->jobs = engine->engine->TakeWebhooks(max);
    holder->items.resize(holder->jobs.size());
    for (size_t i = 0; i < holder->jobs.size(); ++i) {
      const ds::WebhookJob& j = holder->jobs[i];
      ds_webhook& w = holder->items[i];
      w.subscription_id = j.subscription_id.data();
      w.subscription_id_len = j.subscription_id.size();
      w.url = j.url.data();
      w.url_len = j.url.size();
      w.body = reinterpret_cast<const uint8_t*>(j.body.data());
      w.body_len = j.body.size();
      w.wake_id = j.wake_id.data();
      w.wake_id_len = j.wake_id.size();
      w.generation = j.generation;
    }
    holder->view.items = holder->items.data();
    holder->view.n = holder->items.size();
    *out = &holder.release()->view;
    return DS_OK;
  });
}

void ds_webhook_batch_free(ds_webhook_batch* batch) {
  delete reinterpret_cast<WebhookBatchHolder*>(batch);
}

ds_code ds_engine_webhook_result(ds_engine* engine, const char* subscription_id,
                                 size_t subscription_id_len, uint64_t generation,
                                 const char* wake_id, size_t wake_id_len, int32_t status,
                                 const uint8_t* body, size_t body_len, bool transport_error,
                                 ds_error* err) {
  return Guard(err, [&]() -> ds_code {
    if (engine == nullptr || subscription_id == nullptr || wake_id == nullptr) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "engine, subscription_id and wake_id are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    engine->engine->WebhookResult(
        std::string(subscription_id, subscription_id_len), generation,
        std::string(wake_id, wake_id_len), status,
        std::string_view(reinterpret_cast<const char*>(body), body != nullptr ? body_len : 0),
        transport_error);
    return DS_OK;
  });
}

ds_code ds_session_resume(ds_engine* engine, uint64_t session, ds_resume_reason reason,
                          ds_response** out, ds_error* err) {
  return Guard(err, [&]() -> ds_code {
    if (engine == nullptr || out == nullptr) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "engine and out are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    *out = Export(engine->engine->Resume(session, reason));
    return DS_OK;
  });
}

void ds_session_cancel(ds_engine* engine, uint64_t session) {
  try {
    if (engine != nullptr) engine->engine->Cancel(session);
  } catch (...) {
    // Cancel only frees memory; a failure leaves a session to expire.
  }
}

ds_code ds_session_adopt(ds_engine* engine, uint64_t session, int socket_fd, uint64_t owner,
                         ds_error* err) {
  // Owned from here on, so that every return below closes it.
  ds::UniqueFd socket(socket_fd);
  return Guard(err, [&]() -> ds_code {
    if (engine == nullptr || socket_fd < 0) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "engine and a socket are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    std::string message;
    ds::Engine::Adoption result =
        engine->engine->AdoptSse(session, std::move(socket), owner, &message);
    return AdoptionCode(result, "no such live SSE session", message, err);
  });
}

ds_code ds_session_adopt_long_poll(ds_engine* engine, uint64_t session, int socket_fd,
                                   uint64_t owner, const char* headers, size_t headers_len,
                                   uint64_t return_tag, int borrow_socket, ds_error* err) {
  // Owned (closed on every return below) unless borrowed.
  ds::AdoptedSocket socket = borrow_socket ? ds::AdoptedSocket::Borrowed(socket_fd)
                                           : ds::AdoptedSocket(ds::UniqueFd(socket_fd));
  return Guard(err, [&]() -> ds_code {
    constexpr uint64_t kTagBit = uint64_t{1} << 62;
    if (engine == nullptr || socket_fd < 0 || (headers == nullptr && headers_len > 0) ||
        (return_tag != 0 && (return_tag & ~(kTagBit - 1)) != kTagBit) ||
        (borrow_socket && return_tag == 0)) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "engine and a socket are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    std::string message;
    ds::Engine::Adoption result = engine->engine->AdoptLongPoll(
        session, std::move(socket), owner,
        std::string(headers == nullptr ? "" : headers, headers_len), return_tag, &message);
    return AdoptionCode(result, "no such parked long-poll session", message, err);
  });
}

void ds_engine_end_adopted(ds_engine* engine, uint64_t owner) {
  try {
    if (engine != nullptr) engine->engine->EndAdopted(owner);
  } catch (...) {
    // Only queues work; a failure leaves the sessions to their own end.
  }
}

ds_code ds_engine_set_tunables(ds_engine* engine, const ds_tunables* tunables, ds_error* err) {
  return Guard(err, [&]() -> ds_code {
    if (engine == nullptr || tunables == nullptr) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "engine and tunables are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    constexpr uint64_t kMaxMs = std::numeric_limits<int64_t>::max();
    ds::Engine::Tunables t;  // its defaults are ds_options' zero meanings
    if (tunables->long_poll_timeout_ms) {
      t.long_poll_timeout_ms = static_cast<int64_t>(std::min(tunables->long_poll_timeout_ms, kMaxMs));
    }
    if (tunables->sse_reconnect_interval_ms) {
      t.sse_reconnect_interval_ms =
          static_cast<int64_t>(std::min(tunables->sse_reconnect_interval_ms, kMaxMs));
    }
    if (tunables->max_append_bytes) t.max_append_bytes = tunables->max_append_bytes;
    t.retention_age_ms = static_cast<int64_t>(std::min(tunables->retention_age_ms, kMaxMs));
    t.retention_bytes = tunables->retention_bytes;
    t.limits = ds::UsageLimits{tunables->max_memory_bytes, tunables->max_streams_per_group,
                               tunables->max_bytes_per_group};
    engine->engine->SetTunables(t);
    return DS_OK;
  });
}

void ds_response_free(ds_response* response) {
  delete reinterpret_cast<ResponseHolder*>(response);
}

void ds_engine_stats(ds_engine* engine, ds_stats* out) {
  if (engine == nullptr || out == nullptr) return;
  try {
    ds::EngineStats s = engine->engine->Stats();
    out->streams = s.streams;
    out->parked_sessions = s.parked_sessions;
    out->appends = s.appends;
    out->bytes_appended = s.bytes_appended;
    out->adopted_sessions = s.adopted_sessions;
    out->commits = s.commits;
    out->committed_writes = s.committed_writes;
    out->commit_nanos = s.commit_nanos;
    out->commit_flushes = s.commit_flushes;
    out->commit_flushes_waited = s.commit_flushes_waited;
    out->storage_state = s.writes_failed ? 2 : s.no_space ? 1 : 0;
    out->storage_no_space_answers = s.answered_no_space;
    out->storage_io_error_answers = s.answered_io_error;
    out->checksum_failures = s.checksum_failures;
    out->stream_bytes = s.stream_bytes;
    out->refused_memory_budget = s.refused_memory_budget;
    out->refused_quota_streams = s.refused_quota_streams;
    out->refused_quota_bytes = s.refused_quota_bytes;
    out->subscriptions = s.subscriptions.subscriptions;
    out->subscription_leases = s.subscriptions.leases_held;
    out->wakes_webhook = s.subscriptions.wakes_webhook;
    out->wakes_pull = s.subscriptions.wakes_pull;
    out->webhooks_queued = s.subscriptions.webhooks_queued;
  } catch (...) {
    *out = ds_stats{};
  }
}

size_t ds_engine_top_groups(ds_engine* engine, ds_group_usage* out, size_t n,
                            ds_group_usage* rest) {
  if (rest != nullptr) *rest = ds_group_usage{};
  if (engine == nullptr || (out == nullptr && n > 0)) return 0;
  try {
    ds::GroupSnapshot others;
    std::vector<ds::GroupSnapshot> top = engine->engine->TopGroups(n, &others);
    for (size_t i = 0; i < top.size(); ++i) {
      out[i] = ds_group_usage{};
      std::snprintf(out[i].name, sizeof out[i].name, "%s", top[i].name.c_str());
      out[i].streams = top[i].streams;
      out[i].bytes = top[i].bytes;
    }
    if (rest != nullptr) {
      rest->streams = others.streams;
      rest->bytes = others.bytes;
    }
    return top.size();
  } catch (...) {
    return 0;
  }
}

const char* ds_version(void) { return ds::kVersion; }

}  // extern "C"

extern "C" {

ds_code ds_engine_export_group(ds_engine* engine, const char* group, size_t group_len,
                               char** out, size_t* out_len, ds_error* err) {
  return Guard(err, [&]() -> ds_code {
    if (engine == nullptr || out == nullptr || out_len == nullptr || (group == nullptr && group_len)) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "engine, out and out_len are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    *out = nullptr;
    *out_len = 0;
    std::string data;
    ds::Status s = engine->engine->ExportGroup(std::string(group, group_len), &data);
    if (!s.ok()) {
      SetError(err, CodeOf(s), s.message().c_str());
      return CodeOf(s);
    }
    char* buf = static_cast<char*>(std::malloc(data.size() ? data.size() : 1));
    if (buf == nullptr) throw std::bad_alloc();
    std::memcpy(buf, data.data(), data.size());
    *out = buf;
    *out_len = data.size();
    return DS_OK;
  });
}

ds_code ds_engine_import(ds_engine* engine, const char* data, size_t len, uint64_t* count,
                         ds_error* err) {
  return Guard(err, [&]() -> ds_code {
    if (engine == nullptr || count == nullptr || (data == nullptr && len)) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "engine and count are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    ds::Status s = engine->engine->ImportStreams(std::string_view(data, len), count);
    if (!s.ok()) {
      SetError(err, CodeOf(s), s.message().c_str());
      return CodeOf(s);
    }
    return DS_OK;
  });
}

ds_code ds_engine_forget_group(ds_engine* engine, const char* group, size_t group_len,
                               uint64_t* count, ds_error* err) {
  return Guard(err, [&]() -> ds_code {
    if (engine == nullptr || count == nullptr || (group == nullptr && group_len)) {
      SetError(err, DS_ERR_INVALID_ARGUMENT, "engine and count are required");
      return DS_ERR_INVALID_ARGUMENT;
    }
    ds::Status s = engine->engine->ForgetGroup(std::string(group, group_len), count);
    if (!s.ok()) {
      SetError(err, CodeOf(s), s.message().c_str());
      return CodeOf(s);
    }
    return DS_OK;
  });
}

void ds_buffer_free(char* buffer) { std::free(buffer); }

}  // extern "C"
