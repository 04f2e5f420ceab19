/*
 * durable_streams.h — the whole contract between the Go Caddy module and the
 * C++ engine that implements the Durable Streams protocol.
 *
 * Conventions
 * -----------
 * - Pure C. Only <stdint.h>, <stddef.h> and <stdbool.h>. No C++ type and no
 *   exception ever crosses this boundary: every entry point catches everything
 *   and reports DS_ERR_INTERNAL instead.
 * - Names are ds_<object>_<verb>. Handles are opaque.
 * - Borrowed memory: pointers passed IN (request text, body) are only read
 *   during the call. The engine copies whatever it keeps before returning, so
 *   Go may pass pointers to Go memory as direct arguments (cgo rule: C never
 *   keeps Go pointers).
 * - Engine-owned memory: a ds_response is allocated by the engine and MUST be
 *   released with ds_response_free (never free()). Its pointers stay valid
 *   until then.
 * - Every call that can fail returns a ds_code; error text, when there is any,
 *   is copied into a caller-supplied ds_error.
 * - Thread safety: every function may be called concurrently from any thread
 *   on the same engine, except ds_engine_close, which must be the last call.
 * - Blocking: no call waits for stream data. Live reads (long-poll, SSE) are
 *   "sessions": the engine parks them in memory and reports, through the wake
 *   callback, which sessions should be resumed. The caller waits without
 *   holding an OS thread, then calls ds_session_resume. A durable append
 *   given a session id parks the same way until its group commit is on
 *   disk (DS_LIVE_COMMIT). Other calls may block on disk I/O (fsync) when
 *   the engine is durable.
 * - Takeover: the caller may instead hand a live SSE session's connection to
 *   the engine (ds_session_adopt); a few engine threads (one per CPU, at
 *   most four) then write the rest of every such response themselves.
 * - Session ids are chosen by the caller, non-zero and below 2^63: ids with
 *   the top bit set are the engine's own.
 */
#ifndef DURABLE_STREAMS_H_
#define DURABLE_STREAMS_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Error codes ------------------------------------------------------- */

typedef enum ds_code {
  DS_OK = 0,
  DS_ERR_INVALID_ARGUMENT = 1, /* a bad option or a malformed call */
  DS_ERR_NOT_SUPPORTED = 2,    /* a configured feature this build lacks */
  DS_ERR_IO = 3,               /* the storage failed (open, read, write) */
  DS_ERR_LOCKED = 4,           /* data_dir is held by another process */
  DS_ERR_NOT_FOUND = 5,        /* ds_session_adopt: no such live SSE session
                                  (ds_session_resume answers an unknown
                                  session with a done response instead) */
  DS_ERR_INTERNAL = 6          /* a bug: an invariant broke or C++ threw */
} ds_code;

typedef struct ds_error {
  ds_code code;
  char message[512]; /* NUL-terminated, empty when code == DS_OK */
} ds_error;

/* Static text for a code, for logs. Never NULL. */
const char* ds_code_name(ds_code code);

/* ---- Engine ------------------------------------------------------------ */

typedef struct ds_engine ds_engine;

/* Called by the engine, from whatever thread made the change (an append, a
 * close, a delete, the expiry sweeper), after it has released its locks, with
 * the ids of parked sessions that should now call ds_session_resume. `ids` is
 * only valid during the call. The callback must not call back into the
 * engine; it should only signal the waiting goroutines. */
typedef void (*ds_wake_fn)(uintptr_t wake_ctx, const uint64_t* ids, size_t n);

typedef enum ds_fsync {
  DS_FSYNC_ALWAYS = 0,   /* every acknowledged append survives power loss */
  DS_FSYNC_INTERVAL = 1, /* synced every fsync_interval_ms: survives a process
                            crash; power loss may lose the last interval */
  DS_FSYNC_OFF = 2       /* never synced: survives a process crash only */
} ds_fsync;

