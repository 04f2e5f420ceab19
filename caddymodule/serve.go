package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// engine is what ServeHTTP needs from a native.Engine; tests use a fake.
type engine interface {
	Register() (session uint64, wake <-chan struct{})
	RegisterAppend() (session uint64, w appendWaiter)
	Unregister(session uint64)
	Handle(req *native.Request, session uint64) (response, error)
	Resume(session uint64, reason native.ResumeReason) (response, error)
	Cancel(session uint64)
	Adopt(session uint64, fd int, owner uint64) error
	AdoptLongPoll(session uint64, fd int, owner uint64, headers []byte, returnTag uint64) error
	EndAdopted(owner uint64)
}

// response is what ServeHTTP reads from a native.Response.
type response interface {
	Status() int
	HeaderView() string // see native.Response.HeaderView: valid until Release
	Body() []byte
	Parts() [][]byte               // engine memory sent after Body (valid until Release)
	FilesLen() int64               // body bytes sent from files, after Body and Parts
	TakeFiles() []native.FileRange // those files, now the caller's to close
	Live() native.Live
	Session() uint64
	Wait() time.Duration
	Done() bool
	Release()
}

// appendWaiter is a parked durable append's wait (native.Waiter).
type appendWaiter interface {
	Wake() <-chan struct{}
	// Committed: the wake said the commit is durable, so the answer the
	// engine gave with the park is the one to write.
	Committed() bool
}

// nativeEngine adapts *native.Engine to engine.
type nativeEngine struct{ *native.Engine }

func (e nativeEngine) RegisterAppend() (uint64, appendWaiter) {
	id, w := e.Engine.RegisterAppend()
	return id, w
}

