package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// A kept-alive long-poll lends the engine its connection's own socket (no
// duplicate) and gets the connection back for the client's next request
// (README, "Long-poll takeover"). These check that the same connection
// carries poll after poll, other requests, pipelined requests and requests
// sent while a poll is parked, and that a client that leaves mid-park
// leaves no descriptor behind.

const keepAliveOption = "long_poll_timeout 30s"

// openFDs counts the server's open descriptors.
func (s *server) openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Pid()))
	if err != nil {
		t.Fatalf("listing the server's descriptors: %v", err)
	}
	return len(entries)
}

// readHTTPAnswer reads one response (header, then a Content-Length body).
func readHTTPAnswer(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading an answer's header: %v (so far %q)", err, b.String())
		}
		b.WriteString(line)
		if n, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			fmt.Sscanf(n, "%d", &length)
		}
		if line == "\r\n" {
			break
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatalf("reading a body: %v", err)
	}
	b.Write(body)
	return b.String()
}

func wantAnswer(t *testing.T, what, answer, status, bodySuffix string) {
	t.Helper()
	if !strings.HasPrefix(answer, "HTTP/1.1 "+status+"\r\n") || !strings.HasSuffix(answer, bodySuffix) ||
		strings.Contains(answer, "\r\nConnection: close\r\n") {
		t.Fatalf("%s: want %s ending %q, kept alive; got\n%s", what, status, bodySuffix, answer)
	}
}

// keptAlive is a long-poll takeover server with keep-alive lending on, and
// one stream created on it.
type keptAlive struct {
	srv    *server
	ctx    context.Context
	ctl    *http.Client
	addr   string // host:port, for raw requests
	stream string // the stream's URL
	tail   string // its Stream-Next-Offset after the PUT
}

func startKeptAlive(t *testing.T, name string) keptAlive {
	t.Helper()
	binary(t)
	srv := startCaddyfile(t, fmt.Sprintf(takeoverCaddyfile, keepAliveOption))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ctl := &http.Client{Timeout: 10 * time.Second}
	stream := srv.base + "/v1/stream/" + name
	return keptAlive{srv, ctx, ctl, strings.TrimPrefix(srv.base, "http://"), stream, put(t, ctl, stream)}
}

func TestLongPollKeptConnectionCarriesManyPolls(t *testing.T) {
	k := startKeptAlive(t, "many")
	srv, ctx, ctl, addr, stream, offset := k.srv, k.ctx, k.ctl, k.addr, k.stream, k.tail
	pc := dialPoll(t, addr)
	fds := 0
	for i := range 40 {
		answer := pc.poll(t, "/v1/stream/many?offset="+offset+"&live=long-poll", "", func() {
			srv.waitMetric(t, ctx, ctl, fmt.Sprintf("poll %d adopted", i), metricAdopted, 1)
			post(t, ctl, stream, fmt.Sprintf("m%d", i))
		})
		wantAnswer(t, fmt.Sprintf("poll %d", i), answer, "200 OK", fmt.Sprintf("\r\n\r\nm%d", i))
		offset = nextOffset(t, answer)
		if i == 0 {
			// The fan-out's own descriptors (epoll, eventfd) exist now.
			srv.waitMetric(t, ctx, ctl, "the first poll given back", metricAdopted, 0)
			fds = srv.openFDs(t)
		}
	}
	srv.waitMetric(t, ctx, ctl, "every poll given back", metricAdopted, 0)
	if got := srv.openFDs(t); got != fds {
		t.Errorf("the server holds %d descriptors after 39 more polls on one connection; %d after the first", got, fds)
	}
	if pc.closedWithin(200 * time.Millisecond) {
		t.Errorf("the kept connection closed")
	}
}

