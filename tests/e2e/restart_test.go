package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Durability requirement: with data_dir, everything a client was told about
// (streams, their bytes, metadata, closure, lifetimes, forks, producer
// state) is the same after a clean restart and after kill -9.
//
// This file also holds the helpers the other durability tests share (node,
// send, readStream, headSnapshot).

func TestRestartKeepsEverything(t *testing.T) {
	binary(t)
	n := newNode(t, filepath.Join(t.TempDir(), "data"), "fsync always")
	n.start()
	c := n.client

	fx := buildRestartFixture(t, n)
	before := fx.snapshot(t, n)
	t.Logf("%d streams; %d bytes in %d pages read before restarting", len(fx.paths), before.bytes(), before.pages())
	// The snapshot must hold what is being compared, or equality proves little.
	for _, c := range []struct{ stream, header, want string }{
		{"ttl", "Stream-Ttl", "3600"},
		{"closed", "Stream-Closed", "true"},
		{"binary", "Content-Type", "application/octet-stream"},
		{"json", "Content-Type", "application/json"},
		{"fork", "Content-Type", "text/plain"},
		{"deleted", ":status", "404"},
		{"text", ":status", "200"},
	} {
		if got := before[c.stream].head[c.header]; got != c.want {
			t.Fatalf("before restarting: HEAD %s: %s %q; want %q", c.stream, c.header, got, c.want)
		}
	}
	if before["expires"].head["Stream-Expires-At"] == "" {
		t.Fatalf("before restarting: HEAD expires has no Stream-Expires-At")
	}

	n.terminate()
	n.start()
	fx.compare(t, "after SIGTERM and restart", before, fx.snapshot(t, n))

	n.kill()
	n.start()
	fx.compare(t, "after SIGKILL and restart", before, fx.snapshot(t, n))
	if t.Failed() {
		return
	}

	// Closure survived: an append to the closed stream is still refused.
	r := mustSend(t, c, http.MethodPost, n.url("closed"), map[string]string{"Content-Type": "text/plain"}, []byte("late"))
	if r.status != http.StatusConflict {
		t.Errorf("POST to the closed stream after restart: %d %q; want 409", r.status, r.body)
	}

	// The retry of the producer's closing append is a duplicate, not a
	// conflict with the closure; anything after it is refused.
	cbp := n.url("closed-by-producer")
	r = mustSend(t, c, http.MethodPost, cbp, closingHeaders("closer", 0, 1), []byte("z\n"))
	if r.status != http.StatusNoContent || r.header.Get("Stream-Closed") != "true" {
		t.Errorf("retry of the closing append after restart: %d Stream-Closed %q %q; want 204 with Stream-Closed: true", r.status, r.header.Get("Stream-Closed"), r.body)
	}
	r = mustSend(t, c, http.MethodPost, cbp, producerHeaders("text/plain", "closer", 0, 2), []byte("late\n"))
	if r.status == http.StatusOK || r.status == http.StatusNoContent {
		t.Errorf("an append after the producer closed the stream, after restart: %d; want it refused", r.status)
	}
	if got := readStream(t, c, cbp).data; string(got) != "a\nz\n" {
		t.Errorf("closed-by-producer after the retries: %q", got)
	}

	// Producer state survived: the last acknowledged seq is a duplicate, the
	// next one is new, a gap names the expected seq.
	prod := n.url("producer")
	r = mustSend(t, c, http.MethodPost, prod, producerHeaders("text/plain", "prod-1", 3, 4), []byte("p4\n"))
	if r.status != http.StatusNoContent {
		t.Errorf("producer retry of the last acknowledged seq 4 after restart: %d %q; want 204", r.status, r.body)
	}
	r = mustSend(t, c, http.MethodPost, prod, producerHeaders("text/plain", "prod-1", 3, 5), []byte("p5\n"))
	if r.status != http.StatusOK {
		t.Errorf("producer seq 5 after restart: %d %q; want 200", r.status, r.body)
	}
	r = mustSend(t, c, http.MethodPost, prod, producerHeaders("text/plain", "prod-1", 3, 7), []byte("p7\n"))
	if r.status != http.StatusConflict || r.header.Get("Producer-Expected-Seq") != "6" {
		t.Errorf("producer seq 7 after 5: %d Producer-Expected-Seq %q; want 409 with 6", r.status, r.header.Get("Producer-Expected-Seq"))
	}
	r = mustSend(t, c, http.MethodPost, prod, producerHeaders("text/plain", "prod-1", 2, 6), []byte("stale\n"))
	if r.status != http.StatusForbidden {
		t.Errorf("producer with a stale epoch 2 after restart: %d %q; want 403", r.status, r.body)
	}
	want := "p0\np1\np2\np3\np4\np5\n"
	if got := readStream(t, c, prod).data; string(got) != want {
		t.Errorf("producer stream after the retries: %q; want %q", got, want)
	}
	// Every producer id shape kept its state.
	long := n.url("producers-long")
	wantLong := string(readStream(t, c, long).data)
	for _, lp := range longProducers() {
		r = mustSend(t, c, http.MethodPost, long, producerHeaders("text/plain", lp.id, lp.epoch, lp.last), []byte("dup\n"))
		if r.status != http.StatusNoContent {
			t.Errorf("producer %s: retry of its last seq %d after restart: %d %q; want 204", lp.label, lp.last, r.status, r.body)
		}
		line := fmt.Sprintf("%s %d\n", lp.label, lp.last+1)
		r = mustSend(t, c, http.MethodPost, long, producerHeaders("text/plain", lp.id, lp.epoch, lp.last+1), []byte(line))
		if r.status != http.StatusOK {
			t.Errorf("producer %s: seq %d after restart: %d %q; want 200", lp.label, lp.last+1, r.status, r.body)
		}
		wantLong += line
	}
	if got := readStream(t, c, long).data; string(got) != wantLong {
		t.Errorf("producers-long after the retries: %q; want %q", got, wantLong)
	}

	// ... and once more across a kill.
	n.kill()
	n.start()
	if got := readStream(t, c, prod).data; string(got) != want {
		t.Errorf("producer stream after another SIGKILL: %q; want %q", got, want)
	}
	r = mustSend(t, c, http.MethodPost, prod, producerHeaders("text/plain", "prod-1", 3, 5), []byte("p5\n"))
	if r.status != http.StatusNoContent {
		t.Errorf("producer retry of seq 5 after another SIGKILL: %d %q; want 204", r.status, r.body)
	}
}

