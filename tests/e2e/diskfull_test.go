package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// Disk full and I/O errors (README, Durability): a full disk answers 507
// and is recoverable without a restart (DELETE frees space, writes resume
// once a commit succeeds); an I/O error, a failed fsync above all, answers
// 500 and stops writes until a restart, which recovers the last committed
// state. The faults come from a real small file system and from
// tests/faultinject, an LD_PRELOAD library that fails the server's write
// and sync calls on chosen files (LMDB's own included).

// mountTmpfs mounts a tmpfs of `size` at a new directory, or skips.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("mounts a tmpfs")
	}
	mnt := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs (needs privilege): %v: %s", size, err, bytes.TrimSpace(out))
	}
	// Registered before the server starts, so it runs after the server stops.
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	return mnt
}

// fillFileSystem writes the file at path until the file system it is on
// has no room left.
func fillFileSystem(t *testing.T, path string) {
	t.Helper()
	filler, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	for {
		if _, err := filler.Write(make([]byte, 4096)); err != nil {
			return
		}
	}
}

// oneLine checks that an error body is exactly one line starting with prefix.
func oneLine(t *testing.T, what string, r reply, status int, prefix string) {
	t.Helper()
	body := string(r.body)
	if r.status != status || !strings.HasPrefix(body, prefix) || !strings.HasSuffix(body, "\n") ||
		strings.Count(body, "\n") != 1 {
		t.Errorf("%s: %d %q; want %d and one line starting %q", what, r.status, body, status, prefix)
	}
}

func TestDiskFullRecoversWithoutRestart(t *testing.T) {
	binary(t)
	mnt := mountTmpfs(t, "2m")
	n := newNode(t, filepath.Join(mnt, "data"), "fsync always")
	n.start()
	c := n.client
	octets := map[string]string{"Content-Type": "application/octet-stream"}
	want := map[string][]byte{}
	for _, name := range []string{"fill", "keep"} {
		if r := mustSend(t, c, http.MethodPut, n.url(name), octets, nil); r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %q", name, r.status, r.body)
		}
	}
	appendTo := func(name string, body []byte) reply {
		t.Helper()
		r := mustSend(t, c, http.MethodPost, n.url(name), octets, body)
		if r.status == http.StatusNoContent {
			want[name] = append(want[name], body...)
		}
		return r
	}
	check := func(when string) {
		t.Helper()
		for name, data := range want {
			if got := readStream(t, c, n.url(name)).data; !bytes.Equal(got, data) {
				t.Errorf("%s: %s reads %d bytes; %d were acknowledged", when, name, len(got), len(data))
			}
		}
	}
	if r := appendTo("keep", []byte("kept\n")); r.status != http.StatusNoContent {
		t.Fatalf("POST keep: %d %q", r.status, r.body)
	}

	// 1. Fill the file system until an append gets 507.
	var full reply
	for i := 0; ; i++ {
		if i > 200 {
			t.Fatalf("appended %d bytes to a 2 MiB tmpfs without a 507", len(want["fill"]))
		}
		full = appendTo("fill", bytes.Repeat([]byte{byte('A' + i%26)}, 16<<10))
		if full.status != http.StatusNoContent {
			break
		}
	}
	oneLine(t, "the append that does not fit", full, http.StatusInsufficientStorage, "insufficient storage: ")
	t.Logf("507 after %d bytes: %q", len(want["fill"]), bytes.TrimSpace(full.body))
	check("full")

	// 2. DELETE still works, and frees the space: appends succeed again,
	// no restart.
	if r := mustSend(t, c, http.MethodDelete, n.url("fill"), nil, nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE on a full disk: %d %q; want 204", r.status, r.body)
	}
	delete(want, "fill")
	for i := 0; i < 8; i++ {
		if r := appendTo("keep", bytes.Repeat([]byte{'k'}, 16<<10)); r.status != http.StatusNoContent {
			t.Fatalf("append %d after the DELETE: %d %q; want 204", i, r.status, r.body)
		}
	}
	check("after the DELETE")

	// 3. Nothing left at all (a file of ours takes the rest): sooner or
	// later a commit cannot write streams.db: 507 too. Removing the file
	// lets writes resume, again without a restart.
	fillFileSystem(t, filepath.Join(mnt, "filler"))
	var refused reply
	ttl := map[string]string{"Content-Type": "text/plain", "Stream-TTL": "3600"}
	for i := 0; i < 5000 && refused.status == 0; i++ {
		r := mustSend(t, c, http.MethodPut, n.url(fmt.Sprintf("meta-%04d-%s", i, strings.Repeat("x", 200))), ttl, nil)
		if r.status != http.StatusCreated {
			refused = r
		}
	}
	if refused.status == 0 {
		t.Logf("5,000 creates on a full file system all succeeded (LMDB reused free pages)")
	} else {
		oneLine(t, "a create whose commit does not fit", refused, http.StatusInsufficientStorage, "insufficient storage: commit: ")
		t.Logf("a create on the full file system: %q", bytes.TrimSpace(refused.body))
	}
	check("with the file system full")
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	if r := mustSend(t, c, http.MethodPut, n.url("after"), octets, []byte("x")); r.status != http.StatusCreated {
		t.Errorf("a create once space is back: %d %q; want 201", r.status, r.body)
	} else {
		want["after"] = []byte("x")
	}
	if r := appendTo("keep", []byte("more\n")); r.status != http.StatusNoContent {
		t.Errorf("an append once space is back: %d %q; want 204", r.status, r.body)
	}
	check("once space is back")
	n.terminate()
	n.start()
	check("after a restart")
}

