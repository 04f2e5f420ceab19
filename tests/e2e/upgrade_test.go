package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// STORAGE_FORMAT.md, format 6: a format 4 data_dir (every stream's bytes in
// segment files) and a format 5 one (small streams' bytes in the `inline`
// database) open with no byte lost and are upgraded in place: every
// stream reads the same bytes in the same pages with the same offsets,
// producer state still deduplicates, and new appends and new streams (kept
// inline, in their records) survive restarts.
//
// testdata/format4-datadir.tar.gz was written by the format 4 server
// (commit e553151) with the streams of format4Fixture; testdata/format4.json
// is what it served then; testdata/format5-datadir.tar.gz and format5.json
// the same with the format 5 server (commit 3f09a78). To write them again
// with a format 4 or 5 binary:
//
//	DS_BIN=<format 4 binary> DS_WRITE_FORMAT4_FIXTURE=1 go test ./tests/e2e -run TestWriteFormat4Fixture
//	DS_BIN=<format 5 binary> DS_WRITE_FORMAT5_FIXTURE=1 go test ./tests/e2e -run TestWriteFormat5Fixture
//
// With DS_FORMAT4_BIN set, TestUpgradeFromFormat4Binary also builds the
// restart test's whole fixture (TTLs, forks, deletes, long producer ids)
// with that binary and compares it after the upgrade.

// The checked-in fixture written by the server of storage format `format`.
func formatArchiveFile(format int) string {
	return fmt.Sprintf("testdata/format%d-datadir.tar.gz", format)
}
func formatSnapshotFile(format int) string { return fmt.Sprintf("testdata/format%d.json", format) }

// format4Stream is one stream of the checked-in fixture as the format 4
// server served it.
type format4Stream struct {
	Name  string            `json:"name"`
	Head  map[string]string `json:"head"`
	Data  []byte            `json:"-"`
	SHA   string            `json:"sha256"` // of Data
	Len   int               `json:"len"`
	Pages []format4Page     `json:"pages"`
}

type format4Page struct {
	Offset   string `json:"offset"`
	Size     int    `json:"size"`
	Next     string `json:"next"`
	UpToDate string `json:"up_to_date"`
	Closed   string `json:"closed"`
}

// format4Fixture creates streams of every kind that has no lifetime (a TTL
// would expire the checked-in copy): text appended line by line, 200 KB
// of binary (four checksum blocks), JSON, a fork, a producer's stream, a
// stream closed by its producer, and an empty one.
func format4Fixture(t *testing.T, n *node) []string {
	t.Helper()
	c := n.client
	must := func(method, name string, hdr map[string]string, body []byte, want int) reply {
		t.Helper()
		r := mustSend(t, c, method, n.url(name), hdr, body)
		if r.status != want {
			t.Fatalf("%s %s: %d %q; want %d", method, name, r.status, r.body, want)
		}
		return r
	}
	text := map[string]string{"Content-Type": "text/plain"}
	must(http.MethodPut, "text", text, []byte("line 0\n"), http.StatusCreated)
	var anchor string
	for i := 1; i < 40; i++ {
		r := must(http.MethodPost, "text", text, []byte(fmt.Sprintf("line %d\n", i)), http.StatusNoContent)
		if i == 5 {
			anchor = r.header.Get("Stream-Next-Offset")
		}
	}
	big := make([]byte, 200_000)
	for i := range big {
		big[i] = byte(i*7 + i/251)
	}
	octets := map[string]string{"Content-Type": "application/octet-stream"}
	must(http.MethodPut, "binary", octets, big[:150_000], http.StatusCreated)
	must(http.MethodPost, "binary", octets, big[150_000:], http.StatusNoContent)
	jsonCT := map[string]string{"Content-Type": "application/json"}
	must(http.MethodPut, "json", jsonCT, []byte(`[{"n":0},{"n":1,"s":"é"}]`), http.StatusCreated)
	must(http.MethodPost, "json", jsonCT, []byte(`{"n":2}`), http.StatusNoContent)
	must(http.MethodPut, "fork", map[string]string{"Content-Type": "text/plain", "Stream-Forked-From": "/v1/stream/text", "Stream-Fork-Offset": anchor}, nil, http.StatusCreated)
	must(http.MethodPost, "fork", text, []byte("fork line\n"), http.StatusNoContent)
	must(http.MethodPut, "producer", text, nil, http.StatusCreated)
	for seq := 0; seq < 5; seq++ {
		must(http.MethodPost, "producer", producerHeaders("text/plain", "p1", 2, seq), []byte(fmt.Sprintf("p1 %d\n", seq)), http.StatusOK)
	}
	must(http.MethodPut, "closed", text, []byte("a\n"), http.StatusCreated)
	must(http.MethodPost, "closed", closingHeaders("closer", 0, 0), []byte("z\n"), http.StatusOK)
	must(http.MethodPut, "empty", text, nil, http.StatusCreated)
	return []string{"text", "binary", "json", "fork", "producer", "closed", "empty"}
}

