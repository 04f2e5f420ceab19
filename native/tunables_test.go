package native

import (
	"strings"
	"testing"
	"time"
)

// A reload changes the tunable options of an open engine: the next request
// and the next live session use the new values.
func TestSetTunables(t *testing.T) {
	e := open(t, Options{LongPollTimeout: 30 * time.Second, SSEReconnectInterval: 40 * time.Second, MaxAppendBytes: 1000})
	created := handle(t, e, request("PUT", "/v1/stream/t", "", map[Field]string{FieldContentType: "text/plain"}, ""), 0)
	tail := header(created, "Stream-Next-Offset")
	created.Release()

	tooLarge := func() string {
		r := request("POST", "/v1/stream/t", "", map[Field]string{FieldContentType: "text/plain"}, "")
		r.BodyTooLarge = true
		resp := handle(t, e, r, 0)
		defer resp.Release()
		if resp.Status() != 413 {
			t.Fatalf("too large append: %d; want 413", resp.Status())
		}
		return string(resp.Body())
	}
	// The wait of a parked read: its timeout (SSE: the reconnect interval,
	// capped by the 15 s keepalive, so the intervals here stay below it).
	wait := func(query string) time.Duration {
		session, _ := e.Register()
		defer e.Unregister(session)
		resp := handle(t, e, request("GET", "/v1/stream/t", "offset="+tail+"&"+query, nil, ""), session)
		defer resp.Release()
		defer e.Cancel(session)
		if resp.Live() == LiveNone {
			t.Fatalf("%s: not parked: %d", query, resp.Status())
		}
		return resp.Wait()
	}

	if msg := tooLarge(); !strings.Contains(msg, "(1000 bytes)") {
		t.Errorf("413 before the change: %q; want it to name 1000 bytes", msg)
	}
	if w := wait("live=long-poll"); w < 29*time.Second || w > 30*time.Second {
		t.Errorf("long-poll wait before the change: %v; want 30s", w)
	}

	if err := e.SetTunables(Tunables{LongPollTimeout: 3 * time.Second, SSEReconnectInterval: 2 * time.Second, MaxAppendBytes: 2048}); err != nil {
		t.Fatal(err)
	}
	if msg := tooLarge(); !strings.Contains(msg, "(2048 bytes)") {
		t.Errorf("413 after the change: %q; want it to name 2048 bytes", msg)
	}
	if w := wait("live=long-poll"); w < 2*time.Second || w > 3*time.Second {
		t.Errorf("long-poll wait after the change: %v; want 3s", w)
	}
	if w := wait("live=sse"); w < time.Second || w > 2*time.Second {
		t.Errorf("SSE wait after the change: %v; want the 2s reconnect interval", w)
	}
	if err := e.SetTunables(Tunables{LongPollTimeout: -1}); err == nil {
		t.Error("a negative tunable was accepted")
	}
	e.Close()
	if err := e.SetTunables(Tunables{}); err != ErrClosed {
		t.Errorf("SetTunables after Close: %v; want ErrClosed", err)
	}
}

// ResumeEnd answers a long-poll as its timeout would and ends an SSE
// response on a control event naming where to resume, with what was
// pending before it.
func TestResumeEnd(t *testing.T) {
	e := open(t, Options{LongPollTimeout: time.Minute, SSEReconnectInterval: time.Minute})
	created := handle(t, e, request("PUT", "/v1/stream/e", "", map[Field]string{FieldContentType: "text/plain"}, ""), 0)
	tail := header(created, "Stream-Next-Offset")
	created.Release()

	lp, _ := e.Register()
	defer e.Unregister(lp)
	handle(t, e, request("GET", "/v1/stream/e", "offset="+tail+"&live=long-poll", nil, ""), lp).Release()
	resp, err := e.Resume(lp, ResumeEnd)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Live() != LiveNone || resp.Status() != 204 || header(resp, "Stream-Next-Offset") != tail {
		t.Errorf("long-poll ended: live %d status %d offset %q; want 204 at %s", resp.Live(), resp.Status(), header(resp, "Stream-Next-Offset"), tail)
	}
	resp.Release()

	sse, _ := e.Register()
	defer e.Unregister(sse)
	first := handle(t, e, request("GET", "/v1/stream/e", "offset="+tail+"&live=sse", nil, ""), sse)
	if first.Live() != LiveStream || first.Done() {
		t.Fatalf("SSE not streaming: live %d done %v", first.Live(), first.Done())
	}
	first.Release()
	// Nothing new: the end is one control event at the tail.
	resp, err = e.Resume(sse, ResumeEnd)
	if err != nil {
		t.Fatal(err)
	}
	body := string(resp.Body())
	if !resp.Done() || !strings.HasPrefix(body, "event: control\n") || !strings.Contains(body, `"streamNextOffset":"`+tail+`"`) {
		t.Errorf("SSE ended at the tail: done %v body %q; want done after one control event at %s", resp.Done(), body, tail)
	}
	resp.Release()

	// Pending data goes out first, then the control event after it.
	sse2, _ := e.Register()
	defer e.Unregister(sse2)
	handle(t, e, request("GET", "/v1/stream/e", "offset="+tail+"&live=sse", nil, ""), sse2).Release()
	appended := handle(t, e, request("POST", "/v1/stream/e", "", map[Field]string{FieldContentType: "text/plain"}, "late"), 0)
	next := header(appended, "Stream-Next-Offset")
	appended.Release()
	resp, err = e.Resume(sse2, ResumeEnd)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	body = string(resp.Body())
	data, control := strings.Index(body, "data:late"), strings.LastIndex(body, `"streamNextOffset":"`+next+`"`)
	if !resp.Done() || data < 0 || control < data {
		t.Errorf("SSE ended with data pending: done %v body %q; want the data, then a control event at %s", resp.Done(), body, next)
	}
}
