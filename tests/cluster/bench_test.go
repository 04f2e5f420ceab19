package cluster

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestClusterBench (make cluster-bench): node 1 holds DS_CLUSTER_STREAMS
// streams (default 100,000, in 100 groups pinned to it); it is killed -9
// while writers append to every node's groups, and restarted. Reported:
// the time from the restart to its /health answering and to its groups
// being served through the router again; the errors of the other nodes'
// groups (must be 0); acknowledged appends lost (must be 0).
func TestClusterBench(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("DS_CLUSTER_STREAMS"))
	if n == 0 {
		t.Skip("DS_CLUSTER_STREAMS=<n> runs the cluster benchmark (make cluster-bench)")
	}
	c := startCluster(t, 3)
	R := c.router()
	const groups = 100
	var pins bytes.Buffer
	for g := 0; g < groups; g++ {
		fmt.Fprintf(&pins, "big%03d %s\n", g, c.node(1, "UPSTREAM"))
	}
	if err := os.WriteFile(c.env["PINS_FILE"], pins.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	reloadRouter(t, c)

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				path := fmt.Sprintf("/v1/stream/big%03d/s%d", i%groups, i)
				// A create is idempotent: resent after a network error it
				// answers 200 if the first one did land.
				var r reply
				var err error
				for try := 0; try < 3; try++ {
					if r, err = do("PUT", R+path, "x", "Content-Type", "text/plain"); err == nil {
						break
					}
				}
				if err != nil || r.status != 201 && r.status != 200 {
					if failed.Add(1) == 1 {
						t.Logf("create %s: %v %d %q", path, err, r.status, r.body)
					}
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d creates failed", failed.Load(), n)
	}
	t.Logf("created %d streams on node 1 in %v", n, time.Since(start).Round(time.Millisecond))

	// Writers: 2 streams in each of 30 groups (all nodes) and 20 of node 1's.
	var writers []*writer
	for g := 0; g < 30; g++ {
		for s := 0; s < 2; s++ {
			path := fmt.Sprintf("/v1/stream/w%02d/s%d", g, s)
			must(t, 201, "PUT", R+path, path+":init;", "Content-Type", "text/plain")
			writers = append(writers, newWriter(path, false))
		}
	}
	for g := 0; g < 20; g++ {
		path := fmt.Sprintf("/v1/stream/big%03d/w", g)
		must(t, 201, "PUT", R+path, path+":init;", "Content-Type", "text/plain")
		writers = append(writers, newWriter(path, false))
	}
	stop := startWriters(writers, R, 10*time.Millisecond)
	time.Sleep(time.Second)
	c.topology("kill", "1")
	time.Sleep(2 * time.Second)
	restart := time.Now()
	c.topology("start", "1") // returns once /health answers
	health := time.Since(restart)
	probe := fmt.Sprintf("/v1/stream/big%03d/s%d", (n-1)%groups, n-1)
	for {
		if r, err := do("HEAD", R+probe, ""); err == nil && r.status == 200 {
			break
		}
		if time.Since(restart) > 10*time.Minute {
			t.Fatal("node 1's groups not served 10 minutes after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	served := time.Since(restart)
	time.Sleep(time.Second)
	stop()

	otherErrors, victimErrors, slow, acked := 0, 0, 0, 0
	for _, w := range writers {
		acked += len(w.acked)
		if strings.HasPrefix(w.path, "/v1/stream/big") {
			victimErrors += len(w.errors)
			slow += w.slow
		} else if c.owner(w.path) == 1 {
			victimErrors += len(w.errors)
			slow += w.slow
		} else {
			otherErrors += len(w.errors)
			if len(w.errors) > 0 {
				t.Errorf("%s (not on the killed node): %d errors, first %s", w.path, len(w.errors), w.errors[0])
			}
		}
		got, _ := readAll(t, R, w.path)
		w.check(t, got)
	}
	t.Logf("RESULT streams_on_node=%d restart_to_health=%v restart_to_served_via_router=%v "+
		"acked_appends=%d failed_on_killed_node=%d slow_failures(>%v)=%d errors_elsewhere=%d",
		n, health.Round(time.Millisecond), served.Round(time.Millisecond), acked, victimErrors, failFast, slow, otherErrors)
	if slow > 0 {
		t.Errorf("%d failures took longer than %v", slow, failFast)
	}

	// Move one of node 1's groups (n/100 streams, plus a 1 MiB stream) to
	// node 2 and time it; the command reports how long writes were refused.
	big := strings.Repeat("0123456789abcdef", 1<<16)
	must(t, 201, "PUT", R+"/v1/stream/big001/mib", big, "Content-Type", "application/octet-stream")
	pins.Reset()
	for g := 0; g < groups; g++ {
		if g != 1 {
			fmt.Fprintf(&pins, "big%03d %s\n", g, c.node(1, "UPSTREAM"))
		}
	}
	if err := os.WriteFile(c.env["PINS_FILE"], pins.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	moveStart := time.Now()
	out, err := exec.Command(binary(t), "move-group", "--group", "big001",
		"--from", c.node(1, "ADMIN"), "--to", c.node(2, "ADMIN"), "--to-upstream", c.node(2, "UPSTREAM"),
		"--router", c.env["ROUTER_ADMIN"], "--pins-file", c.env["PINS_FILE"], "--drain", "0s").CombinedOutput()
	if err != nil {
		t.Fatalf("move-group: %v\n%s", err, out)
	}
	t.Logf("RESULT move of group big001 (%d streams + 1 MiB) in %v:\n%s", n/groups, time.Since(moveStart).Round(time.Millisecond), out)
	if got, _ := readAll(t, R, "/v1/stream/big001/mib"); got != big {
		t.Errorf("the 1 MiB stream moved with %d bytes", len(got))
	}
	if c.owner(fmt.Sprintf("/v1/stream/big001/s%d", groups+1)) != 2 {
		t.Error("big001 is not on node 2 after the move")
	}
}

// reloadRouter makes the router read its pins file again.
func reloadRouter(t *testing.T, c *cluster) {
	t.Helper()
	cfg := must(t, 200, "GET", c.env["ROUTER_ADMIN"]+"/config/", "")
	req, _ := http.NewRequest("POST", c.env["ROUTER_ADMIN"]+"/load", strings.NewReader(cfg.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("router reload: %d", res.StatusCode)
	}
}
