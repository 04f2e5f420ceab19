package caddymodule

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// ---- request translation ------------------------------------------------

func TestTranslateEveryField(t *testing.T) {
	// A PUT: the only method whose answer (Location) needs the request base.
	r := httptest.NewRequest(http.MethodPut, "/v1/stream/a%20b/c?offset=-1&live=sse", nil)
	values := map[native.Field]string{}
	for _, ph := range protocolHeaders {
		v := "value-" + ph.name
		r.Header.Set(ph.name, v)
		r.Header.Add(ph.name, "second value is ignored")
		values[ph.field] = v
	}
	// Set for __ds requests only, by serveControl: a stream request never
	// passes its Authorization on, and the kid never comes from a client.
	r.Header.Set("Authorization", "Bearer x")
	r.Header.Set("Webhook-Kid", "ds_forged")
	controlOnly := []native.Field{native.FieldAuthorization, native.FieldWebhookKID}
	var req native.Request
	translate(&req, r)
	for _, f := range controlOnly {
		if got, ok := req.Get(f); ok {
			t.Errorf("translate set control-only field %d to %q", f, got)
		}
	}

	want := map[native.Field]string{
		native.FieldMethod:      "PUT",
		native.FieldPath:        "/v1/stream/a b/c", // decoded
		native.FieldQuery:       "offset=-1&live=sse",
		native.FieldRequestBase: "http://example.com", // httptest's default Host
	}
	for f, v := range values {
		want[f] = v
	}
	if len(want)+len(controlOnly) != native.FieldCount {
		t.Fatalf("the test covers %d fields, the ABI has %d", len(want)+len(controlOnly), native.FieldCount)
	}
	for f := native.Field(0); int(f) < native.FieldCount; f++ {
		if f == native.FieldAuthorization || f == native.FieldWebhookKID {
			continue
		}
		got, ok := req.Get(f)
		if !ok || got != want[f] {
			t.Errorf("field %d = %q (present %v), want %q", f, got, ok, want[f])
		}
	}
}

// Only a create answers with Location, so other methods do not pay for
// building the request base.
func TestTranslateSendsTheBaseOnlyForPut(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodDelete} {
		var req native.Request
		translate(&req, httptest.NewRequest(method, "/v1/stream/s", nil))
		if v, ok := req.Get(native.FieldRequestBase); ok {
			t.Errorf("%s carries request base %q", method, v)
		}
	}
}

// The header names are the protocol's, spelled as the test expects them on
// the wire, independent of the table in serve.go.
func TestTranslateHeaderNames(t *testing.T) {
	wire := map[string]native.Field{
		"content-type":                   native.FieldContentType,
		"stream-ttl":                     native.FieldStreamTTL,
		"stream-expires-at":              native.FieldStreamExpiresAt,
		"stream-closed":                  native.FieldStreamClosed,
		"stream-seq":                     native.FieldStreamSeq,
		"producer-id":                    native.FieldProducerID,
		"producer-epoch":                 native.FieldProducerEpoch,
		"producer-seq":                   native.FieldProducerSeq,
		"if-none-match":                  native.FieldIfNoneMatch,
		"stream-forked-from":             native.FieldStreamForkedFrom,
		"stream-fork-offset":             native.FieldStreamForkOffset,
		"stream-fork-sub-offset":         native.FieldStreamForkSubOffset,
		"origin":                         native.FieldOrigin,
		"access-control-request-headers": native.FieldAccessControlRequestHeaders,
	}
	for name, field := range wire {
		r := httptest.NewRequest(http.MethodGet, "/v1/stream/s", nil)
		r.Header.Set(name, "x") // Set canonicalizes, as net/http does on the wire
		var req native.Request
		translate(&req, r)
		if got, ok := req.Get(field); !ok || got != "x" {
			t.Errorf("%s: field %d = %q (present %v)", name, field, got, ok)
		}
		for f := native.FieldContentType; int(f) < native.FieldCount; f++ {
			if _, ok := req.Get(f); ok && f != field && f != native.FieldRequestBase {
				t.Errorf("%s also set field %d", name, f)
			}
		}
	}
}

