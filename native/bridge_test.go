package native

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests cover the bridge: packing, ownership, the wake path and
// Close. What the engine answers is the engine's business and is tested
// with GoogleTest; here only its broad shape (a status, headers) is used.

func open(t *testing.T, opts Options) *Engine {
	t.Helper()
	e, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func request(method, path, query string, headers map[Field]string, body string) *Request {
	r := new(Request)
	r.Set(FieldMethod, method)
	r.Set(FieldPath, path)
	if query != "" {
		r.Set(FieldQuery, query)
	}
	for f, v := range headers {
		r.Set(f, v)
	}
	r.Body = []byte(body)
	return r
}

func handle(t *testing.T, e *Engine, r *Request, session uint64) *Response {
	t.Helper()
	resp, err := e.Handle(r, session)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func header(r *Response, name string) string {
	for n, v := range r.Header() {
		if n == name {
			return v
		}
	}
	return ""
}

func TestRequestPacking(t *testing.T) {
	var r Request
	r.Set(FieldMethod, "PUT")
	r.Set(FieldStreamClosed, "") // present but empty
	r.Set(FieldContentType, "text/plain")
	r.Set(FieldContentType, "application/json") // the last value wins

	if v, ok := r.Get(FieldMethod); !ok || v != "PUT" {
		t.Errorf("method %q %v", v, ok)
	}
	if v, ok := r.Get(FieldStreamClosed); !ok || v != "" {
		t.Errorf("Stream-Closed %q %v, want present and empty", v, ok)
	}
	if _, ok := r.Get(FieldOrigin); ok {
		t.Error("Origin present though never set")
	}
	if v, _ := r.Get(FieldContentType); v != "application/json" {
		t.Errorf("Content-Type %q", v)
	}
	if r.present != 1<<FieldMethod|1<<FieldStreamClosed|1<<FieldContentType {
		t.Errorf("presence bits %b", r.present)
	}
	if FieldCount > 32 {
		t.Fatalf("%d fields do not fit the 32-bit presence mask", FieldCount)
	}
}

func TestOpenRejectsNegativeOptions(t *testing.T) {
	_, err := Open(Options{LongPollTimeout: -time.Second})
	if !errors.Is(err, CodeInvalidArgument) {
		t.Fatalf("got %v, want an invalid-argument error", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Op != "open" || e.Code != CodeInvalidArgument {
		t.Fatalf("got %#v", err)
	}
}

func TestCodesHaveNames(t *testing.T) {
	for _, c := range []Code{CodeOK, CodeInvalidArgument, CodeNotSupported, CodeIO, CodeLocked, CodeNotFound, CodeInternal} {
		if c.Error() == "" {
			t.Errorf("code %d has no name", int(c))
		}
	}
	err := error(&Error{Op: "open", Code: CodeLocked, Message: "held by pid 42"})
	if !errors.Is(err, CodeLocked) || errors.Is(err, CodeIO) {
		t.Error("errors.Is does not match on the code")
	}
	if !strings.Contains(err.Error(), "held by pid 42") {
		t.Errorf("message lost: %v", err)
	}
}

func TestHandleAndRelease(t *testing.T) {
	e := open(t, Options{})
	resp := handle(t, e, request("PUT", "/v1/stream/a", "", map[Field]string{FieldContentType: "text/plain"}, "abc"), 0)
	if resp.Status() != 201 || resp.Live() != LiveNone {
		t.Fatalf("create: %d live %d", resp.Status(), resp.Live())
	}
	if header(resp, "Stream-Next-Offset") == "" {
		t.Error("no Stream-Next-Offset header")
	}
	resp.Release()
	resp.Release() // a second Release does nothing

	resp = handle(t, e, request("GET", "/v1/stream/a", "offset=-1", nil, ""), 0)
	if string(resp.Body()) != "abc" {
		t.Errorf("read %q", resp.Body())
	}
	resp.Release()

	if s := e.Stats(); s.Streams != 1 || s.BytesAppended != 3 {
		t.Errorf("stats %+v", s)
	}
	if Version() == "" {
		t.Error("empty engine version")
	}
}

// TestWakeThroughC parks a long-poll and lets an append wake it: the engine
// calls the exported Go callback, which signals the registered channel.
func TestWakeThroughC(t *testing.T) {
	e := open(t, Options{LongPollTimeout: time.Minute})
	created := handle(t, e, request("PUT", "/v1/stream/w", "", map[Field]string{FieldContentType: "text/plain"}, ""), 0)
	tail := header(created, "Stream-Next-Offset")
	created.Release()

	session, wake := e.Register()
	defer e.Unregister(session)
	parked := handle(t, e, request("GET", "/v1/stream/w", "offset="+tail+"&live=long-poll", nil, ""), session)
	if parked.Live() != LiveWait || parked.Session() != session || parked.Wait() <= 0 {
		t.Fatalf("not parked: live %d session %d wait %v", parked.Live(), parked.Session(), parked.Wait())
	}
	parked.Release()

	select {
	case <-wake:
		t.Fatal("woken before any append")
	default:
	}
	handle(t, e, request("POST", "/v1/stream/w", "", map[Field]string{FieldContentType: "text/plain"}, "news"), 0).Release()
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("the append did not wake the session")
	}
	resp, err := e.Resume(session, ResumeWake)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	if resp.Live() != LiveNone || string(resp.Body()) != "news" {
		t.Errorf("resume: live %d body %q", resp.Live(), resp.Body())
	}
}

func TestRegistry(t *testing.T) {
	e := open(t, Options{})
	a, wakeA := e.Register()
	b, wakeB := e.Register()
	if a == 0 || b == 0 || a == b {
		t.Fatalf("session ids %d %d", a, b)
	}
	e.wake([]uint64{a, a, 12345}) // a repeat and an unknown id are harmless
	select {
	case <-wakeA:
	default:
		t.Error("a was not woken")
	}
	select {
	case <-wakeB:
		t.Error("b was woken")
	default:
	}
	e.Unregister(a)
	e.Unregister(a) // twice is harmless
	e.wake([]uint64{a})
	e.Unregister(b)
}

func TestCloseWakesWaitersAndRefusesCalls(t *testing.T) {
	e, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	session, wake := e.Register()
	defer e.Unregister(session)
	e.Close()
	select {
	case <-wake:
	case <-time.After(time.Second):
		t.Fatal("Close did not wake a registered waiter")
	}
	if _, err := e.Handle(request("GET", "/v1/stream/x", "", nil, ""), 0); err != ErrClosed {
		t.Errorf("Handle after Close: %v", err)
	}
	if _, err := e.Resume(session, ResumeTimeout); err != ErrClosed {
		t.Errorf("Resume after Close: %v", err)
	}
	e.Cancel(session)
	if s := e.Stats(); s != (Stats{}) {
		t.Errorf("stats after Close %+v", s)
	}
	e.Close() // idempotent
}

// TestConcurrentUseAndClose runs requests from many goroutines while the
// engine closes under them (run with -race).
func TestConcurrentUseAndClose(t *testing.T) {
	e, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	handle(t, e, request("PUT", "/v1/stream/c", "", map[Field]string{FieldContentType: "text/plain"}, ""), 0).Release()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 8 {
		wg.Go(func() {
			<-start
			for j := 0; j < 200; j++ {
				method, body := "GET", ""
				if (i+j)%2 == 0 {
					method, body = "POST", "x"
				}
				session, _ := e.Register()
				resp, err := e.Handle(request(method, "/v1/stream/c", "offset=-1", map[Field]string{FieldContentType: "text/plain"}, body), session)
				e.Unregister(session)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				resp.Release()
			}
		})
	}
	close(start)
	time.Sleep(5 * time.Millisecond)
	e.Close()
	wg.Wait()
}

func TestBackup(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(Options{DataDir: dir + "/live"})
	if err != nil {
		t.Fatal(err)
	}
	handle(t, e, request("PUT", "/v1/stream/b", "", map[Field]string{FieldContentType: "text/plain"}, "kept"), 0).Release()

	// While the engine is open: the backup does not need it stopped.
	if err := Backup(dir+"/live", dir+"/copy"); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if err := Backup(dir+"/live", dir+"/copy"); !errors.Is(err, CodeInvalidArgument) {
		t.Errorf("backup into a non-empty destination: %v", err)
	}

	restored := open(t, Options{DataDir: dir + "/copy"})
	resp := handle(t, restored, request("GET", "/v1/stream/b", "offset=-1", nil, ""), 0)
	defer resp.Release()
	if string(resp.Body()) != "kept" {
		t.Errorf("restored stream holds %q", resp.Body())
	}
}

// TestAnswerAtParkMatchesTheResumedAnswer sends the same appends to two
// durable streams: one asks for the answer at park time (AnswerAtPark), the
// other resumes after its wake as before. Each parked append's prepared
// answer must be, byte for byte, the one its twin got from Resume, and only
// the prepared ones are woken as committed.
func TestAnswerAtParkMatchesTheResumedAnswer(t *testing.T) {
	e := open(t, Options{DataDir: t.TempDir(), Fsync: FsyncAlways})
	text := map[Field]string{FieldContentType: "text/plain"}
	json := map[Field]string{FieldContentType: "application/json"}
	with := func(base map[Field]string, extra map[Field]string) map[Field]string {
		m := map[Field]string{}
		for f, v := range base {
			m[f] = v
		}
		for f, v := range extra {
			m[f] = v
		}
		return m
	}
	producer := func(seq string) map[Field]string {
		return with(text, map[Field]string{FieldProducerID: "p", FieldProducerEpoch: "0", FieldProducerSeq: seq})
	}
	type step struct {
		what   string
		fields map[Field]string
		body   string
		parks  bool
	}
	byteSteps := []step{
		{"plain append", text, "a", true},
		{"producer append", producer("0"), "b", true},
		{"producer duplicate", producer("0"), "b", false},
		{"Stream-Seq append", with(text, map[Field]string{FieldStreamSeq: "x1"}), "c", true},
		{"producer close-only", with(producer("1"), map[Field]string{FieldStreamClosed: "true"}), "", true},
	}
	jsonSteps := []step{
		{"JSON append", json, "[1,2]", true},
		{"JSON producer append", with(json, map[Field]string{FieldProducerID: "q", FieldProducerEpoch: "3", FieldProducerSeq: "0"}), `{"k":"v"}`, true},
		{"closing JSON append", with(json, map[Field]string{FieldStreamClosed: "true"}), "[3]", true},
		{"closing a closed stream", with(json, map[Field]string{FieldStreamClosed: "true"}), "", false},
	}
	type answer struct {
		status         int
		headers, body  string
		live           Live
		committedWoken bool
	}
	wakeOf := func(t *testing.T, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("no wake for the parked append")
		}
	}
	prepared := func(t *testing.T, path string, s step) answer {
		session, w := e.RegisterAppend()
		defer e.Unregister(session)
		req := request("POST", path, "", s.fields, s.body)
		req.AnswerAtPark = true
		resp := handle(t, e, req, session)
		defer resp.Release()
		a := answer{status: resp.Status(), headers: strings.Clone(resp.HeaderView()), body: string(resp.Body()), live: resp.Live()}
		if resp.Live() == LiveCommit {
			wakeOf(t, w.Wake())
			a.committedWoken = w.Committed()
			// The engine forgot the session when it committed (no entry
			// left behind for a resume nobody makes).
			again, err := e.Resume(session, ResumeWake)
			if err != nil {
				t.Fatal(err)
			}
			if again.Status() != 404 || !strings.Contains(string(again.Body()), "unknown live session") {
				t.Errorf("%s: resume after the committed wake: %d %q; want the unknown session's 404", s.what, again.Status(), again.Body())
			}
			again.Release()
		}
		return a
	}
	resumed := func(t *testing.T, path string, s step) answer {
		session, w := e.RegisterAppend()
		defer e.Unregister(session)
		resp := handle(t, e, request("POST", path, "", s.fields, s.body), session)
		live := resp.Live()
		if live != LiveCommit {
			defer resp.Release()
			return answer{status: resp.Status(), headers: strings.Clone(resp.HeaderView()), body: string(resp.Body()), live: live}
		}
		if resp.Status() != 0 {
			t.Errorf("parked without answer_at_park: status %d, want 0", resp.Status())
		}
		resp.Release()
		wakeOf(t, w.Wake())
		committed := w.Committed()
		final, err := e.Resume(session, ResumeWake)
		if err != nil {
			t.Fatal(err)
		}
		defer final.Release()
		return answer{status: final.Status(), headers: strings.Clone(final.HeaderView()), body: string(final.Body()), live: live, committedWoken: committed}
	}
	for _, c := range []struct {
		contentType map[Field]string
		steps       []step
	}{{text, byteSteps}, {json, jsonSteps}} {
		pathA, pathB := "/v1/stream/at-park-"+c.contentType[FieldContentType], "/v1/stream/resumed-"+c.contentType[FieldContentType]
		for _, p := range []string{pathA, pathB} {
			handle(t, e, request("PUT", p, "", c.contentType, ""), 0).Release()
		}
		for _, s := range c.steps {
			a, b := prepared(t, pathA, s), resumed(t, pathB, s)
			wantLive := LiveNone
			if s.parks {
				wantLive = LiveCommit
			}
			if a.live != wantLive || b.live != wantLive {
				t.Errorf("%s: parked as %d and %d; want %d", s.what, a.live, b.live, wantLive)
			}
			if a.committedWoken != s.parks || b.committedWoken {
				t.Errorf("%s: woken as committed: at park %v, resumed %v; want %v, false", s.what, a.committedWoken, b.committedWoken, s.parks)
			}
			if a.status != b.status || a.headers != b.headers || a.body != b.body {
				t.Errorf("%s: answered at park %d %q %q; resumed %d %q %q", s.what, a.status, a.headers, a.body, b.status, b.headers, b.body)
			}
			if a.status < 200 || a.status > 299 {
				t.Errorf("%s: status %d", s.what, a.status)
			}
		}
	}
}

// TestDurableAppendWokenThroughRelay parks appends to a data_dir engine
// until their group commit and checks that the wakes (committed, answered at
// park time) come through the wake relay (ds_engine_wake_fd), taken by a
// later Handle or by the goroutine waiting on the descriptor, not by a call
// into Go from the committer thread, on platforms that have it.
func TestDurableAppendWokenThroughRelay(t *testing.T) {
	e := open(t, Options{DataDir: t.TempDir()})
	if e.wakeFile == nil {
		t.Skip("no wake relay on this platform")
	}
	text := map[Field]string{FieldContentType: "text/plain"}
	handle(t, e, request("PUT", "/v1/stream/r", "", text, ""), 0).Release()

	before := relayedWakes.Load()
	const appends = 20
	var wg sync.WaitGroup
	for range appends {
		wg.Go(func() {
			session, w := e.RegisterAppend()
			defer e.Unregister(session)
			req := request("POST", "/v1/stream/r", "", text, "x")
			req.AnswerAtPark = true
			parked := handle(t, e, req, session)
			defer parked.Release()
			if parked.Live() != LiveCommit || parked.Session() != session || parked.Status() != 204 {
				t.Errorf("append not parked with its answer: live %d session %d status %d", parked.Live(), parked.Session(), parked.Status())
				return
			}
			select {
			case <-w.Wake():
			case <-time.After(10 * time.Second):
				t.Error("the commit did not wake the append")
				return
			}
			if !w.Committed() {
				t.Error("woken, but not as committed")
			}
		})
	}
	wg.Wait()
	if got := relayedWakes.Load() - before; got < appends {
		t.Errorf("%d wakes came through the relay, want at least %d", got, appends)
	}
	resp := handle(t, e, request("GET", "/v1/stream/r", "offset=-1", nil, ""), 0)
	defer resp.Release()
	if string(resp.Body()) != strings.Repeat("x", appends) {
		t.Errorf("stream holds %q", resp.Body())
	}
}