typedef struct ds_options {
  /* Directory for durable storage; NULL or empty means in-memory. */
  const char* data_dir;
  ds_fsync fsync;                     /* with data_dir */
  uint64_t fsync_interval_ms;         /* with DS_FSYNC_INTERVAL; 0 means 1,000 */
  /* URL path prefix under which the reserved `__ds` namespace lives
   * (PROTOCOL.md §6), e.g. "/v1/stream". NULL means "/v1/stream". */
  const char* stream_root;
  uint64_t long_poll_timeout_ms;      /* 0 means 30,000 */
  uint64_t sse_reconnect_interval_ms; /* 0 means 60,000 */
  uint64_t sse_keepalive_interval_ms; /* 0 means 15,000 */
  uint64_t max_append_bytes;          /* 0 means 64 MiB; larger gets 413 */
  uint64_t max_read_bytes;            /* response chunk cap; 0 means 1 MiB */
  /* Retention (0 = off): a stream's oldest segments are dropped once their
   * newest byte is older than retention_age_ms, or while the bytes after
   * them number at least retention_bytes; reads before the earliest kept
   * offset answer 410. Streams that forks read from are kept whole. */
  uint64_t retention_age_ms;
  uint64_t retention_bytes;
  uint64_t segment_bytes;             /* with data_dir: segment file size,
                                         the unit retention drops; 0 means
                                         64 MiB. In memory it is 1 MiB. */
  ds_wake_fn wake_fn;                 /* required */
  uintptr_t wake_ctx;                 /* passed back to wake_fn */
  /* Stream data limits (0 = none). In memory (no data_dir), appends and
   * creates whose bytes would take all streams' data past max_memory_bytes
   * answer 507. Per placement group (the first group_depth path segments
   * under stream_root; 0 means 1): creates past max_streams_per_group and
   * writes past max_bytes_per_group answer 507, and a body larger than
   * max_bytes_per_group 403. A stream counts its own bytes (a fork's from
   * its fork offset) until it is deleted, expires or retention drops them. */
  uint64_t max_memory_bytes;
  uint64_t max_streams_per_group;
  uint64_t max_bytes_per_group;
  uint64_t group_depth;
  /* Subscriptions (PROTOCOL.md §6-§7). The key callback and claim tokens
   * are signed with (HMAC-SHA256; the engine copies it; NULL or 0 length:
   * random per process, so tokens do not survive a restart). */
  const uint8_t* subscription_token_secret;
  size_t subscription_token_secret_len;
  /* Called, from whatever thread queued them and with no engine lock held,
   * when webhook deliveries are waiting for ds_engine_take_webhooks. It
   * must not call back into the engine; it should only signal. May be
   * NULL (then poll). */
  void (*webhook_notify_fn)(uintptr_t ctx);
  uintptr_t webhook_notify_ctx;
  /* With data_dir: a new stream's first bytes, up to this many, are kept in
   * LMDB instead of a segment file (STORAGE_FORMAT.md, "Inline streams").
   * 0 means 4096; -1 keeps every stream's bytes in segment files. */
  int64_t inline_stream_bytes;
} ds_options;

/* Opens an engine. On success *out is set and DS_OK returned. */
ds_code ds_engine_open(const ds_options* options, ds_engine** out,
                       ds_error* err);

/* Stops background work, frees every parked session, closes every adopted
 * connection (after the terminating chunk where it fits) and frees the
 * engine. It must
 * be the last call on the engine: the caller first ends its live requests
 * (the Go side answers them and refuses new calls). */
void ds_engine_close(ds_engine* engine);

/* ---- Requests ---------------------------------------------------------- */

/* The request fields the protocol reads. Each is a (offset, length) range in
 * one caller-owned text buffer, so the request struct itself holds no pointer
 * (cgo may pass it from Go memory). A field is absent unless its bit
 * (1u << id) is set in `present`; present-but-empty is distinct from absent. */
