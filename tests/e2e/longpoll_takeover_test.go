package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Long-poll takeover (README, "Long-poll takeover"): over plain HTTP/1.1 a
// long-poll that must wait is handed to the engine, which writes the whole
// answer. Its bytes are net/http's for the same answer (the goroutine path,
// `long_poll_takeover off`) but for Date and the randomized Stream-Cursor,
// and the connection serves the client's next request as before; a client
// that asks for Connection: close gets it and the connection closes.

// pollConn is one client connection sending long-polls one after another.
type pollConn struct {
	conn net.Conn
	br   *bufio.Reader
	addr string
}

func dialPoll(t *testing.T, addr string) *pollConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &pollConn{conn: conn, br: bufio.NewReader(conn), addr: addr}
}

// poll sends a GET (with extra header lines), calls parked, and returns the
// raw answer: through the body's Content-Length, or the header's end.
func (p *pollConn) poll(t *testing.T, path, extra string, parked func()) string {
	t.Helper()
	_ = p.conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(p.conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: e2e\r\n%s\r\n", path, p.addr, extra)
	parked()
	return readHTTPAnswer(t, p.br)
}

// closedWithin says whether the server closes the connection within d.
func (p *pollConn) closedWithin(d time.Duration) bool {
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	_, err := p.br.ReadByte()
	return err == io.EOF || (err != nil && !errors.Is(err, os.ErrDeadlineExceeded))
}

var varying = regexp.MustCompile(`(?m)^(Date|Stream-Cursor): .*\r\n`)

func normalize(answer string) string { return varying.ReplaceAllString(answer, "$1: X\r\n") }

func nextOffset(t *testing.T, answer string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^Stream-Next-Offset: (\S+)\r$`).FindStringSubmatch(answer)
	if m == nil {
		t.Fatalf("no Stream-Next-Offset in\n%s", answer)
	}
	return m[1]
}

func TestLongPollTakeover(t *testing.T) {
	binary(t)
	answers := map[bool][3]string{}
	for _, tc := range []struct {
		option   string
		takeover bool
	}{
		{"long_poll_timeout 2s", true}, // on by default
		{"long_poll_timeout 2s\n\t\t\tlong_poll_takeover off", false},
	} {
		t.Run(tc.option, func(t *testing.T) {
			srv := startCaddyfile(t, fmt.Sprintf(takeoverCaddyfile, tc.option))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ctl := &http.Client{Timeout: 10 * time.Second}
			addr := strings.TrimPrefix(srv.base, "http://")
			stream := srv.base + "/v1/stream/lp"
			tail := put(t, ctl, stream)
			adopted := 0
			if tc.takeover {
				adopted = 1
			}
			pc := dialPoll(t, addr)
			// An append answers the parked poll with its bytes.
			data := pc.poll(t, "/v1/stream/lp?offset="+tail+"&live=long-poll", "", func() {
				srv.waitMetric(t, ctx, ctl, "the poll parked", metricParked, 1)
				srv.waitMetric(t, ctx, ctl, "the poll adopted", metricAdopted, adopted)
				post(t, ctl, stream, "hello")
			})
			if !strings.HasPrefix(data, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(data, "\r\n\r\nhello") ||
				!strings.Contains(data, "\r\nAccess-Control-Allow-Origin: https://app.example\r\n") {
				t.Errorf("answer to the append:\n%s", data)
			}
			// The next poll on the same connection times out: 204.
			none := pc.poll(t, "/v1/stream/lp?offset="+nextOffset(t, data)+"&live=long-poll", "", func() {})
			if !strings.HasPrefix(none, "HTTP/1.1 204 No Content\r\n") {
				t.Errorf("answer at the timeout:\n%s", none)
			}
			if pc.closedWithin(200 * time.Millisecond) {
				t.Errorf("the connection closed after a kept-alive answer")
			}
			// A client that asks for close gets it.
			closing := dialPoll(t, addr)
			last := closing.poll(t, "/v1/stream/lp?offset="+nextOffset(t, data)+"&live=long-poll", "Connection: close\r\n", func() {
				srv.waitMetric(t, ctx, ctl, "the closing poll adopted", metricAdopted, adopted)
				post(t, ctl, stream, "bye")
			})
			if !strings.Contains(last, "\r\nConnection: close\r\n") || !closing.closedWithin(5*time.Second) {
				t.Errorf("Connection: close asked for; got\n%s", last)
			}
			srv.waitMetric(t, ctx, ctl, "nothing left adopted", metricAdopted, 0)
			srv.waitMetric(t, ctx, ctl, "nothing left parked", metricParked, 0)
			answers[tc.takeover] = [3]string{data, none, last}
		})
	}
	on, off := answers[true], answers[false]
	if on[0] == "" || off[0] == "" {
		return
	}
	for i, what := range []string{"200", "204", "200 with Connection: close"} {
		if got, want := normalize(on[i]), normalize(off[i]); got != want {
			t.Errorf("%s: the engine's answer differs from net/http's\nengine:\n%s\nnet/http:\n%s", what, got, want)
		}
	}
}

// With response-rewriting middleware (encode) in the route the goroutine
// waits: the engine would write past it.
func TestLongPollTakeoverNotPastEncode(t *testing.T) {
	binary(t)
	srv := startCaddyfile(t, `{
	admin off
	auto_https off
	grace_period 1s
}

http://127.0.0.1:%d {
	handle /health {
		respond "OK" 200
	}
	handle /metrics {
		metrics
	}
	route /v1/stream/* {
		encode gzip
		durable_streams
	}
}
`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctl := &http.Client{Timeout: 10 * time.Second}
	stream := srv.base + "/v1/stream/enc"
	tail := put(t, ctl, stream)
	pc := dialPoll(t, strings.TrimPrefix(srv.base, "http://"))
	data := pc.poll(t, "/v1/stream/enc?offset="+tail+"&live=long-poll", "", func() {
		srv.waitMetric(t, ctx, ctl, "the poll parked", metricParked, 1)
		srv.waitMetric(t, ctx, ctl, "nothing adopted", metricAdopted, 0)
		post(t, ctl, stream, "hello")
	})
	if !strings.HasSuffix(data, "\r\n\r\nhello") {
		t.Errorf("answer:\n%s", data)
	}
}