func snapshotFormat4(t *testing.T, n *node, names []string) []format4Stream {
	t.Helper()
	var out []format4Stream
	for _, name := range names {
		rd := readStream(t, n.client, n.url(name))
		sum := sha256.Sum256(rd.data)
		s := format4Stream{Name: name, Head: headSnapshot(t, n.client, n.url(name)), Data: rd.data,
			SHA: hex.EncodeToString(sum[:]), Len: len(rd.data)}
		for _, p := range rd.pages {
			s.Pages = append(s.Pages, format4Page{p.offset, p.size, p.next, p.upToDate, p.closed})
		}
		out = append(out, s)
	}
	return out
}

func compareFormat4(t *testing.T, when string, want, got []format4Stream) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d streams; want %d", when, len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		for k, v := range w.Head {
			if g.Head[k] != v {
				t.Errorf("%s: HEAD %s: %s is %q; was %q", when, w.Name, k, g.Head[k], v)
			}
		}
		if g.SHA != w.SHA || g.Len != w.Len {
			t.Errorf("%s: %s reads %d bytes %q (SHA-256 %s); were %d bytes (%s)", when, w.Name, g.Len, clip(g.Data), g.SHA, w.Len, w.SHA)
		}
		if fmt.Sprint(g.Pages) != fmt.Sprint(w.Pages) {
			t.Errorf("%s: %s pages %+v; were %+v", when, w.Name, g.Pages, w.Pages)
		}
	}
}

// TestWriteFormat4Fixture and TestWriteFormat5Fixture write the checked-in
// fixtures; they run only when asked to, with DS_BIN pointing at a format 4
// or 5 server.
func TestWriteFormat4Fixture(t *testing.T) { writeFixture(t, 4) }
func TestWriteFormat5Fixture(t *testing.T) { writeFixture(t, 5) }

