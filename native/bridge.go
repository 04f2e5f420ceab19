// Package native is the Go side of the C ABI in durable_streams.h: it opens
// the C++ engine, hands it requests and returns its responses. It makes no
// protocol decision; the engine decides every status, header and body.
//
// This is the only file of the engine that imports "C" (the packages under
// third_party do too, only to compile LMDB and simdjson). cgo compiles
// every .cc file in this directory, so `go build` builds the engine too.
//
// Memory rules (see the header's conventions): request text and body are Go
// memory passed as direct arguments and only read during the call; responses
// are engine memory, valid until Response.Release.
package native

/*
#cgo CXXFLAGS: -std=c++20 -O2 -Wall
#cgo CXXFLAGS: -I${SRCDIR}/third_party/lmdb -I${SRCDIR}/third_party/simdjson
#cgo windows CXXFLAGS: -include ${SRCDIR}/win32_compat.h -I${SRCDIR}/compat/win32 -D_FILE_OFFSET_BITS=64
#cgo LDFLAGS: -lstdc++
#cgo !windows LDFLAGS: -lpthread
#include <stdlib.h>
#include "durable_streams.h"

// Implemented in Go below (//export dsGoWake). cgo spells the pointer
// parameter without const, so it is cast to ds_wake_fn where it is used.
extern void dsGoWake(uintptr_t wake_ctx, uint64_t* ids, size_t n);
// Implemented in Go below (//export dsGoWebhookNotify).
extern void dsGoWebhookNotify(uintptr_t ctx);
*/
import "C"

import (
	"errors"
	"fmt"
	"iter"
	"math"
	"os"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	// LMDB and simdjson, vendored and compiled from source (their headers
	// are on the include path above): the binary needs no shared library
	// beyond the C and C++ runtimes.
	_ "github.com/durable-streams-server/durable-streams-server/native/third_party/lmdb"
	_ "github.com/durable-streams-server/durable-streams-server/native/third_party/simdjson"
)

// ---- Errors -------------------------------------------------------------

// Code is a ds_code from the engine. A Code is itself an error, so
// errors.Is(err, native.CodeLocked) works on any *Error.
type Code int

// The engine's error codes (ds_code).
const (
	CodeOK              Code = C.DS_OK
	CodeInvalidArgument Code = C.DS_ERR_INVALID_ARGUMENT
	CodeNotSupported    Code = C.DS_ERR_NOT_SUPPORTED
	CodeIO              Code = C.DS_ERR_IO
	CodeLocked          Code = C.DS_ERR_LOCKED
	CodeNotFound        Code = C.DS_ERR_NOT_FOUND
	CodeInternal        Code = C.DS_ERR_INTERNAL
)

// Error returns the code's static name, e.g. "DS_ERR_LOCKED".
func (c Code) Error() string { return C.GoString(C.ds_code_name(C.ds_code(c))) }

// Error is a failed engine call: the operation, the engine's code and its
// message. It unwraps to its Code.
type Error struct {
	Op      string // "open", "handle", "resume", "adopt", "backup", "verify"
	Code    Code
	Message string // may be empty
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("durable streams engine: %s: %v", e.Op, e.Code)
	}
	return fmt.Sprintf("durable streams engine: %s: %v: %s", e.Op, e.Code, e.Message)
}

// Unwrap makes errors.Is(err, CodeLocked) and friends work.
func (e *Error) Unwrap() error { return e.Code }

// ErrClosed is returned by calls made after Engine.Close.
var ErrClosed = errors.New("durable streams engine: closed")

func newError(op string, code C.ds_code, cerr *C.ds_error) *Error {
	return &Error{Op: op, Code: Code(code), Message: C.GoString(&cerr.message[0])}
}

// ---- Engine -------------------------------------------------------------

// Fsync says when durable storage syncs appended bytes (ds_fsync).
type Fsync int

const (
	// FsyncAlways: every acknowledged append survives power loss.
	FsyncAlways Fsync = C.DS_FSYNC_ALWAYS
	// FsyncInterval: synced every FsyncInterval; survives a process crash,
	// power loss may lose the last interval.
	FsyncInterval Fsync = C.DS_FSYNC_INTERVAL
	// FsyncOff: never synced; survives a process crash only.
	FsyncOff Fsync = C.DS_FSYNC_OFF
)

// Options are the engine's ds_options. Zero values mean the engine's defaults
// (see durable_streams.h).
type Options struct {
	DataDir              string // empty: in memory
	Fsync                Fsync  // with DataDir; zero: FsyncAlways
	FsyncInterval        time.Duration
	StreamRoot           string // empty: "/v1/stream"
	LongPollTimeout      time.Duration
	SSEReconnectInterval time.Duration
	SSEKeepaliveInterval time.Duration
	MaxAppendBytes       int64
	MaxReadBytes         int64
	RetentionAge         time.Duration // zero: no age limit
	RetentionBytes       int64         // zero: no size limit
	SegmentBytes         int64         // with DataDir; zero: 64 MiB
	InlineStreamBytes    int64         // with DataDir; zero: 4096; negative: none
	// Stream data limits (zero: none): the bytes all streams may hold in
	// memory (ignored with DataDir), and the streams and bytes each
	// placement group (the first GroupDepth path segments under StreamRoot;
	// zero: 1) may hold.
	MaxMemoryBytes     int64
	MaxStreamsPerGroup int64
	MaxBytesPerGroup   int64
	GroupDepth         int
	// SubscriptionTokenSecret signs subscription callback and claim tokens
	// (HMAC-SHA256); empty: random per process.
	SubscriptionTokenSecret string
}

