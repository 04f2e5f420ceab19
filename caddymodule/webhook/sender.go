package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of SenderOptions.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxInFlight = 256
	// MaxResponseBody is how much of a receiver's answer is read: enough for
	// `{"done": true}` and an error message, never a memory sink.
	MaxResponseBody = 64 << 10
	// DefaultUserAgent names us to receivers.
	DefaultUserAgent = "durable-streams-server-webhook/1"
)

// Delivery is one webhook POST: Body is the exact JSON wake body, signed as
// sent.
type Delivery struct {
	SubscriptionID, URL string
	Body                []byte
}

// Result is how a delivery ended. Status is the receiver's HTTP status (0 if
// none arrived); Body its first MaxResponseBody bytes; Err a transport
// failure, a timeout, a *RejectedError from the SSRF checks, or
// context.Canceled after Close. Err and Status can both be set when the
// answer's body failed mid-way. Errors never contain the URL's path or query,
// which may carry secrets.
type Result struct {
	Status   int
	Body     []byte
	Err      error
	Duration time.Duration
}

// SenderOptions configure a Sender; zero values take the defaults.
type SenderOptions struct {
	// AllowDev is the development switch: http and https to localhost and
	// 127.0.0.x are allowed, and loopback addresses may be dialed.
	AllowDev bool
	// Timeout bounds a whole delivery: dial, TLS, request and the answer's
	// body (default 10 s).
	Timeout time.Duration
	// MaxInFlight bounds deliveries in flight at once, all subscriptions
	// together (default 256).
	MaxInFlight int
	// Keys sign every body (required).
	Keys *KeyRing
	// MaxInFlightPerHost bounds deliveries in flight to one host:port, so
	// many subscriptions pointing at one blackholed receiver cannot take every
	// slot from the others (default MaxInFlight/4, at least 1).
	MaxInFlightPerHost int
	// TLSClientConfig replaces the TLS settings (tests trust their own CA
	// with it); nil means the system roots, TLS 1.2 or later.
	TLSClientConfig *tls.Config
	// UserAgent is sent with every delivery (default DefaultUserAgent).
	UserAgent string
}

// Sender posts signed webhook deliveries with Go's HTTP client: TLS verified,
// HTTP/2 when the receiver offers it, connections reused, no proxies and no
// redirects followed, every dialed address checked against the SSRF rules.
// Send never blocks and each delivery runs on its own goroutine, so at most
// MaxInFlight goroutines exist, at most one per subscription.
type Sender struct {
	opts      SenderOptions
	transport *http.Transport
	client    *http.Client
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	inFlight int
	bySub    map[string]struct{}
	byHost   map[string]int
}

// NewSender builds a Sender. It panics without Keys: unsigned deliveries are
// a programming error, not a runtime condition.
func NewSender(opts SenderOptions) *Sender { return newSender(opts, nil) }

// newSender takes the resolver the dialer uses (tests point it at a fake DNS
// server to show rebinding is caught at connect time).
func newSender(opts SenderOptions, resolver *net.Resolver) *Sender {
	if opts.Keys == nil {
		panic("webhook.NewSender: SenderOptions.Keys is required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.MaxInFlightPerHost <= 0 {
		opts.MaxInFlightPerHost = max(1, opts.MaxInFlight/4)
	}
	if opts.UserAgent == "" {
		opts.UserAgent = DefaultUserAgent
	}
	s := &Sender{opts: opts, bySub: map[string]struct{}{}, byHost: map[string]int{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.transport = newTransport(opts, resolver)
	s.client = &http.Client{
		Transport: s.transport,
		// A redirect would leave the URL that was checked at create time
		// (and could downgrade to http); the 3xx itself is the answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

func newTransport(opts SenderOptions, resolver *net.Resolver) *http.Transport {
	stepTimeout := min(5*time.Second, opts.Timeout)
	dialer := &net.Dialer{
		Timeout:   stepTimeout,
		KeepAlive: 30 * time.Second,
		Resolver:  resolver,
		// Control runs after DNS, on the address about to be connected to,
		// for every address tried: DNS rebinding cannot get around it.
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return rejectf("cannot parse dialed address")
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return rejectf("dialed address %q is not an IP address", host)
			}
			return checkDialedAddr(ip, opts.AllowDev)
		},
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.TLSClientConfig != nil {
		tlsConfig = opts.TLSClientConfig.Clone()
	}
	return &http.Transport{
		// No proxy, whatever HTTP(S)_PROXY say: a proxy would connect on our
		// behalf, to addresses the dial-time check never sees.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConfig,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    stepTimeout,
		ResponseHeaderTimeout:  opts.Timeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           opts.MaxInFlight,
		MaxIdleConnsPerHost:    opts.MaxInFlightPerHost,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// Send starts delivering d and returns true, or returns false at once without
// starting anything when MaxInFlight deliveries are in flight, when
// MaxInFlightPerHost are in flight to d's host, when d's subscription already
// has a delivery in flight, or after Close: the caller keeps the work and
// tries again later (each done frees a slot). done is called exactly once,
// on the delivery's goroutine, after its slot is freed (so done may Send
// again).
func (s *Sender) Send(d Delivery, done func(Result)) bool {
	host := hostKey(d.URL)
	s.mu.Lock()
	if s.closed || s.inFlight >= s.opts.MaxInFlight || s.byHost[host] >= s.opts.MaxInFlightPerHost {
		s.mu.Unlock()
		return false
	}
	if _, busy := s.bySub[d.SubscriptionID]; busy {
		s.mu.Unlock()
		return false
	}
	s.inFlight++
	s.byHost[host]++
	s.bySub[d.SubscriptionID] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()

	go func() {
		defer s.wg.Done()
		start := time.Now()
		res := s.post(d)
		res.Duration = time.Since(start)
		s.release(d.SubscriptionID, host)
		done(res)
	}()
	return true
}

func (s *Sender) release(sub, host string) {
	s.mu.Lock()
	s.inFlight--
	if s.byHost[host]--; s.byHost[host] <= 0 {
		delete(s.byHost, host)
	}
	delete(s.bySub, sub)
	s.mu.Unlock()
}

// InFlight is how many deliveries are in flight now.
func (s *Sender) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// Close cancels every delivery in flight (their done gets context.Canceled),
// waits until each done has returned, and makes later Sends return false.
// done must not wait for Close.
func (s *Sender) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.transport.CloseIdleConnections()
}

// hostKey is what MaxInFlightPerHost counts by: scheme, lower-cased host and
// port as written (the address a name resolves to is not known yet).
func hostKey(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + strings.ToLower(u.Host)
}

func (s *Sender) post(d Delivery) Result {
	// Checked again on every send: the subscription may have been created
	// under the development switch by an earlier run.
	if err := CheckURL(d.URL, s.opts.AllowDev); err != nil {
		return Result{Err: err}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return Result{Err: fmt.Errorf("webhook: build request: %w", redactURLError(err))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.opts.UserAgent)
	req.Header.Set("Webhook-Signature", s.opts.Keys.Sign(d.Body, time.Now()))
	resp, err := s.client.Do(req)
	if err != nil {
		return Result{Err: fmt.Errorf("webhook POST to %s: %w", req.URL.Host, redactURLError(err))}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
	res := Result{Status: resp.StatusCode, Body: body}
	if err != nil {
		res.Err = fmt.Errorf("webhook POST to %s: read answer: %w", req.URL.Host, err)
	}
	return res
}

// redactURLError drops *url.Error's wrapper, which quotes the whole URL
// (its query may hold a receiver's secret), keeping the operation's cause.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