typedef enum ds_field_id {
  DS_FIELD_METHOD = 0,
  DS_FIELD_PATH,               /* decoded URL path, e.g. /v1/stream/a/b */
  DS_FIELD_QUERY,              /* raw query string without '?' */
  DS_FIELD_CONTENT_TYPE,
  DS_FIELD_STREAM_TTL,
  DS_FIELD_STREAM_EXPIRES_AT,
  DS_FIELD_STREAM_CLOSED,
  DS_FIELD_STREAM_SEQ,
  DS_FIELD_PRODUCER_ID,
  DS_FIELD_PRODUCER_EPOCH,
  DS_FIELD_PRODUCER_SEQ,
  DS_FIELD_IF_NONE_MATCH,
  DS_FIELD_STREAM_FORKED_FROM,
  DS_FIELD_STREAM_FORK_OFFSET,
  DS_FIELD_STREAM_FORK_SUB_OFFSET,
  DS_FIELD_ORIGIN,
  DS_FIELD_ACCESS_CONTROL_REQUEST_HEADERS,
  DS_FIELD_REQUEST_BASE,       /* "scheme://host[:port]" the client used; makes
                                  Location absolute (§5.1) */
  DS_FIELD_LAST_EVENT_ID,      /* an EventSource reconnecting: the id of the last
                                  SSE event it saw (a streamNextOffset) */
  DS_FIELD_AUTHORIZATION,      /* subscription callbacks, acks and releases:
                                  "Bearer <token>" (§7.3); set for __ds only */
  DS_FIELD_WEBHOOK_KID,        /* set by the caller, never from a client
                                  header: the active webhook signing key id,
                                  shown in subscription responses (§6.3) */
  DS_FIELD_COUNT
} ds_field_id;

typedef struct ds_field {
  uint32_t offset;
  uint32_t length;
} ds_field;

typedef struct ds_request {
  ds_field fields[DS_FIELD_COUNT];
  uint32_t present;     /* bit i set: fields[i] is present */
  bool body_too_large;  /* the body exceeded max_append_bytes and was not
                           read whole; the engine answers 413 */
  bool body_over_budget; /* the caller's budget for request bodies in
                            flight had no room for this one, so it was not
                            read; an append or create answers 503 with
                            Retry-After (load shedding) */
  bool answer_at_park;  /* a durable append that parks (DS_LIVE_COMMIT)
                           carries its success answer in the parked response,
                           and its wake names `session | DS_WAKE_COMMITTED`
                           once the commit is durable: the caller then writes
                           that answer and is done with the session (no
                           ds_session_resume; ds_session_cancel is harmless).
                           A wake naming the session alone means the commit
                           failed: ds_session_resume gives the answer to send
                           instead. Needs a session id below 2^60. */
} ds_request;

/* Or'ed into a parked append's session id in the wake callback when the
 * request set answer_at_park and its commit is durable. */
#define DS_WAKE_COMMITTED (UINT64_C(1) << 60)

/* ---- Responses --------------------------------------------------------- */

typedef enum ds_live {
  DS_LIVE_NONE = 0, /* a complete response: write it, release it, done */
  DS_LIVE_WAIT = 1, /* long-poll parked: write nothing yet; wait for a wake
                       or for wait_ms, then ds_session_resume */
  DS_LIVE_STREAM = 2, /* streaming (SSE): write status+headers+body now and
                         flush; then wait for a wake or wait_ms and resume */
  DS_LIVE_COMMIT = 3  /* a durable append waiting for its group commit: write
                         nothing; wait for a wake (wait_ms is 0: no timeout),
                         then ds_session_resume answers it. A session that is
                         cancelled instead still has its append committed.
                         With answer_at_park, status and headers are the
                         answer to write if the wake says committed. */
} ds_live;

typedef enum ds_resume_reason {
  DS_RESUME_WAKE = 0,    /* the wake callback named this session */
  DS_RESUME_TIMEOUT = 1, /* wait_ms elapsed without a wake */
  DS_RESUME_END = 2      /* the caller is stopping (e.g. a config reload): a
                            long-poll is answered as on its timeout; an SSE
                            response gets the events pending and then a final
                            control event (streamNextOffset, so its client
                            resumes at once), and is done */
} ds_resume_reason;