// Engine is an open C++ engine. It is safe for concurrent use.
type Engine struct {
	// mu orders calls against Close: every C call holds it for reading, Close
	// for writing, so Close never races a call (the header requires that).
	// Nothing holds it while a live request waits.
	mu     sync.RWMutex
	ptr    *C.ds_engine // nil once closed
	handle cgo.Handle   // wake_ctx: finds this Engine from the wake callback

	nextSession atomic.Uint64
	waiters     [waiterShards]waiterShard

	// webhooks is signalled when the engine queued webhook deliveries
	// (ds_engine_take_webhooks); capacity one, so signals coalesce.
	webhooks chan struct{}

	// With data_dir, the group committer's wakes are relayed (wake relay,
	// ds_engine_wake_fd) instead of calling dsGoWake on its thread: ready is
	// the engine's ready word, polled after every Handle (under mu, so the
	// engine is open), and wakeFile the descriptor relayWakes waits on for
	// when no request comes by.
	wakeFile *os.File
	ready    *uint32
}

const waiterShards = 64

// waiterShard maps session ids to their waiters. Wakes send under the
// shard lock, so once Unregister has returned no wake can reach the channel.
type waiterShard struct {
	mu sync.Mutex
	m  map[uint64]*Waiter
	_  [40]byte // keep shards on separate cache lines
}

// Waiter is a registered session's wake channel (buffer 1) and, for a
// durable append answered at park time (RegisterAppend), whether the wake
// said its commit is durable.
type Waiter struct {
	ch        chan struct{}
	committed atomic.Bool
}

// Wake is signalled when the engine names the session.
func (w *Waiter) Wake() <-chan struct{} { return w.ch }

// Committed tells, after a wake, whether the engine named the session as
// committed (DS_WAKE_COMMITTED): the parked append's answer, returned by
// Handle, is then the one to write, without Resume. False after a wake
// means the commit failed (or the engine closed): Resume gives the answer.
func (w *Waiter) Committed() bool { return w.committed.Load() }

// Open opens an engine with opts.
func Open(opts Options) (*Engine, error) {
	if opts.LongPollTimeout < 0 || opts.SSEReconnectInterval < 0 || opts.SSEKeepaliveInterval < 0 ||
		opts.FsyncInterval < 0 || opts.MaxAppendBytes < 0 || opts.MaxReadBytes < 0 ||
		opts.RetentionAge < 0 || opts.RetentionBytes < 0 || opts.SegmentBytes < 0 ||
		opts.MaxMemoryBytes < 0 || opts.MaxStreamsPerGroup < 0 || opts.MaxBytesPerGroup < 0 || opts.GroupDepth < 0 {
		return nil, &Error{Op: "open", Code: CodeInvalidArgument, Message: "negative option"}
	}
	e := &Engine{webhooks: make(chan struct{}, 1)}
	for i := range e.waiters {
		e.waiters[i].m = make(map[uint64]*Waiter)
	}
	e.handle = cgo.NewHandle(e)

	var copts C.ds_options
	if opts.DataDir != "" {
		copts.data_dir = C.CString(opts.DataDir)
		defer C.free(unsafe.Pointer(copts.data_dir))
	}
	copts.fsync = C.ds_fsync(opts.Fsync)
	copts.fsync_interval_ms = C.uint64_t(opts.FsyncInterval.Milliseconds())
	if opts.StreamRoot != "" {
		copts.stream_root = C.CString(opts.StreamRoot)
		defer C.free(unsafe.Pointer(copts.stream_root))
	}
	copts.long_poll_timeout_ms = C.uint64_t(opts.LongPollTimeout.Milliseconds())
	copts.sse_reconnect_interval_ms = C.uint64_t(opts.SSEReconnectInterval.Milliseconds())
	copts.sse_keepalive_interval_ms = C.uint64_t(opts.SSEKeepaliveInterval.Milliseconds())
	copts.max_append_bytes = C.uint64_t(opts.MaxAppendBytes)
	copts.max_read_bytes = C.uint64_t(opts.MaxReadBytes)
	copts.retention_age_ms = C.uint64_t(opts.RetentionAge.Milliseconds())
	copts.retention_bytes = C.uint64_t(opts.RetentionBytes)
	copts.segment_bytes = C.uint64_t(opts.SegmentBytes)
	copts.inline_stream_bytes = C.int64_t(opts.InlineStreamBytes)
	copts.max_memory_bytes = C.uint64_t(opts.MaxMemoryBytes)
	copts.max_streams_per_group = C.uint64_t(opts.MaxStreamsPerGroup)
	copts.max_bytes_per_group = C.uint64_t(opts.MaxBytesPerGroup)
	copts.group_depth = C.uint64_t(opts.GroupDepth)
	copts.wake_fn = C.ds_wake_fn(C.dsGoWake)
	copts.wake_ctx = C.uintptr_t(e.handle)
	copts.webhook_notify_fn = (*[0]byte)(C.dsGoWebhookNotify)
	copts.webhook_notify_ctx = C.uintptr_t(e.handle)
	if len(opts.SubscriptionTokenSecret) > 0 {
		secret := C.CBytes([]byte(opts.SubscriptionTokenSecret))
		defer C.free(secret)
		copts.subscription_token_secret = (*C.uint8_t)(secret)
		copts.subscription_token_secret_len = C.size_t(len(opts.SubscriptionTokenSecret))
	}

	var cerr C.ds_error
	if code := C.ds_engine_open(&copts, &e.ptr, &cerr); code != C.DS_OK {
		e.handle.Delete()
		return nil, newError("open", code, &cerr)
	}
	if opts.DataDir != "" {
		if fd := C.ds_engine_wake_fd(e.ptr); fd >= 0 {
			e.ready = (*uint32)(unsafe.Pointer(C.ds_engine_wakes_ready(e.ptr)))
			e.wakeFile = os.NewFile(uintptr(fd), "durable-streams-wakes")
			go e.relayWakes(e.wakeFile)
		}
	}
	return e, nil
}