type longProducer struct {
	label string
	id    string
	epoch int
	last  int // last seq acknowledged before the restarts
}

func longProducers() []longProducer {
	prefix := strings.Repeat("L", 400)
	return []longProducer{
		{"short", "s", 0, 1},
		{"exactly-400", strings.Repeat("E", 400), 2, 0},
		{"long-a", prefix + "A" + strings.Repeat("a", 99), 1, 2},
		{"long-b", prefix + "B" + strings.Repeat("b", 599), 5, 1},
	}
}

// restartFixture is the set of streams TestRestartKeepsEverything creates.
type restartFixture struct {
	paths []string          // stream names under /v1/stream/
	want  map[string][]byte // exact bytes a full read must return (raw streams only)
	gone  []string          // deleted streams: 404
}

func buildRestartFixture(t *testing.T, n *node) *restartFixture {
	t.Helper()
	c := n.client
	fx := &restartFixture{want: map[string][]byte{}}
	create := func(name string, hdr map[string]string, body []byte) reply {
		t.Helper()
		fx.paths = append(fx.paths, name)
		r := mustSend(t, c, http.MethodPut, n.url(name), hdr, body)
		if r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %q; want 201", name, r.status, r.body)
		}
		return r
	}
	appendTo := func(name string, hdr map[string]string, body []byte, want int) reply {
		t.Helper()
		r := mustSend(t, c, http.MethodPost, n.url(name), hdr, body)
		if r.status != want {
			t.Fatalf("POST %s: %d %q; want %d", name, r.status, r.body, want)
		}
		return r
	}
	text := map[string]string{"Content-Type": "text/plain"}
	octets := map[string]string{"Content-Type": "application/octet-stream"}
	jsonCT := map[string]string{"Content-Type": "application/json"}

	// Text, appended line by line; the fork below branches inside it.
	create("text", text, []byte("line 0\n"))
	var textData bytes.Buffer
	textData.WriteString("line 0\n")
	var forkAnchor string
	for i := 1; i < 10; i++ {
		line := fmt.Sprintf("line %d\n", i)
		r := appendTo("text", text, []byte(line), http.StatusNoContent)
		textData.WriteString(line)
		if i == 2 {
			forkAnchor = r.header.Get("Stream-Next-Offset") // after "line 2\n": byte 21
		}
	}
	fx.want["text"] = textData.Bytes()

	// Binary: every byte value, forwards, backwards and forwards again.
	var all, rev []byte
	for b := 0; b < 256; b++ {
		all = append(all, byte(b))
		rev = append(rev, byte(255-b))
	}
	create("binary", octets, all)
	appendTo("binary", octets, rev, http.StatusNoContent)
	appendTo("binary", octets, all, http.StatusNoContent)
	fx.want["binary"] = bytes.Join([][]byte{all, rev, all}, nil)

	// JSON: several messages over several requests.
	jsonAnchor := create("json", jsonCT, []byte(`[{"n":0},{"n":1,"s":"é"}]`)).header.Get("Stream-Next-Offset")
	appendTo("json", jsonCT, []byte(`{"n":2,"nested":{"a":[1,2,3]}}`), http.StatusNoContent)
	appendTo("json", jsonCT, []byte(`[{"n":3},{"n":4,"s":"\u0000\n"}]`), http.StatusNoContent)

	// Closed, with data before the close.
	create("closed", text, []byte("a"))
	appendTo("closed", text, []byte("b"), http.StatusNoContent)
	appendTo("closed", map[string]string{"Content-Type": "text/plain", "Stream-Closed": "true"}, []byte("c"), http.StatusNoContent)
	fx.want["closed"] = []byte("abc")

	// Closed by a producer's last append (closure and producer state are
	// committed together).
	create("closed-by-producer", text, nil)
	appendTo("closed-by-producer", producerHeaders("text/plain", "closer", 0, 0), []byte("a\n"), http.StatusOK)
	appendTo("closed-by-producer", closingHeaders("closer", 0, 1), []byte("z\n"), http.StatusOK)
	fx.want["closed-by-producer"] = []byte("a\nz\n")

	// Lifetimes.
	create("ttl", map[string]string{"Content-Type": "text/plain", "Stream-TTL": "3600"}, []byte("ttl"))
	fx.want["ttl"] = []byte("ttl")
	expires := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	create("expires", map[string]string{"Content-Type": "text/plain", "Stream-Expires-At": expires}, []byte("exp"))
	fx.want["expires"] = []byte("exp")

	// Empty.
	create("empty", text, nil)
	fx.want["empty"] = []byte{}

	// Producer state: prod-1 epoch 3 has acknowledged seqs 0..4.
	create("producer", text, nil)
	var prodData bytes.Buffer
	for seq := 0; seq < 5; seq++ {
		line := fmt.Sprintf("p%d\n", seq)
		appendTo("producer", producerHeaders("text/plain", "prod-1", 3, seq), []byte(line), http.StatusOK)
		prodData.WriteString(line)
	}
	fx.want["producer"] = prodData.Bytes()

	// Producer ids of every key shape (STORAGE_FORMAT.md, Producer keys):
	// short, exactly 400 bytes (inline), and two longer ones sharing their
	// first 400 bytes (hashed keys).
	create("producers-long", text, nil)
	var longData bytes.Buffer
	for _, lp := range longProducers() {
		for seq := 0; seq <= lp.last; seq++ {
			line := fmt.Sprintf("%s %d\n", lp.label, seq)
			appendTo("producers-long", producerHeaders("text/plain", lp.id, lp.epoch, seq), []byte(line), http.StatusOK)
			longData.WriteString(line)
		}
	}
	fx.want["producers-long"] = longData.Bytes()

	// A fork of "text" at the offset after "line 2\n" plus a sub-offset of 3
	// bytes ("lin"), with its own data.
	create("fork", map[string]string{
		"Content-Type":           "text/plain",
		"Stream-Forked-From":     "/v1/stream/text",
		"Stream-Fork-Offset":     forkAnchor,
		"Stream-Fork-Sub-Offset": "3",
	}, nil)
	appendTo("fork", text, []byte("e X (the fork's own)\n"), http.StatusNoContent)
	fx.want["fork"] = append(append([]byte{}, textData.Bytes()[:24]...), "e X (the fork's own)\n"...)

	// A JSON fork: anchored after the first request's 2 messages, sub-offset
	// 1 message, then its own.
	create("json-fork", map[string]string{
		"Content-Type":           "application/json",
		"Stream-Forked-From":     "/v1/stream/json",
		"Stream-Fork-Offset":     jsonAnchor,
		"Stream-Fork-Sub-Offset": "1",
	}, []byte(`{"own":true}`))

	// More than 1 MiB, so reads paginate.
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 5<<19) // 2.5 MiB
	for i := range big {
		big[i] = byte(rng.UintN(256))
	}
	create("big", octets, big[:1<<18])
	for off := 1 << 18; off < len(big); off += 1 << 18 {
		appendTo("big", octets, big[off:min(off+1<<18, len(big))], http.StatusNoContent)
	}
	fx.want["big"] = big

	// Deleted before the restart: must stay gone.
	create("deleted", text, []byte("bye"))
	if r := mustSend(t, c, http.MethodDelete, n.url("deleted"), nil, nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE deleted: %d %q", r.status, r.body)
	}
	fx.paths = fx.paths[:len(fx.paths)-1]
	fx.gone = append(fx.gone, "deleted")

	// Check the fixture itself before relying on it.
	for name, want := range fx.want {
		if got := readStream(t, c, n.url(name)).data; !bytes.Equal(got, want) {
			t.Fatalf("fixture %s reads %d bytes %q; want %d bytes %q", name, len(got), clip(got), len(want), clip(want))
		}
	}
	checkJSONMessages(t, "json", readStream(t, c, n.url("json")).data, []string{
		`{"n":0}`, `{"n":1,"s":"é"}`, `{"n":2,"nested":{"a":[1,2,3]}}`, `{"n":3}`, `{"n":4,"s":"\u0000\n"}`})
	checkJSONMessages(t, "json-fork", readStream(t, c, n.url("json-fork")).data, []string{
		`{"n":0}`, `{"n":1,"s":"é"}`, `{"n":2,"nested":{"a":[1,2,3]}}`, `{"own":true}`})
	if p := len(readStream(t, c, n.url("big")).pages); p < 3 {
		t.Fatalf("the 2.5 MiB stream was read in %d pages; want at least 3 (1 MiB cap)", p)
	}
	return fx
}

