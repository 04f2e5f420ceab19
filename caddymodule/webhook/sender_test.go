package webhook

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func testKeys(t *testing.T) *KeyRing {
	t.Helper()
	r, err := OpenKeyRing(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sendAndWait delivers d and waits for its result.
func sendAndWait(t *testing.T, s *Sender, d Delivery) Result {
	t.Helper()
	ch := make(chan Result, 1)
	if !s.Send(d, func(r Result) { ch <- r }) {
		t.Fatalf("Send(%s) refused", d.SubscriptionID)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("delivery to %s never finished", d.URL)
		return Result{}
	}
}

type seenRequest struct {
	method, contentType, userAgent, signature string
	body                                      []byte
	protoMajor                                int
}

func recordingServer(t *testing.T, answer string) (*httptest.Server, chan seenRequest) {
	seen := make(chan seenRequest, 100)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen <- seenRequest{r.Method, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"),
			r.Header.Get("Webhook-Signature"), body, r.ProtoMajor}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answer)
	}))
	return srv, seen
}

func TestSenderPostsSignedBody(t *testing.T) {
	keys := testKeys(t)
	srv, seen := recordingServer(t, `{"done":true}`)
	srv.Start()
	defer srv.Close()
	s := NewSender(SenderOptions{AllowDev: true, Keys: keys})
	defer s.Close()

	body := []byte(`{"subscription_id":"sub-1","wake_id":"w_1","generation":7}`)
	before := time.Now().Unix()
	res := sendAndWait(t, s, Delivery{SubscriptionID: "sub-1", URL: srv.URL + "/hook", Body: body})
	if res.Err != nil || res.Status != 200 || string(res.Body) != `{"done":true}` || res.Duration <= 0 {
		t.Fatalf("result %+v (%s)", res, res.Body)
	}
	r := <-seen
	if r.method != "POST" || r.contentType != "application/json" || r.userAgent != DefaultUserAgent || string(r.body) != string(body) {
		t.Fatalf("request %+v", r)
	}
	ts, kid, sig := parseSignature(t, r.signature)
	var set struct{ Keys []JWK }
	if err := json.Unmarshal(keys.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	pub, _ := b64.DecodeString(set.Keys[0].X)
	if kid != set.Keys[0].Kid || !ed25519.Verify(pub, append([]byte(ts+"."), body...), sig) {
		t.Errorf("signature %q does not verify with the JWKS key", r.signature)
	}
	if ts < fmt.Sprint(before) || len(ts) != len(fmt.Sprint(before)) {
		t.Errorf("t=%s, sent at %d", ts, before)
	}
}

func TestSenderHTTP2AndConnectionReuse(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			srv, seen := recordingServer(t, `ok`)
			var conns atomic.Int32
			srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					conns.Add(1)
				}
			}
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			defer srv.Close()
			pool := x509.NewCertPool()
			pool.AddCert(srv.Certificate())
			s := NewSender(SenderOptions{AllowDev: true, Keys: testKeys(t), TLSClientConfig: &tls.Config{RootCAs: pool}})
			defer s.Close()
			for i := 0; i < 5; i++ {
				if res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: srv.URL, Body: []byte("{}")}); res.Err != nil || res.Status != 200 {
					t.Fatalf("delivery %d: %+v", i, res)
				}
				if r := <-seen; (r.protoMajor == 2) != h2 {
					t.Fatalf("delivery %d used HTTP/%d", i, r.protoMajor)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("5 deliveries opened %d connections, want 1 (reused)", n)
			}
		})
	}
}

func TestSenderVerifiesTLS(t *testing.T) {
	srv, seen := recordingServer(t, `ok`)
	srv.StartTLS()
	defer srv.Close()
	s := NewSender(SenderOptions{AllowDev: true, Keys: testKeys(t)}) // system roots do not know httptest's CA
	defer s.Close()
	res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: srv.URL, Body: []byte("{}")})
	var unknown x509.UnknownAuthorityError
	if !errors.As(res.Err, &unknown) || res.Status != 0 || len(seen) != 0 {
		t.Errorf("untrusted certificate: %+v", res)
	}
}

func TestSenderCapsResponseBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("x", 1<<10)
		for i := 0; i < 1024; i++ {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	s := NewSender(SenderOptions{AllowDev: true, Keys: testKeys(t)})
	defer s.Close()
	res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: srv.URL, Body: []byte("{}")})
	if res.Err != nil || res.Status != 200 || len(res.Body) != MaxResponseBody {
		t.Errorf("1 MiB answer: err %v, status %d, %d bytes kept, want %d", res.Err, res.Status, len(res.Body), MaxResponseBody)
	}
}

func TestSenderDoesNotFollowRedirects(t *testing.T) {
	target, seen := recordingServer(t, `ok`)
	target.Start()
	defer target.Close()
	redirector := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redirector.Close()
	s := NewSender(SenderOptions{AllowDev: true, Keys: testKeys(t)})
	defer s.Close()
	res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: redirector.URL, Body: []byte("{}")})
	if res.Err != nil || res.Status != http.StatusTemporaryRedirect || len(seen) != 0 {
		t.Errorf("redirect: %+v, target saw %d requests", res, len(seen))
	}
}