// relayWakes delivers the group committer's wakes when no request polls for
// them first (Handle): a C thread calling into Go leaves a P that Go's
// sysmon must retake after every commit (native/wake_relay.h), while this
// goroutine waits in the netpoller. Ends when Close closes f.
func (e *Engine) relayWakes(f *os.File) {
	var counter [8]byte
	for {
		if _, err := f.Read(counter[:]); err != nil {
			return // closed
		}
		e.mu.RLock()
		if e.ptr != nil {
			e.takeWakes()
		}
		e.mu.RUnlock()
	}
}

// relayedWakes counts the session ids takeWakes delivered (tests).
var relayedWakes atomic.Uint64

// takeWakes delivers every relayed wake queued. The caller holds e.mu for
// reading on an open engine.
func (e *Engine) takeWakes() {
	var ids [256]uint64
	for {
		n := int(C.ds_engine_take_wakes(e.ptr, (*C.uint64_t)(unsafe.Pointer(&ids[0])), C.size_t(len(ids))))
		relayedWakes.Add(uint64(n))
		e.wake(ids[:n])
		if n < len(ids) {
			return
		}
	}
}

// Tunables are the Options a configuration reload may change on an open
// engine (ds_tunables); zero values mean the defaults, as in Options.
type Tunables struct {
	LongPollTimeout      time.Duration
	SSEReconnectInterval time.Duration
	MaxAppendBytes       int64
	RetentionAge         time.Duration
	RetentionBytes       int64
	MaxMemoryBytes       int64 // zero: no budget
	MaxStreamsPerGroup   int64 // zero: no quota
	MaxBytesPerGroup     int64 // zero: no quota
}

// Tunables returns the tunable part of opts.
func (opts Options) Tunables() Tunables {
	return Tunables{
		LongPollTimeout:      opts.LongPollTimeout,
		SSEReconnectInterval: opts.SSEReconnectInterval,
		MaxAppendBytes:       opts.MaxAppendBytes,
		RetentionAge:         opts.RetentionAge,
		RetentionBytes:       opts.RetentionBytes,
		MaxMemoryBytes:       opts.MaxMemoryBytes,
		MaxStreamsPerGroup:   opts.MaxStreamsPerGroup,
		MaxBytesPerGroup:     opts.MaxBytesPerGroup,
	}
}

// SetTunables replaces the engine's tunable options, each atomically, for
// the requests and sessions that start afterwards (ds_engine_set_tunables).
func (e *Engine) SetTunables(t Tunables) error {
	if t.LongPollTimeout < 0 || t.SSEReconnectInterval < 0 || t.MaxAppendBytes < 0 ||
		t.RetentionAge < 0 || t.RetentionBytes < 0 || t.MaxMemoryBytes < 0 || t.MaxStreamsPerGroup < 0 ||
		t.MaxBytesPerGroup < 0 {
		return &Error{Op: "set tunables", Code: CodeInvalidArgument, Message: "negative option"}
	}
	ct := C.ds_tunables{
		long_poll_timeout_ms:      C.uint64_t(t.LongPollTimeout.Milliseconds()),
		sse_reconnect_interval_ms: C.uint64_t(t.SSEReconnectInterval.Milliseconds()),
		max_append_bytes:          C.uint64_t(t.MaxAppendBytes),
		retention_age_ms:          C.uint64_t(t.RetentionAge.Milliseconds()),
		retention_bytes:           C.uint64_t(t.RetentionBytes),
		max_memory_bytes:          C.uint64_t(t.MaxMemoryBytes),
		max_streams_per_group:     C.uint64_t(t.MaxStreamsPerGroup),
		max_bytes_per_group:       C.uint64_t(t.MaxBytesPerGroup),
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return ErrClosed
	}
	var cerr C.ds_error
	if code := C.ds_engine_set_tunables(e.ptr, &ct, &cerr); code != C.DS_OK {
		return newError("set tunables", code, &cerr)
	}
	return nil
}

// Close ends every parked session, stops background work and frees the
// engine. It waits for calls in flight, then wakes every registered waiter
// so that its next call returns ErrClosed. Later calls return ErrClosed.
// Close is idempotent.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.ptr == nil {
		e.mu.Unlock()
		return
	}
	C.ds_engine_close(e.ptr)
	e.ptr = nil
	// Only now: the engine may call wake_fn until ds_engine_close returns.
	e.handle.Delete()
	e.mu.Unlock()
	if e.wakeFile != nil {
		e.wakeFile.Close() // ends relayWakes; the engine closed its own copy
	}

	for i := range e.waiters {
		s := &e.waiters[i]
		s.mu.Lock()
		for _, w := range s.m {
			signal(w.ch)
		}
		s.mu.Unlock()
	}
}

// Backup copies dataDir to dest (which must not exist or be empty)
// consistently, even while a server is writing to dataDir: a server started
// on dest serves every stream acknowledged before the call began. It blocks
// for the whole copy.
func Backup(dataDir, dest string) error {
	cdir, cdest := C.CString(dataDir), C.CString(dest)
	defer C.free(unsafe.Pointer(cdir))
	defer C.free(unsafe.Pointer(cdest))
	var cerr C.ds_error
	if code := C.ds_backup(cdir, cdest, &cerr); code != C.DS_OK {
		return newError("backup", code, &cerr)
	}
	return nil
}

// VerifyResult is what Verify found (ds_verify_result).
type VerifyResult struct {
	Streams  uint64   // streams in the snapshot
	Blocks   uint64   // checksum blocks compared
	Bytes    uint64   // bytes they hold
	Problems []string // one line per problem: stream id, path, byte range
}