func TestTranslateRequestBase(t *testing.T) {
	r := httptest.NewRequest(http.MethodPut, "https://streams.example.com:8443/v1/stream/s", nil)
	var req native.Request
	translate(&req, r)
	if got, _ := req.Get(native.FieldRequestBase); got != "https://streams.example.com:8443" {
		t.Errorf("TLS request base = %q", got)
	}

	r = httptest.NewRequest(http.MethodPut, "/v1/stream/s", nil)
	r.Host = "localhost:4437"
	req.Reset()
	translate(&req, r)
	if got, _ := req.Get(native.FieldRequestBase); got != "http://localhost:4437" {
		t.Errorf("plain request base = %q", got)
	}

	r.Host = ""
	req.Reset()
	translate(&req, r)
	if got, ok := req.Get(native.FieldRequestBase); ok {
		t.Errorf("no Host, yet request base %q", got)
	}
}

func TestRequestBaseBehindProxy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted bool
		want    string
	}{
		{"trusted proxy", true, "https://streams.example.com"},
		{"untrusted client", false, "http://10.0.0.5:4437"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPut, "/v1/stream/s", nil)
			r.Host = "10.0.0.5:4437"
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", "streams.example.com")
			ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{
				caddyhttp.TrustedProxyVarKey: tc.trusted,
			})
			if got := requestBase(r.WithContext(ctx)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTranslateAbsentVersusEmpty(t *testing.T) {
	for _, tc := range []struct {
		name      string
		target    string
		header    http.Header
		field     native.Field
		wantValue string
		wantOK    bool
	}{
		{"no query", "/v1/stream/s", nil, native.FieldQuery, "", false},
		{"empty query", "/v1/stream/s?", nil, native.FieldQuery, "", true},
		{"query", "/v1/stream/s?offset=now", nil, native.FieldQuery, "offset=now", true},
		{"absent header", "/v1/stream/s", nil, native.FieldStreamClosed, "", false},
		{"empty header", "/v1/stream/s", http.Header{"Stream-Closed": {""}}, native.FieldStreamClosed, "", true},
		{"header", "/v1/stream/s", http.Header{"Stream-Closed": {"true"}}, native.FieldStreamClosed, "true", true},
		{"empty first value wins", "/v1/stream/s", http.Header{"Producer-Id": {"", "p"}}, native.FieldProducerID, "", true},
		{"empty header list is absent", "/v1/stream/s", http.Header{"Origin": {}}, native.FieldOrigin, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			var req native.Request
			translate(&req, r)
			got, ok := req.Get(tc.field)
			if got != tc.wantValue || ok != tc.wantOK {
				t.Errorf("got %q present=%v, want %q present=%v", got, ok, tc.wantValue, tc.wantOK)
			}
		})
	}
}

func TestRequestReuse(t *testing.T) {
	var req native.Request
	req.Set(native.FieldOrigin, "https://a.example")
	req.Body = []byte("x")
	req.BodyTooLarge = true
	req.Reset()
	if _, ok := req.Get(native.FieldOrigin); ok || req.Body != nil || req.BodyTooLarge {
		t.Fatal("Reset left state behind")
	}
	req.Set(native.FieldMethod, "GET")
	if v, _ := req.Get(native.FieldMethod); v != "GET" {
		t.Fatalf("method = %q", v)
	}
}

// ---- request bodies -----------------------------------------------------

// unreadable fails the test if the handler reads a body it should not.
type unreadable struct{ t *testing.T }

func (u unreadable) Read([]byte) (int, error) {
	u.t.Error("the body was read")
	return 0, io.EOF
}

func TestReadBody(t *testing.T) {
	const limit = 10
	for _, tc := range []struct {
		name          string
		body          io.Reader
		contentLength int64
		want          string
		wantTooLarge  bool
		wantErr       bool
	}{
		{name: "no body", body: nil},
		{name: "declared empty is not read", body: unreadable{t}, contentLength: 0},
		{name: "known length", body: strings.NewReader("hello"), contentLength: 5, want: "hello"},
		{name: "exactly the limit", body: strings.NewReader("0123456789"), contentLength: 10, want: "0123456789"},
		{name: "declared too large is not read", body: unreadable{t}, contentLength: 11, wantTooLarge: true},
		{name: "chunked within the limit", body: strings.NewReader("chunked"), contentLength: -1, want: "chunked"},
		{name: "chunked over the limit", body: strings.NewReader("0123456789A"), contentLength: -1, wantTooLarge: true},
		{name: "request_body max_size cut it", body: maxBytesReader("0123456789", 3), contentLength: -1, wantTooLarge: true},
		{name: "read error", body: iotest.ErrReader(errors.New("connection reset")), contentLength: -1, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/stream/s", tc.body)
			r.ContentLength = tc.contentLength
			if tc.body == nil {
				r.Body = http.NoBody
			}
			b, err := readBody(r, limit, nil)
			if tc.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.release()
			if string(b.bytes()) != tc.want || b.tooLarge != tc.wantTooLarge {
				t.Errorf("got %q tooLarge=%v, want %q tooLarge=%v", b.bytes(), b.tooLarge, tc.want, tc.wantTooLarge)
			}
		})
	}
}