func (e nativeEngine) Handle(req *native.Request, session uint64) (response, error) {
	r, err := e.Engine.Handle(req, session)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (e nativeEngine) Resume(session uint64, reason native.ResumeReason) (response, error) {
	r, err := e.Engine.Resume(session, reason)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// protocolHeaders are the request headers the engine reads, with their fields
// (ds_field_id). Only the first value of each is passed.
var protocolHeaders = [...]struct {
	field native.Field
	name  string // canonical
}{
	{native.FieldContentType, "Content-Type"},
	{native.FieldStreamTTL, "Stream-Ttl"},
	{native.FieldStreamExpiresAt, "Stream-Expires-At"},
	{native.FieldStreamClosed, "Stream-Closed"},
	{native.FieldStreamSeq, "Stream-Seq"},
	{native.FieldProducerID, "Producer-Id"},
	{native.FieldProducerEpoch, "Producer-Epoch"},
	{native.FieldProducerSeq, "Producer-Seq"},
	{native.FieldIfNoneMatch, "If-None-Match"},
	{native.FieldStreamForkedFrom, "Stream-Forked-From"},
	{native.FieldStreamForkOffset, "Stream-Fork-Offset"},
	{native.FieldStreamForkSubOffset, "Stream-Fork-Sub-Offset"},
	{native.FieldOrigin, "Origin"},
	{native.FieldAccessControlRequestHeaders, "Access-Control-Request-Headers"},
	{native.FieldLastEventID, "Last-Event-Id"},
}

var requests = sync.Pool{New: func() any { return new(native.Request) }}

// ServeHTTP copies the request into one engine call and writes the answer.
// Long-poll and SSE requests then wait for wakes without holding a thread.
// A request outside stream_root is not ours: it goes on to the next handler,
// so the directive composes at site level with /health, metrics or
// file_server, without a matcher.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !underStreamRoot(h.StreamRoot, r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	method := r.Method
	var status int
	var err error
	release, ok := h.enterWrite(w, r)
	if !ok {
		countRequest(method, http.StatusServiceUnavailable)
		return nil
	}
	if release != nil {
		defer release()
	}
	if h.limits != nil || h.tokens != nil {
		var done func()
		if r, done, status = h.admit(w, r); r == nil {
			countRequest(method, status)
			return nil
		}
		defer done()
	}
	status, err = h.serve(w, r)
	if err != nil {
		if he, ok := errors.AsType[caddyhttp.HandlerError](err); ok {
			status = he.StatusCode
		}
	}
	countRequest(method, status)
	return err
}

// underStreamRoot tells whether path is root itself or below it. Provision
// sets root (without a trailing slash unless it is "/"); empty means the
// default.
func underStreamRoot(root, path string) bool {
	if root == "" {
		root = DefaultStreamRoot
	}
	if root == "/" || path == root {
		return true
	}
	return len(path) > len(root) && path[len(root)] == '/' && strings.HasPrefix(path, root)
}

// serve returns the status it wrote (0 if none) or an error for Caddy to
// answer.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (int, error) {
	if ok, err := h.awaitEngine(r); !ok {
		return 0, err
	}
	defer h.lease.done()
	if rel := relativePath(h.StreamRoot, r.URL.Path); isControlPath(rel) {
		return h.serveControl(w, r, rel) // §6: before any stream operation
	}
	// Reads can park, and so can appends to durable storage (until their
	// group commit). Register before Handle so that a wake sent while the
	// engine is still answering is not lost.
	// A durable append is answered at park time: the engine returns its
	// success answer with the park and the wake says whether the commit is
	// durable, so a committed append needs no second engine call.
	var session uint64
	var wake <-chan struct{}
	var appendWait appendWaiter
	if mayPark(r, h.DataDir != "") {
		if r.Method == http.MethodPost {
			session, appendWait = h.engine.RegisterAppend()
			wake = appendWait.Wake()
		} else {
			session, wake = h.engine.Register()
		}
		defer h.engine.Unregister(session)
	}

	var resp response
	var err error
	if session != 0 && r.Method == http.MethodGet && !plainHTTP1(r) {
		var park *livePark
		if resp, park, err = h.handleOffloaded(r, session); park != nil {
			// Parked and armed already; no takeover over TLS, HTTP/2 or
			// HTTP/3.
			return h.awaitLongPoll(w, r, park, wake, offload)
		}
	} else {
		resp, err = h.handle(r, session, appendWait != nil)
	}
	if err != nil {
		return 0, err
	}

	switch resp.Live() {
	case native.LiveWait:
		if session == 0 {
			return 0, h.unexpectedPark(resp)
		}
		return h.longPoll(w, r, resp, wake)
	case native.LiveStream:
		if session == 0 {
			return 0, h.unexpectedPark(resp)
		}
		return h.stream(w, r, resp, wake)
	case native.LiveCommit:
		if appendWait == nil {
			return 0, h.unexpectedPark(resp)
		}
		return h.awaitCommit(w, r, resp, appendWait)
	default:
		defer resp.Release()
		if status, ok := h.writeReadDirect(w, r, resp); ok {
			return status, nil
		}
		return writeResponse(w, r, resp), nil
	}
}

// plainHTTP1 tells whether r came over HTTP/1.1 or 1.0 without TLS, where
// the takeovers may serve a live response (takeover.go,
// takeover_longpoll.go); elsewhere the request's goroutine serves it.
func plainHTTP1(r *http.Request) bool { return r.ProtoMajor == 1 && r.TLS == nil }

// handleOffloaded is handle for a live read (SSE or long-poll) no takeover
// can serve: this goroutine parks for as long as the client waits or
// listens, so the engine call runs on a short-lived one (offload.go). A
// long-poll that parks is made ready to wait in the same call (park, and
// resp is released).
//
//go:noinline
func (h *Handler) handleOffloaded(r *http.Request, session uint64) (resp response, park *livePark, err error) {
	offload(func() {
		resp, err = h.handle(r, session, false)
		if err == nil && resp.Live() == native.LiveWait {
			park = newLivePark(r, resp)
			resp = nil
		}
	})
	return resp, park, err
}

// mayPark tells whether the engine may answer r with a live response, which
// needs a session: a live read (long-poll, SSE), or an append to durable
// storage that waits for its group commit. A catch-up read never parks, and
// skipping the session saves two locked map updates on the hottest path.
// The engine percent-decodes parameter names, so any escape in the query
// counts as a possible "live".
func mayPark(r *http.Request, durable bool) bool {
	switch r.Method {
	case http.MethodGet:
		q := r.URL.RawQuery
		return strings.Contains(q, "live") || strings.Contains(q, "%")
	case http.MethodPost:
		return durable
	}
	return false
}

