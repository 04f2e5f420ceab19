package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// SSE takeover (README, "SSE takeover"): over plain HTTP/1.1 the engine
// takes SSE connections over after their first piece; over h2c, and with
// `sse_takeover off`, goroutines serve them. Either way events arrive, the
// headers of earlier middleware are there, the metrics count every session,
// and clients that leave are forgotten.

const takeoverCaddyfile = `{
	admin off
	auto_https off
	grace_period 1s
	servers {
		protocols h1 h2c
	}
}

http://127.0.0.1:%%d {
	handle /health {
		respond "OK" 200
	}
	handle /metrics {
		metrics
	}
	route /v1/stream/* {
		header Access-Control-Allow-Origin https://app.example
		durable_streams {
			%s
		}
	}
}
`

const metricAdopted = "caddy_durable_streams_adopted_sessions"

func TestSSETakeover(t *testing.T) {
	binary(t)
	for _, tc := range []struct {
		option   string
		takeover bool
	}{
		{"sse_reconnect_interval 10m", true}, // on by default
		{"sse_takeover off", false},
	} {
		t.Run(tc.option, func(t *testing.T) {
			srv := startCaddyfile(t, fmt.Sprintf(takeoverCaddyfile, tc.option))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ctl := &http.Client{Timeout: 10 * time.Second}
			stream := srv.base + "/v1/stream/takeover"
			tail := put(t, ctl, stream)
			url := stream + "?offset=" + tail + "&live=sse"

			// The response's headers: the engine's and the header directive's.
			hctx, hcancel := context.WithCancel(ctx)
			req, _ := http.NewRequestWithContext(hctx, http.MethodGet, url, nil)
			res, err := ctl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
				t.Errorf("Access-Control-Allow-Origin %q, want the header directive's", got)
			}
			if res.Close != tc.takeover {
				t.Errorf("Connection: close is %v; want it exactly when the engine takes over", res.Close)
			}
			hcancel()
			res.Body.Close()
			srv.waitMetric(t, ctx, ctl, "the header check's session gone", metricParked, 0)

			h1 := newSSEReader()
			h2 := newSSEReader()
			h2c := &http.Transport{Protocols: new(http.Protocols)}
			h2c.Protocols.SetUnencryptedHTTP2(true)
			sseCtx, sseCancel := context.WithCancel(ctx)
			defer sseCancel()
			done := make(chan struct{}, 2)
			go func() { h1.run(sseCtx, &http.Client{}, url); done <- struct{}{} }()
			go func() { h2.run(sseCtx, &http.Client{Transport: h2c}, url); done <- struct{}{} }()
			waitAll(t, ctx, "the first control event", []*sseReader{h1, h2}, func(r *sseReader) <-chan struct{} { return r.ready })

			adopted := 0
			if tc.takeover {
				adopted = 1 // the HTTP/1.1 reader; h2c stays with Go
			}
			srv.waitMetric(t, ctx, ctl, "both readers live", metricLive, 2, `mode="sse"`)
			srv.waitMetric(t, ctx, ctl, "both readers parked", metricParked, 2)
			srv.waitMetric(t, ctx, ctl, "adopted readers", metricAdopted, adopted)

			post(t, ctl, stream, "hello")
			waitAll(t, ctx, `both readers to receive "hello"`, []*sseReader{h1, h2}, func(r *sseReader) <-chan struct{} { return r.event("hello") })

			sseCancel()
			<-done
			<-done
			srv.waitMetric(t, ctx, ctl, "readers gone (live)", metricLive, 0, `mode="sse"`)
			srv.waitMetric(t, ctx, ctl, "readers gone (engine)", metricParked, 0)
			srv.waitMetric(t, ctx, ctl, "readers gone (adopted)", metricAdopted, 0)
		})
	}
}
