// Package cluster tests the scale-out topology (README, Scaling) end to
// end: 3 nodes in their own network namespaces behind a router built from
// examples/cluster, with streams placed by placement group, one node
// killed under load and restarted, one group moved under load, and the
// conformance suite through the router. Run by `make test-cluster`
// (DS_CLUSTER=1); `make cluster-bench` runs the larger numbers.
package cluster

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/tests/internal/dsserver"
)

// cluster is a running topology.sh directory.
type cluster struct {
	t   *testing.T
	dir string
	env map[string]string
}

func root() string { p, _ := filepath.Abs("../.."); return p }

func binary(t *testing.T) string {
	bin := os.Getenv("DS_BIN")
	if bin == "" {
		bin = filepath.Join(root(), "bin", "durable-streams-server")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("DS_BIN: %v (make build)", err)
	}
	return bin
}

func startCluster(t *testing.T, nodes int) *cluster {
	if os.Getenv("DS_CLUSTER") != "1" {
		t.Skip("DS_CLUSTER=1 runs the cluster tests (make test-cluster)")
	}
	c := &cluster{t: t, dir: t.TempDir()}
	t.Cleanup(func() { c.topology("down") })
	c.topology("up", strconv.Itoa(nodes))
	f, err := os.Open(filepath.Join(c.dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c.env = map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			c.env[k] = v
		}
	}
	t.Logf("cluster: %d nodes (%s), router %s", nodes, c.env["MODE"], c.env["ROUTER_URL"])
	return c
}

func (c *cluster) topology(args ...string) {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(root(), "tests/cluster/topology.sh"), append([]string{args[0], c.dir}, args[1:]...)...)
	cmd.Env = append(os.Environ(), "DS_BIN="+binary(c.t))
	if out, err := cmd.CombinedOutput(); err != nil {
		for _, log := range []string{"router.log", "node1.log", "node2.log", "node3.log"} {
			if b, rerr := os.ReadFile(filepath.Join(c.dir, log)); rerr == nil {
				c.t.Logf("---- %s (tail) ----\n%s", log, dsserver.Tail(string(b), 15))
			}
		}
		c.t.Fatalf("topology.sh %v: %v\n%s", args, err, out)
	}
}

func (c *cluster) node(i int, what string) string { return c.env[fmt.Sprintf("NODE%d_%s", i, what)] }
func (c *cluster) router() string                 { return c.env["ROUTER_URL"] }

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

type reply struct {
	status int
	header http.Header
	body   string
}

func do(method, url, body string, headers ...string) (reply, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return reply{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, string(b)}, err
}