// handle reads the body, translates the request and makes the one engine
// call. The request and body buffers go back to their pools as soon as the
// engine has copied what it keeps, not when a live response ends.
// answerAtPark: a durable append that parks comes with its answer.
func (h *Handler) handle(r *http.Request, session uint64, answerAtPark bool) (response, error) {
	body, err := readBody(r, h.MaxAppendSize, h.bodies)
	if err != nil {
		return nil, caddyhttp.Error(http.StatusBadRequest, err)
	}
	defer body.release()
	if h.limits != nil {
		h.chargeReadBody(r, len(body.bytes()))
	}

	req := requests.Get().(*native.Request)
	defer func() {
		req.Reset()
		requests.Put(req)
	}()
	translate(req, r)
	req.Body, req.BodyTooLarge, req.BodyOverBudget = body.bytes(), body.tooLarge, body.overBudget
	req.AnswerAtPark = answerAtPark

	resp, err := h.engine.Handle(req, session)
	if err != nil {
		return nil, engineError(err)
	}
	return resp, nil
}

// translate fills req from the HTTP request: method, decoded path, raw query,
// the base URL the client used and the first value of each protocol header.
func translate(req *native.Request, r *http.Request) {
	req.Set(native.FieldMethod, r.Method)
	req.Set(native.FieldPath, r.URL.Path)
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		req.Set(native.FieldQuery, r.URL.RawQuery)
	}
	if r.Method == http.MethodPut { // only a create answers with Location
		if base := requestBase(r); base != "" {
			req.Set(native.FieldRequestBase, base)
		}
	}
	for _, ph := range protocolHeaders {
		if v := r.Header[ph.name]; len(v) > 0 {
			req.Set(ph.field, v[0])
		}
	}
}

// requestBase is "scheme://host[:port]" as the client used it. Behind a proxy
// the user listed in the server's trusted_proxies, its X-Forwarded-Proto and
// X-Forwarded-Host say that; from anyone else they are ignored.
func requestBase(r *http.Request) string {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
			scheme = p
		}
		if h := r.Header.Get("X-Forwarded-Host"); h != "" {
			host = h
		}
	}
	if host == "" {
		return ""
	}
	return scheme + "://" + host
}

// ---- Responses ----------------------------------------------------------

// writeHeader copies the engine's headers. Names are already canonical. An
// Access-Control-* header set earlier in the route (e.g. by the `header`
// directive) is kept, so the user's CORS configuration wins. contentLength,
// unless negative, is added as Content-Length when no header set one.
//
// The headers are read in place from the engine's response and must outlive
// its Release (net/http writes them later): names and constant values are
// Interned strings, the rest (ETag, offsets, ...) is copied into one string.
// The value slices share one backing array, each with its cap at its length,
// so middleware appending to one reallocates it instead of overwriting the
// next. Nothing is shared between responses: Caddy's `header` replace edits
// value slices in place.
func writeHeader(w http.ResponseWriter, resp response, contentLength int) {
	// First pass: parse, intern, and gather what must be copied.
	var fields [maxHeaderFields]headerField
	var stack [256]byte
	buf := stack[:0]
	n := 0
	block := resp.HeaderView()
	for ; block != "" && n < len(fields); n++ {
		f := &fields[n]
		f.name, f.value, block = native.CutHeader(block)
		if s, ok := native.Interned(f.name); ok {
			f.name = s
		} else {
			f.copyName = true
			buf = append(buf, f.name...)
		}
		if s, ok := native.Interned(f.value); ok {
			f.value = s
		} else {
			f.copyValue = true
			buf = append(buf, f.value...)
		}
	}
	lengthAt := len(buf)
	if contentLength >= 0 {
		buf = strconv.AppendInt(buf, int64(contentLength), 10)
	}
	kept := string(buf) // the one copy
	off := 0
	take := func(view string) string {
		s := kept[off : off+len(view)]
		off += len(view)
		return s
	}

	// Second pass: set them.
	hdr := w.Header()
	values := make([]string, 0, n+1)
	var set [maxHeaderFields]string // names this response set, so a repeated name appends
	nset := 0
	add := func(name, value string) {
		if seen(set[:nset], name) {
			hdr[name] = append(hdr[name], value)
			return
		}
		if strings.HasPrefix(name, "Access-Control-") && len(hdr[name]) > 0 {
			return
		}
		values = append(values, value)
		hdr[name] = values[len(values)-1 : len(values) : len(values)]
		if nset < len(set) {
			set[nset] = name
			nset++
		}
	}
	for i := range fields[:n] {
		f := &fields[i]
		name, value := f.name, f.value
		if f.copyName {
			name = take(name)
		}
		if f.copyValue {
			value = take(value)
		}
		add(name, value)
	}
	for block != "" { // more headers than fields: never so far
		var name, value string
		name, value, block = native.CutHeader(block)
		add(strings.Clone(name), strings.Clone(value))
	}
	if contentLength >= 0 {
		if _, ok := hdr["Content-Length"]; !ok {
			values = append(values, kept[lengthAt:])
			hdr["Content-Length"] = values[len(values)-1 : len(values) : len(values)]
		}
	}
}