func maxBytesReader(s string, n int64) io.Reader {
	return http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(s)), n)
}

// ---- fake engine ----------------------------------------------------------

type fakeResponse struct {
	status  int
	headers [][2]string
	body    string
	live    native.Live
	session uint64
	wait    time.Duration
	done    bool

	// scribble makes HeaderView a view of memory that Release overwrites.
	scribble  bool
	headerMem []byte

	engine *fakeEngine
}

func (r *fakeResponse) Status() int                   { return r.status }
func (r *fakeResponse) Body() []byte                  { return []byte(r.body) }
func (r *fakeResponse) Parts() [][]byte               { return nil }
func (r *fakeResponse) FilesLen() int64               { return 0 }
func (r *fakeResponse) TakeFiles() []native.FileRange { return nil }
func (r *fakeResponse) Live() native.Live             { return r.live }
func (r *fakeResponse) Session() uint64               { return r.session }
func (r *fakeResponse) Wait() time.Duration           { return r.wait }
func (r *fakeResponse) Done() bool                    { return r.done }
func (r *fakeResponse) Release() {
	for i := range r.headerMem {
		r.headerMem[i] = 'X'
	}
	r.engine.mu.Lock()
	r.engine.released++
	r.engine.mu.Unlock()
}
func (r *fakeResponse) HeaderView() string {
	var b strings.Builder
	for _, h := range r.headers {
		b.WriteString(h[0] + "\x00" + h[1] + "\x00")
	}
	if !r.scribble {
		return b.String()
	}
	// Like engine memory: the bytes are overwritten after Release.
	r.headerMem = []byte(b.String())
	return unsafe.String(unsafe.SliceData(r.headerMem), len(r.headerMem))
}

// fakeEngine answers Handle with first and each Resume with the next of
// resumes; it records what the handler did.
type fakeEngine struct {
	mu        sync.Mutex
	first     *fakeResponse
	handleErr error
	resumes   []*fakeResponse
	reasons   []native.ResumeReason
	cancels   []uint64
	sessions  map[uint64]*fakeWaiter
	nextID    uint64
	sessionIn uint64 // the session Handle was given
	atPark    bool   // Handle was asked for the answer at park time
	released  int
	parked    chan uint64 // receives the session once the handler waits
}

func newFakeEngine(first *fakeResponse, resumes ...*fakeResponse) *fakeEngine {
	return &fakeEngine{first: first, resumes: resumes, sessions: map[uint64]*fakeWaiter{}, parked: make(chan uint64, 1)}
}

// fakeWaiter plays native.Waiter.
type fakeWaiter struct {
	ch        chan struct{}
	committed atomic.Bool
}

func (w *fakeWaiter) Wake() <-chan struct{} { return w.ch }
func (w *fakeWaiter) Committed() bool       { return w.committed.Load() }

func (e *fakeEngine) Register() (uint64, <-chan struct{}) {
	id, w := e.RegisterAppend()
	return id, w.Wake()
}

func (e *fakeEngine) RegisterAppend() (uint64, appendWaiter) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextID++
	w := &fakeWaiter{ch: make(chan struct{}, 1)}
	e.sessions[e.nextID] = w
	return e.nextID, w
}

func (e *fakeEngine) Unregister(id uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.sessions, id)
}

func (e *fakeEngine) Handle(req *native.Request, session uint64) (response, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sessionIn = session
	e.atPark = req.AnswerAtPark
	if e.handleErr != nil {
		return nil, e.handleErr
	}
	return e.prepare(e.first, session), nil
}

func (e *fakeEngine) Resume(session uint64, reason native.ResumeReason) (response, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reasons = append(e.reasons, reason)
	if len(e.resumes) == 0 {
		return nil, &native.Error{Op: "resume", Code: native.CodeInternal, Message: "test script ran out"}
	}
	r := e.resumes[0]
	e.resumes = e.resumes[1:]
	return e.prepare(r, session), nil
}