func checkJSONMessages(t *testing.T, name string, data []byte, want []string) {
	t.Helper()
	var got []json.RawMessage
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%s: read is not a JSON array: %v: %q", name, err, clip(data))
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d messages %s; want %d", name, len(got), data, len(want))
	}
	for i := range want {
		var a, b any
		_ = json.Unmarshal(got[i], &a)
		_ = json.Unmarshal([]byte(want[i]), &b)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s: message %d is %s; want %s", name, i, got[i], want[i])
		}
	}
}

// streamState is what a client can observe of one stream.
type streamState struct {
	head map[string]string // HEAD status and the headers that matter
	read streamRead
}

type fixtureSnapshot map[string]streamState

func (s fixtureSnapshot) bytes() (n int) {
	for _, st := range s {
		n += len(st.read.data)
	}
	return n
}

func (s fixtureSnapshot) pages() (n int) {
	for _, st := range s {
		n += len(st.read.pages)
	}
	return n
}

func (fx *restartFixture) snapshot(t *testing.T, n *node) fixtureSnapshot {
	t.Helper()
	snap := fixtureSnapshot{}
	for _, name := range fx.paths {
		snap[name] = streamState{head: headSnapshot(t, n.client, n.url(name)), read: readStream(t, n.client, n.url(name))}
	}
	for _, name := range fx.gone {
		snap[name] = streamState{head: headSnapshot(t, n.client, n.url(name))}
	}
	return snap
}