// Verify checks every stream's segment bytes in dataDir against their
// stored checksums, offline or while a server writes to dataDir. An error
// means the check could not run; problems found are in the result.
func Verify(dataDir string) (VerifyResult, error) {
	cdir := C.CString(dataDir)
	defer C.free(unsafe.Pointer(cdir))
	var cerr C.ds_error
	var out C.ds_verify_result
	if code := C.ds_verify(cdir, &out, &cerr); code != C.DS_OK {
		return VerifyResult{}, newError("verify", code, &cerr)
	}
	defer C.ds_verify_result_free(&out)
	r := VerifyResult{Streams: uint64(out.streams), Blocks: uint64(out.blocks), Bytes: uint64(out.bytes)}
	for _, line := range strings.Split(C.GoString(out.report), "\n") {
		if line != "" {
			r.Problems = append(r.Problems, line)
		}
	}
	return r, nil
}

// Version is the engine's version string (ds_version).
func Version() string { return C.GoString(C.ds_version()) }

// Stats are the engine's counters (ds_stats).
type Stats struct {
	Streams         uint64 // live streams (not expired, not deleted)
	ParkedSessions  uint64 // long-poll and SSE sessions waiting, adopted ones included
	AdoptedSessions uint64 // SSE sessions whose connection the engine writes itself
	Appends         uint64 // successful appends since open
	BytesAppended   uint64
	// Group commits to data_dir since open (zero in memory): how many, the
	// writes they carried and the wall time spent committing.
	Commits         uint64
	CommittedWrites uint64
	CommitTime      time.Duration
	// The store's flushes (commits and syncs; under fsync always one device
	// flush each) and the sum over acknowledged writes of the flushes each
	// waited for between being queued and being acknowledged.
	CommitFlushes uint64
	FlushesWaited uint64
	// Storage health (StorageOK, StorageFull, StorageFailed) and the
	// requests answered 507 (no space) and 500 (storage I/O errors,
	// refusals included) since open.
	StorageState        StorageState
	NoSpaceAnswers      uint64
	StorageErrorAnswers uint64

	// Reads refused because stored bytes did not match their checksum.
	ChecksumFailures uint64

	// Stream data held (every stream's own bytes), and the writes refused
	// since open by the memory budget and the placement group quotas.
	StreamBytes         uint64
	RefusedMemoryBudget uint64
	RefusedQuotaStreams uint64
	RefusedQuotaBytes   uint64

	// Subscriptions: how many exist, leases held now, wakes issued since
	// open by type, and webhook deliveries waiting to be taken.
	Subscriptions      uint64
	SubscriptionLeases uint64
	WakesWebhook       uint64
	WakesPull          uint64
	WebhooksQueued     uint64
}

// StorageState is an engine's storage health.
type StorageState uint64

const (
	// StorageOK: commits succeed.
	StorageOK StorageState = 0
	// StorageFull: the last commit failed for a full disk; writes are still
	// tried, answer 507 meanwhile, and resume once a commit succeeds.
	StorageFull StorageState = 1
	// StorageFailed: a storage I/O error (a failed fsync, say) stopped
	// writes until restart; reads go on.
	StorageFailed StorageState = 2
)

// Stats reads the engine's counters; zero after Close.
func (e *Engine) Stats() Stats {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return Stats{}
	}
	var s C.ds_stats
	C.ds_engine_stats(e.ptr, &s)
	return Stats{
		Streams:             uint64(s.streams),
		ParkedSessions:      uint64(s.parked_sessions),
		AdoptedSessions:     uint64(s.adopted_sessions),
		Appends:             uint64(s.appends),
		BytesAppended:       uint64(s.bytes_appended),
		Commits:             uint64(s.commits),
		CommittedWrites:     uint64(s.committed_writes),
		CommitTime:          time.Duration(s.commit_nanos),
		CommitFlushes:       uint64(s.commit_flushes),
		FlushesWaited:       uint64(s.commit_flushes_waited),
		StorageState:        StorageState(s.storage_state),
		NoSpaceAnswers:      uint64(s.storage_no_space_answers),
		StorageErrorAnswers: uint64(s.storage_io_error_answers),
		ChecksumFailures:    uint64(s.checksum_failures),
		StreamBytes:         uint64(s.stream_bytes),
		RefusedMemoryBudget: uint64(s.refused_memory_budget),
		RefusedQuotaStreams: uint64(s.refused_quota_streams),
		RefusedQuotaBytes:   uint64(s.refused_quota_bytes),
		Subscriptions:       uint64(s.subscriptions),
		SubscriptionLeases:  uint64(s.subscription_leases),
		WakesWebhook:        uint64(s.wakes_webhook),
		WakesPull:           uint64(s.wakes_pull),
		WebhooksQueued:      uint64(s.webhooks_queued),
	}
}

// GroupUsage is one placement group's streams and bytes.
type GroupUsage struct {
	Name    string
	Streams uint64
	Bytes   uint64
}

// TopGroups returns the (at most n) placement groups holding the most
// bytes, largest first, and the sum over all the others (Name ""); nothing
// after Close.
func (e *Engine) TopGroups(n int) (top []GroupUsage, rest GroupUsage) {
	if n <= 0 {
		n = 0
	}
	buf := make([]C.ds_group_usage, max(n, 1))
	var crest C.ds_group_usage
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return nil, GroupUsage{}
	}
	got := int(C.ds_engine_top_groups(e.ptr, &buf[0], C.size_t(n), &crest))
	top = make([]GroupUsage, got)
	for i := range top {
		top[i] = GroupUsage{
			Name:    C.GoString(&buf[i].name[0]),
			Streams: uint64(buf[i].streams),
			Bytes:   uint64(buf[i].bytes),
		}
	}
	return top, GroupUsage{Streams: uint64(crest.streams), Bytes: uint64(crest.bytes)}
}

// ---- Wake registry ------------------------------------------------------

// Register reserves a new session id and its wake channel (buffer 1). Ids
// count up from 1, so they never reach the engine's own ids (top bit set).
// Call it before Handle for any request that may park, so no wake is lost,
// and call Unregister when the request ends, whatever happened.
func (e *Engine) Register() (session uint64, wake <-chan struct{}) {
	id, w := e.RegisterAppend()
	return id, w.ch
}