/* Body bytes a response sends from a file: `length` bytes at `offset` of
 * `fd`, a read-only descriptor with its own file position (sendfile-ready).
 * The response owns it: ds_response_free closes it unless the caller took
 * it by setting fd to -1 (the caller then closes it). */
typedef struct ds_file_range {
  int32_t fd;
  uint64_t offset;
  uint64_t length;
} ds_file_range;

/* Body bytes a response sends from engine memory: `len` bytes at `data`,
 * valid and unchanged until ds_response_free. */
typedef struct ds_bytes {
  const uint8_t* data;
  size_t len;
} ds_bytes;

/* A response, owned by the engine until ds_response_free. */
typedef struct ds_response {
  int32_t status; /* 0 on a resume that only continues a stream (no new
                     status line), otherwise an HTTP status */
  /* Headers as consecutive NUL-terminated name and value strings:
   * "Name\0value\0Name\0value\0". Names are in Go's canonical form. */
  const char* headers;
  size_t headers_len;
  const uint8_t* body;
  size_t body_len;
  ds_live live;
  uint64_t session;  /* non-zero while live != DS_LIVE_NONE */
  uint64_t wait_ms;  /* with DS_LIVE_WAIT/STREAM: resume with TIMEOUT after */
  bool done;         /* streaming: this is the last piece; close the body */
  /* The rest of the body, after `body`: file ranges in order (catch-up
   * reads of data_dir segments). The body's length is body_len plus their
   * lengths and the parts' lengths. NULL when files_len is 0. */
  ds_file_range* files;
  size_t files_len;
  /* Body bytes after `body` and before `files`, in order: views of the
   * engine's memory blocks (catch-up reads of memory streams), so the
   * caller writes them without a copy. NULL when parts_len is 0. */
  const ds_bytes* parts;
  size_t parts_len;
} ds_response;

/* Handles one HTTP request. `text` holds the ranges named by req->fields;
 * `body` the request body (may be NULL when body_len is 0). `session_id` is a
 * caller-chosen non-zero id the engine uses if the request parks (the caller
 * registers its wake channel under that id before calling, so no wake can be
 * lost); 0 means the request must not park, so a durable append then blocks
 * until committed. On DS_OK, *out is a response to write; protocol errors (4xx) are
 * responses, not error codes. Never blocks on stream data. */
ds_code ds_engine_handle(ds_engine* engine, const ds_request* req,
                         const uint8_t* text, size_t text_len,
                         const uint8_t* body, size_t body_len,
                         uint64_t session_id, ds_response** out,
                         ds_error* err);

/* Continues a parked session after a wake or its timeout. Returns a response
 * with live == DS_LIVE_NONE (long-poll finished, or a parked append's
 * answer: write it), DS_LIVE_WAIT (a spurious wake: keep waiting), or
 * DS_LIVE_STREAM (SSE: write body, flush, and stop when done). Resuming a
 * parked append before its wake blocks until its commit is done. A session that is done is forgotten by the engine;
 * resuming an unknown or finished session returns a done 404 response. */
ds_code ds_session_resume(ds_engine* engine, uint64_t session,
                          ds_resume_reason reason, ds_response** out,
                          ds_error* err);

/* Forgets a session whose client went away. Idempotent; never blocks. */
void ds_session_cancel(ds_engine* engine, uint64_t session);

/* Takes over a live SSE session together with its connection. The caller
 * has written, to the connected stream socket `socket_fd`, the status line,
 * headers announcing `Transfer-Encoding: chunked` and the body so far as
 * complete chunks (every piece returned for `session`, the last one not
 * done). From now on an engine writer thread writes the rest of the
 * response to it as chunks and ends it as ds_session_resume would have (at
 * the reconnect interval, after the closing control event, at once on
 * deletion) with the terminating chunk "0\r\n\r\n"; then it closes the
 * socket. A peer that hangs up is dropped at once; one that stops reading,
 * a keepalive interval after the response's end. The socket is the
 * engine's from this call on, whatever it returns; it is made non-blocking.
 * `owner` tags the session for ds_engine_end_adopted. The session is the
 * engine's too: do not resume or cancel it.
 *
 * Returns DS_OK; DS_ERR_NOT_FOUND when `session` is not a live SSE session;
 * DS_ERR_INVALID_ARGUMENT when the descriptor is not a stream socket;
 * DS_ERR_IO when the writer could not start. Never blocks. */