func TestSenderRechecksURLAtSend(t *testing.T) {
	srv, seen := recordingServer(t, `ok`)
	srv.Start()
	defer srv.Close()
	s := NewSender(SenderOptions{AllowDev: false, Keys: testKeys(t)})
	defer s.Close()
	res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: srv.URL, Body: []byte("{}")})
	var re *RejectedError
	if !errors.As(res.Err, &re) || len(seen) != 0 {
		t.Errorf("http://127.0.0.1 without the development switch: %+v, receiver saw %d", res, len(seen))
	}
}

// An http URL to a public-looking name is refused at send time even under
// the development switch, although the dial-time check would let its
// loopback address through.
func TestSenderRechecksSchemeAtSend(t *testing.T) {
	srv, seen := recordingServer(t, `ok`)
	srv.Start()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	s := newSender(SenderOptions{AllowDev: true, Keys: testKeys(t)}, fakeDNS(t))
	defer s.Close()
	res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: "http://hooks.example.com:" + port + "/", Body: []byte("{}")})
	var re *RejectedError
	if !errors.As(res.Err, &re) || !strings.Contains(re.Reason, "scheme must be https") || len(seen) != 0 {
		t.Errorf("http to a public name: %+v, receiver saw %d", res, len(seen))
	}
}

// The whole delivery is bounded, not only the wait for headers: a receiver
// that answers its headers and then stalls the body is cut at Timeout.
func TestSenderTimeoutCoversTheAnswerBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"do`)
		w.(http.Flusher).Flush()
		<-release
	}))
	defer srv.Close()
	defer close(release) // before srv.Close, which waits for the handler
	s := NewSender(SenderOptions{AllowDev: true, Keys: testKeys(t), Timeout: 300 * time.Millisecond})
	defer s.Close()
	res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: srv.URL, Body: []byte("{}")})
	if res.Status != 200 || !errors.Is(res.Err, context.DeadlineExceeded) || res.Duration > 5*time.Second {
		t.Errorf("stalled answer body: %+v, want status 200 and a deadline error after ~300ms", res)
	}
}

func TestSenderUsesNoProxy(t *testing.T) {
	s := NewSender(SenderOptions{Keys: testKeys(t)})
	defer s.Close()
	if s.transport.Proxy != nil {
		t.Error("the transport consults a proxy; the dial-time check would not see the real destination")
	}
}

func TestSenderErrorsDoNotQuoteTheURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused from now on
	s := NewSender(SenderOptions{AllowDev: true, Keys: testKeys(t)})
	defer s.Close()
	res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: "http://" + addr + "/hook?secret=S3CR3T", Body: []byte("{}")})
	if res.Err == nil || strings.Contains(res.Err.Error(), "S3CR3T") || !strings.Contains(res.Err.Error(), addr) {
		t.Errorf("error %q: want it to name the host but not the query", res.Err)
	}
}

// blackhole accepts TCP connections, reads what is sent and never answers.
func blackhole(t *testing.T) string {
	url, _ := countingBlackhole(t)
	return url
}

// countingBlackhole also counts the requests that reached it (connections
// whose first bytes arrived).
func countingBlackhole(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	var requests atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err == nil {
					requests.Add(1)
				}
				io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String() + "/hook", &requests
}