// RegisterAppend is Register for a request that may be a durable append:
// with Request.AnswerAtPark, Waiter.Committed tells after the wake whether
// the answer Handle returned with the park is the one to write.
func (e *Engine) RegisterAppend() (session uint64, w *Waiter) {
	id := e.nextSession.Add(1)
	if id == 0 { // after 2^64 sessions; keep ids non-zero
		id = e.nextSession.Add(1)
	}
	w = waiterPool.Get().(*Waiter)
	s := e.shard(id)
	s.mu.Lock()
	s.m[id] = w
	s.mu.Unlock()
	return id, w
}

// Unregister forgets a session's wake channel. It does not cancel the session
// in the engine (see Cancel). Unregistering an unknown id does nothing.
func (e *Engine) Unregister(session uint64) {
	s := e.shard(session)
	s.mu.Lock()
	w, ok := s.m[session]
	delete(s.m, session)
	s.mu.Unlock()
	if !ok {
		return
	}
	// No wake can reach w any more: drain a pending one and reuse it.
	select {
	case <-w.ch:
	default:
	}
	w.committed.Store(false)
	waiterPool.Put(w)
}

var waiterPool = sync.Pool{New: func() any { return &Waiter{ch: make(chan struct{}, 1)} }}

func (e *Engine) shard(session uint64) *waiterShard {
	return &e.waiters[session%waiterShards]
}

// wake signals the named sessions. It never blocks: a session that already
// has a wake pending needs no second one.
func (e *Engine) wake(ids []uint64) {
	for _, id := range ids {
		if id&returnTagBit != 0 && id&(1<<63) == 0 {
			if fn := returnHandler.Load(); fn != nil {
				(*fn)(id&^serveNextBit, id&serveNextBit != 0)
			}
			continue
		}
		committed := id&wakeCommittedBit != 0
		id &^= wakeCommittedBit
		s := e.shard(id)
		s.mu.Lock()
		if w, ok := s.m[id]; ok {
			if committed {
				w.committed.Store(true) // before the signal its receiver reads it after
			}
			signal(w.ch)
		}
		s.mu.Unlock()
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// wakeCommittedBit is DS_WAKE_COMMITTED: a parked append answered at park
// time is durable. Session ids (counting up from 1) never reach it.
const wakeCommittedBit = uint64(C.DS_WAKE_COMMITTED)

// Return tags name connections a long-poll takeover keeps alive
// (AdoptLongPoll): bit 62 set, which no session id reaches. The engine adds
// serveNextBit when it hands one back for its next request.
const (
	returnTagBit = uint64(1) << 62
	serveNextBit = uint64(1) << 61
)

var (
	returnTags    atomic.Uint64
	returnHandler atomic.Pointer[func(tag uint64, serveNext bool)]
)

// NewReturnTag returns a process-wide unique tag for AdoptLongPoll.
func NewReturnTag() uint64 { return returnTagBit | returnTags.Add(1)&(serveNextBit-1) }

// SetReturnHandler sets the function every engine calls, from its own
// threads and without blocking, with the tag of a connection it gives
// back (AdoptLongPoll). It must not block or call into the engine.
func SetReturnHandler(fn func(tag uint64, serveNext bool)) { returnHandler.Store(&fn) }

// dsGoWake is the engine's ds_wake_fn. The engine calls it from any thread
// after releasing its locks; it only signals channels and never calls back
// into C.
//
//export dsGoWake
func dsGoWake(wakeCtx C.uintptr_t, ids *C.uint64_t, n C.size_t) {
	if n == 0 || ids == nil {
		return
	}
	e := cgo.Handle(wakeCtx).Value().(*Engine)
	e.wake(unsafe.Slice((*uint64)(unsafe.Pointer(ids)), int(n)))
}

// dsGoWebhookNotify is the engine's webhook_notify_fn: it only signals.
//
//export dsGoWebhookNotify
func dsGoWebhookNotify(ctx C.uintptr_t) {
	e := cgo.Handle(ctx).Value().(*Engine)
	signal(e.webhooks)
}

// ---- Webhooks -------------------------------------------------------------

// Webhook is one delivery the engine decided on (PROTOCOL.md §7.1): POST
// Body, exactly, to URL, then report the outcome with WebhookResult.
type Webhook struct {
	SubscriptionID string
	URL            string
	Body           []byte
	WakeID         string
	Generation     uint64
}

// WebhookSignal is signalled whenever deliveries were queued; drain them
// with TakeWebhooks.
func (e *Engine) WebhookSignal() <-chan struct{} { return e.webhooks }

// TakeWebhooks takes up to max queued deliveries, oldest first.
func (e *Engine) TakeWebhooks(max int) ([]Webhook, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return nil, ErrClosed
	}
	var batch *C.ds_webhook_batch
	var cerr C.ds_error
	if code := C.ds_engine_take_webhooks(e.ptr, C.size_t(max), &batch, &cerr); code != C.DS_OK {
		return nil, newError("take webhooks", code, &cerr)
	}
	defer C.ds_webhook_batch_free(batch)
	if batch.n == 0 {
		return nil, nil
	}
	items := unsafe.Slice(batch.items, int(batch.n))
	out := make([]Webhook, len(items))
	for i, w := range items {
		out[i] = Webhook{
			SubscriptionID: C.GoStringN(w.subscription_id, C.int(w.subscription_id_len)),
			URL:            C.GoStringN(w.url, C.int(w.url_len)),
			Body:           C.GoBytes(unsafe.Pointer(w.body), C.int(w.body_len)),
			WakeID:         C.GoStringN(w.wake_id, C.int(w.wake_id_len)),
			Generation:     uint64(w.generation),
		}
	}
	return out, nil
}

// WebhookResult reports a delivery's outcome: the HTTP status and body, or
// transportError when there was no HTTP answer.
func (e *Engine) WebhookResult(w Webhook, status int, body []byte, transportError bool) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return ErrClosed
	}
	id := C.CString(w.SubscriptionID)
	defer C.free(unsafe.Pointer(id))
	wake := C.CString(w.WakeID)
	defer C.free(unsafe.Pointer(wake))
	var bodyPtr *C.uint8_t
	if len(body) > 0 {
		bodyPtr = (*C.uint8_t)(unsafe.Pointer(&body[0]))
	}
	var cerr C.ds_error
	code := C.ds_engine_webhook_result(e.ptr, id, C.size_t(len(w.SubscriptionID)), C.uint64_t(w.Generation),
		wake, C.size_t(len(w.WakeID)), C.int32_t(status), bodyPtr, C.size_t(len(body)), C.bool(transportError), &cerr)
	if code != C.DS_OK {
		return newError("webhook result", code, &cerr)
	}
	return nil
}