ds_code ds_session_adopt(ds_engine* engine, uint64_t session, int socket_fd,
                         uint64_t owner, ds_error* err);

/* Takes over a parked long-poll session (its last answer was DS_LIVE_WAIT)
 * together with its connection, on which nothing of the response has been
 * written. An engine writer thread waits for the stream as
 * ds_session_resume would and writes the whole answer itself (200 with the
 * bytes, 204 at the long-poll timeout or when `owner` is ended, 404/410
 * when the stream goes): the status line and headers rendered as Go's
 * net/http renders what the HTTP layer sets, merged with `headers` (what
 * the response's header map held when it parked, encoded
 * "Name\0value\0..." with one pair per value, `headers_len` bytes) and
 * `Connection: close`; then the body. Then it shuts the socket for writing
 * and closes it once the client closes (at most a second later). A peer
 * that hangs up while parked is dropped at once. Ownership of the socket
 * and the session as for ds_session_adopt.
 *
 * With a non-zero `return_tag` (bit 62 set, bits 63 and 61 clear, so it is
 * no session id) the caller keeps its own descriptor of the connection open
 * and gets it back: the answer then names no Connection: close, and once
 * it is written whole the wake callback names `return_tag | (1 << 61)`,
 * meaning "read the next request on it"; when the engine drops it instead
 * (the client hung up or stopped reading, the engine closes) the callback
 * names `return_tag` alone, meaning "close it". Either comes exactly once
 * after DS_OK, never after an error.
 *
 * With a return tag, `borrow_socket` non-zero lends the engine the caller's
 * own descriptor (already non-blocking) instead of a duplicate: the engine
 * never closes it, and the caller keeps it open until the callback names
 * the tag (or this call fails), then closes or reuses it. Without a return
 * tag it must be zero.
 *
 * Returns DS_OK; DS_ERR_NOT_FOUND when `session` is not a parked
 * long-poll; DS_ERR_INVALID_ARGUMENT, DS_ERR_IO as ds_session_adopt. */
ds_code ds_session_adopt_long_poll(ds_engine* engine, uint64_t session, int socket_fd,
                                   uint64_t owner, const char* headers, size_t headers_len,
                                   uint64_t return_tag, int borrow_socket, ds_error* err);

/* Ends every adopted session tagged `owner` as its reconnect interval
 * would (the terminating chunk, then close), so their clients reconnect,
 * e.g. to a new configuration. Returns at once; never blocks. */
void ds_engine_end_adopted(ds_engine* engine, uint64_t owner);

/* The options a configuration reload may change on a running engine. The
 * rest of ds_options (data_dir, fsync, stream_root, segment_bytes, ...) is
 * fixed when the engine opens. 0 means the default, as in ds_options. */
typedef struct ds_tunables {
  uint64_t long_poll_timeout_ms;
  uint64_t sse_reconnect_interval_ms;
  uint64_t max_append_bytes;          /* also named by the 413 message */
  uint64_t retention_age_ms;          /* 0: no age limit */
  uint64_t retention_bytes;           /* 0: no size limit */
  uint64_t max_memory_bytes;          /* 0: none; as in ds_options */
  uint64_t max_streams_per_group;     /* 0: none */
  uint64_t max_bytes_per_group;       /* 0: none */
} ds_tunables;

/* Replaces the engine's tunable options, each atomically: requests, new
 * live sessions and retention passes that start after the call use the new
 * values; sessions already parked keep their deadlines. Never blocks. */