func (fx *restartFixture) compare(t *testing.T, when string, before, after fixtureSnapshot) {
	t.Helper()
	for _, name := range append(append([]string{}, fx.paths...), fx.gone...) {
		b, a := before[name], after[name]
		for k, v := range b.head {
			if a.head[k] != v {
				t.Errorf("%s: HEAD %s: %s is %q; was %q", when, name, k, a.head[k], v)
			}
		}
		for k, v := range a.head {
			if _, ok := b.head[k]; !ok {
				t.Errorf("%s: HEAD %s: %s is %q; was absent", when, name, k, v)
			}
		}
		if !bytes.Equal(a.read.data, b.read.data) {
			t.Errorf("%s: %s reads %d bytes %q; was %d bytes %q", when, name, len(a.read.data), clip(a.read.data), len(b.read.data), clip(b.read.data))
		}
		if len(a.read.pages) != len(b.read.pages) {
			t.Errorf("%s: %s read in %d pages; was %d", when, name, len(a.read.pages), len(b.read.pages))
			continue
		}
		for i := range b.read.pages {
			if a.read.pages[i] != b.read.pages[i] {
				t.Errorf("%s: %s page %d: %+v; was %+v", when, name, i, a.read.pages[i], b.read.pages[i])
			}
		}
	}
	for _, name := range fx.gone {
		if st := after[name].head[":status"]; st != "404" {
			t.Errorf("%s: deleted stream %s answers HEAD %s; want 404", when, name, st)
		}
	}
}

