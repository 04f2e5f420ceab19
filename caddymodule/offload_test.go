package caddymodule

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// goroutineID is the number runtime.Stack prints for the calling goroutine.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

func TestOffloadRunsOnAnotherGoroutineAndRaisesItsPanic(t *testing.T) {
	caller := goroutineID()
	var ran uint64
	offload(func() { ran = goroutineID() })
	if ran == 0 || ran == caller {
		t.Fatalf("offloaded call ran on goroutine %d, the caller is %d", ran, caller)
	}

	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Fatalf("recovered %v; want http.ErrAbortHandler raised again on the caller's goroutine", p)
		}
	}()
	offload(func() { panic(http.ErrAbortHandler) })
	t.Fatal("offload returned after a panic")
}

// The wake and the timer can end a wait at the same moment: the timer has
// fired when the next wait is armed. That fire must not end the next wait.
func TestLiveTimerFireOfAnEarlierArmingIsNotSeen(t *testing.T) {
	lt := new(liveTimer)
	defer lt.stop()
	lt.arm(time.Millisecond)
	select {
	case <-lt.fire:
	case <-time.After(5 * time.Second):
		t.Fatal("armed for 1ms, no fire in 5s")
	}
	lt.arm(time.Hour)
	select {
	case <-lt.fire:
		t.Fatal("the wait armed for an hour saw the earlier arming's fire")
	case <-time.After(20 * time.Millisecond):
	}
	lt.arm(time.Millisecond)
	select {
	case <-lt.fire:
	case <-time.After(5 * time.Second):
		t.Fatal("re-armed for 1ms, no fire in 5s")
	}
}

// goroutineEngine is a fakeEngine that notes on which goroutines Handle and
// Resume run.
type goroutineEngine struct {
	*fakeEngine
	mu      sync.Mutex
	handle  uint64
	resumes []uint64
}

func (e *goroutineEngine) Handle(req *native.Request, session uint64) (response, error) {
	e.mu.Lock()
	e.handle = goroutineID()
	e.mu.Unlock()
	return e.fakeEngine.Handle(req, session)
}

func (e *goroutineEngine) Resume(session uint64, reason native.ResumeReason) (response, error) {
	e.mu.Lock()
	e.resumes = append(e.resumes, goroutineID())
	e.mu.Unlock()
	return e.fakeEngine.Resume(session, reason)
}

// goroutineWriter notes on which goroutines the response is written.
type goroutineWriter struct {
	*recorder
	mu      sync.Mutex
	writers []uint64
}

func (w *goroutineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writers = append(w.writers, goroutineID())
	w.mu.Unlock()
	return w.recorder.Write(p)
}

// An SSE response over HTTP/2 parks its handler's goroutine between pieces:
// the engine calls and the writes run on short-lived goroutines, and what
// the client gets is the same.
func TestSSEOverHTTP2RunsEngineCallsAndWritesOffTheParkedGoroutine(t *testing.T) {
	e := &goroutineEngine{fakeEngine: newFakeEngine(
		&fakeResponse{status: 200, headers: [][2]string{{"Content-Type", "text/event-stream"}}, body: "event: a\n\n", live: native.LiveStream, wait: time.Minute},
		&fakeResponse{body: ": keepalive\n\n", live: native.LiveStream, wait: time.Minute},
		&fakeResponse{body: "event: c\n\n", live: native.LiveStream, done: true},
	)}
	h := testHandler(e)
	w := &goroutineWriter{recorder: newRecorder()}
	r := httptest.NewRequest(http.MethodGet, "/v1/stream/s?live=sse", nil)
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0

	handler := make(chan uint64, 1)
	done := make(chan error, 1)
	go func() {
		handler <- goroutineID()
		done <- h.ServeHTTP(w, r, nil)
	}()
	session := waitParked(t, e.fakeEngine)
	e.wake(session)
	waitParked(t, e.fakeEngine)
	e.wake(session)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeHTTP did not return")
	}

	if got := w.Body.String(); got != "event: a\n\n: keepalive\n\nevent: c\n\n" {
		t.Errorf("body %q", got)
	}
	reasons, cancels, released, registered := e.snapshot()
	if w.flushes < 3 || len(reasons) != 2 || len(cancels) != 0 || released != 3 || registered != 0 {
		t.Errorf("flushes %d, reasons %v, cancels %v, released %d, registered %d", w.flushes, reasons, cancels, released, registered)
	}
	id := <-handler
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.handle == 0 || e.handle == id {
		t.Errorf("Handle ran on goroutine %d, the handler's is %d", e.handle, id)
	}
	if len(e.resumes) != 2 {
		t.Fatalf("resumes on goroutines %v; want 2", e.resumes)
	}
	for _, g := range e.resumes {
		if g == id {
			t.Errorf("Resume ran on the handler's goroutine %d", id)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.writers) != 3 {
		t.Fatalf("writes on goroutines %v; want 3", w.writers)
	}
	for _, g := range w.writers {
		if g == id {
			t.Errorf("a piece was written on the handler's goroutine %d", id)
		}
	}
}

// A panic while writing a piece (http.ErrAbortHandler is how a handler
// aborts a response) still reaches the handler's goroutine, where net/http
// recovers it.
func TestSSEOverHTTP2PanicReachesTheHandlerGoroutine(t *testing.T) {
	e := newFakeEngine(&fakeResponse{status: 200, body: "event: a\n\n", live: native.LiveStream, wait: time.Minute})
	h := testHandler(e)
	w := &panickingWriter{recorder: newRecorder()}
	r := httptest.NewRequest(http.MethodGet, "/v1/stream/s?live=sse", nil)
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	got := make(chan any, 1)
	go func() {
		defer func() { got <- recover() }()
		_ = h.ServeHTTP(w, r, nil)
	}()
	select {
	case p := <-got:
		if err, _ := p.(error); !errors.Is(err, http.ErrAbortHandler) {
			t.Fatalf("handler goroutine recovered %v; want http.ErrAbortHandler", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeHTTP did not end")
	}
}

type panickingWriter struct{ *recorder }

func (w *panickingWriter) Write([]byte) (int, error) { panic(http.ErrAbortHandler) }