ds_code ds_engine_set_tunables(ds_engine* engine, const ds_tunables* tunables,
                               ds_error* err);

void ds_response_free(ds_response* response);

/* ---- Webhook delivery (PROTOCOL.md §7.1) --------------------------------
 * The engine decides every delivery: which subscription, the URL, and the
 * exact body (streams, callback_url, callback_token, generation, wake_id).
 * The caller signs and sends it and reports the outcome; the engine applies
 * it ({"done": true} acks the wake's snapshot; a failure schedules a retry
 * with backoff). */
typedef struct ds_webhook {
  const char* subscription_id;
  size_t subscription_id_len;
  const char* url;
  size_t url_len;
  const uint8_t* body; /* POST exactly these bytes (and sign them) */
  size_t body_len;
  const char* wake_id;
  size_t wake_id_len;
  uint64_t generation;
} ds_webhook;

typedef struct ds_webhook_batch {
  const ds_webhook* items;
  size_t n;
} ds_webhook_batch;

/* Takes up to `max` queued deliveries (oldest first) into *out, which the
 * caller frees with ds_webhook_batch_free (n may be 0). Never blocks. */
ds_code ds_engine_take_webhooks(ds_engine* engine, size_t max, ds_webhook_batch** out,
                                ds_error* err);
void ds_webhook_batch_free(ds_webhook_batch* batch);

/* The outcome of one delivery: the HTTP status and response body, or
 * transport_error (no HTTP answer: refused, timed out, rejected address).
 * May block on disk I/O (the outcome is stored). */
ds_code ds_engine_webhook_result(ds_engine* engine, const char* subscription_id,
                                 size_t subscription_id_len, uint64_t generation,
                                 const char* wake_id, size_t wake_id_len, int32_t status,
                                 const uint8_t* body, size_t body_len, bool transport_error,
                                 ds_error* err);

/* ---- Relayed wakes ----------------------------------------------------- */

/* From this call on, the wakes the group committer makes (parked appends,
 * readers of what it published) are not passed to wake_fn on the
 * committer's own thread: they are queued, and the returned descriptor (an
 * eventfd: read 8 bytes to reset it) becomes readable when
 * ds_engine_take_wakes has ids, as does the word ds_engine_wakes_ready
 * points to (non-zero), which a busy caller may poll between requests. The
 * caller owns the descriptor (close it after ds_engine_close). Wakes from
 * other threads still go to wake_fn. Returns -1 where this is not supported
 * (not Linux) or on failure; then wake_fn keeps getting them all. */
int ds_engine_wake_fd(ds_engine* engine);
/* Moves up to `cap` queued session ids into `ids` and returns how many;
 * fewer than `cap` means none are left. Never blocks. */
size_t ds_engine_take_wakes(ds_engine* engine, uint64_t* ids, size_t cap);
/* The relay's ready word (read it atomically): non-zero while ids wait.
 * Valid until ds_engine_close. */
const uint32_t* ds_engine_wakes_ready(ds_engine* engine);

/* ---- Placement group moves (README, Scaling) ---------------------------- */

/* Writes the committed state of every stream of placement `group` (bytes,
 * producers, closure, TTL/expiry, forks) into a malloc'd buffer *out of
 * *out_len bytes (free it with ds_buffer_free). The caller keeps writes to
 * the group out while it runs. */
ds_code ds_engine_export_group(ds_engine* engine, const char* group, size_t group_len,
                               char** out, size_t* out_len, ds_error* err);
/* Adds the streams of an export; fails, adding none, if any path exists. */
ds_code ds_engine_import(ds_engine* engine, const char* data, size_t len, uint64_t* count,
                         ds_error* err);
/* Deletes every stream of `group`; *count says how many. */
ds_code ds_engine_forget_group(ds_engine* engine, const char* group, size_t group_len,
                               uint64_t* count, ds_error* err);
void ds_buffer_free(char* buffer);

/* ---- Maintenance ------------------------------------------------------- */