// ---- Requests -----------------------------------------------------------

// Field names a request field (ds_field_id).
type Field int

// The request fields, in ds_field_id order.
const (
	FieldMethod                      Field = C.DS_FIELD_METHOD
	FieldPath                        Field = C.DS_FIELD_PATH
	FieldQuery                       Field = C.DS_FIELD_QUERY
	FieldContentType                 Field = C.DS_FIELD_CONTENT_TYPE
	FieldStreamTTL                   Field = C.DS_FIELD_STREAM_TTL
	FieldStreamExpiresAt             Field = C.DS_FIELD_STREAM_EXPIRES_AT
	FieldStreamClosed                Field = C.DS_FIELD_STREAM_CLOSED
	FieldStreamSeq                   Field = C.DS_FIELD_STREAM_SEQ
	FieldProducerID                  Field = C.DS_FIELD_PRODUCER_ID
	FieldProducerEpoch               Field = C.DS_FIELD_PRODUCER_EPOCH
	FieldProducerSeq                 Field = C.DS_FIELD_PRODUCER_SEQ
	FieldIfNoneMatch                 Field = C.DS_FIELD_IF_NONE_MATCH
	FieldStreamForkedFrom            Field = C.DS_FIELD_STREAM_FORKED_FROM
	FieldStreamForkOffset            Field = C.DS_FIELD_STREAM_FORK_OFFSET
	FieldStreamForkSubOffset         Field = C.DS_FIELD_STREAM_FORK_SUB_OFFSET
	FieldOrigin                      Field = C.DS_FIELD_ORIGIN
	FieldAccessControlRequestHeaders Field = C.DS_FIELD_ACCESS_CONTROL_REQUEST_HEADERS
	// FieldRequestBase is "scheme://host[:port]" as the client used it.
	FieldRequestBase Field = C.DS_FIELD_REQUEST_BASE
	// FieldLastEventID is the Last-Event-ID an EventSource sends when it
	// reconnects: the streamNextOffset of the last control event it saw.
	FieldLastEventID Field = C.DS_FIELD_LAST_EVENT_ID
	// FieldAuthorization carries a subscription callback's, ack's or
	// release's "Bearer <token>" (set for __ds requests only).
	FieldAuthorization Field = C.DS_FIELD_AUTHORIZATION
	// FieldWebhookKID is the active webhook signing key id, set by the
	// module (never from a client header) for subscription responses.
	FieldWebhookKID Field = C.DS_FIELD_WEBHOOK_KID

	// FieldCount is the number of fields.
	FieldCount = int(C.DS_FIELD_COUNT)
)

// Request is one HTTP request in the engine's terms: every field is a range
// of one text buffer, so it crosses into C as a pointer-free ds_request plus
// two direct byte arguments. Reuse a Request with Reset.
type Request struct {
	text    []byte
	fields  [FieldCount]C.ds_field
	present uint32

	// Body is the request body, read whole; the engine copies what it keeps.
	// It may be Go memory or memory the caller mapped itself (never kept).
	Body []byte
	// BodyTooLarge says the body exceeded the engine's max_append_bytes and
	// was not read; the engine answers 413.
	BodyTooLarge bool
	// BodyOverBudget says the caller's budget for request bodies in flight
	// had no room for this body, which was not read; an append or create
	// answers 503 with Retry-After.
	BodyOverBudget bool
	// AnswerAtPark asks a durable append that parks (LiveCommit) for its
	// success answer with the park (ds_request.answer_at_park): after a wake
	// with Waiter.Committed, write it and do not Resume.
	AnswerAtPark bool
}

// Set stores a field; an empty value is present-but-empty. Setting a field
// twice keeps the last value.
func (r *Request) Set(f Field, value string) {
	off := len(r.text)
	r.text = append(r.text, value...)
	r.fields[f] = C.ds_field{offset: C.uint32_t(off), length: C.uint32_t(len(value))}
	r.present |= 1 << uint(f)
}

// Get returns a field and whether it is present.
func (r *Request) Get(f Field) (value string, ok bool) {
	if r.present&(1<<uint(f)) == 0 {
		return "", false
	}
	fd := r.fields[f]
	return string(r.text[fd.offset : fd.offset+fd.length]), true
}

// Reset empties the request for reuse, keeping its buffers.
func (r *Request) Reset() {
	r.text = r.text[:0]
	r.present = 0
	r.Body = nil
	r.BodyTooLarge = false
	r.BodyOverBudget = false
	r.AnswerAtPark = false
}

// ---- Responses ----------------------------------------------------------

// Live says what a response asks of the caller (ds_live).
type Live int

const (
	// LiveNone is a complete response: write it, release it, done.
	LiveNone Live = C.DS_LIVE_NONE
	// LiveWait is a parked long-poll: write nothing yet; wait for a wake or
	// Wait(), then Resume.
	LiveWait Live = C.DS_LIVE_WAIT
	// LiveStream is streaming (SSE): write status, headers and body now and
	// flush; then wait for a wake or Wait() and Resume until Done.
	LiveStream Live = C.DS_LIVE_STREAM
	// LiveCommit is a durable append waiting for its group commit: write
	// nothing; wait for a wake (there is no timeout), then Resume for the
	// answer, or, with Request.AnswerAtPark and Waiter.Committed after the
	// wake, write this response's status and headers instead. Cancelling
	// it does not undo the append.
	LiveCommit Live = C.DS_LIVE_COMMIT
)