func must(t *testing.T, want int, method, url, body string, headers ...string) reply {
	t.Helper()
	r, err := do(method, url, body, headers...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if r.status != want {
		t.Fatalf("%s %s: %d %q, want %d", method, url, r.status, r.body, want)
	}
	return r
}

// readAll reads a stream from offset -1 to its end.
func readAll(t *testing.T, base, path string) (string, string) {
	t.Helper()
	var out strings.Builder
	offset := "-1"
	for {
		r := must(t, 200, "GET", base+path+"?offset="+offset, "")
		out.WriteString(r.body)
		offset = r.header.Get("Stream-Next-Offset")
		if r.header.Get("Stream-Up-To-Date") == "true" {
			return out.String(), offset
		}
	}
}

// owner is the node (1-based) that holds path, asked of every node directly.
func (c *cluster) owner(path string) int {
	c.t.Helper()
	found := 0
	for i := 1; i <= 3; i++ {
		r, err := do("HEAD", c.node(i, "URL")+path, "")
		if err != nil {
			continue // a node that is down
		}
		if r.status == 200 {
			if found != 0 {
				c.t.Fatalf("%s is on node %d and node %d", path, found, i)
			}
			found = i
		}
	}
	return found
}

// writer appends "<path>:<n>;" to one stream through the router, in order,
// and remembers what was acknowledged.
type writer struct {
	path    string
	mu      sync.Mutex
	acked   []string
	next    int
	errors  []string
	slow    int // failures that took longer than failFast
	retry   bool
	retries int
}

const failFast = 2 * time.Second

// newWriter follows a stream that TestCluster created with "<path>:init;".
func newWriter(path string, retry bool) *writer {
	return &writer{path: path, acked: []string{path + ":init;"}, retry: retry}
}

func (w *writer) step(base string) {
	piece := fmt.Sprintf("%s:%d;", w.path, w.next)
	headers := []string{"Content-Type", "text/plain"}
	if w.retry {
		// As the official client's idempotent producer: a retried append
		// that did land is answered 204 (duplicate) and not appended again.
		headers = append(headers, "Producer-Id", "writer", "Producer-Epoch", "0",
			"Producer-Seq", strconv.Itoa(len(w.acked)-1))
	}
	for {
		start := time.Now()
		r, err := do("POST", base+w.path, piece, headers...)
		took := time.Since(start)
		w.mu.Lock()
		switch {
		case err == nil && (r.status == 204 || r.status == 200):
			w.acked = append(w.acked, piece)
			w.next++
			w.mu.Unlock()
			return
		case w.retry && (err != nil || r.status == 503 && r.header.Get("Retry-After") != ""):
			// A moving group (503 + Retry-After), or a connection the
			// router's config reload closed (it closes idle connections):
			// the official client retries both.
			w.retries++
			w.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			continue
		default:
			msg := fmt.Sprint(err)
			if err == nil {
				msg = fmt.Sprintf("%d %s", r.status, strings.TrimSpace(r.body))
			}
			w.errors = append(w.errors, msg)
			if took > failFast {
				w.slow++
			}
			// The piece may or may not be in the stream: never reuse it.
			w.next++
			w.mu.Unlock()
			return
		}
	}
}

// check: the stream holds every acknowledged piece in order; a piece whose
// request failed may sit between them (it may have been committed before
// the node died), nothing else.
func (w *writer) check(t *testing.T, got string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	rest := got
	for _, piece := range w.acked {
		i := strings.Index(rest, piece)
		if i < 0 {
			t.Errorf("%s: acknowledged %q is missing (%d acknowledged)", w.path, piece, len(w.acked))
			return
		}
		if skipped := rest[:i]; skipped != "" && strings.Count(skipped, ";") > len(w.errors) {
			t.Errorf("%s: unexpected bytes %q before %q", w.path, skipped, piece)
		}
		rest = rest[i+len(piece):]
	}
}

// startWriters steps every writer through base, pausing between steps,
// until the returned stop is called; stop returns once they have all ended.
func startWriters(writers []*writer, base string, pause time.Duration) (stop func()) {
	var halt atomic.Bool
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func(w *writer) {
			defer wg.Done()
			for !halt.Load() {
				w.step(base)
				time.Sleep(pause)
			}
		}(w)
	}
	return func() {
		halt.Store(true)
		wg.Wait()
	}
}

func TestCluster(t *testing.T) {
	c := startCluster(t, 3)
	R := c.router()

	// A few hundred streams in 30 groups, through the router.
	const groups, perGroup = 30, 10
	owners := map[string]int{}
	for g := 0; g < groups; g++ {
		for s := 0; s < perGroup; s++ {
			path := fmt.Sprintf("/v1/stream/g%02d/s%d", g, s)
			must(t, 201, "PUT", R+path, path+":init;", "Content-Type", "text/plain")
		}
	}
	perNode := map[int]int{}
	for g := 0; g < groups; g++ {
		group := fmt.Sprintf("g%02d", g)
		o := c.owner("/v1/stream/" + group + "/s0")
		for s := 1; s < perGroup; s++ {
			if other := c.owner(fmt.Sprintf("/v1/stream/%s/s%d", group, s)); other != o {
				t.Fatalf("group %s is split: s0 on node %d, s%d on node %d", group, o, s, other)
			}
		}
		owners[group] = o
		perNode[o]++
	}
	t.Logf("groups per node: %v", perNode)
	for i := 1; i <= 3; i++ {
		if perNode[i] == 0 {
			t.Fatalf("node %d holds no group (%v)", i, perNode)
		}
	}

	// A fork across groups: 400 from the router; within its group: 201.
	r := must(t, 400, "PUT", R+"/v1/stream/g00/fork", "", "Stream-Forked-From", "/v1/stream/g01/s0")
	if want := "bad request: Stream-Forked-From names a stream of placement group \"g01\", this stream is in group \"g00\"; a fork must stay in its source's group\n"; r.body != want {
		t.Errorf("cross-group fork: %q, want %q", r.body, want)
	}
	must(t, 201, "PUT", R+"/v1/stream/g00/fork", "", "Stream-Forked-From", "/v1/stream/g00/s0")

	t.Run("kill", func(t *testing.T) { testKillNode(t, c, owners) })
	t.Run("move", func(t *testing.T) { testMoveGroup(t, c, owners) })
	t.Run("conformance", func(t *testing.T) { testConformance(t, c) })
}