func writeFixture(t *testing.T, format int) {
	if os.Getenv(fmt.Sprintf("DS_WRITE_FORMAT%d_FIXTURE", format)) == "" {
		t.Skipf("set DS_WRITE_FORMAT%d_FIXTURE=1 and DS_BIN=<format %d binary> to write testdata/format%d*", format, format, format)
	}
	binary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	n := newNode(t, dataDir, "fsync always")
	n.start()
	snap := snapshotFormat4(t, n, format4Fixture(t, n))
	n.terminate()
	js, err := json.MarshalIndent(snap, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(formatSnapshotFile(format), append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	err = filepath.Walk(dataDir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dataDir, path)
		if err != nil || rel == "." || info.Name() == "LOCK" || info.Name() == "lock.mdb" {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = hdr.ModTime.Truncate(1e9), 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil || info.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil {
			_, err = tw.Write(data)
		}
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	if err == nil {
		err = os.WriteFile(formatArchiveFile(format), buf.Bytes(), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func extractTarGz(t *testing.T, archive, dest string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dest, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(path, dest+string(filepath.Separator)) {
			t.Fatalf("%s: entry %q escapes the destination", archive, hdr.Name)
		}
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err == nil {
			err = os.WriteFile(path, data, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestUpgradeFromFormat4(t *testing.T) { upgradeFromFixture(t, 4) }
func TestUpgradeFromFormat5(t *testing.T) { upgradeFromFixture(t, 5) }

func upgradeFromFixture(t *testing.T, format int) {
	bin := binary(t)
	js, err := os.ReadFile(formatSnapshotFile(format))
	if err != nil {
		t.Fatal(err)
	}
	var want []format4Stream
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	extractTarGz(t, formatArchiveFile(format), dataDir)
	n := newNode(t, dataDir, "fsync always")
	n.start()
	checkUpgradeLogged(t, n, format)
	names := make([]string, len(want))
	for i, s := range want {
		names[i] = s.Name
	}
	compareFormat4(t, "after the upgrade", want, snapshotFormat4(t, n, names))
	checkUpgradedProducers(t, n)
	if t.Failed() {
		return
	}

	// Appends after the upgrade: to streams whose bytes are in files (they
	// stay there), and to a new stream (inline); then SIGKILL and again.
	text := map[string]string{"Content-Type": "text/plain"}
	if r := mustSend(t, n.client, http.MethodPost, n.url("text"), text, []byte("after upgrade\n")); r.status != http.StatusNoContent {
		t.Fatalf("POST text after the upgrade: %d %q", r.status, r.body)
	}
	if r := mustSend(t, n.client, http.MethodPut, n.url("new"), text, []byte("new stream\n")); r.status != http.StatusCreated {
		t.Fatalf("PUT new after the upgrade: %d %q", r.status, r.body)
	}
	names = append(names, "new")
	before := snapshotFormat4(t, n, names)
	if got := string(before[0].Data); !strings.HasSuffix(got, "line 39\nafter upgrade\n") {
		t.Errorf("text after the append reads %q", clip(before[0].Data))
	}
	n.kill()
	n.start()
	compareFormat4(t, "after SIGKILL and restart", before, snapshotFormat4(t, n, names))
	n.terminate()
	if out, err := exec.Command(bin, "verify", "--data-dir", dataDir).CombinedOutput(); err != nil || !strings.Contains(string(out), "no problems") {
		t.Errorf("verify after the upgrade: %v\n%s", err, out)
	}
}

// checkUpgradeLogged: the server says it upgraded the directory (its
// output reaches the test through a pipe, so it may lag the start).
func checkUpgradeLogged(t *testing.T, n *node, from int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !eventually(ctx, 20*time.Millisecond, func() bool {
		return strings.Contains(n.srv.Output.String(), fmt.Sprintf("from storage format %d to 6", from))
	}) {
		t.Errorf("the server did not say it upgraded the directory:\n%s", tail(n.srv.Output.String(), 20))
	}
}

// checkUpgradedProducers: the producer state of the fixture still
// deduplicates and accepts what comes next, and the closed stream refuses.
func checkUpgradedProducers(t *testing.T, n *node) {
	t.Helper()
	r := mustSend(t, n.client, http.MethodPost, n.url("producer"), producerHeaders("text/plain", "p1", 2, 4), []byte("p1 4\n"))
	if r.status != http.StatusNoContent {
		t.Errorf("retry of p1's last append after the upgrade: %d %q; want 204 (a duplicate)", r.status, r.body)
	}
	r = mustSend(t, n.client, http.MethodPost, n.url("producer"), producerHeaders("text/plain", "p1", 2, 5), []byte("p1 5\n"))
	if r.status != http.StatusOK {
		t.Errorf("p1's next append after the upgrade: %d %q; want 200", r.status, r.body)
	}
	r = mustSend(t, n.client, http.MethodPost, n.url("producer"), producerHeaders("text/plain", "p1", 1, 6), []byte("stale\n"))
	if r.status != http.StatusForbidden {
		t.Errorf("an append with p1's old epoch after the upgrade: %d %q; want 403", r.status, r.body)
	}
	if got := string(readStream(t, n.client, n.url("producer")).data); got != "p1 0\np1 1\np1 2\np1 3\np1 4\np1 5\n" {
		t.Errorf("producer reads %q after the upgrade", got)
	}
	r = mustSend(t, n.client, http.MethodPost, n.url("closed"), map[string]string{"Content-Type": "text/plain"}, []byte("late\n"))
	if r.status != http.StatusConflict {
		t.Errorf("POST to the closed stream after the upgrade: %d %q; want 409", r.status, r.body)
	}
}

// TestUpgradeFromFormat4Binary runs the restart test's fixture through an
// upgrade, with a format 4 binary from DS_FORMAT4_BIN.
func TestUpgradeFromFormat4Binary(t *testing.T) {
	bin := binary(t)
	old := os.Getenv("DS_FORMAT4_BIN")
	if old == "" {
		t.Skip("DS_FORMAT4_BIN is not set (a format 4 durable-streams-server binary)")
	}
	t.Setenv("DS_BIN", old)
	n := newNode(t, filepath.Join(t.TempDir(), "data"), "fsync always")
	n.start()
	fx := buildRestartFixture(t, n)
	before := fx.snapshot(t, n)
	n.terminate()
	t.Setenv("DS_BIN", bin)
	n.start()
	checkUpgradeLogged(t, n, 4)
	fx.compare(t, "after the upgrade", before, fx.snapshot(t, n))
	n.kill()
	n.start()
	fx.compare(t, "after the upgrade, SIGKILL and restart", before, fx.snapshot(t, n))
}