/* Copies data_dir to dest (which must not exist or be empty) consistently,
 * even while a server is writing to data_dir: a server started on dest
 * serves every stream acknowledged before the call began. Blocks for the
 * duration of the copy. */
ds_code ds_backup(const char* data_dir, const char* dest, ds_error* err);

/* Checks every stream's segment bytes in data_dir against their stored
 * checksums, offline or while a server writes to it (one LMDB read
 * snapshot; bytes committed after it are not checked). DS_OK means the
 * check ran: out->problems says what it found, out->report has one line
 * per problem (stream id, path and byte range). Free out->report with
 * ds_verify_result_free. */
typedef struct ds_verify_result {
  uint64_t streams;  /* streams in the snapshot */
  uint64_t blocks;   /* checksum blocks read and compared */
  uint64_t bytes;    /* bytes they hold */
  uint64_t problems; /* mismatches, missing bytes, missing checksums */
  char* report;      /* NUL-terminated, "" when problems == 0 */
} ds_verify_result;

ds_code ds_verify(const char* data_dir, ds_verify_result* out, ds_error* err);
void ds_verify_result_free(ds_verify_result* result);

/* ---- Introspection ----------------------------------------------------- */

typedef struct ds_stats {
  uint64_t streams;          /* live streams (not expired, not deleted) */
  uint64_t parked_sessions;  /* long-poll and SSE sessions waiting,
                                including adopted ones */
  uint64_t appends;          /* successful appends since open */
  uint64_t bytes_appended;
  uint64_t adopted_sessions; /* SSE sessions the engine writes itself */
  /* Group commits to data_dir since open (all zero in memory): how many,
     the writes (appends, creates, deletes, ...) they carried, and the wall
     time spent committing them. */
  uint64_t commits;
  uint64_t committed_writes;
  uint64_t commit_nanos;
  /* Storage health: 0 fine; 1 the last commit failed for a full disk
     (writes are tried and answer 507 until one commits); 2 a storage error
     stopped writes until restart. And the requests answered 507 (no space)
     and 500 (storage I/O errors, refusals included) since open. */
  uint64_t storage_state;
  uint64_t storage_no_space_answers;
  uint64_t storage_io_error_answers;
  /* Reads refused (500) because stored bytes did not match their checksum
     (data_dir only). */
  uint64_t checksum_failures;
  /* Stream data held (every stream's own bytes), and the writes refused
     since open by the memory budget, the streams quota and the bytes
     quota of a placement group. */
  uint64_t stream_bytes;
  uint64_t refused_memory_budget;
  uint64_t refused_quota_streams;
  uint64_t refused_quota_bytes;
  /* Subscriptions: how many exist, leases held now (webhook wakes in
     flight and pull-wake claims), wakes issued since open by type, and
     webhook deliveries waiting to be taken. */
  uint64_t subscriptions;
  uint64_t subscription_leases;
  uint64_t wakes_webhook;
  uint64_t wakes_pull;
  uint64_t webhooks_queued;
  /* Group commits, continued (data_dir only): the store's flushes (commits
     and syncs; under fsync always one device flush each), and the sum over
     acknowledged writes of how many of them each waited for between being
     queued for commit and being acknowledged. */
  uint64_t commit_flushes;
  uint64_t commit_flushes_waited;
} ds_stats;

void ds_engine_stats(ds_engine* engine, ds_stats* out);

/* One placement group's usage. `name` is NUL-terminated, cut to fit. */
typedef struct ds_group_usage {
  char name[128];
  uint64_t streams;
  uint64_t bytes;
} ds_group_usage;

/* Fills out[0..n) with the (at most n) groups holding the most bytes,
 * largest first, and *rest with the sum of all the others (name "").
 * Returns how many it filled. */
size_t ds_engine_top_groups(ds_engine* engine, ds_group_usage* out, size_t n,
                            ds_group_usage* rest);

/* The engine's version string, e.g. "0.1.0". Never NULL. */
const char* ds_version(void);

#ifdef __cplusplus
}
#endif

#endif /* DURABLE_STREAMS_H_ */