// ResumeReason says why a parked session is resumed (ds_resume_reason).
type ResumeReason int

const (
	ResumeWake    ResumeReason = C.DS_RESUME_WAKE    // its wake channel fired
	ResumeTimeout ResumeReason = C.DS_RESUME_TIMEOUT // Wait() elapsed without a wake
	// ResumeEnd: the caller is stopping. A long-poll is answered as on its
	// timeout; an SSE response gets what is pending and a final control
	// event, and is done.
	ResumeEnd ResumeReason = C.DS_RESUME_END
)

// Response is an engine-owned ds_response. Its Body and Header views point
// into engine memory and are valid until Release, which must be called
// exactly once.
type Response struct {
	c *C.ds_response
}

// Status is the HTTP status, or 0 on a resume that only continues a stream.
func (r *Response) Status() int { return int(r.c.status) }

// Live says whether the request is complete, parked or streaming.
func (r *Response) Live() Live { return Live(r.c.live) }

// Session is the parked session's id; non-zero unless Live() is LiveNone.
func (r *Response) Session() uint64 { return uint64(r.c.session) }

// Wait is how long to wait for a wake before resuming with ResumeTimeout.
func (r *Response) Wait() time.Duration {
	ms := uint64(r.c.wait_ms)
	if ms > math.MaxInt64/uint64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// Done says a streaming response ends with this piece.
func (r *Response) Done() bool { return bool(r.c.done) }

// Body is a view of the engine's body bytes, valid until Release.
func (r *Response) Body() []byte {
	if r.c.body_len == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(r.c.body)), int(r.c.body_len))
}

// Parts are views of engine memory holding the rest of the body, after Body
// and before the files (a catch-up read of a memory stream, written from
// the stream's blocks without a copy). Valid until Release; nil for most
// responses.
func (r *Response) Parts() [][]byte {
	if r.c == nil || r.c.parts_len == 0 {
		return nil
	}
	parts := unsafe.Slice(r.c.parts, int(r.c.parts_len))
	out := make([][]byte, 0, len(parts))
	for _, p := range parts {
		if p.len > 0 {
			out = append(out, unsafe.Slice((*byte)(unsafe.Pointer(p.data)), int(p.len)))
		}
	}
	return out
}

// FilesLen is the number of body bytes the response sends from files, after
// Body (sendfile; see TakeFiles). Zero for most responses.
func (r *Response) FilesLen() int64 {
	var n int64
	for _, f := range r.files() {
		n += int64(f.length)
	}
	return n
}

// FileRange is a piece of a response body in a file: Length bytes at Offset.
// File has its own file position, so seeking it concerns no one else.
type FileRange struct {
	File   *os.File
	Offset int64
	Length int64
}

// TakeFiles hands the response's file ranges over to the caller, who must
// close every File. Ranges not taken are closed by Release; a second call
// returns nothing.
func (r *Response) TakeFiles() []FileRange {
	files := r.files()
	if len(files) == 0 {
		return nil
	}
	out := make([]FileRange, 0, len(files))
	for i := range files {
		if files[i].fd < 0 {
			continue
		}
		out = append(out, FileRange{
			File:   os.NewFile(uintptr(files[i].fd), "stream segment"),
			Offset: int64(files[i].offset),
			Length: int64(files[i].length),
		})
		files[i].fd = -1 // ours now: ds_response_free leaves it open
	}
	return out
}

func (r *Response) files() []C.ds_file_range {
	if r.c == nil || r.c.files_len == 0 {
		return nil
	}
	return unsafe.Slice(r.c.files, int(r.c.files_len))
}

// Header yields the response headers in the engine's order. Names are in Go's
// canonical form; a name may repeat. The strings are copies, outliving
// Release.
func (r *Response) Header() iter.Seq2[string, string] {
	return func(yield func(name, value string) bool) {
		for block := r.HeaderBlock(); block != ""; {
			var name, value string
			name, value, block = CutHeader(block)
			if !yield(name, value) {
				return
			}
		}
	}
}

// HeaderBlock is a copy of the response headers as consecutive NUL-terminated
// names and values; CutHeader takes them apart. Hot paths use it instead of
// Header: one allocation per response, none per header.
func (r *Response) HeaderBlock() string {
	if r.c.headers_len == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(r.c.headers)), int(r.c.headers_len)))
}

// HeaderView is HeaderBlock without the copy: the same bytes, viewed in
// engine memory, valid only until Release. Whatever outlives Release must be
// copied or be Interned's own string.
func (r *Response) HeaderView() string {
	if r.c.headers_len == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Pointer(r.c.headers)), int(r.c.headers_len))
}

// CutHeader splits the first header off a HeaderBlock or HeaderView.
func CutHeader(block string) (name, value, rest string) {
	name, rest = cutNUL(block)
	value, rest = cutNUL(rest)
	return name, value, rest
}

// cutNUL splits off one NUL-terminated string; a missing final NUL ends it.
func cutNUL(s string) (string, string) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// Release frees the engine's response. Calling it again does nothing.
func (r *Response) Release() {
	if r.c != nil {
		C.ds_response_free(r.c)
		r.c = nil
	}
}

// ---- Calls --------------------------------------------------------------

// callFrame holds the pointer-free C structs of one call. Any Go memory
// passed to C is moved to the heap (the C code may call back into Go), and a
// ds_error alone is over 500 bytes, so frames are pooled rather than
// allocated per call. The engine writes the response pointer straight into
// the Response returned, which is on the heap anyway.
type callFrame struct {
	req C.ds_request
	err C.ds_error
}