// maxHeaderFields bounds the headers writeHeader parses on the stack; a read
// answers with about a dozen.
const maxHeaderFields = 24

// headerField is one engine header during writeHeader: an interned string,
// or a view of engine memory to be copied.
type headerField struct {
	name, value         string
	copyName, copyValue bool
}

func seen(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// writeResponse writes a complete response and returns its status.
func writeResponse(w http.ResponseWriter, r *http.Request, resp response) int {
	status := resp.Status()
	body := resp.Body()
	contentLength := -1
	withBody := r.Method != http.MethodHead && bodyAllowed(status)
	var parts [][]byte
	if withBody {
		parts = resp.Parts()
		contentLength = len(body) + int(resp.FilesLen())
		for _, p := range parts {
			contentLength += len(p)
		}
	}
	writeHeader(w, resp, contentLength)
	markPrivate(w, r)
	w.WriteHeader(status)
	if !withBody {
		return status
	}
	if len(body) > 0 {
		if _, err := w.Write(body); err != nil {
			return status // a client gone away is nothing to report
		}
	}
	if len(parts) > 0 && writeParts(w, parts) != nil {
		return status // unsent files: Release closes them
	}
	if files := resp.TakeFiles(); len(files) > 0 {
		sendFiles(w, files)
	}
	return status
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// engineErrorStatus maps engine failures (not protocol errors, which are
// responses) to the status Caddy answers with. This is the only such table.
var engineErrorStatus = map[native.Code]int{
	native.CodeInvalidArgument: http.StatusInternalServerError,
	native.CodeNotSupported:    http.StatusNotImplemented,
	native.CodeIO:              http.StatusServiceUnavailable,
	native.CodeLocked:          http.StatusServiceUnavailable,
	native.CodeNotFound:        http.StatusServiceUnavailable, // a session the engine ended (closing)
	native.CodeInternal:        http.StatusInternalServerError,
}

func engineError(err error) error {
	status := http.StatusInternalServerError
	if errors.Is(err, native.ErrClosed) {
		status = http.StatusServiceUnavailable
	} else if code, ok := errors.AsType[native.Code](err); ok {
		if s, ok := engineErrorStatus[code]; ok {
			status = s
		}
	}
	return caddyhttp.Error(status, err)
}

func (h *Handler) unexpectedPark(resp response) error {
	h.engine.Cancel(resp.Session())
	resp.Release()
	return caddyhttp.Error(http.StatusInternalServerError,
		errors.New("durable streams engine parked a request that cannot park (not a GET)"))
}

// awaitCommit waits, without holding a thread, for a durable append's group
// commit, then writes the engine's answer: the one it gave with the park
// when the wake says the commit is durable, otherwise (a failed commit, a
// closing engine) the one Resume gives. A client that leaves first gets
// nothing; its append is committed all the same (as one whose connection
// broke after the answer was sent). No timeout or config stop cuts the wait
// short: the answer must say whether the bytes are on disk, and the engine
// commits everything queued before it closes.
func (h *Handler) awaitCommit(w http.ResponseWriter, r *http.Request, resp response, waiter appendWaiter) (int, error) {
	session := resp.Session()
	select {
	case <-waiter.Wake():
	case <-r.Context().Done():
		resp.Release()
		h.engine.Cancel(session)
		return 0, nil
	}
	if waiter.Committed() && resp.Status() != 0 {
		defer resp.Release()
		return writeResponse(w, r, resp), nil
	}
	resp.Release()
	resp, err := h.engine.Resume(session, native.ResumeWake)
	if err != nil {
		h.engine.Cancel(session)
		return 0, engineError(err)
	}
	defer resp.Release()
	return writeResponse(w, r, resp), nil
}

// ---- Live reads ---------------------------------------------------------

// wakeup is why a live request stopped waiting.
type wakeup int

const (
	woken        wakeup = iota // the engine named the session
	timedOut                   // the engine's wait_ms elapsed
	clientGone                 // the request's context ended
	shuttingDown               // this handler's config is stopping
)

// await waits, without holding a thread, for whichever comes first.
func (h *Handler) await(ctx context.Context, wake <-chan struct{}, timer *time.Timer, d time.Duration) wakeup {
	timer.Reset(d)
	defer timer.Stop()
	select {
	case <-wake:
		return woken
	case <-timer.C:
		return timedOut
	case <-ctx.Done():
		return clientGone
	case <-h.stopping.done():
		return shuttingDown
	}
}

// awaitParked is await for a goroutine that parks in Caddy's handler chain
// (offload.go): its timer was armed on a short-lived goroutine, and gone is
// the request context's Done channel, taken there once (Caddy's request
// context is a chain of about eight values, and each Done call walks it).
func (h *Handler) awaitParked(gone <-chan struct{}, wake <-chan struct{}, timer *liveTimer) wakeup {
	select {
	case <-wake:
		return woken
	case <-timer.fire:
		return timedOut
	case <-gone:
		return clientGone
	case <-h.stopping.done():
		return shuttingDown
	}
}

// longPoll waits for the engine to answer a parked read. Nothing is written
// until the engine answers; a client that leaves gets nothing and its session
// is cancelled. When the config stops, the session is resumed as timed out so
// the client gets the engine's ordinary timeout answer and polls again.
//
// Over TLS, HTTP/2 or HTTP/3 the request's goroutine parks here with the
// stack it started with: the engine calls, the wait_ms timer and the answer
// run on short-lived goroutines (offload.go), as for SSE, because a
// goroutine starts at the runtime's average stack size and these calls
// would grow it (a stack copy per request; handle is offloaded for the
// same reason). A plain HTTP/1.1 request the takeover could not serve has
// grown its stack in handle already and runs them inline.
func (h *Handler) longPoll(w http.ResponseWriter, r *http.Request, resp response, wake <-chan struct{}) (int, error) {
	if h.mayTakeOverLongPoll(w, r) && h.takeOverLongPoll(w, r, resp, wake) {
		return 0, nil // answered by the engine (takeover_longpoll.go)
	}
	run := offload
	if plainHTTP1(r) {
		run = inline
	}
	var park *livePark
	run(func() { park = newLivePark(r, resp) })
	return h.awaitLongPoll(w, r, park, wake, run)
}

// livePark is a parked long-poll ready to wait: its session, its wait_ms
// timer armed, and its request context's Done channel.
type livePark struct {
	session uint64
	timer   liveTimer
	gone    <-chan struct{}
	step    pollStep // awaitLongPoll's
}

// newLivePark releases the parked resp and arms the wait: on a short-lived
// goroutine (or inline where the caller's does not park).
func newLivePark(r *http.Request, resp response) *livePark {
	p := &livePark{gone: r.Context().Done()}
	p.session = parkNext(resp, &p.timer)
	return p
}

// awaitLongPoll waits for the engine to answer the parked long-poll p, runs
// the resume and writes the answer through run (longPoll).
func (h *Handler) awaitLongPoll(w http.ResponseWriter, r *http.Request, p *livePark, wake <-chan struct{}, run func(func())) (int, error) {
	liveLongPolls.Add(1)
	defer liveLongPolls.Add(-1)
	timer, gone, session := &p.timer, p.gone, p.session
	defer timer.stop()
	st := &p.step
	for {
		reason := native.ResumeTimeout
		why := h.awaitParked(gone, wake, timer)
		if st.do == nil { // bound after the first wait, not while parked
			st.h, st.w, st.r, st.timer = h, w, r, timer
			st.do = st.resume
		}
		switch why {
		case woken:
			reason = native.ResumeWake
		case clientGone:
			h.engine.Cancel(session)
			return 0, nil
		case shuttingDown:
			st.stopping = true
			reason = native.ResumeEnd
		}
		st.session, st.reason = session, reason
		run(st.do)
		switch {
		case st.err != nil:
			return 0, st.err
		case st.answered:
			return st.status, nil
		case st.streamed != nil:
			return h.stream(w, r, st.streamed, wake)
		case st.stillParked:
			return 0, caddyhttp.Error(http.StatusServiceUnavailable, errors.New("server stopping"))
		}
		session = st.next
	}
}

// pollStep is one resume of awaitLongPoll's loop, with its results: one per
// request (see pieceStep).
type pollStep struct {
	h        *Handler
	w        http.ResponseWriter
	r        *http.Request
	timer    *liveTimer
	do       func() // resume
	session  uint64
	reason   native.ResumeReason
	stopping bool // the config is stopping: give up if still parked

	err         error
	status      int
	answered    bool
	streamed    response // an SSE answer, served from the request's goroutine
	stillParked bool
	next        uint64
}

// resume resumes st.session and writes the answer the engine gives, if any.
func (st *pollStep) resume() {
	h := st.h
	resp, err := h.engine.Resume(st.session, st.reason)
	if err != nil {
		h.engine.Cancel(st.session)
		st.err = engineError(err)
		return
	}
	switch resp.Live() {
	case native.LiveNone:
		defer resp.Release()
		st.status, st.answered = writeLastResponse(st.w, st.r, resp), true
	case native.LiveStream:
		st.streamed = resp
	default:
		if st.stopping { // still parked after a timeout resume: give up
			resp.Release()
			h.engine.Cancel(st.session)
			st.stillParked = true
			return
		}
		st.next = parkNext(resp, st.timer)
	}
}

// stream writes an SSE response: the status line, headers and first piece
// now, flushed; then, over plain HTTP/1.1, it hands the connection to the
// engine (takeover.go) and returns. Otherwise it writes every resumed piece
// as it comes, each flushed, until the engine says done. A client that
// leaves, a failed write or a stopping config cancels the session and ends
// the response.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, resp response, wake <-chan struct{}) (int, error) {
	liveStreams.Add(1)
	defer liveStreams.Add(-1)

	rc := http.NewResponseController(w)
	status := resp.Status()
	takeover := h.mayTakeOver(r, resp)
	// Served here, this goroutine parks between pieces: the deep calls go
	// to short-lived goroutines (offload.go).
	run := offload
	if takeover {
		run = inline
	}
	var err error
	var pieces *idlePieceWriter
	run(func() {
		writeHeader(w, resp, -1)
		markPrivate(w, r)
		if takeover {
			// The engine closes the connection when the response ends, so
			// the client must not count on reusing it.
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(status)
		err = writeFlush(w, rc, resp.Body())
		if !takeover {
			pieces = newIdlePieceWriter(w, r).watched()
		}
	})

	session := resp.Session()
	if err != nil {
		resp.Release()
		h.engine.Cancel(session)
		return status, nil
	}
	if resp.Done() || resp.Live() == native.LiveNone {
		resp.Release()
		return status, nil
	}
	if takeover && h.takeOver(w, resp, wake) {
		return status, nil
	}
	send := func(p []byte) error { return writeFlush(w, rc, p) }
	if pieces != nil {
		// One idle-deadline window per piece (idle_piece.go), on a
		// watchdog timer (write_watchdog.go).
		send = pieces.send
		defer pieces.close()
	}
	h.follow(r.Context(), resp, wake, send, offload)
	return status, nil
}

// follow waits for, resumes and sends the pieces of a streamed response
// after resp, which has been sent, until the engine says done. It returns
// false when the client is gone (it left or a write failed): the response
// cannot be completed. The engine calls and sends go through run: offload
// when the caller's goroutine is a parked handler's, else inline.
func (h *Handler) follow(ctx context.Context, resp response, wake <-chan struct{}, send func([]byte) error, run func(func())) bool {
	timer := new(liveTimer)
	defer timer.stop()
	var gone <-chan struct{}
	var session uint64
	run(func() {
		gone = ctx.Done()
		session = parkNext(resp, timer)
	})
	var st *pieceStep // made at the first wakeup (not for a subscriber that never gets one)
	for {
		// This frame is what stays on a parked stack: keep it small.
		var ended, completed bool
		why := h.awaitParked(gone, wake, timer)
		if st == nil {
			st = newPieceStep(h, send, timer)
		}
		session, ended, completed = h.followStep(session, why, run, st)
		if ended {
			return completed
		}
	}
}

// pieceStep is one resume and send of follow's loop, with its results. One
// is kept for the whole response, its resume bound once: the closure of a
// call that run hands to another goroutine, and every variable it sets,
// would otherwise be allocated for each piece.
type pieceStep struct {
	h       *Handler
	send    func([]byte) error
	timer   *liveTimer
	do      func() // resume
	session uint64
	reason  native.ResumeReason

	err, sendErr     error
	next             uint64
	ended, completed bool
}

//go:noinline
func newPieceStep(h *Handler, send func([]byte) error, timer *liveTimer) *pieceStep {
	st := &pieceStep{h: h, send: send, timer: timer}
	st.do = st.resume
	return st
}

// resume resumes st.session and sends the piece the engine gives.
func (st *pieceStep) resume() {
	var resp response
	resp, st.err = st.h.engine.Resume(st.session, st.reason)
	if st.err != nil {
		return
	}
	st.sendErr = st.send(resp.Body())
	switch {
	case st.sendErr != nil:
		resp.Release()
	case resp.Done() || resp.Live() == native.LiveNone:
		resp.Release()
		st.ended, st.completed = true, true
	default:
		st.next = parkNext(resp, st.timer)
	}
}

// parkNext releases a parked response and arms the timer for its wait: what
// comes before each wait, and the session to wait on.
func parkNext(resp response, timer *liveTimer) uint64 {
	session, wait := resp.Session(), resp.Wait()
	resp.Release()
	timer.arm(wait)
	return session
}

// followStep acts on one wakeup of follow's loop, in one call of run: it
// returns the session to wait on next, or ended and whether the response was
// completed.
//
//go:noinline
func (h *Handler) followStep(session uint64, why wakeup, run func(func()), st *pieceStep) (next uint64, ended, completed bool) {
	reason := native.ResumeTimeout
	switch why {
	case woken:
		reason = native.ResumeWake
	case clientGone:
		h.engine.Cancel(session)
		return 0, true, false
	case shuttingDown:
		send, done := st.send, false
		run(func() { done = h.endStream(session, send) })
		return 0, true, done
	}

	st.session, st.reason = session, reason
	st.err, st.sendErr, st.next, st.ended, st.completed = nil, nil, 0, false, false
	run(st.do)
	if st.err != nil {
		// The status line is out; all that is left is to end the body.
		h.logger.Error("resuming SSE session", zap.Uint64("session", session), zap.Error(st.err))
		h.engine.Cancel(session)
		return 0, true, true
	}
	if st.sendErr != nil {
		h.engine.Cancel(session)
		return 0, true, false
	}
	return st.next, st.ended, st.completed
}

// writeFlush writes one piece of a streamed body and pushes it to the client.
// The first piece is flushed even when empty, so the status line goes out.
func writeFlush(w http.ResponseWriter, rc *http.ResponseController, p []byte) error {
	if len(p) > 0 {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return rc.Flush()
}