func (e *fakeEngine) prepare(r *fakeResponse, session uint64) response {
	r.engine = e
	if r.live != native.LiveNone {
		r.session = session
		select {
		case e.parked <- session:
		default:
		}
	}
	return r
}

func (e *fakeEngine) Cancel(session uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cancels = append(e.cancels, session)
}

func (e *fakeEngine) AdoptLongPoll(session uint64, fd int, owner uint64, headers []byte, returnTag uint64) error {
	return e.Adopt(session, fd, owner)
}

func (e *fakeEngine) Adopt(session uint64, fd int, owner uint64) error {
	return errors.New("the fake engine adopts nothing")
}

func (e *fakeEngine) EndAdopted(owner uint64) {}

// wake plays the engine's wake callback.
func (e *fakeEngine) wake(session uint64) { e.wakeAs(session, false) }

// wakeCommitted plays the wake of an append answered at park time whose
// commit is durable (DS_WAKE_COMMITTED).
func (e *fakeEngine) wakeCommitted(session uint64) { e.wakeAs(session, true) }

func (e *fakeEngine) wakeAs(session uint64, committed bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if w, ok := e.sessions[session]; ok {
		if committed {
			w.committed.Store(true)
		}
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

func (e *fakeEngine) snapshot() (reasons []native.ResumeReason, cancels []uint64, released, registered int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]native.ResumeReason(nil), e.reasons...), append([]uint64(nil), e.cancels...), e.released, len(e.sessions)
}

func testHandler(e engine) *Handler {
	return &Handler{MaxAppendSize: DefaultMaxAppendSize, engine: e, logger: zap.NewNop(), stopping: newStopSignal()}
}

// recorder is a ResponseWriter that records whether anything was written.
type recorder struct {
	*httptest.ResponseRecorder
	mu          sync.Mutex
	wroteHeader bool
	flushes     int
}

func newRecorder() *recorder { return &recorder{ResponseRecorder: httptest.NewRecorder()} }

func (r *recorder) WriteHeader(code int) {
	r.mu.Lock()
	r.wroteHeader = true
	r.mu.Unlock()
	r.ResponseRecorder.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.wroteHeader = true
	r.mu.Unlock()
	return r.ResponseRecorder.Write(p)
}

func (r *recorder) wrote() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wroteHeader
}

func (r *recorder) Flush() {
	r.mu.Lock()
	r.flushes++
	r.mu.Unlock()
	r.ResponseRecorder.Flush()
}

// serveAsync runs ServeHTTP in a goroutine; the returned func waits for it.
func serveAsync(h *Handler, w http.ResponseWriter, r *http.Request) func() error {
	done := make(chan error, 1)
	go func() { done <- h.ServeHTTP(w, r, nil) }()
	return func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			return errors.New("ServeHTTP did not return")
		}
	}
}

func waitParked(t *testing.T, e *fakeEngine) uint64 {
	t.Helper()
	select {
	case s := <-e.parked:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("the request never parked")
		return 0
	}
}

// ---- complete responses ---------------------------------------------------