// ---- Helpers shared by the durability tests ------------------------------

// node is a server that keeps its port, Caddyfile and data_dir across
// restarts, so it can be killed and started again.
type node struct {
	t        *testing.T
	port     int
	base     string // http://127.0.0.1:PORT
	dataDir  string
	global   string   // Caddy global options (default "admin off")
	handler  string   // extra lines inside durable_streams { }
	env      []string // extra environment for the server process
	confPath string
	srv      *server
	client   *http.Client
	starts   int
}

func newNode(t *testing.T, dataDir, handler string) *node {
	t.Helper()
	n := &node{t: t, port: freePort(t), dataDir: dataDir, global: "admin off", handler: handler}
	n.base = fmt.Sprintf("http://127.0.0.1:%d", n.port)
	n.confPath = filepath.Join(t.TempDir(), "Caddyfile")
	n.client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	n.writeConfig()
	t.Cleanup(n.client.CloseIdleConnections)
	return n
}

func (n *node) caddyfile() string {
	return fmt.Sprintf(`{
	%s
	auto_https off
	grace_period 1s
}

http://127.0.0.1:%d {
	handle /health {
		respond "OK" 200
	}
	route /v1/stream/* {
		durable_streams {
			data_dir %q
			%s
		}
	}
}
`, n.global, n.port, n.dataDir, n.handler)
}

func (n *node) writeConfig() {
	n.t.Helper()
	if err := os.WriteFile(n.confPath, []byte(n.caddyfile()), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) url(name string) string { return n.base + "/v1/stream/" + name }

// launch starts the process without waiting for it.
func (n *node) launch() *server {
	n.t.Helper()
	n.client.CloseIdleConnections()
	n.srv = startProcess(n.t, n.base, n.env, "run", "--config", n.confPath, "--adapter", "caddyfile")
	n.starts++
	return n.srv
}

// start starts the server and waits until /health answers.
func (n *node) start() {
	n.t.Helper()
	n.launch().waitHealthy(2 * time.Minute)
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	n.t.Helper()
	if err := n.srv.Cmd.Process.Signal(syscall.SIGKILL); err != nil && n.srv.Alive() {
		n.t.Fatalf("SIGKILL: %v", err)
	}
	<-n.srv.Exited
	n.client.CloseIdleConnections()
}

// terminate stops the server with SIGTERM and checks it exits cleanly.
func (n *node) terminate() {
	n.t.Helper()
	if err := n.srv.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-n.srv.Exited:
	case <-time.After(20 * time.Second):
		n.t.Fatalf("server did not exit within 20s of SIGTERM")
	}
	if code := n.srv.Cmd.ProcessState.ExitCode(); code != 0 {
		n.t.Errorf("server exited with %d after SIGTERM; want 0:\n%s", code, tail(n.srv.Output.String(), 30))
	}
	n.client.CloseIdleConnections()
}

