package caddymodule

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// ---- Limits and access, before the engine ------------------------------
//
// In order, so that the cheap checks protect the costly ones and nobody
// spends a group's budget without a valid token: the client address's
// request rate, the token (401/403), the group's request rate, the bytes
// rates, then the client's live sessions.

// rejectReason is why a request was refused here; the values of
// rejections_total's "reason" label, a fixed set.
type rejectReason int

const (
	rejectRateClient rejectReason = iota
	rejectRateGroup
	rejectBytesClient
	rejectBytesGroup
	rejectLiveSessions
	rejectTokenMissing
	rejectTokenInvalid
	rejectTokenScope
	rejectReasons
)

var rejectLabels = [rejectReasons]string{"rate_client", "rate_group", "bytes_client", "bytes_group",
	"live_sessions", "token_missing", "token_invalid", "token_scope"}

var (
	rejectionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "durable_streams",
		Name:      "rejections_total",
		Help:      rejectionsHelp,
	}, []string{"reason"})
	rejectionCounters = func() (cs [rejectReasons]prometheus.Counter) {
		for i := range cs {
			cs[i] = rejectionsTotal.WithLabelValues(rejectLabels[i])
		}
		return cs
	}()
)

// privateResponse marks, in a request's context, that its responses must
// not be stored by a shared cache: it carried a token (see shared_cache).
type privateResponse struct{}

// tokensInUse says some handler checks tokens, so responses look for
// privateResponse at all.
var tokensInUse atomic.Bool

// admit applies the limits and the token check to r. When r may not go on,
// it writes the refusal and returns its status. Otherwise it returns the
// request to serve (r, or a copy without the query token) and a function
// to call when it is done.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) (*http.Request, func(), int) {
	var client, group string
	rl := h.limits
	if rl != nil {
		client = clientAddress(r)
		if rl.client != nil {
			if ok, wait := rl.client.take(client, 1); !ok {
				return nil, nil, refuse(w, r, denial{http.StatusTooManyRequests, rejectRateClient, "too many requests from this client address", wait})
			}
		}
	}
	if v := h.tokens; v != nil && r.Method != http.MethodOptions && !selfAuthenticated(h.StreamRoot, r) {
		token, fromQuery, malformed := v.requestToken(r)
		switch {
		case malformed:
			return nil, nil, refuse(w, r, denial{status: http.StatusUnauthorized, reason: rejectTokenInvalid, message: "Authorization is not a Bearer token"})
		case token == "":
			return nil, nil, refuse(w, r, denial{status: http.StatusUnauthorized, reason: rejectTokenMissing, message: "a bearer token is required"})
		}
		scope, err := v.verify(token)
		if err != nil {
			return nil, nil, refuse(w, r, denial{status: http.StatusUnauthorized, reason: rejectTokenInvalid, message: err.Error()})
		}
		if ok, why := authorize(scope, r, h.StreamRoot, relativePath(h.StreamRoot, r.URL.Path)); !ok {
			return nil, nil, refuse(w, r, denial{status: http.StatusForbidden, reason: rejectTokenScope, message: why})
		}
		if fromQuery || !v.sharedCache {
			r = r.WithContext(context.WithValue(r.Context(), privateResponse{}, true))
		}
		if fromQuery {
			u := *r.URL
			r.URL = &u
			v.stripQueryToken(r)
		}
	}
	if rl == nil {
		return r, func() {}, 0
	}
	group = placementGroup(h.StreamRoot, r.URL.Path, rl.groupDepth)
	if rl.group != nil {
		if ok, wait := rl.group.take(group, 1); !ok {
			return nil, nil, refuse(w, r, denial{http.StatusTooManyRequests, rejectRateGroup, "too many requests to this group of streams", wait})
		}
	}
	if d := rl.admitBytes(r, client, group); d != nil {
		return nil, nil, refuse(w, r, *d)
	}
	if rl.live != nil && isLiveRead(r) {
		if !rl.live.enter(client) {
			return nil, nil, refuse(w, r, denial{http.StatusTooManyRequests, rejectLiveSessions, "too many live reads open from this client address", 0})
		}
		return r, func() { rl.live.leave(client) }, 0
	}
	return r, func() {}, 0
}

// refuse writes a refusal: status, a one-line text reason, Retry-After for
// 429 and WWW-Authenticate for 401. A browser (Origin) may read it.
func refuse(w http.ResponseWriter, r *http.Request, d denial) int {
	rejectionCounters[d.reason].Inc()
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	switch d.status {
	case http.StatusTooManyRequests:
		hdr.Set("Retry-After", retryAfterSeconds(d.retryAfter))
	case http.StatusUnauthorized:
		if d.reason == rejectTokenMissing {
			hdr.Set("WWW-Authenticate", `Bearer realm="durable-streams"`)
		} else {
			hdr.Set("WWW-Authenticate", `Bearer realm="durable-streams", error="invalid_token", error_description="`+
				strings.ReplaceAll(d.message, `"`, `'`)+`"`)
		}
	}
	if r.Header.Get("Origin") != "" && len(hdr["Access-Control-Allow-Origin"]) == 0 {
		hdr.Set("Access-Control-Allow-Origin", "*")
		hdr.Set("Access-Control-Expose-Headers", "Retry-After, WWW-Authenticate")
	}
	w.WriteHeader(d.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(d.message + "\n"))
	}
	return d.status
}

// markPrivate makes a response to a request with a token uncacheable by
// shared caches: "public" (and s-maxage) give way to
// "private".
func markPrivate(w http.ResponseWriter, r *http.Request) {
	if !tokensInUse.Load() {
		return
	}
	if private, _ := r.Context().Value(privateResponse{}).(bool); !private {
		return
	}
	hdr := w.Header()
	kept := []string{"private"}
	for _, v := range hdr.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			d = strings.TrimSpace(d)
			name, _, _ := strings.Cut(strings.ToLower(d), "=")
			if d == "" || name == "public" || name == "private" || name == "s-maxage" {
				continue
			}
			kept = append(kept, d)
		}
	}
	hdr.Set("Cache-Control", strings.Join(kept, ", "))
}

// chargeReadBody charges a body read without a Content-Length to the
// bytes limits (never refusing it: the next request pays).
func (h *Handler) chargeReadBody(r *http.Request, n int) {
	rl := h.limits
	if rl == nil || r.ContentLength >= 0 || (rl.clientBytes == nil && rl.groupBytes == nil) {
		return
	}
	rl.chargeBody(clientAddress(r), placementGroup(h.StreamRoot, r.URL.Path, rl.groupDepth), n)
}
