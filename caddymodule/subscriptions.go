package caddymodule

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/durable-streams-server/durable-streams-server/caddymodule/webhook"
	"github.com/durable-streams-server/durable-streams-server/native"
)

// Subscriptions (PROTOCOL.md §6–§7). The engine decides everything about
// them: membership, wakes, generations, leases, tokens, what each webhook
// delivery says and what its outcome means. This file only does what needs
// Go: the SSRF check of a webhook URL before the engine stores it (it knows
// the deployment's development switch), the signing keys and jwks.json,
// and sending the deliveries the engine queues (package webhook), then
// reporting each outcome back.

// subscriptionRuntime is the Go half of one engine's subscriptions, shared
// like the engine itself by every handler (and config) that uses it.
type subscriptionRuntime struct {
	engine *native.Engine
	keys   *webhook.KeyRing
	logger *zap.Logger

	// allowDev is the development switch (webhook_allow_dev) as the last
	// provisioned handler set it.
	allowDev atomic.Bool

	mu      sync.Mutex
	senders map[bool]*webhook.Sender // by allowDev, made on first use

	freed chan struct{} // a delivery finished: the backlog may move
	stop  chan struct{}
	done  chan struct{}
}

// openKeys opens the webhook signing keys for an engine's storage: kept in
// data_dir, or per process in memory.
func openKeys(dataDir string) (*webhook.KeyRing, error) {
	return webhook.OpenKeyRing(dataDir, caddy.Log().Named("durable_streams.webhook"))
}

func newSubscriptionRuntime(e *native.Engine, keys *webhook.KeyRing) *subscriptionRuntime {
	rt := &subscriptionRuntime{
		engine:  e,
		keys:    keys,
		logger:  caddy.Log().Named("durable_streams.webhook"),
		senders: make(map[bool]*webhook.Sender),
		freed:   make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go rt.deliver()
	return rt
}

// close stops the delivery loop and the senders (deliveries in flight are
// cancelled; the engine delivers their wakes again when their leases end).
func (rt *subscriptionRuntime) close() {
	close(rt.stop)
	<-rt.done
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, s := range rt.senders {
		s.Close()
	}
}

func (rt *subscriptionRuntime) sender() *webhook.Sender {
	dev := rt.allowDev.Load()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	s := rt.senders[dev]
	if s == nil {
		s = webhook.NewSender(webhook.SenderOptions{AllowDev: dev, Keys: rt.keys})
		rt.senders[dev] = s
	}
	return s
}

// deliver takes the deliveries the engine queued and sends them. The
// sender never blocks; what it cannot start now (its bounds, or a delivery
// of the same subscription in flight) waits in the backlog, newest per
// subscription only (an older wake is fenced anyway).
func (rt *subscriptionRuntime) deliver() {
	defer close(rt.done)
	var backlog []native.Webhook
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-rt.stop:
			return
		case <-rt.engine.WebhookSignal():
		case <-rt.freed:
		case <-tick.C:
		}
		for {
			jobs, err := rt.engine.TakeWebhooks(256)
			if err != nil {
				return // closed
			}
			backlog = append(backlog, jobs...)
			if len(jobs) < 256 {
				break
			}
		}
		if len(backlog) == 0 {
			continue
		}
		newest := make(map[string]int, len(backlog))
		for i, j := range backlog {
			newest[j.SubscriptionID] = i
		}
		sender := rt.sender()
		keep := backlog[:0]
		for i, j := range backlog {
			if newest[j.SubscriptionID] != i {
				continue
			}
			job := j
			ok := sender.Send(webhook.Delivery{SubscriptionID: job.SubscriptionID, URL: job.URL, Body: job.Body},
				func(res webhook.Result) { rt.report(job, res) })
			if !ok {
				keep = append(keep, j)
			}
		}
		backlog = keep
	}
}

// report hands a delivery's outcome to the engine and counts it.
func (rt *subscriptionRuntime) report(job native.Webhook, res webhook.Result) {
	transport := res.Err != nil && res.Status == 0
	result := "ok"
	switch {
	case transport:
		result = "transport_error"
	case res.Status < 200 || res.Status > 299:
		result = "http_error"
	}
	webhookDeliveries.WithLabelValues(result).Inc()
	webhookDuration.WithLabelValues(result).Observe(res.Duration.Seconds())
	if transport {
		// The error never holds the URL's path or query (package webhook).
		rt.logger.Debug("webhook delivery failed", zap.String("subscription", job.SubscriptionID), zap.Error(res.Err))
	}
	if err := rt.engine.WebhookResult(job, res.Status, res.Body, transport); err != nil {
		rt.logger.Debug("webhook result not recorded", zap.String("subscription", job.SubscriptionID), zap.Error(err))
	}
	select {
	case rt.freed <- struct{}{}:
	default:
	}
}

// isControlPath tells whether rel (relative to the stream root) is under
// the reserved __ds prefix.
func isControlPath(rel string) bool { return rel == "__ds" || strings.HasPrefix(rel, "__ds/") }