func TestCompleteResponse(t *testing.T) {
	e := newFakeEngine(&fakeResponse{
		status: 201,
		headers: [][2]string{
			{"Content-Type", "text/plain"},
			{"Stream-Next-Offset", "0000000000000000_0000000000000005"},
			{"Access-Control-Allow-Origin", "*"},
			{"Access-Control-Expose-Headers", "Stream-Next-Offset"},
			{"Vary", "Origin"},
			{"Vary", "Accept-Encoding"},
		},
		body: "hello",
	})
	h := testHandler(e)
	w := newRecorder()
	// Set earlier in the route: the user's CORS header wins, others do not.
	w.Header().Set("Access-Control-Allow-Origin", "https://app.example.com")
	w.Header().Set("Content-Type", "application/octet-stream")
	r := httptest.NewRequest(http.MethodPut, "/v1/stream/s", strings.NewReader("hello"))

	if err := h.ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	res := w.Result()
	if res.StatusCode != 201 || w.Body.String() != "hello" {
		t.Fatalf("got %d %q", res.StatusCode, w.Body.String())
	}
	for name, want := range map[string][]string{
		"Content-Type":                  {"text/plain"},
		"Access-Control-Allow-Origin":   {"https://app.example.com"},
		"Access-Control-Expose-Headers": {"Stream-Next-Offset"},
		"Vary":                          {"Origin", "Accept-Encoding"},
		"Content-Length":                {"5"},
	} {
		if got := res.Header[name]; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	_, _, released, registered := e.snapshot()
	if released != 1 || registered != 0 || e.sessionIn != 0 {
		t.Errorf("released %d times, %d sessions left, session %d (a PUT must not register)", released, registered, e.sessionIn)
	}
}

// The engine's header memory is gone after Release, but net/http writes the
// headers later: every name and value must be the handler's own, whether
// interned or copied, and no value slice may be shared with another header
// or another response.
func TestHeadersOutliveRelease(t *testing.T) {
	headers := [][2]string{
		{"Content-Type", "text/plain"},                                      // interned
		{"Etag", `"1:0:5"`},                                                 // copied
		{"Stream-Next-Offset", "0000000000000000_0000000000000005"},         // copied
		{"Cache-Control", "public, max-age=60, stale-while-revalidate=300"}, // interned
		{"X-Custom-Name", "custom value"},                                   // both copied
		{"Vary", "Origin"},
		{"Vary", "Accept-Encoding"},
	}
	var written []http.Header
	for range 2 {
		e := newFakeEngine(&fakeResponse{status: 200, headers: headers, body: "hello", scribble: true})
		w := newRecorder()
		if err := testHandler(e).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/stream/s?offset=-1", nil), nil); err != nil {
			t.Fatal(err)
		}
		written = append(written, w.Header())
	}
	for _, hdr := range written {
		for name, want := range map[string]string{
			"Content-Type":       "text/plain",
			"Etag":               `"1:0:5"`,
			"Stream-Next-Offset": "0000000000000000_0000000000000005",
			"Cache-Control":      "public, max-age=60, stale-while-revalidate=300",
			"X-Custom-Name":      "custom value",
			"Vary":               "Origin|Accept-Encoding",
			"Content-Length":     "5",
		} {
			if got := strings.Join(hdr[name], "|"); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
	}
	// Middleware may edit value slices in place (Caddy's `header` replace)
	// or append to them.
	written[0]["Cache-Control"][0] = "edited"
	written[0]["Content-Type"] = append(written[0]["Content-Type"], "appended")
	if got := written[1]["Cache-Control"][0]; got != "public, max-age=60, stale-while-revalidate=300" {
		t.Errorf("another response's Cache-Control became %q", got)
	}
	if got := strings.Join(written[0]["Etag"], "|"); got != `"1:0:5"` {
		t.Errorf("appending to Content-Type changed Etag to %q", got)
	}
}

func TestHeadWritesNoBody(t *testing.T) {
	e := newFakeEngine(&fakeResponse{status: 200, headers: [][2]string{{"Stream-Next-Offset", "x"}}})
	w := newRecorder()
	if err := testHandler(e).ServeHTTP(w, httptest.NewRequest(http.MethodHead, "/v1/stream/s", nil), nil); err != nil {
		t.Fatal(err)
	}
	if w.Body.Len() != 0 || w.Header().Get("Content-Length") != "" {
		t.Errorf("HEAD wrote body %q, Content-Length %q", w.Body.String(), w.Header().Get("Content-Length"))
	}
}

func TestEngineErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{native.ErrClosed, http.StatusServiceUnavailable},
		{&native.Error{Op: "handle", Code: native.CodeNotSupported}, http.StatusNotImplemented},
		{&native.Error{Op: "handle", Code: native.CodeIO}, http.StatusServiceUnavailable},
		{&native.Error{Op: "handle", Code: native.CodeInternal}, http.StatusInternalServerError},
	} {
		e := newFakeEngine(nil)
		e.handleErr = tc.err
		err := testHandler(e).ServeHTTP(newRecorder(), httptest.NewRequest(http.MethodGet, "/v1/stream/s", nil), nil)
		he, ok := errors.AsType[caddyhttp.HandlerError](err)
		if !ok || he.StatusCode != tc.want {
			t.Errorf("%v: got %v, want a %d handler error", tc.err, err, tc.want)
		}
	}
}

// ---- long-poll ------------------------------------------------------------

