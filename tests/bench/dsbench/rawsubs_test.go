package main

import (
	"reflect"
	"strings"
	"testing"
)

// feedAll feeds resp to a fresh wire in two pieces cut at `at`, the way a
// subscriber does (feeding what is left after each call), and returns the
// body, the wire, the bytes left after the response and the first error.
func feedAll(resp string, at int) (string, *respWire, string, error) {
	var w respWire
	var body strings.Builder
	on := func(b []byte) { body.Write(b) }
	var rest strings.Builder
	for _, piece := range []string{resp[:at], resp[at:]} {
		p := []byte(piece)
		for len(p) > 0 {
			if w.done {
				rest.Write(p)
				break
			}
			n, err := w.feed(p, on)
			if err != nil {
				return body.String(), &w, rest.String(), err
			}
			p = p[n:]
		}
	}
	return body.String(), &w, rest.String(), nil
}

func TestRespWireChunkedAnySplit(t *testing.T) {
	events := "event: data\ndata: #fanout-0#\n\nevent: control\r\ndata: {\"streamNextOffset\":\"0_1\"}\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ntransfer-encoding: Chunked\r\n\r\n" +
		"c\r\n" + events[:12] + "\r\n" +
		"3;ext=1\r\n" + events[12:15] + "\r\n" +
		"43\r\n" + events[15:] + "\r\n" +
		"0\r\nX-Trailer: 1\r\n\r\n"
	if len(events[15:]) != 0x43 {
		t.Fatalf("test data: third chunk is %d bytes", len(events[15:]))
	}
	for at := 0; at <= len(resp); at++ {
		body, w, rest, err := feedAll(resp+"NEXT", at)
		if err != nil {
			t.Fatalf("split at %d: %v", at, err)
		}
		if body != events || rest != "NEXT" || !w.done || w.status != 200 || !w.chunked {
			t.Fatalf("split at %d: body %q rest %q done %v status %d chunked %v", at, body, rest, w.done, w.status, w.chunked)
		}
	}
}

func TestRespWireContentLengthAndHeaders(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nStream-Next-Offset: 0000_0010\r\nstream-cursor: 42\r\n\r\n#fanout-1#"
	for at := 0; at <= len(resp); at++ {
		body, w, rest, err := feedAll(resp+"HTTP/1.1 204", at)
		if err != nil || body != "#fanout-1#" || rest != "HTTP/1.1 204" || !w.done {
			t.Fatalf("split at %d: body %q rest %q done %v err %v", at, body, rest, w.done, err)
		}
		if w.nextOffset != "0000_0010" || w.cursor != "42" || w.closeAfter {
			t.Fatalf("split at %d: next %q cursor %q close %v", at, w.nextOffset, w.cursor, w.closeAfter)
		}
	}
}

func TestRespWireNoBody(t *testing.T) {
	// A 204 has no body whatever its headers say; the next response follows.
	resp := "HTTP/1.1 204 No Content\r\nStream-Next-Offset: 7\r\nConnection: close\r\n\r\n"
	for at := 0; at <= len(resp); at++ {
		body, w, rest, err := feedAll(resp+"X", at)
		if err != nil || body != "" || rest != "X" || !w.done || w.status != 204 || !w.closeAfter || w.nextOffset != "7" {
			t.Fatalf("split at %d: body %q rest %q done %v status %d close %v err %v", at, body, rest, w.done, w.status, w.closeAfter, err)
		}
	}
}

func TestRespWireUntilClose(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: a\ndata: b\n"
	for at := 0; at <= len(resp); at++ {
		body, w, _, err := feedAll(resp, at)
		if err != nil || body != "data: a\ndata: b\n" || w.chunked || w.done || w.length != -1 {
			t.Fatalf("split at %d: body %q err %v chunked %v done %v", at, body, err, w.chunked, w.done)
		}
	}
}

func TestRespWireRefusesBadFraming(t *testing.T) {
	for name, resp := range map[string]string{
		"not http":        "SSH-2.0-OpenSSH\r\n\r\n",
		"status":          "HTTP/1.1 abc OK\r\n\r\n",
		"header line":     "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"content length":  "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"chunk size":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"chunk ending":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
		"header too long": "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxRespHeader) + "\r\n",
	} {
		if _, _, _, err := feedAll(resp, len(resp)/2); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestLineSplitter(t *testing.T) {
	in := "event: data\ndata: x\r\n\r\npartial"
	for at := 0; at <= len(in); at++ {
		var l lineSplitter
		var got []string
		on := func(b []byte) { got = append(got, string(b)) }
		l.write([]byte(in[:at]), on)
		l.write([]byte(in[at:]), on)
		if want := []string{"event: data", "data: x", ""}; !reflect.DeepEqual(got, want) || string(l.line) != "partial" {
			t.Fatalf("split at %d: lines %q (pending %q)", at, got, l.line)
		}
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