// selfAuthenticated tells whether r carries its own proof the engine
// checks (a callback, ack or release with a callback or claim token), or
// needs none (jwks.json is public): the module's bearer tokens do not apply.
func selfAuthenticated(root string, r *http.Request) bool {
	rel := relativePath(root, r.URL.Path)
	if !strings.HasPrefix(rel, "__ds/") {
		return false
	}
	if rel == "__ds/jwks.json" {
		return r.Method == http.MethodGet || r.Method == http.MethodHead
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(rel, "__ds/subscriptions/") {
		return false
	}
	rest := strings.TrimPrefix(rel, "__ds/subscriptions/")
	_, action, ok := strings.Cut(rest, "/")
	return ok && (action == "callback" || action == "ack" || action == "release")
}

// serveControl answers a request under <stream_root>/__ds.
func (h *Handler) serveControl(w http.ResponseWriter, r *http.Request, rel string) (int, error) {
	rt := h.subs
	if rel == "__ds/jwks.json" && r.Method != http.MethodOptions {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.WriteHeader(http.StatusMethodNotAllowed)
			return http.StatusMethodNotAllowed, nil
		}
		if rt == nil {
			w.WriteHeader(http.StatusNotFound)
			return http.StatusNotFound, nil
		}
		body := rt.keys.JWKS()
		hdr := w.Header()
		hdr.Set("Content-Type", "application/jwk-set+json")
		hdr.Set("Cache-Control", "public, max-age=300")
		hdr.Set("Access-Control-Allow-Origin", "*")
		hdr.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
		return http.StatusOK, nil
	}
	body, err := readBody(r, h.MaxAppendSize, h.bodies)
	if err != nil {
		return 0, caddyhttp.Error(http.StatusBadRequest, err)
	}
	defer body.release()
	if r.Method == http.MethodPut && strings.Count(rel, "/") == 2 && strings.HasPrefix(rel, "__ds/subscriptions/") {
		// §6.2, §12.8: the URL is checked against the SSRF rules before the
		// engine stores it.
		var cfg struct {
			Type    string `json:"type"`
			Webhook *struct {
				URL *string `json:"url"`
			} `json:"webhook"`
		}
		if json.Unmarshal(body.bytes(), &cfg) == nil && cfg.Type == "webhook" && cfg.Webhook != nil && cfg.Webhook.URL != nil {
			if err := webhook.CheckURL(*cfg.Webhook.URL, h.WebhookAllowDev); err != nil {
				reason := err.Error()
				if re, ok := err.(*webhook.RejectedError); ok {
					reason = re.Reason
				}
				return writeJSONError(w, http.StatusBadRequest, "WEBHOOK_URL_REJECTED", reason, "webhook.url"), nil
			}
		}
	}
	req := requests.Get().(*native.Request)
	defer func() {
		req.Reset()
		requests.Put(req)
	}()
	translate(req, r)
	if base := requestBase(r); base != "" {
		req.Set(native.FieldRequestBase, base) // callback_url and jwks_url are absolute
	}
	if v := r.Header.Get("Authorization"); v != "" {
		req.Set(native.FieldAuthorization, v)
	}
	if rt != nil {
		req.Set(native.FieldWebhookKID, rt.keys.ActiveKID())
	}
	req.Body, req.BodyTooLarge, req.BodyOverBudget = body.bytes(), body.tooLarge, body.overBudget
	resp, err := h.engine.Handle(req, 0)
	if err != nil {
		return 0, engineError(err)
	}
	defer resp.Release()
	return writeResponse(w, r, resp), nil
}

func writeJSONError(w http.ResponseWriter, status int, code, message, field string) int {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message, "field": field}})
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Access-Control-Allow-Origin", "*")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

// Subscription metrics: deliveries by result and their duration here; the
// engine's counts (subscriptions, leases, wakes) at scrape time.
var (
	webhookDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "durable_streams",
		Name:      "webhook_deliveries_total",
		Help:      `Webhook deliveries by result ("ok": a 2xx answer, "http_error": another status, "transport_error": no answer).`,
	}, []string{"result"})
	webhookDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy",
		Subsystem: "durable_streams",
		Name:      "webhook_delivery_duration_seconds",
		Help:      "Time from sending a webhook delivery to its answer (or failure), by result.",
		Buckets:   []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"result"})
	subscriptionStats = subscriptionCollector{
		subscriptions: prometheus.NewDesc("caddy_durable_streams_subscriptions",
			"Subscriptions, by storage.", []string{"storage"}, nil),
		leases: prometheus.NewDesc("caddy_durable_streams_subscription_leases",
			"Subscription leases held now (webhook wakes awaiting their callback, pull-wake claims), by storage.", []string{"storage"}, nil),
		wakes: prometheus.NewDesc("caddy_durable_streams_subscription_wakes_total",
			`Wakes issued since the engine opened, by storage and type ("webhook", "pull-wake").`, []string{"storage", "type"}, nil),
	}
)

type subscriptionCollector struct{ subscriptions, leases, wakes *prometheus.Desc }

func (c subscriptionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.subscriptions
	ch <- c.leases
	ch <- c.wakes
}

func (c subscriptionCollector) Collect(ch chan<- prometheus.Metric) {
	rangeEngines(func(key string, e *native.Engine) {
		s := e.Stats()
		ch <- prometheus.MustNewConstMetric(c.subscriptions, prometheus.GaugeValue, float64(s.Subscriptions), key)
		ch <- prometheus.MustNewConstMetric(c.leases, prometheus.GaugeValue, float64(s.SubscriptionLeases), key)
		ch <- prometheus.MustNewConstMetric(c.wakes, prometheus.CounterValue, float64(s.WakesWebhook), key, "webhook")
		ch <- prometheus.MustNewConstMetric(c.wakes, prometheus.CounterValue, float64(s.WakesPull), key, "pull-wake")
	})
}