func TestLongPollWoken(t *testing.T) {
	e := newFakeEngine(
		&fakeResponse{live: native.LiveWait, wait: time.Minute},
		&fakeResponse{live: native.LiveWait, wait: time.Minute}, // spurious wake
		&fakeResponse{status: 200, headers: [][2]string{{"Stream-Next-Offset", "b"}}, body: "new data"},
	)
	h := testHandler(e)
	w := newRecorder()
	wait := serveAsync(h, w, httptest.NewRequest(http.MethodGet, "/v1/stream/s?offset=a&live=long-poll", nil))

	session := waitParked(t, e)
	if w.wrote() {
		t.Fatal("a parked long-poll wrote something")
	}
	e.wake(session)
	waitParked(t, e) // the spurious wake parked it again
	e.wake(session)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if w.Code != 200 || w.Body.String() != "new data" || w.Header().Get("Stream-Next-Offset") != "b" {
		t.Errorf("got %d %q %v", w.Code, w.Body.String(), w.Header())
	}
	reasons, cancels, released, registered := e.snapshot()
	if len(reasons) != 2 || reasons[0] != native.ResumeWake || reasons[1] != native.ResumeWake {
		t.Errorf("resume reasons %v, want two wakes", reasons)
	}
	if len(cancels) != 0 || released != 3 || registered != 0 {
		t.Errorf("cancels %v, released %d, registered %d", cancels, released, registered)
	}
}

func TestLongPollTimeout(t *testing.T) {
	e := newFakeEngine(
		&fakeResponse{live: native.LiveWait, wait: 5 * time.Millisecond},
		&fakeResponse{status: 204, headers: [][2]string{{"Stream-Up-To-Date", "true"}}},
	)
	w := newRecorder()
	if err := testHandler(e).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/stream/s?live=long-poll", nil), nil); err != nil {
		t.Fatal(err)
	}
	reasons, _, _, _ := e.snapshot()
	if w.Code != 204 || len(reasons) != 1 || reasons[0] != native.ResumeTimeout {
		t.Errorf("got %d, reasons %v", w.Code, reasons)
	}
	if w.Header().Get("Content-Length") != "" {
		t.Errorf("a 204 got Content-Length %q", w.Header().Get("Content-Length"))
	}
}