// reply is a complete HTTP response.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// send makes one request; hdr may be nil.
func send(c *http.Client, method, url string, hdr map[string]string, body []byte) (reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return reply{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// mustSend is send that fails the test on a transport error.
func mustSend(t *testing.T, c *http.Client, method, url string, hdr map[string]string, body []byte) reply {
	t.Helper()
	r, err := send(c, method, url, hdr, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func producerHeaders(contentType, id string, epoch, seq int) map[string]string {
	return map[string]string{
		"Content-Type":   contentType,
		"Producer-Id":    id,
		"Producer-Epoch": strconv.Itoa(epoch),
		"Producer-Seq":   strconv.Itoa(seq),
	}
}

func closingHeaders(id string, epoch, seq int) map[string]string {
	h := producerHeaders("text/plain", id, epoch, seq)
	h["Stream-Closed"] = "true"
	return h
}

// page is one GET of a catch-up read.
type page struct {
	offset   string // requested
	status   int
	size     int
	next     string // Stream-Next-Offset
	upToDate string
	closed   string
	ctype    string
}

// streamRead is a whole catch-up read: the concatenated bodies and each page.
type streamRead struct {
	data  []byte
	pages []page
}

// readStream reads url from the start, following Stream-Next-Offset until
// Stream-Up-To-Date: true. A non-200 page fails the test.
func readStream(t *testing.T, c *http.Client, url string) streamRead {
	t.Helper()
	var out streamRead
	offset := "-1"
	for i := 0; ; i++ {
		if i > 10_000 {
			t.Fatalf("GET %s: more than 10,000 pages", url)
		}
		r := mustSend(t, c, http.MethodGet, url+"?offset="+offset, nil, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s?offset=%s: %d %q; want 200", url, offset, r.status, clip(r.body))
		}
		p := page{offset: offset, status: r.status, size: len(r.body), next: r.header.Get("Stream-Next-Offset"),
			upToDate: r.header.Get("Stream-Up-To-Date"), closed: r.header.Get("Stream-Closed"), ctype: r.header.Get("Content-Type")}
		out.pages = append(out.pages, p)
		out.data = append(out.data, r.body...)
		if p.upToDate == "true" {
			return out
		}
		if p.next == "" || p.next == offset {
			t.Fatalf("GET %s?offset=%s: not up to date but Stream-Next-Offset is %q", url, offset, p.next)
		}
		offset = p.next
	}
}

// headSnapshot is HEAD's status and every header that describes the stream.
func headSnapshot(t *testing.T, c *http.Client, url string) map[string]string {
	t.Helper()
	r := mustSend(t, c, http.MethodHead, url, nil, nil)
	m := map[string]string{":status": strconv.Itoa(r.status)}
	for _, k := range []string{"Stream-Next-Offset", "Stream-Closed", "Stream-Ttl", "Stream-Expires-At", "Content-Type"} {
		if v := r.header.Get(k); v != "" {
			m[k] = v
		}
	}
	return m
}

// clip shortens data for messages.
func clip(b []byte) string {
	if len(b) <= 200 {
		return string(b)
	}
	return fmt.Sprintf("%s...(%d bytes)...%s", b[:100], len(b)-200, b[len(b)-100:])
}

// segmentDirs lists data_dir/segments/ (stream directories by internal id).
func segmentDirs(t *testing.T, dataDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "segments"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// dirSize is the total size of the regular files under dir.
func dirSize(t *testing.T, dir string) (files int, size int64) {
	t.Helper()
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			files++
			size += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, size
}