func TestSenderBlackholedReceiverDoesNotDelayOthers(t *testing.T) {
	hole := blackhole(t)
	good, seen := recordingServer(t, `{"done":true}`)
	good.Start()
	defer good.Close()
	s := NewSender(SenderOptions{AllowDev: true, Keys: testKeys(t), Timeout: time.Minute})

	stuck := make(chan Result, 1)
	if !s.Send(Delivery{SubscriptionID: "stuck", URL: hole, Body: []byte("{}")}, func(r Result) { stuck <- r }) {
		t.Fatal("first delivery refused")
	}
	// Two other subscriptions each deliver 25 times in a row while the
	// blackholed one hangs; none of them may wait for it.
	start := time.Now()
	var wg sync.WaitGroup
	for _, sub := range []string{"b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				res := sendAndWait(t, s, Delivery{SubscriptionID: sub, URL: good.URL, Body: []byte("{}")})
				if res.Err != nil || res.Status != 200 {
					t.Errorf("%s delivery %d: %+v", sub, i, res)
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != 50 {
		t.Errorf("receiver saw %d deliveries, want 50", len(seen))
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("50 deliveries took %v beside a blackholed receiver", elapsed)
	}
	// One delivery per subscription: the stuck one cannot start another.
	if s.Send(Delivery{SubscriptionID: "stuck", URL: good.URL, Body: []byte("{}")}, func(Result) { t.Error("second delivery of a busy subscription ran") }) {
		t.Error("a second delivery of a subscription with one in flight was started")
	}
	closed := time.Now()
	s.Close()
	select {
	case r := <-stuck:
		if !errors.Is(r.Err, context.Canceled) {
			t.Errorf("stuck delivery ended with %v, want context.Canceled", r.Err)
		}
	default:
		t.Error("Close returned before the stuck delivery's done")
	}
	if d := time.Since(closed); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	if s.Send(Delivery{SubscriptionID: "late", URL: good.URL}, func(Result) {}) {
		t.Error("Send after Close started a delivery")
	}
}

func TestSenderBounds(t *testing.T) {
	hole, holeRequests := countingBlackhole(t)
	otherHole, otherRequests := countingBlackhole(t)
	good, _ := recordingServer(t, `ok`)
	good.Start()
	defer good.Close()
	s := NewSender(SenderOptions{AllowDev: true, Keys: testKeys(t), Timeout: time.Minute, MaxInFlight: 4, MaxInFlightPerHost: 2})
	defer s.Close()
	noop := func(Result) {}
	send := func(sub, url string) bool {
		return s.Send(Delivery{SubscriptionID: sub, URL: url, Body: []byte("{}")}, noop)
	}

	if !send("a", hole) || !send("b", hole) {
		t.Fatal("first two deliveries to one host refused")
	}
	if send("c", hole) {
		t.Error("a third delivery to the same host started beyond MaxInFlightPerHost=2")
	}
	if !send("d", otherHole) || !send("e", otherHole) {
		t.Fatal("deliveries to another host refused")
	}
	// Once the four requests are on the wire their goroutines all exist.
	for deadline := time.Now().Add(10 * time.Second); holeRequests.Load()+otherRequests.Load() < 4; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("the four deliveries never reached the blackholes")
		}
	}
	goroutines := runtime.NumGoroutine()
	for i := 0; i < 1000; i++ {
		if send(fmt.Sprintf("x%d", i), good.URL) {
			t.Fatalf("delivery %d started beyond MaxInFlight=4", i)
		}
	}
	if n := runtime.NumGoroutine(); n > goroutines+2 {
		t.Errorf("1000 refused sends grew goroutines from %d to %d", goroutines, n)
	}
	if got := s.InFlight(); got != 4 {
		t.Errorf("InFlight = %d, want 4", got)
	}
}

func TestSenderTimeout(t *testing.T) {
	hole := blackhole(t)
	s := NewSender(SenderOptions{AllowDev: true, Keys: testKeys(t), Timeout: 300 * time.Millisecond})
	defer s.Close()
	res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: hole, Body: []byte("{}")})
	var ne net.Error
	if !errors.As(res.Err, &ne) || !ne.Timeout() || res.Duration < 300*time.Millisecond || res.Duration > 5*time.Second {
		t.Errorf("blackholed receiver: %+v, want a timeout after ~300ms", res)
	}
	if s.InFlight() != 0 {
		t.Errorf("slot not freed after the timeout")
	}
}

// fakeDNS answers every A query for any name with 127.0.0.1 and every other
// query with no records: a name that looks public and rebinds to loopback.
func fakeDNS(t *testing.T) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			q := buf[:n]
			end := 12
			for end < n && q[end] != 0 {
				end += int(q[end]) + 1
			}
			end += 5 // root label, QTYPE, QCLASS
			if end > n {
				continue
			}
			qtype := binary.BigEndian.Uint16(q[end-4:])
			resp := append([]byte{}, q[:end]...)
			resp[2], resp[3] = 0x81, 0x80            // response, recursion desired+available, no error
			binary.BigEndian.PutUint16(resp[6:], 0)  // ANCOUNT
			binary.BigEndian.PutUint16(resp[8:], 0)  // NSCOUNT
			binary.BigEndian.PutUint16(resp[10:], 0) // ARCOUNT
			if qtype == 1 {
				binary.BigEndian.PutUint16(resp[6:], 1)
				resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1)
			}
			pc.WriteTo(resp, from)
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// DNS rebinding: hooks.example.com passes the create-time check, then
// resolves to 127.0.0.1; the dial-time check refuses it without the
// development switch. With the switch the same path connects, proving the
// fake resolver is what the dialer used.
func TestSenderDialCheckStopsDNSRebinding(t *testing.T) {
	srv, seen := recordingServer(t, `ok`)
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	url := "https://hooks.example.com:" + port + "/hook"
	if err := CheckURL(url, false); err != nil {
		t.Fatalf("CheckURL(%s) = %v; the test needs a URL that passes at create time", url, err)
	}
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "example.com"} // httptest's certificate names example.com
	for _, dev := range []bool{false, true} {
		s := newSender(SenderOptions{AllowDev: dev, Keys: testKeys(t), TLSClientConfig: tlsConf}, fakeDNS(t))
		res := sendAndWait(t, s, Delivery{SubscriptionID: "s", URL: url, Body: []byte("{}")})
		s.Close()
		var re *RejectedError
		if dev {
			if res.Err != nil || res.Status != 200 || len(seen) != 1 {
				t.Errorf("with the development switch: %+v", res)
			}
		} else if !errors.As(res.Err, &re) || !strings.Contains(re.Reason, "127.0.0.1 is loopback") || len(seen) != 0 {
			t.Errorf("rebinding to 127.0.0.1: %+v (%v), receiver saw %d", res, res.Err, len(seen))
		}
	}
}
