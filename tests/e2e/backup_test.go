package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/tests/internal/dsserver"
)

// README, Backup and restore: `durable-streams-server backup --data-dir X
// --to Y` makes a consistent copy while the server keeps taking writes; a
// server started on the copy serves every append acknowledged before the
// backup began.
//
// 8 writers append fixed-size numbered records to 8 streams (pre-filled
// with 4 MiB each, so the copy takes a while) while the backup runs. A
// server on the copy must hold, for every stream, every record acknowledged
// before the backup command was started, followed by nothing but intact
// records, ending exactly at an offset some append was acknowledged with.

const (
	backupWriters    = 8
	backupRecordSize = 64
	backupPrefill    = 4 << 20 // bytes per stream before the writers start
)

func TestBackupWhileWriting(t *testing.T) {
	bin := binary(t)
	flag := backupDestFlag(t, bin)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	n := newNode(t, src, "fsync always")
	n.start()
	c := n.client

	writers := make([]*backupWriter, backupWriters)
	for w := range writers {
		bw := &backupWriter{index: w, offsets: map[string]int{}}
		writers[w] = bw
		name := fmt.Sprintf("bk-%d", w)
		r := mustSend(t, c, http.MethodPut, n.url(name), map[string]string{"Content-Type": "application/octet-stream"}, nil)
		if r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %q", name, r.status, r.body)
		}
		bw.ack(0, r.header.Get("Stream-Next-Offset"))
		const chunk = 4096 // records per prefill request (256 KiB)
		for seq := 0; seq < backupPrefill/backupRecordSize; seq += chunk {
			r := mustSend(t, c, http.MethodPost, n.url(name), map[string]string{"Content-Type": "application/octet-stream"}, backupRecords(w, seq, chunk))
			if r.status != http.StatusNoContent {
				t.Fatalf("prefill POST %s: %d %q", name, r.status, r.body)
			}
			bw.ack(seq+chunk, r.header.Get("Stream-Next-Offset"))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, bw := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bw.run(ctx, c, n.url(fmt.Sprintf("bk-%d", bw.index)), &stop)
		}()
	}
	// Meanwhile streams and forks are created and deleted (the copy must
	// cope with streams that vanish under it).
	ch := &churner{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		ch.run(ctx, c, n, &stop)
	}()
	// Let every writer get appends acknowledged, and the churn run a few
	// cycles, before the backup starts.
	if !eventually(ctx, 5*time.Millisecond, func() bool {
		if ch.cycles.Load() < 6 && !ch.done.Load() {
			return false
		}
		for _, bw := range writers {
			if bw.count() < backupPrefill/backupRecordSize+20 && bw.error() == nil {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("writers made no progress")
	}

	dest := filepath.Join(tmp, "backup")
	before := make([]int, len(writers))
	for i, bw := range writers {
		before[i] = bw.count() // acknowledged before the command starts
	}
	churnBefore := int(ch.cycles.Load())
	cmd := exec.CommandContext(ctx, bin, "backup", "--data-dir", src, flag, dest)
	var out dsserver.Output
	cmd.Stdout, cmd.Stderr = &out, &out
	started := time.Now()
	err := cmd.Run()
	took := time.Since(started)
	during := 0
	for i, bw := range writers {
		during += bw.count() - before[i]
	}
	// Some more after the copy, then stop.
	after := make([]int, len(writers))
	for i, bw := range writers {
		after[i] = bw.count()
	}
	eventually(ctx, 5*time.Millisecond, func() bool {
		for i, bw := range writers {
			if bw.count() <= after[i] && bw.error() == nil {
				return false
			}
		}
		return true
	})
	stop.Store(true)
	wg.Wait()
	for _, bw := range writers {
		if err := bw.error(); err != nil {
			t.Errorf("writer %d: %v", bw.index, err)
		}
	}
	if ch.err != nil {
		t.Errorf("churn: %v", ch.err)
	}
	if err != nil {
		t.Fatalf("backup --data-dir %s %s %s: %v\n%s", src, flag, dest, err, out.String())
	}
	files, size := dirSize(t, dest)
	t.Logf("backup of %s: %d files, %d bytes in %v, while %d records were acknowledged during the copy; output: %s",
		src, files, size, took.Round(time.Millisecond), during, strings.TrimSpace(out.String()))

	// The primary still has everything it acknowledged.
	for _, bw := range writers {
		name := fmt.Sprintf("bk-%d", bw.index)
		data := readStream(t, c, n.url(name)).data
		if got := checkBackupRecords(t, "primary "+name, bw.index, data); got != bw.count() {
			t.Errorf("primary %s holds %d records; %d were acknowledged", name, got, bw.count())
		}
	}

	// A server on the copy.
	bn := newNode(t, dest, "fsync always")
	bn.start()
	for i, bw := range writers {
		name := fmt.Sprintf("bk-%d", bw.index)
		data := readStream(t, bn.client, bn.url(name)).data
		got := checkBackupRecords(t, "backup "+name, bw.index, data)
		if got < before[i] {
			t.Errorf("backup %s holds %d records; %d were acknowledged before the backup started", name, got, before[i])
		}
		next := headSnapshot(t, bn.client, bn.url(name))["Stream-Next-Offset"]
		if want, ok := bw.recordsAt(next); !ok || want != got {
			t.Errorf("backup %s ends at offset %q (%d records), which is not an offset any append was acknowledged with (%v, %d)", name, next, got, ok, want)
		}
		if i == 0 {
			t.Logf("backup bk-0: %d records (%d acknowledged before the backup, %d at the end)", got, before[i], bw.count())
		}
	}
	ch.check(t, bn, churnBefore)

	// The copy is a working data_dir.
	r := mustSend(t, bn.client, http.MethodPost, bn.url("bk-0"), map[string]string{"Content-Type": "application/octet-stream"}, []byte("written to the copy"))
	if r.status != http.StatusNoContent {
		t.Errorf("POST to the server on the backup: %d %q; want 204", r.status, r.body)
	}

	// A destination that exists and is not empty is refused, and left alone.
	full := filepath.Join(tmp, "not-empty")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	out2, err := exec.CommandContext(ctx, bin, "backup", "--data-dir", src, flag, full).CombinedOutput()
	if err == nil {
		t.Errorf("backup to a non-empty directory succeeded; want a non-zero exit:\n%s", out2)
	} else if !strings.Contains(string(out2), full) || !strings.Contains(string(out2), "not empty") {
		t.Errorf("backup to a non-empty directory: %v; the message should name %s and say it is not empty:\n%s", err, full, out2)
	} else {
		t.Logf("backup to a non-empty directory: %v: %s", err, lastLine(string(out2)))
	}
	if entries, _ := os.ReadDir(full); len(entries) != 1 {
		t.Errorf("the refused backup changed %s: %d entries", full, len(entries))
	}
	if b, _ := os.ReadFile(filepath.Join(full, "keep.txt")); string(b) != "mine" {
		t.Errorf("the refused backup changed keep.txt: %q", b)
	}
}

// backupDestFlag is the backup command's destination flag: --to as the
// README documents, or --dest if that is what the binary has.
func backupDestFlag(t *testing.T, bin string) string {
	t.Helper()
	help, _ := exec.Command(bin, "help", "backup").CombinedOutput()
	switch {
	case bytes.Contains(help, []byte("Unknown help topic")) || !bytes.Contains(help, []byte("backup")):
		t.Fatalf("the binary has no backup command (README.md documents `durable-streams-server backup`):\n%s", help)
	case bytes.Contains(help, []byte("--to ")) || bytes.Contains(help, []byte("--to=")):
		return "--to"
	case bytes.Contains(help, []byte("--dest")):
		t.Logf("the backup command takes --dest, not --to as documented in README.md")
		return "--dest"
	}
	return "--to"
}

// backupRecord is record seq of writer w: 64 bytes, "w<w>:<seq>:" then
// letters that depend on both, then a newline.
func backupRecord(w, seq int) []byte {
	b := fmt.Appendf(make([]byte, 0, backupRecordSize), "w%d:%08d:", w, seq)
	for i := len(b); i < backupRecordSize-1; i++ {
		b = append(b, byte('a'+(w*7+seq*13+i)%26))
	}
	return append(b, '\n')
}

func backupRecords(w, from, count int) []byte {
	out := make([]byte, 0, count*backupRecordSize)
	for seq := from; seq < from+count; seq++ {
		out = append(out, backupRecord(w, seq)...)
	}
	return out
}

// checkBackupRecords checks that data is writer w's records 0..k-1, every
// byte of them, and returns k.
func checkBackupRecords(t *testing.T, what string, w int, data []byte) int {
	t.Helper()
	if len(data)%backupRecordSize != 0 {
		t.Errorf("%s: %d bytes, not a whole number of %d-byte records; ends %q", what, len(data), backupRecordSize, clip(data[max(0, len(data)-backupRecordSize):]))
	}
	k := len(data) / backupRecordSize
	for seq := 0; seq < k; seq++ {
		got := data[seq*backupRecordSize : (seq+1)*backupRecordSize]
		if want := backupRecord(w, seq); !bytes.Equal(got, want) {
			t.Errorf("%s: record %d is %q; want %q", what, seq, got, want)
			return seq
		}
	}
	return k
}

// backupWriter appends records 1-8 at a time and remembers the offset each
// acknowledgement named.
type backupWriter struct {
	index int

	mu      sync.Mutex
	acked   int            // records 0..acked-1 are acknowledged
	offsets map[string]int // Stream-Next-Offset -> records acknowledged up to it
	failed  error
}

func (bw *backupWriter) ack(records int, offset string) {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	bw.acked = records
	bw.offsets[offset] = records
}

func (bw *backupWriter) count() int {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	return bw.acked
}

func (bw *backupWriter) recordsAt(offset string) (int, bool) {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	k, ok := bw.offsets[offset]
	return k, ok
}

func (bw *backupWriter) error() error {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	return bw.failed
}

func (bw *backupWriter) run(ctx context.Context, c *http.Client, url string, stop *atomic.Bool) {
	rng := rand.New(rand.NewPCG(uint64(bw.index), 7))
	for !stop.Load() && ctx.Err() == nil {
		seq := bw.count()
		k := 1 + rng.IntN(8)
		r, err := send(c, http.MethodPost, url, map[string]string{"Content-Type": "application/octet-stream"}, backupRecords(bw.index, seq, k))
		if err == nil && r.status != http.StatusNoContent {
			err = fmt.Errorf("POST records %d..%d: %d %q", seq, seq+k-1, r.status, r.body)
		}
		if err != nil {
			bw.mu.Lock()
			bw.failed = err
			bw.mu.Unlock()
			return
		}
		bw.ack(seq+k, r.header.Get("Stream-Next-Offset"))
	}
}

// churner runs cycles of: create src-i with two appends, fork it, then
// (two cycles in three) delete the source (soft: it has a fork) and the
// fork (which collects the source).
type churner struct {
	cycles atomic.Int64 // cycles completed (acknowledged)
	done   atomic.Bool
	err    error // read after run returns
}

func churnKeeps(i int) bool { return i%3 == 0 }

func (ch *churner) run(ctx context.Context, c *http.Client, n *node, stop *atomic.Bool) {
	defer ch.done.Store(true)
	text := map[string]string{"Content-Type": "text/plain"}
	step := func(method, name string, hdr map[string]string, body string, want int) bool {
		r, err := send(c, method, n.url(name), hdr, []byte(body))
		if err == nil && r.status != want {
			err = fmt.Errorf("%s %s: %d %q; want %d", method, name, r.status, r.body, want)
		}
		if err != nil {
			ch.err = err
			return false
		}
		return true
	}
	for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
		src, fork := fmt.Sprintf("churn-%d-src", i), fmt.Sprintf("churn-%d-fork", i)
		ok := step(http.MethodPut, src, text, fmt.Sprintf("src %d\n", i), http.StatusCreated) &&
			step(http.MethodPost, src, text, fmt.Sprintf("src %d more\n", i), http.StatusNoContent) &&
			step(http.MethodPut, fork, map[string]string{"Content-Type": "text/plain", "Stream-Forked-From": "/v1/stream/" + src}, fmt.Sprintf("fork %d\n", i), http.StatusCreated)
		if ok && !churnKeeps(i) {
			ok = step(http.MethodDelete, src, nil, "", http.StatusNoContent) &&
				step(http.MethodDelete, fork, nil, "", http.StatusNoContent)
		}
		if !ok {
			return
		}
		ch.cycles.Store(int64(i + 1))
	}
}

// check verifies the churn streams on a server started on the backup: each
// is in a state it really had, with exactly its bytes.
// Cycles completed before the backup started must be there exactly as they
// ended: kept ones present, deleted ones absent.
func (ch *churner) check(t *testing.T, bn *node, before int) {
	t.Helper()
	present := 0
	for i := 0; i < int(ch.cycles.Load()); i++ {
		src, fork := fmt.Sprintf("churn-%d-src", i), fmt.Sprintf("churn-%d-fork", i)
		srcStatus := mustSend(t, bn.client, http.MethodHead, bn.url(src), nil, nil).status
		forkStatus := mustSend(t, bn.client, http.MethodHead, bn.url(fork), nil, nil).status
		full := fmt.Sprintf("src %d\nsrc %d more\n", i, i)
		switch srcStatus {
		case http.StatusOK:
			present++
			got := string(readStream(t, bn.client, bn.url(src)).data)
			if got != full && got != fmt.Sprintf("src %d\n", i) {
				t.Errorf("backup: %s reads %q", src, got)
			}
		case http.StatusGone:
			if forkStatus != http.StatusOK {
				t.Errorf("backup: %s is soft-deleted (410) but its fork answers %d", src, forkStatus)
			}
		case http.StatusNotFound:
			if forkStatus != http.StatusNotFound {
				t.Errorf("backup: %s is absent but its fork answers %d", src, forkStatus)
			}
		default:
			t.Errorf("backup: HEAD %s: %d", src, srcStatus)
		}
		switch forkStatus {
		case http.StatusOK:
			if got, want := string(readStream(t, bn.client, bn.url(fork)).data), full+fmt.Sprintf("fork %d\n", i); got != want {
				t.Errorf("backup: %s reads %q; want %q", fork, got, want)
			}
		case http.StatusNotFound:
		default:
			t.Errorf("backup: HEAD %s: %d", fork, forkStatus)
		}
		if i < before {
			want := http.StatusNotFound
			if churnKeeps(i) {
				want = http.StatusOK
			}
			if srcStatus != want || forkStatus != want {
				t.Errorf("backup: cycle %d ended before the backup began, but %s answers %d and %s %d; want %d", i, src, srcStatus, fork, forkStatus, want)
			}
		}
	}
	t.Logf("churn: %d create/fork/delete cycles, %d of them before the backup began; %d sources are in the backup", ch.cycles.Load(), before, present)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