// kill -9 one node under load: its groups fail fast, the others see no
// error, and after the restart nothing acknowledged is lost.
func testKillNode(t *testing.T, c *cluster, owners map[string]int) {
	R := c.router()
	const victim = 2
	var writers []*writer
	for g, o := range owners {
		_ = o
		for _, s := range []string{"s1", "s2"} {
			writers = append(writers, newWriter("/v1/stream/"+g+"/"+s, false))
		}
	}
	stop := startWriters(writers, R, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	killedAt := time.Now()
	c.topology("kill", strconv.Itoa(victim))
	time.Sleep(2 * time.Second) // under load with the node down
	restartAt := time.Now()
	c.topology("start", strconv.Itoa(victim))
	// Until the router's active check sees the node again (1 s interval).
	deadline := time.Now().Add(10 * time.Second)
	var victimGroup string
	for g, o := range owners {
		if o == victim {
			victimGroup = g
		}
	}
	for {
		if r, err := do("HEAD", R+"/v1/stream/"+victimGroup+"/s0", ""); err == nil && r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s did not come back within 10 s of the restart", victimGroup)
		}
		time.Sleep(20 * time.Millisecond)
	}
	back := time.Since(restartAt)
	time.Sleep(300 * time.Millisecond)
	stop()
	t.Logf("node %d killed, restarted after %v, its groups served again %v after the restart",
		victim, restartAt.Sub(killedAt).Round(time.Millisecond), back.Round(time.Millisecond))

	victimErrors, slow, acked := 0, 0, 0
	for _, w := range writers {
		group := strings.Split(w.path, "/")[3]
		acked += len(w.acked)
		if owners[group] != victim {
			if len(w.errors) > 0 {
				t.Errorf("%s (node %d, not killed): %d errors, first %s", w.path, owners[group], len(w.errors), w.errors[0])
			}
		} else {
			victimErrors += len(w.errors)
			slow += w.slow
			// The router's own answer for a node that is down, never a
			// 404 from another node the group was sent to instead.
			for _, e := range w.errors {
				if !strings.HasPrefix(e, "502 ") && !strings.HasPrefix(e, "503 ") {
					t.Errorf("%s (killed node): %s, want 502 or 503 from the router", w.path, e)
					break
				}
			}
		}
		got, _ := readAll(t, R, w.path)
		w.check(t, got)
	}
	if victimErrors == 0 {
		t.Errorf("no write to the killed node's groups failed: the kill did not happen under load")
	}
	if slow > 0 {
		t.Errorf("%d failed writes to the killed node's groups took longer than %v", slow, failFast)
	}
	t.Logf("%d acknowledged appends, %d failed fast (< %v) on the killed node's groups, 0 elsewhere", acked, victimErrors, failFast)
}