func TestLongPollClientGone(t *testing.T) {
	e := newFakeEngine(&fakeResponse{live: native.LiveWait, wait: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	w := newRecorder()
	wait := serveAsync(testHandler(e), w, httptest.NewRequest(http.MethodGet, "/v1/stream/s?live=long-poll", nil).WithContext(ctx))

	session := waitParked(t, e)
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	reasons, cancels, released, registered := e.snapshot()
	if w.wroteHeader || len(reasons) != 0 || len(cancels) != 1 || cancels[0] != session {
		t.Errorf("wrote %v, resumes %v, cancels %v (want only a cancel of %d)", w.wroteHeader, reasons, cancels, session)
	}
	if released != 1 || registered != 0 {
		t.Errorf("released %d, registered %d", released, registered)
	}
}

func TestLongPollConfigStopping(t *testing.T) {
	e := newFakeEngine(
		&fakeResponse{live: native.LiveWait, wait: time.Minute},
		&fakeResponse{status: 204},
	)
	h := testHandler(e)
	w := newRecorder()
	wait := serveAsync(h, w, httptest.NewRequest(http.MethodGet, "/v1/stream/s?live=long-poll", nil))
	waitParked(t, e)
	h.stopping.stop()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	reasons, _, _, _ := e.snapshot()
	if w.Code != 204 || len(reasons) != 1 || reasons[0] != native.ResumeEnd {
		t.Errorf("got %d, reasons %v: a stopping config resumes with ResumeEnd and answers what the engine says (its timeout response)", w.Code, reasons)
	}
}

// ---- durable appends --------------------------------------------------------

func durableHandler(e engine) *Handler {
	h := testHandler(e)
	h.DataDir = "/var/lib/durable-streams"
	return h
}

func TestDurableAppendWaitsForItsCommit(t *testing.T) {
	e := newFakeEngine(
		&fakeResponse{live: native.LiveCommit},
		&fakeResponse{status: 204, headers: [][2]string{{"Stream-Next-Offset", "n"}}},
	)
	w := newRecorder()
	wait := serveAsync(durableHandler(e), w, httptest.NewRequest(http.MethodPost, "/v1/stream/s", strings.NewReader("x")))
	session := waitParked(t, e)
	if session == 0 {
		t.Fatal("a durable append was not given a session")
	}
	if w.wrote() {
		t.Fatal("an append wrote before its commit")
	}
	e.wake(session)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if w.Code != 204 || w.Header().Get("Stream-Next-Offset") != "n" {
		t.Errorf("got %d %v", w.Code, w.Header())
	}
	reasons, cancels, released, registered := e.snapshot()
	if len(reasons) != 1 || reasons[0] != native.ResumeWake || len(cancels) != 0 {
		t.Errorf("resumes %v, cancels %v: want one resume on the wake", reasons, cancels)
	}
	if released != 2 || registered != 0 {
		t.Errorf("released %d, registered %d", released, registered)
	}
}

// An append answered at park time: the wake says committed, and the
// answer the engine gave with the park is written without a Resume.
func TestDurableAppendAnsweredAtParkNeedsNoResume(t *testing.T) {
	e := newFakeEngine(&fakeResponse{live: native.LiveCommit, status: 200,
		headers: [][2]string{{"Stream-Next-Offset", "n"}, {"Producer-Epoch", "2"}, {"Producer-Seq", "7"}}})
	w := newRecorder()
	wait := serveAsync(durableHandler(e), w, httptest.NewRequest(http.MethodPost, "/v1/stream/s", strings.NewReader("x")))
	session := waitParked(t, e)
	if w.wrote() {
		t.Fatal("an append wrote before its commit")
	}
	e.wakeCommitted(session)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if w.Code != 200 || w.Header().Get("Stream-Next-Offset") != "n" || w.Header().Get("Producer-Epoch") != "2" ||
		w.Header().Get("Producer-Seq") != "7" {
		t.Errorf("got %d %v", w.Code, w.Header())
	}
	reasons, cancels, released, registered := e.snapshot()
	e.mu.Lock()
	atPark := e.atPark
	e.mu.Unlock()
	if !atPark || len(reasons) != 0 || len(cancels) != 0 || released != 1 || registered != 0 {
		t.Errorf("asked at park %v, resumes %v, cancels %v, released %d, registered %d: want the answer at park, no resume",
			atPark, reasons, cancels, released, registered)
	}
}

// A wake that does not say committed (the commit failed) never writes the
// answer given with the park: Resume gives the one to send.
func TestDurableAppendFailedCommitAnswersFromResume(t *testing.T) {
	e := newFakeEngine(
		&fakeResponse{live: native.LiveCommit, status: 204, headers: [][2]string{{"Stream-Next-Offset", "n"}}},
		&fakeResponse{status: 507, body: "insufficient storage: commit: No space left on device\n"},
	)
	w := newRecorder()
	wait := serveAsync(durableHandler(e), w, httptest.NewRequest(http.MethodPost, "/v1/stream/s", strings.NewReader("x")))
	session := waitParked(t, e)
	e.wake(session)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if w.Code != 507 || w.Header().Get("Stream-Next-Offset") != "" || w.Body.String() != "insufficient storage: commit: No space left on device\n" {
		t.Errorf("got %d %v %q; want the resumed 507", w.Code, w.Header(), w.Body.String())
	}
	reasons, _, released, registered := e.snapshot()
	if len(reasons) != 1 || reasons[0] != native.ResumeWake || released != 2 || registered != 0 {
		t.Errorf("resumes %v, released %d, registered %d", reasons, released, registered)
	}
}

func TestDurableAppendClientGoneCancelsOnlyTheAnswer(t *testing.T) {
	e := newFakeEngine(&fakeResponse{live: native.LiveCommit})
	ctx, cancel := context.WithCancel(context.Background())
	w := newRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/stream/s", strings.NewReader("x")).WithContext(ctx)
	wait := serveAsync(durableHandler(e), w, req)
	session := waitParked(t, e)
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	reasons, cancels, _, registered := e.snapshot()
	if w.wroteHeader || len(reasons) != 0 || len(cancels) != 1 || cancels[0] != session || registered != 0 {
		t.Errorf("wrote %v, resumes %v, cancels %v, registered %d", w.wroteHeader, reasons, cancels, registered)
	}
}

func TestInMemoryAppendsAreNotRegistered(t *testing.T) {
	e := newFakeEngine(&fakeResponse{status: 204})
	w := newRecorder()
	if err := testHandler(e).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/stream/s", strings.NewReader("x")), nil); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sessionIn != 0 || e.nextID != 0 {
		t.Errorf("session %d, registrations %d: an in-memory append cannot park", e.sessionIn, e.nextID)
	}
}

// ---- SSE ------------------------------------------------------------------

func TestSSEStreamsUntilDone(t *testing.T) {
	e := newFakeEngine(
		&fakeResponse{status: 200, headers: [][2]string{{"Content-Type", "text/event-stream"}}, body: "event: a\n\n", live: native.LiveStream, wait: time.Minute},
		&fakeResponse{body: ": keepalive\n\n", live: native.LiveStream, wait: time.Minute},
		&fakeResponse{body: "event: c\n\n", live: native.LiveStream, done: true},
	)
	h := testHandler(e)
	w := newRecorder()
	wait := serveAsync(h, w, httptest.NewRequest(http.MethodGet, "/v1/stream/s?live=sse", nil))

	session := waitParked(t, e)
	e.wake(session)
	waitParked(t, e)
	e.wake(session)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if got := w.Body.String(); got != "event: a\n\n: keepalive\n\nevent: c\n\n" {
		t.Errorf("body %q", got)
	}
	if w.Header().Get("Content-Length") != "" || w.Header().Get("Content-Type") != "text/event-stream" {
		t.Errorf("headers %v", w.Header())
	}
	reasons, cancels, released, registered := e.snapshot()
	if w.flushes < 3 || len(reasons) != 2 || len(cancels) != 0 || released != 3 || registered != 0 {
		t.Errorf("flushes %d, reasons %v, cancels %v, released %d, registered %d", w.flushes, reasons, cancels, released, registered)
	}
}

func TestSSEEndsOnClientGone(t *testing.T) {
	e := newFakeEngine(&fakeResponse{status: 200, body: "event: a\n\n", live: native.LiveStream, wait: time.Minute})
	h := testHandler(e)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newRecorder()
	wait := serveAsync(h, w, httptest.NewRequest(http.MethodGet, "/v1/stream/s?live=sse", nil).WithContext(ctx))
	session := waitParked(t, e)
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	reasons, cancels, released, registered := e.snapshot()
	if len(reasons) != 0 || len(cancels) != 1 || cancels[0] != session || released != 1 || registered != 0 {
		t.Errorf("reasons %v, cancels %v, released %d, registered %d", reasons, cancels, released, registered)
	}
	if w.Body.String() != "event: a\n\n" {
		t.Errorf("body %q", w.Body.String())
	}
}

// A stopping config ends a goroutine-served SSE response with what the
// engine answers to ResumeEnd: its final control event.
func TestSSEEndsOnStopWithAFinalControlEvent(t *testing.T) {
	e := newFakeEngine(
		&fakeResponse{status: 200, body: "event: a\n\n", live: native.LiveStream, wait: time.Minute},
		&fakeResponse{body: "event: control\n\n", live: native.LiveStream, done: true},
	)
	h := testHandler(e)
	w := newRecorder()
	wait := serveAsync(h, w, httptest.NewRequest(http.MethodGet, "/v1/stream/s?live=sse", nil))
	waitParked(t, e)
	h.stopping.stop()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	reasons, cancels, released, registered := e.snapshot()
	if len(reasons) != 1 || reasons[0] != native.ResumeEnd || len(cancels) != 0 || released != 2 || registered != 0 {
		t.Errorf("reasons %v, cancels %v, released %d, registered %d; want one ResumeEnd, no cancel", reasons, cancels, released, registered)
	}
	if w.Body.String() != "event: a\n\nevent: control\n\n" {
		t.Errorf("body %q; want the final control event after the first piece", w.Body.String())
	}
}

// failingWriter fails every write after the first n.
type failingWriter struct {
	*recorder
	n int
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("broken pipe")
	}
	f.n--
	return f.recorder.Write(p)
}

func TestSSEWriteErrorCancels(t *testing.T) {
	e := newFakeEngine(
		&fakeResponse{status: 200, body: "event: a\n\n", live: native.LiveStream, wait: 0},
		&fakeResponse{body: "event: b\n\n", live: native.LiveStream, wait: time.Minute},
	)
	w := &failingWriter{recorder: newRecorder(), n: 1}
	if err := testHandler(e).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/stream/s?live=sse", nil), nil); err != nil {
		t.Fatal(err)
	}
	reasons, cancels, released, _ := e.snapshot()
	if len(reasons) != 1 || reasons[0] != native.ResumeTimeout || len(cancels) != 1 || released != 2 {
		t.Errorf("reasons %v, cancels %v, released %d", reasons, cancels, released)
	}
}
