package main

import (
	"reflect"
	"strings"
	"testing"
)

// feedSplit feeds resp to a fresh wire in two pieces cut at `at` and
// returns the lines seen, the wire and the first error.
func feedSplit(resp string, at int) ([]string, *sseWire, error) {
	var w sseWire
	var got []string
	on := func(l []byte) { got = append(got, string(l)) }
	if err := w.feed([]byte(resp[:at]), on); err != nil {
		return got, &w, err
	}
	return got, &w, w.feed([]byte(resp[at:]), on)
}

func TestSSEWireChunkedAnySplit(t *testing.T) {
	events := "event: data\ndata: #fanout-0#\n\nevent: control\r\ndata: {\"streamNextOffset\":\"0_1\"}\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ntransfer-encoding: Chunked\r\n\r\n" +
		"c\r\n" + events[:12] + "\r\n" +
		"3;ext=1\r\n" + events[12:15] + "\r\n" +
		"43\r\n" + events[15:] + "\r\n" +
		"0\r\n\r\n"
	if len(events[15:]) != 0x43 {
		t.Fatalf("test data: third chunk is %d bytes", len(events[15:]))
	}
	want := []string{"event: data", "data: #fanout-0#", "", "event: control", `data: {"streamNextOffset":"0_1"}`, ""}
	for at := 0; at <= len(resp); at++ {
		got, w, err := feedSplit(resp, at)
		if err != nil {
			t.Fatalf("split at %d: %v", at, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("split at %d: lines %q, want %q", at, got, want)
		}
		if !w.ended || w.status != 200 || !w.chunked {
			t.Fatalf("split at %d: ended %v status %d chunked %v", at, w.ended, w.status, w.chunked)
		}
	}
}

func TestSSEWireUnchunked(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: a\ndata: b\n"
	for at := 0; at <= len(resp); at++ {
		got, w, err := feedSplit(resp, at)
		if err != nil || !reflect.DeepEqual(got, []string{"data: a", "data: b"}) || w.chunked || w.ended {
			t.Fatalf("split at %d: lines %q err %v chunked %v ended %v", at, got, err, w.chunked, w.ended)
		}
	}
}

func TestSSEWireRefusesBadResponses(t *testing.T) {
	cases := map[string]string{
		"status":          "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
		"not http":        "SSH-2.0-OpenSSH\r\n\r\n",
		"chunk size":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"chunk ending":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
		"header too long": "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxSSEHeader) + "\r\n",
	}
	for name, resp := range cases {
		if _, _, err := feedSplit(resp, len(resp)/2); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, _, err := feedSplit(cases["status"], 5); err == nil || err.Error() != "SSE status 404" {
		t.Errorf("status error = %v, want \"SSE status 404\"", err)
	}
}

func TestResumeOffset(t *testing.T) {
	for line, want := range map[string]string{
		`data: {"streamNextOffset":"0000_0042","upToDate":true}`: "0000_0042",
		`data: {"streamNextOffset":""}`:                          "prev",
		`data: #fanout-3#`:                                       "prev",
		`data: {"streamNextOffset":"cut`:                         "prev",
	} {
		if got := resumeOffset([]byte(line), "prev"); got != want {
			t.Errorf("resumeOffset(%q) = %q, want %q", line, got, want)
		}
	}
}