// Move one group from its node to another while a writer appends to it
// (retrying on 503) and a reader follows it: every stream arrives exactly,
// reads never go back, the old node forgets the group.
func testMoveGroup(t *testing.T, c *cluster, owners map[string]int) {
	R := c.router()
	group := "g00"
	from := owners[group]
	to := from%3 + 1
	base := "/v1/stream/" + group
	// Streams of every kind: producer state, closed, TTL, Expires-At, a
	// fork (g00/fork, made above), JSON.
	must(t, 200, "POST", R+base+"/s3", "p0;", "Content-Type", "text/plain",
		"Producer-Id", "w1", "Producer-Epoch", "3", "Producer-Seq", "0")
	must(t, 204, "POST", R+base+"/s4", "", "Stream-Closed", "true")
	must(t, 201, "PUT", R+base+"/ttl", "t", "Content-Type", "text/plain", "Stream-TTL", "3600")
	must(t, 201, "PUT", R+base+"/expires", "e", "Content-Type", "text/plain", "Stream-Expires-At", "2099-01-01T00:00:00Z")
	must(t, 201, "PUT", R+base+"/json", `[{"a":1},{"b":2}]`, "Content-Type", "application/json")
	paths := []string{"s0", "s1", "s2", "s3", "s4", "s5", "fork", "ttl", "expires", "json"}
	type state struct {
		head http.Header
		body string
	}
	before := map[string]state{}
	for _, p := range paths {
		body, _ := readAll(t, R, base+"/"+p)
		before[p] = state{must(t, 200, "HEAD", R+base+"/"+p, "").header, body}
	}

	w := newWriter(base+"/s9", true)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var readErr atomic.Value
	wg.Add(2)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			w.step(R)
		}
	}()
	go func() { // offsets and bytes never go back
		defer wg.Done()
		last, lastLen := "", 0
		for !stop.Load() {
			r, err := do("GET", R+base+"/s9?offset=-1", "")
			if err != nil || r.status != 200 {
				readErr.Store(fmt.Sprintf("read during the move: %v %d %q", err, r.status, r.body))
				return
			}
			off := r.header.Get("Stream-Next-Offset")
			if off < last || len(r.body) < lastLen {
				readErr.Store(fmt.Sprintf("went back: offset %s after %s, %d bytes after %d", off, last, len(r.body), lastLen))
				return
			}
			last, lastLen = off, len(r.body)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	cmd := exec.Command(binary(t), "move-group", "--group", group,
		"--from", c.node(from, "ADMIN"), "--to", c.node(to, "ADMIN"), "--to-upstream", c.node(to, "UPSTREAM"),
		"--router", c.env["ROUTER_ADMIN"], "--pins-file", c.env["PINS_FILE"], "--drain", "2s")
	out, err := cmd.CombinedOutput()
	t.Logf("move-group:\n%s", strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("move-group: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if v := readErr.Load(); v != nil {
		t.Error(v)
	}
	if len(w.errors) > 0 {
		t.Errorf("writer during the move: %d errors, first %s", len(w.errors), w.errors[0])
	}
	got, _ := readAll(t, R, base+"/s9")
	w.check(t, got)
	if len(w.acked) < 2 {
		t.Error("no append was acknowledged during the move")
	}
	t.Logf("writer during the move: %d appends acknowledged, %d retried (503 while frozen, or reset by the router's reload)", len(w.acked)-1, w.retries)

	// What the new node imported is durable: it survives a kill -9.
	c.topology("kill", strconv.Itoa(to))
	c.topology("start", strconv.Itoa(to))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, err := do("HEAD", R+base+"/s0", ""); err == nil && r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not served 10 s after node %d restarted", base, to)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, _ = readAll(t, R, base+"/s9")
	w.check(t, got)
	for _, p := range paths {
		if o := c.owner(base + "/" + p); o != to {
			t.Errorf("%s/%s is on node %d after the move, want %d", base, p, o, to)
		}
		body, _ := readAll(t, R, base+"/"+p)
		head := must(t, 200, "HEAD", R+base+"/"+p, "").header
		if body != before[p].body {
			t.Errorf("%s/%s: %q after the move, %q before", base, p, body, before[p].body)
		}
		for _, h := range []string{"Content-Type", "Stream-Next-Offset", "Stream-Closed", "Stream-TTL", "Stream-Expires-At"} {
			if head.Get(h) != before[p].head.Get(h) {
				t.Errorf("%s/%s: %s %q after the move, %q before", base, p, h, head.Get(h), before[p].head.Get(h))
			}
		}
	}
	// Producer state moved: the same (epoch, seq) is a duplicate, the next
	// one is accepted, an older epoch is fenced.
	must(t, 204, "POST", R+base+"/s3", "p0;", "Content-Type", "text/plain", "Producer-Id", "w1", "Producer-Epoch", "3", "Producer-Seq", "0")
	must(t, 200, "POST", R+base+"/s3", "p1;", "Content-Type", "text/plain", "Producer-Id", "w1", "Producer-Epoch", "3", "Producer-Seq", "1")
	must(t, 403, "POST", R+base+"/s3", "p2;", "Content-Type", "text/plain", "Producer-Id", "w1", "Producer-Epoch", "2", "Producer-Seq", "0")
	// Closure moved; the old node holds nothing of the group and takes its
	// writes again (unfrozen) should the router send any.
	must(t, 409, "POST", R+base+"/s4", "x", "Content-Type", "text/plain")
	must(t, 404, "HEAD", c.node(from, "URL")+base+"/s0", "")
	// A move to a node that already holds streams of the group is refused
	// before anything changes: the group stays where it is, writable.
	other, otherOwner := "", 0
	for g, o := range owners {
		if g != group && o != to {
			other, otherOwner = g, o
			break
		}
	}
	must(t, 201, "PUT", c.node(to, "URL")+"/v1/stream/"+other+"/stray", "", "Content-Type", "text/plain")
	cmd = exec.Command(binary(t), "move-group", "--group", other,
		"--from", c.node(otherOwner, "ADMIN"), "--to", c.node(to, "ADMIN"), "--to-upstream", c.node(to, "UPSTREAM"),
		"--router", c.env["ROUTER_ADMIN"], "--pins-file", c.env["PINS_FILE"], "--drain", "0s")
	out, err = cmd.CombinedOutput()
	// Caddy logs the command's error as JSON (quotes escaped).
	if want := `already holds streams of group \"` + other + `\": nothing moved`; err == nil || !strings.Contains(string(out), want) {
		t.Errorf("move to a node holding streams of the group: %v\n%s\nwant an error saying %s", err, out, want)
	}
	if o := c.owner("/v1/stream/" + other + "/s0"); o != otherOwner {
		t.Errorf("%s/s0 is on node %d after a refused move, want %d", other, o, otherOwner)
	}
	must(t, 204, "POST", R+"/v1/stream/"+other+"/s0", "still writable;", "Content-Type", "text/plain")
	must(t, 204, "POST", c.node(to, "URL")+"/v1/stream/"+other+"/stray", "x", "Content-Type", "text/plain")

	// Other groups on both nodes are untouched.
	for g, o := range owners {
		if g != group && (o == from || o == to) {
			must(t, 200, "HEAD", R+"/v1/stream/"+g+"/s0", "")
		}
	}
}

// The conformance suite through a router (on the same nodes) whose groups
// are the suite's stream name prefixes (fork-..., sse-...), so a fork and
// its source share a group, and the suite's streams spread over the nodes.
func testConformance(t *testing.T, c *cluster) {
	conf := filepath.Join(root(), "tests/conformance")
	if _, err := os.Stat(filepath.Join(conf, "node_modules/.bin/vitest")); err != nil {
		t.Fatalf("tests/conformance/node_modules missing (npm ci there, or make test-cluster): %v", err)
	}
	src, err := os.ReadFile(filepath.Join(root(), "examples/cluster/router.Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	caddyfile := strings.ReplaceAll(string(src), "group_depth 1", `group_regexp "^([a-z0-9]+)-"`)
	if strings.Count(caddyfile, "group_regexp") != 2 {
		t.Fatal("router.Caddyfile: expected group_depth in durable_streams_router and lb_policy")
	}
	dir := t.TempDir()
	port, admin := dsserver.FreePort(t), dsserver.FreePort(t)
	nodes := []string{c.node(1, "UPSTREAM"), c.node(2, "UPSTREAM"), c.node(3, "UPSTREAM")}
	if err := os.WriteFile(filepath.Join(dir, "pins.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	router := dsserver.Start(t, binary(t), []string{"DS_ROUTER_ADDR=127.0.0.1", fmt.Sprintf("DS_ROUTER_PORT=%d", port),
		fmt.Sprintf("DS_ROUTER_ADMIN=127.0.0.1:%d", admin), "DS_NODES=" + strings.Join(nodes, " "),
		"DS_PINS_FILE=" + filepath.Join(dir, "pins.txt"), "HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "XDG_DATA_HOME=" + dir},
		dsserver.RunArgs(dsserver.WriteCaddyfile(t, caddyfile))...)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	router.WaitOK(nil, url+"/health", 20*time.Second)
	counts := filepath.Join(dir, "counts")
	vitest := exec.Command(filepath.Join(conf, "node_modules/.bin/vitest"), "run")
	vitest.Dir = conf
	vitest.Env = append(os.Environ(), "DS_CONFORMANCE_URL="+url, "DS_CONFORMANCE_HEALTH_URL="+url+"/health",
		"DS_CONFORMANCE_LONG_POLL_MS=2000", "DS_CONFORMANCE_SUBSCRIPTIONS=0", "DS_CONFORMANCE_COUNTS_FILE="+counts,
		// Its fork's source, /v1/stream/nonexistent-<id>, is in another group:
		// the router answers 400 (a fork must stay in its group) without
		// asking another node whether the source exists (README, Scaling).
		"DS_CONFORMANCE_EXCLUDE=^Fork - Creation should return 404 when forking a nonexistent stream$")
	out, err := vitest.CombinedOutput()
	line := ""
	if b, rerr := os.ReadFile(counts); rerr == nil {
		line = strings.TrimSpace(dsserver.Tail(string(b), 1))
	}
	t.Logf("conformance through the router: %s", line)
	if err != nil || !strings.Contains(line, ", 0 failed") {
		t.Errorf("conformance through the router failed (%v):\n%s", err, dsserver.Tail(string(out), 60))
	}
}