// faultLibrary builds tests/faultinject into a temporary directory.
func faultLibrary(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("LD_PRELOAD fault injection is Linux-only here")
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build tests/faultinject")
	}
	lib := filepath.Join(t.TempDir(), "faultinject.so")
	src, err := filepath.Abs(filepath.Join("..", "faultinject", "faultinject.c"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-O2", "-o", lib, src, "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v: %s", src, err, out)
	}
	return lib
}

// faultNode is a server whose write and sync calls fail as its control
// file says (tests/faultinject/faultinject.c).
type faultNode struct {
	*node
	control string
}

func newFaultNode(t *testing.T, lib string) *faultNode {
	t.Helper()
	dir := t.TempDir()
	// Segment files for every stream (no inline bytes): the faults are
	// injected into their writes and syncs.
	n := newNode(t, filepath.Join(dir, "data"), "fsync always\n\t\t\tinline_stream_size 0")
	f := &faultNode{node: n, control: filepath.Join(dir, "faults")}
	n.env = []string{"LD_PRELOAD=" + lib, "DS_FAULT_CONTROL=" + f.control}
	return f
}

// inject sets the fault rule ("" clears it).
func (f *faultNode) inject(rule string) {
	f.t.Helper()
	if err := os.WriteFile(f.control, []byte(rule+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *faultNode) segment(id, base int) string {
	return filepath.Join(f.dataDir, "segments", fmt.Sprintf("%016d", id), fmt.Sprintf("%016d.seg", base))
}

func TestFaultInjectionNoSpace(t *testing.T) {
	binary(t)
	lib := faultLibrary(t)
	cases := []struct {
		name, rule, body string
	}{
		{"segment write ENOSPC", "write ENOSPC .seg",
			"insufficient storage: pwrite %SEG%: No space left on device\n"},
		{"segment write EDQUOT", "write EDQUOT .seg",
			"insufficient storage: pwrite %SEG%: Disk quota exceeded\n"},
		{"LMDB commit write ENOSPC", "write ENOSPC data.mdb",
			"insufficient storage: commit: No space left on device\n"},
		{"LMDB commit short write", "write SHORT data.mdb",
			"insufficient storage: commit: short write to streams.db (the filesystem is full)\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFaultNode(t, lib)
			f.start()
			c := f.client
			text := map[string]string{"Content-Type": "text/plain"}
			if r := mustSend(t, c, http.MethodPut, f.url("s"), text, []byte("a")); r.status != http.StatusCreated {
				t.Fatalf("PUT: %d %q", r.status, r.body)
			}
			f.inject(tc.rule)
			want := strings.ReplaceAll(tc.body, "%SEG%", f.segment(1, 0))
			for i := 0; i < 2; i++ {
				r := mustSend(t, c, http.MethodPost, f.url("s"), text, []byte("b"))
				if r.status != http.StatusInsufficientStorage || string(r.body) != want {
					t.Fatalf("append %d under %q: %d %q; want 507 %q", i, tc.rule, r.status, r.body, want)
				}
			}
			if got := readStream(t, c, f.url("s")).data; string(got) != "a" {
				t.Errorf("read while full: %q; want %q", got, "a")
			}
			// Space is back: the next append takes the failed ones' place.
			f.inject("")
			r := mustSend(t, c, http.MethodPost, f.url("s"), text, []byte("c"))
			if r.status != http.StatusNoContent || r.header.Get("Stream-Next-Offset") != "0000000000000000_0000000000000002" {
				t.Fatalf("append once space is back: %d %q next %q; want 204 at offset 2", r.status, r.body, r.header.Get("Stream-Next-Offset"))
			}
			f.terminate()
			f.start()
			if got := readStream(t, c, f.url("s")).data; string(got) != "ac" {
				t.Errorf("after a restart: %q; want %q", got, "ac")
			}
		})
	}
}

func TestFaultInjectionIoErrorIsFatalUntilRestart(t *testing.T) {
	binary(t)
	lib := faultLibrary(t)
	cases := []struct {
		name, rule, body string
		create           bool // fault a create with a body (a new file: synced in place)
	}{
		{"LMDB commit write EIO", "write EIO data.mdb", "storage error: commit: Input/output error\n", false},
		{"LMDB commit fdatasync EIO", "sync EIO data.mdb", "storage error: commit: Input/output error\n", false},
		{"segment write EIO", "write EIO .seg", "storage error: pwrite %SEG%: Input/output error\n", false},
		{"segment fdatasync EIO", "sync EIO .seg", "storage error: fdatasync %SEG%: Input/output error\n", true},
		// An fsync's ENOSPC is as final as its EIO: not a 507.
		{"segment fdatasync ENOSPC", "sync ENOSPC .seg", "storage error: fdatasync %SEG%: No space left on device\n", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFaultNode(t, lib)
			f.start()
			c := f.client
			text := map[string]string{"Content-Type": "text/plain"}
			if r := mustSend(t, c, http.MethodPut, f.url("s"), text, []byte("a")); r.status != http.StatusCreated {
				t.Fatalf("PUT: %d %q", r.status, r.body)
			}
			f.inject(tc.rule)
			var r reply
			want := strings.ReplaceAll(tc.body, "%SEG%", f.segment(1, 0))
			if tc.create {
				want = strings.ReplaceAll(tc.body, "%SEG%", f.segment(2, 0))
				r = mustSend(t, c, http.MethodPut, f.url("t"), text, []byte("t"))
			} else {
				r = mustSend(t, c, http.MethodPost, f.url("s"), text, []byte("b"))
			}
			if r.status != http.StatusInternalServerError || string(r.body) != want {
				t.Fatalf("under %q: %d %q; want 500 %q", tc.rule, r.status, r.body, want)
			}
			// Fatal: refused until restart, even with the fault gone.
			f.inject("")
			refused := "storage failed earlier; writes are refused until the server restarts: " + want
			for _, req := range []struct{ method, name string }{{http.MethodPost, "s"}, {http.MethodPut, "u"}, {http.MethodDelete, "s"}} {
				r := mustSend(t, c, req.method, f.url(req.name), text, []byte("c"))
				if req.method == http.MethodDelete {
					r = mustSend(t, c, req.method, f.url(req.name), nil, nil)
				}
				if r.status != http.StatusInternalServerError || string(r.body) != refused {
					t.Errorf("%s %s after the error: %d %q; want 500 %q", req.method, req.name, r.status, r.body, refused)
				}
			}
			if got := readStream(t, c, f.url("s")).data; string(got) != "a" {
				t.Errorf("read after the error: %q; want %q", got, "a")
			}
			// A restart recovers the last committed state and takes writes.
			f.terminate()
			f.start()
			if got := readStream(t, c, f.url("s")).data; string(got) != "a" {
				t.Errorf("after a restart: %q; want %q", got, "a")
			}
			if r := mustSend(t, c, http.MethodHead, f.url("t"), nil, nil); r.status != http.StatusNotFound {
				t.Errorf("HEAD of the stream whose create failed: %d; want 404", r.status)
			}
			if r := mustSend(t, c, http.MethodPost, f.url("s"), text, []byte("d")); r.status != http.StatusNoContent {
				t.Errorf("append after the restart: %d %q; want 204", r.status, r.body)
			}
		})
	}
}