var callFrames = sync.Pool{New: func() any { return new(callFrame) }}

// Handle hands one request to the engine. session is the id from Register
// (0 when the request must not park). Protocol errors (4xx) are responses;
// an error means the engine failed or is closed.
func (e *Engine) Handle(req *Request, session uint64) (*Response, error) {
	if uint64(len(req.text)) > math.MaxUint32 {
		return nil, &Error{Op: "handle", Code: CodeInvalidArgument, Message: "request text over 4 GiB"}
	}
	f := callFrames.Get().(*callFrame)
	defer callFrames.Put(f)
	f.req.fields = req.fields
	f.req.present = C.uint32_t(req.present)
	f.req.body_too_large = C.bool(req.BodyTooLarge)
	f.req.body_over_budget = C.bool(req.BodyOverBudget)
	f.req.answer_at_park = C.bool(req.AnswerAtPark)

	var text, body *C.uint8_t
	if len(req.text) > 0 {
		text = (*C.uint8_t)(unsafe.Pointer(&req.text[0]))
	}
	if len(req.Body) > 0 {
		body = (*C.uint8_t)(unsafe.Pointer(&req.Body[0]))
	}

	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return nil, ErrClosed
	}
	resp := new(Response)
	code := C.ds_engine_handle(e.ptr, &f.req,
		text, C.size_t(len(req.text)),
		body, C.size_t(len(req.Body)),
		C.uint64_t(session), &resp.c, &f.err)
	// Take the committer's wakes now if there are any: a running request
	// sees them sooner than the netpoller would on a busy server.
	if e.ready != nil && atomic.LoadUint32(e.ready) != 0 {
		e.takeWakes()
	}
	if code != C.DS_OK {
		return nil, newError("handle", code, &f.err)
	}
	return resp, nil
}

// Resume continues a parked session after a wake or its timeout.
func (e *Engine) Resume(session uint64, reason ResumeReason) (*Response, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return nil, ErrClosed
	}
	f := callFrames.Get().(*callFrame)
	defer callFrames.Put(f)
	resp := new(Response)
	code := C.ds_session_resume(e.ptr, C.uint64_t(session), C.ds_resume_reason(reason), &resp.c, &f.err)
	if code != C.DS_OK {
		return nil, newError("resume", code, &f.err)
	}
	return resp, nil
}

// Cancel forgets a session whose client went away. Idempotent; a no-op after
// Close (which ended every session).
func (e *Engine) Cancel(session uint64) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr != nil {
		C.ds_session_cancel(e.ptr, C.uint64_t(session))
	}
}

// Adopt hands a live SSE session and its connection to the engine, which
// writes the rest of the response itself (ds_session_adopt). The caller has
// written the status line, chunked-encoding headers and every piece so far
// as complete chunks to the socket fd. The engine owns fd from this call on,
// whatever it returns, and forgets the session as a parked one: do not
// Resume or Cancel it afterwards. owner tags it for EndAdopted.
func (e *Engine) Adopt(session uint64, fd int, owner uint64) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		closeFD(fd) // it was the engine's to close
		return ErrClosed
	}
	var cerr C.ds_error
	code := C.ds_session_adopt(e.ptr, C.uint64_t(session), C.int(fd), C.uint64_t(owner), &cerr)
	if code != C.DS_OK {
		return newError("adopt", code, &cerr)
	}
	return nil
}

// AdoptLongPoll hands a parked long-poll session and a duplicate of its
// connection's socket, on which nothing has been written, to the engine,
// which writes the whole answer (with headers, what the response's header
// map held, merged in; encoded by EncodeHeaderBlock) and closes it. The
// descriptor is the engine's from this call on, whatever it returns.
//
// With a returnTag (from NewReturnTag) the caller keeps its connection open:
// the answer is kept alive, and the engine later calls the function given
// to SetReturnHandler with the tag exactly once, serveNext true when the
// connection is to read its next request, false when it is to be closed.
// Without (0), the answer says Connection: close and the engine closes it.
func (e *Engine) AdoptLongPoll(session uint64, fd int, owner uint64, headers []byte, returnTag uint64) error {
	return e.adoptLongPoll(session, fd, owner, headers, returnTag, false)
}

// AdoptLongPollBorrowed is AdoptLongPoll with a return tag (required) for
// the caller's own descriptor of the connection, not a duplicate: the
// engine never closes it. The caller keeps it open until the return
// handler gets the tag, or until this returns an error.
func (e *Engine) AdoptLongPollBorrowed(session uint64, fd int, owner uint64, headers []byte, returnTag uint64) error {
	return e.adoptLongPoll(session, fd, owner, headers, returnTag, true)
}

func (e *Engine) adoptLongPoll(session uint64, fd int, owner uint64, headers []byte, returnTag uint64, borrow bool) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		if !borrow {
			closeFD(fd)
		}
		return ErrClosed
	}
	var cborrow C.int
	if borrow {
		cborrow = 1
	}
	var cerr C.ds_error
	var p *C.char
	if len(headers) > 0 {
		p = (*C.char)(unsafe.Pointer(&headers[0]))
	}
	code := C.ds_session_adopt_long_poll(e.ptr, C.uint64_t(session), C.int(fd), C.uint64_t(owner),
		p, C.size_t(len(headers)), C.uint64_t(returnTag), cborrow, &cerr)
	runtime.KeepAlive(headers)
	if code != C.DS_OK {
		return newError("adopt long-poll", code, &cerr)
	}
	return nil
}

// EndAdopted ends every adopted session tagged owner as its reconnect
// interval would, so its client reconnects. It returns at once; a no-op
// after Close.
func (e *Engine) EndAdopted(owner uint64) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr != nil {
		C.ds_engine_end_adopted(e.ptr, C.uint64_t(owner))
	}
}