func TestLongPollKeptConnectionServesOtherAndPipelinedRequests(t *testing.T) {
	k := startKeptAlive(t, "mixed")
	srv, ctx, ctl, addr, stream, tail := k.srv, k.ctx, k.ctl, k.addr, k.stream, k.tail
	pc := dialPoll(t, addr)
	send := func(raw string) {
		t.Helper()
		if _, err := io.WriteString(pc.conn, raw); err != nil {
			t.Fatalf("writing requests: %v", err)
		}
	}
	longPoll := func(offset string) string {
		return fmt.Sprintf("GET /v1/stream/mixed?offset=%s&live=long-poll HTTP/1.1\r\nHost: %s\r\n\r\n", offset, addr)
	}
	catchUp := fmt.Sprintf("GET /v1/stream/mixed?offset=-1 HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	appendReq := func(body string) string {
		return fmt.Sprintf("POST /v1/stream/mixed HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body)
	}
	_ = pc.conn.SetDeadline(time.Now().Add(time.Minute))

	// A poll the engine answers, then a catch-up read and an append on the
	// connection it gave back: net/http serves them as on any connection.
	send(longPoll(tail))
	srv.waitMetric(t, ctx, ctl, "the first poll adopted", metricAdopted, 1)
	post(t, ctl, stream, "a")
	first := readHTTPAnswer(t, pc.br)
	wantAnswer(t, "the first poll", first, "200 OK", "\r\n\r\na")
	send(catchUp)
	wantAnswer(t, "a catch-up read on the kept connection", readHTTPAnswer(t, pc.br), "200 OK", "\r\n\r\na")
	send(appendReq("b"))
	appended := readHTTPAnswer(t, pc.br)
	if !strings.HasPrefix(appended, "HTTP/1.1 204 No Content\r\n") {
		t.Fatalf("an append on the kept connection: got\n%s", appended)
	}

	// Pipelined: a catch-up read and a poll at the tail in one write. The
	// read is answered at once; the poll, with nothing behind it, parks in
	// the engine on the same connection.
	send(catchUp + longPoll(nextOffset(t, appended)))
	wantAnswer(t, "the pipelined catch-up read", readHTTPAnswer(t, pc.br), "200 OK", "\r\n\r\nab")
	srv.waitMetric(t, ctx, ctl, "the pipelined poll adopted", metricAdopted, 1)

	// Sent while that poll is parked: the next request waits in the socket
	// and is served once the engine has answered the poll.
	send(catchUp)
	post(t, ctl, stream, "c")
	wantAnswer(t, "the pipelined poll", readHTTPAnswer(t, pc.br), "200 OK", "\r\n\r\nc")
	wantAnswer(t, "the read sent while the poll was parked", readHTTPAnswer(t, pc.br), "200 OK", "\r\n\r\nabc")
	srv.waitMetric(t, ctx, ctl, "nothing left adopted", metricAdopted, 0)
	if pc.closedWithin(200 * time.Millisecond) {
		t.Errorf("the kept connection closed")
	}
}

func TestLongPollKeptConnectionClientLeavesWhileParked(t *testing.T) {
	k := startKeptAlive(t, "leave")
	srv, ctx, ctl, addr, stream, tail := k.srv, k.ctx, k.ctl, k.addr, k.stream, k.tail
	// One poll answered first, so the fan-out's own descriptors exist.
	warm := dialPoll(t, addr)
	first := warm.poll(t, "/v1/stream/leave?offset="+tail+"&live=long-poll", "", func() {
		srv.waitMetric(t, ctx, ctl, "the warm-up poll adopted", metricAdopted, 1)
		post(t, ctl, stream, "x")
	})
	wantAnswer(t, "the warm-up poll", first, "200 OK", "\r\n\r\nx")
	warm.conn.Close()
	srv.waitMetric(t, ctx, ctl, "the warm-up connection gone", metricAdopted, 0)
	fds := srv.openFDs(t)

	const n = 20
	polls := make([]*pollConn, n)
	for i := range polls {
		polls[i] = dialPoll(t, addr)
		fmt.Fprintf(polls[i].conn, "GET /v1/stream/leave?offset=%s&live=long-poll HTTP/1.1\r\nHost: %s\r\n\r\n", nextOffset(t, first), addr)
	}
	srv.waitMetric(t, ctx, ctl, "every poll adopted", metricAdopted, n)
	for _, p := range polls {
		p.conn.Close()
	}
	srv.waitMetric(t, ctx, ctl, "every poll dropped", metricAdopted, 0)
	srv.waitMetric(t, ctx, ctl, "nothing parked", metricParked, 0)
	// The engine gave the connections back to be closed; the server closes
	// each (its own descriptor, the one the engine borrowed).
	deadline := time.Now().Add(10 * time.Second)
	for srv.openFDs(t) != fds && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := srv.openFDs(t); got != fds {
		t.Errorf("the server holds %d descriptors after %d clients left mid-park; %d before", got, n, fds)
	}
}

// A fan-out's answered connections wait until every fan-out loop has
// written its part of the append (the engine holds them back; README,
// "Long-poll takeover"), then go back together: each client's next poll on
// its connection must still be served and parked, none lost, and answered
// with the same bytes as every other client's (but for Date and the
// cursor).
func TestLongPollKeptConnectionsReturnAfterEachWave(t *testing.T) {
	k := startKeptAlive(t, "waves")
	srv, ctx, ctl, addr, stream, tail := k.srv, k.ctx, k.ctl, k.addr, k.stream, k.tail
	const n, appends = 64, 4
	polls := make([]*pollConn, n)
	offsets := make([]string, n)
	for i := range polls {
		polls[i] = dialPoll(t, addr)
		_ = polls[i].conn.SetDeadline(time.Now().Add(time.Minute))
		offsets[i] = tail
	}
	for a := range appends {
		for i, p := range polls {
			fmt.Fprintf(p.conn, "GET /v1/stream/waves?offset=%s&live=long-poll HTTP/1.1\r\nHost: %s\r\n\r\n", offsets[i], addr)
		}
		srv.waitMetric(t, ctx, ctl, fmt.Sprintf("wave %d: every poll adopted", a), metricAdopted, n)
		body := fmt.Sprintf("wave-%d", a)
		post(t, ctl, stream, body)
		var first string
		for i, p := range polls {
			answer := readHTTPAnswer(t, p.br)
			wantAnswer(t, fmt.Sprintf("wave %d, client %d", a, i), answer, "200 OK", "\r\n\r\n"+body)
			if !strings.Contains(answer, fmt.Sprintf("\r\nContent-Length: %d\r\n", len(body))) {
				t.Fatalf("wave %d, client %d: want Content-Length %d; got\n%s", a, i, len(body), answer)
			}
			if i == 0 {
				first = normalize(answer)
			} else if got := normalize(answer); got != first {
				t.Fatalf("wave %d, client %d's answer differs from client 0's\n%s\nclient 0:\n%s", a, i, got, first)
			}
			offsets[i] = nextOffset(t, answer)
		}
	}
	// The last wave's connections are back too: a catch-up read on each is
	// answered at once.
	for i, p := range polls {
		fmt.Fprintf(p.conn, "GET /v1/stream/waves?offset=%s HTTP/1.1\r\nHost: %s\r\n\r\n", tail, addr)
		wantAnswer(t, fmt.Sprintf("client %d's catch-up read", i), readHTTPAnswer(t, p.br), "200 OK", "\r\n\r\nwave-0wave-1wave-2wave-3")
	}
	srv.waitMetric(t, ctx, ctl, "nothing left adopted", metricAdopted, 0)
}
