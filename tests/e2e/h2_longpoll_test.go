package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Long-polls over TLS + HTTP/2, where no takeover applies: the request's
// goroutine parks and its engine calls, wait_ms timer and answer run on
// short-lived goroutines (caddymodule/serve.go, longPoll). Many polls share
// one connection, as a browser's do.
const h2LongPollCaddyfile = `{
	admin off
	skip_install_trust
	auto_https disable_redirects
	grace_period 1s
	servers {
		protocols h1 h2
	}
}
https://127.0.0.1:%d {
	tls internal
	handle /health {
		respond "OK" 200
	}
	handle /metrics {
		metrics
	}
	route /v1/stream/* {
		durable_streams {
			long_poll_timeout 3s
		}
	}
}
`

type h2Poll struct {
	proto, body string
	status      int
	header      http.Header
	err         error
}

// h2LongPoll sends one long-poll and reports its answer on the returned
// channel.
func h2LongPoll(ctx context.Context, c *http.Client, url string) <-chan h2Poll {
	out := make(chan h2Poll, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			out <- h2Poll{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- h2Poll{resp.Proto, string(b), resp.StatusCode, resp.Header, err}
	}()
	return out
}

func TestLongPollOverHTTP2(t *testing.T) {
	srv := h2Server(t, h2LongPollCaddyfile)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctl := &http.Client{Timeout: 10 * time.Second, Transport: h2Transport(nil)}
	defer ctl.CloseIdleConnections()
	h2 := &http.Client{Transport: h2Transport(nil)}
	defer h2.CloseIdleConnections()

	t.Run("answers and re-polls on one connection", func(t *testing.T) {
		stream := srv.base + "/v1/stream/h2lp"
		tail := put(t, ctl, stream)
		for i := range 5 {
			const polls = 3
			answers := make([]<-chan h2Poll, polls)
			for j := range answers {
				answers[j] = h2LongPoll(ctx, h2, stream+"?offset="+tail+"&live=long-poll")
			}
			srv.waitMetric(t, ctx, ctl, "the long-polls parked", metricLive, polls, `mode="long_poll"`)
			want := strings.Repeat(fmt.Sprintf("piece %d;", i), 100*(i+1))
			next := post(t, ctl, stream, want)
			for _, ch := range answers {
				a := <-ch
				if a.err != nil || a.proto != "HTTP/2.0" || a.status != http.StatusOK || a.body != want {
					t.Fatalf("answer %d over %s: %d, %d bytes, %v; want HTTP/2.0 200 with the %d appended", i, a.proto, a.status, len(a.body), a.err, len(want))
				}
				if got := a.header.Get("Stream-Next-Offset"); got != next {
					t.Fatalf("answer %d: Stream-Next-Offset %q; want %q", i, got, next)
				}
			}
			tail = next
		}
	})

	t.Run("the timeout answers 204, up to date", func(t *testing.T) {
		stream := srv.base + "/v1/stream/h2lp-timeout"
		tail := put(t, ctl, stream)
		start := time.Now()
		pctx, cancelPoll := context.WithTimeout(ctx, 15*time.Second)
		defer cancelPoll()
		a := <-h2LongPoll(pctx, h2, stream+"?offset="+tail+"&live=long-poll")
		if a.err != nil || a.status != http.StatusNoContent || a.body != "" {
			t.Fatalf("%d %q %v; want 204 with no body", a.status, a.body, a.err)
		}
		if a.header.Get("Stream-Up-To-Date") != "true" || a.header.Get("Stream-Next-Offset") != tail {
			t.Fatalf("Stream-Up-To-Date %q, Stream-Next-Offset %q; want true and %q", a.header.Get("Stream-Up-To-Date"), a.header.Get("Stream-Next-Offset"), tail)
		}
		if took := time.Since(start); took < 2900*time.Millisecond {
			t.Fatalf("answered after %v; want the 3 s long_poll_timeout", took)
		}
	})

	t.Run("a client that leaves ends its wait", func(t *testing.T) {
		stream := srv.base + "/v1/stream/h2lp-leave"
		tail := put(t, ctl, stream)
		srv.waitMetric(t, ctx, ctl, "no long-poll parked", metricLive, 0, `mode="long_poll"`)
		lctx, leave := context.WithCancel(ctx)
		answer := h2LongPoll(lctx, h2, stream+"?offset="+tail+"&live=long-poll")
		srv.waitMetric(t, ctx, ctl, "the long-poll parked", metricLive, 1, `mode="long_poll"`)
		leave()
		if a := <-answer; a.err == nil {
			t.Fatalf("the left long-poll answered %d", a.status)
		}
		// Gone well before the 3 s timeout would end it anyway.
		gone, cancelGone := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancelGone()
		srv.waitMetric(t, gone, ctl, "the left long-poll ended", metricLive, 0, `mode="long_poll"`)
	})
}
