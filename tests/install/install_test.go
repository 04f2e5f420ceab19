// Package install tests install.sh the way users run it: piped into dash (and
// busybox sh), against a release mirror served by our own binary's Caddy
// file_server, laid out as <base>/v<VERSION>/<tarball> + SHA256SUMS and
// <base>/latest/SHA256SUMS.
package install

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/tests/internal/dsserver"
)

const name = "durable-streams-server"

func needShell(t *testing.T, sh string) string {
	t.Helper()
	path, err := exec.LookPath(sh)
	if err != nil {
		t.Skipf("%s is not installed (apt-get install %s); install.sh is tested under it", sh, sh)
	}
	return path
}

// release is one version's files: the tarball's entries (path → content, mode).
type entry struct {
	data []byte
	mode int64
}

// makeTarball writes durable-streams-server_<v>_linux_amd64/ with entries into a .tar.gz.
func makeTarball(t *testing.T, path, dir string, entries map[string]entry) {
	t.Helper()
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		t.Fatal(err)
	}
	for p, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: dir + "/" + p, Mode: e.mode, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// mirror is a release tree on disk and the file_server serving it.
type mirror struct {
	root string
	url  string
}

// addRelease publishes version v for linux_amd64; tamper corrupts its SHA256SUMS line.
func (m *mirror) addRelease(t *testing.T, v string, entries map[string]entry, tamper bool) []byte {
	t.Helper()
	dir := filepath.Join(m.root, "v"+v)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf("%s_%s_linux_amd64.tar.gz", name, v)
	makeTarball(t, filepath.Join(dir, file), strings.TrimSuffix(file, ".tar.gz"), entries)
	tgz := mustRead(t, filepath.Join(dir, file))
	digest := sum(tgz)
	if tamper {
		digest = sum(append(tgz, 'x'))
	}
	// Other platforms' lines, as a real SHA256SUMS has them.
	sums := fmt.Sprintf("%s  %s_%s_darwin_arm64.tar.gz\n%s  %s\n%s  %s_%s_windows_amd64.zip\n",
		sum([]byte("darwin")), name, v, digest, file, sum([]byte("windows")), name, v)
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums), 0o644); err != nil {
		t.Fatal(err)
	}
	return tgz
}

// setLatest makes <base>/latest/SHA256SUMS name version v.
func (m *mirror) setLatest(t *testing.T, v string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(m.root, "latest"), 0o755); err != nil {
		t.Fatal(err)
	}
	sums := mustRead(t, filepath.Join(m.root, "v"+v, "SHA256SUMS"))
	if err := os.WriteFile(filepath.Join(m.root, "latest", "SHA256SUMS"), sums, 0o644); err != nil {
		t.Fatal(err)
	}
}

func startMirror(t *testing.T, bin string) *mirror {
	t.Helper()
	m := &mirror{root: t.TempDir()}
	addr := fmt.Sprintf("127.0.0.1:%d", dsserver.FreePort(t))
	if err := os.WriteFile(filepath.Join(m.root, "ping"), []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	server := dsserver.Start(t, bin, nil, "file-server", "--root", m.root, "--listen", addr)
	m.url = "http://" + addr
	server.WaitOK(nil, m.url+"/ping", 10*time.Second)
	return m
}

type result struct {
	out  string
	code int
}

// pipe runs install.sh the way `curl … | sh -s -- args` does: the script on stdin.
func pipe(t *testing.T, shell []string, env []string, args ...string) result {
	t.Helper()
	script := mustRead(t, filepath.Join(dsserver.RepoRoot(t), "install.sh"))
	argv := append(append([]string{}, shell[1:]...), append([]string{"-s", "--"}, args...)...)
	cmd := exec.Command(shell[0], argv...)
	cmd.Stdin = bytes.NewReader(script)
	cmd.Dir = t.TempDir()
	return run(t, cmd, env)
}

func run(t *testing.T, cmd *exec.Cmd, env []string) result {
	t.Helper()
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%v: %v", cmd.Args, err)
		}
		code = ee.ExitCode()
	}
	return result{string(out), code}
}

func mustContain(t *testing.T, what string, r result, wantCode int, subs ...string) {
	t.Helper()
	if r.code != wantCode {
		t.Fatalf("%s: exit %d, want %d; output:\n%s", what, r.code, wantCode, r.out)
	}
	for _, s := range subs {
		if !strings.Contains(r.out, s) {
			t.Fatalf("%s: output lacks %q:\n%s", what, s, r.out)
		}
	}
}

// fakeOld is an "older release": a script answering `version` like the binary.
var fakeOld = entry{data: []byte("#!/bin/sh\necho 'durable-streams-server v0.0.9 (old)'\n"), mode: 0o755}

// fakeNew stands in for a newer release's binary.
var fakeNew = entry{data: []byte("#!/bin/sh\necho 'durable-streams-server v0.1.2 (stand-in)'\n"), mode: 0o755}

// releaseEntries is a release tarball's content with this binary.
func releaseEntries(t *testing.T, binData entry) map[string]entry {
	root := dsserver.RepoRoot(t)
	return map[string]entry{
		name:                binData,
		"install.sh":        {mustRead(t, filepath.Join(root, "install.sh")), 0o755},
		"Caddyfile.example": {mustRead(t, filepath.Join(root, "Caddyfile.example")), 0o644},
		"packaging/systemd/durable-streams.service": {mustRead(t, filepath.Join(root, "packaging/systemd/durable-streams.service")), 0o644},
	}
}

func TestInstallScript(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the test mirror carries linux_amd64 only; this is %s_%s", runtime.GOOS, runtime.GOARCH)
	}
	bin := dsserver.Binary(t)
	dash := needShell(t, "dash")
	m := startMirror(t, bin)
	// Only 0.1.0 carries the real binary (86 MB unstripped); the other
	// releases carry small stand-ins that answer `version`, to keep this fast.
	real := releaseEntries(t, entry{mustRead(t, bin), 0o755})
	m.addRelease(t, "0.0.9", map[string]entry{name: fakeOld}, false)
	m.addRelease(t, "0.1.0", real, false)
	m.addRelease(t, "0.1.1", releaseEntries(t, fakeNew), true) // SHA256SUMS does not match the tarball
	m.addRelease(t, "0.1.2", releaseEntries(t, fakeNew), false)
	m.setLatest(t, "0.1.0")
	env := []string{"DS_INSTALL_BASE_URL=" + m.url + "/"}
	prefix := filepath.Join(t.TempDir(), "usr")
	dest := filepath.Join(prefix, "bin", name)
	sh := []string{dash}

	// Fresh install of a pinned version.
	r := pipe(t, sh, env, "--version", "v0.0.9", "--prefix", prefix)
	mustContain(t, "fresh install", r, 0, "installed "+dest, "release 0.0.9 for linux_amd64, checksum verified",
		"now: durable-streams-server v0.0.9 (old)", "checksum verified (sha256 ")
	if !bytes.Equal(mustRead(t, dest), fakeOld.data) {
		t.Fatal("fresh install: the installed file is not the release's binary")
	}

	// Upgrade to the latest, found through <base>/latest/SHA256SUMS.
	r = pipe(t, sh, env, "--prefix", prefix)
	mustContain(t, "upgrade", r, 0, "latest release is 0.1.0", "upgraded "+dest,
		"was: durable-streams-server v0.0.9 (old)", "now: durable-streams-server v0.1.0")
	if !bytes.Equal(mustRead(t, dest), real[name].data) {
		t.Fatal("upgrade: the installed file is not 0.1.0's binary")
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("upgrade: %s mode %v (%v), want 0755", dest, fi.Mode(), err)
	}

	// A tarball that does not match SHA256SUMS installs nothing.
	r = pipe(t, sh, env, "--version", "0.1.1", "--prefix", prefix)
	mustContain(t, "wrong checksum", r, 1, "checksum mismatch for durable-streams-server_0.1.1_linux_amd64.tar.gz", "nothing installed")
	if !bytes.Equal(mustRead(t, dest), real[name].data) {
		t.Fatal("wrong checksum: the installed binary changed")
	}

	// A version the mirror does not have.
	r = pipe(t, sh, env, "--version", "9.9.9", "--prefix", prefix)
	mustContain(t, "missing version", r, 1, "download failed: "+m.url+"/v9.9.9/SHA256SUMS")

	// An architecture there is no release for, and an OS.
	fake := t.TempDir()
	uname := "#!/bin/sh\ncase $1 in -s) echo ${FAKE_OS:-Linux} ;; -m) echo ${FAKE_ARCH:-x86_64} ;; *) echo Linux ;; esac\n"
	if err := os.WriteFile(filepath.Join(fake, "uname"), []byte(uname), 0o755); err != nil {
		t.Fatal(err)
	}
	fakePath := "PATH=" + fake + ":" + os.Getenv("PATH")
	r = pipe(t, sh, append(env, fakePath, "FAKE_ARCH=riscv64"), "--prefix", prefix)
	mustContain(t, "unknown architecture", r, 1, "unsupported architecture: riscv64")
	r = pipe(t, sh, append(env, fakePath, "FAKE_OS=FreeBSD"), "--prefix", prefix)
	mustContain(t, "unknown OS", r, 1, "unsupported operating system: FreeBSD")
	r = pipe(t, sh, append(env, fakePath, "FAKE_OS=Darwin"), "--prefix", prefix, "--systemd")
	mustContain(t, "systemd on macOS", r, 1, "--systemd is for Linux")
	// On an Apple Silicon Mac it asks for the darwin_arm64 tarball (which
	// this mirror lists in SHA256SUMS but does not carry).
	r = pipe(t, sh, append(env, fakePath, "FAKE_OS=Darwin", "FAKE_ARCH=arm64"), "--prefix", prefix)
	mustContain(t, "darwin arm64", r, 1, "download failed: "+m.url+"/v0.1.0/durable-streams-server_0.1.0_darwin_arm64.tar.gz")
	// aarch64 maps to arm64, which this mirror's 0.1.0 lacks.
	r = pipe(t, sh, append(env, fakePath, "FAKE_ARCH=aarch64"), "--prefix", prefix)
	mustContain(t, "arm64 lookup", r, 1, "has no linux_arm64 tarball")
	if !bytes.Equal(mustRead(t, dest), real[name].data) {
		t.Fatal("refused installs changed the installed binary")
	}

	// From an unpacked release tarball: installs the binary beside it, no download.
	unpacked := t.TempDir()
	tgz := filepath.Join(m.root, "v0.1.0", name+"_0.1.0_linux_amd64.tar.gz")
	if out, err := exec.Command("tar", "-xzf", tgz, "-C", unpacked).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	prefix2 := filepath.Join(t.TempDir(), "local")
	cmd := exec.Command(dash, "./install.sh", "--prefix", prefix2)
	cmd.Dir = filepath.Join(unpacked, name+"_0.1.0_linux_amd64")
	r = run(t, cmd, []string{"DS_INSTALL_BASE_URL=http://127.0.0.1:1/unreachable"})
	mustContain(t, "from tarball", r, 0, "installed "+filepath.Join(prefix2, "bin", name)+" (from "+cmd.Dir+")")
	if !bytes.Equal(mustRead(t, filepath.Join(prefix2, "bin", name)), real[name].data) {
		t.Fatal("from tarball: wrong binary installed")
	}

	// --systemd into a staging root (DS_INSTALL_ROOT), with id and chown faked:
	// the unit's ExecStart points at the prefix, an existing Caddyfile is kept.
	stage := t.TempDir()
	for file, body := range map[string]string{
		"id":    "#!/bin/sh\nexit 0\n",
		"chown": "#!/bin/sh\necho \"$@\" >> \"$CHOWN_LOG\"\n",
	} {
		if err := os.WriteFile(filepath.Join(fake, file), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	chownLog := filepath.Join(t.TempDir(), "chown.log")
	senv := append(env, fakePath, "DS_INSTALL_ROOT="+stage, "CHOWN_LOG="+chownLog)
	r = pipe(t, sh, senv, "--version", "0.1.2", "--prefix", prefix, "--systemd")
	unit := filepath.Join(stage, "etc/systemd/system/durable-streams.service")
	config := filepath.Join(stage, "etc/durable-streams/Caddyfile")
	mustContain(t, "systemd", r, 0, "wrote "+unit, "wrote "+config)
	if !strings.Contains(string(mustRead(t, unit)), "ExecStart="+dest+" run") {
		t.Fatalf("systemd: the unit's ExecStart does not run %s:\n%s", dest, mustRead(t, unit))
	}
	if !bytes.Equal(mustRead(t, config), real["Caddyfile.example"].data) {
		t.Fatal("systemd: the Caddyfile is not Caddyfile.example")
	}
	if got := string(mustRead(t, chownLog)); got != "durable-streams:durable-streams "+filepath.Join(stage, "var/lib/durable-streams")+"\n" {
		t.Fatalf("systemd: chown calls %q", got)
	}
	if err := os.WriteFile(config, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = pipe(t, sh, senv, "--version", "0.1.2", "--prefix", prefix, "--systemd")
	mustContain(t, "systemd again", r, 0, "reinstalled "+dest, "kept the existing "+config)
	if string(mustRead(t, config)) != "# mine\n" {
		t.Fatal("systemd: an existing Caddyfile was overwritten")
	}
}

// The same piped install under busybox sh, with busybox's wget and
// sha256sum only (no curl on PATH).
func TestInstallScriptBusybox(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the test mirror carries linux_amd64 only; this is %s_%s", runtime.GOOS, runtime.GOARCH)
	}
	bin := dsserver.Binary(t)
	busybox := needShell(t, "busybox")
	m := startMirror(t, bin)
	m.addRelease(t, "0.1.2", releaseEntries(t, fakeNew), false)
	m.setLatest(t, "0.1.2")
	// A PATH of busybox applets only.
	tools := t.TempDir()
	for _, applet := range []string{"sh", "wget", "sha256sum", "tar", "gzip", "find", "head", "sed", "awk", "cut", "mkdir", "mktemp", "cp", "mv", "chmod", "rm", "dirname", "basename", "cat", "uname"} {
		if err := os.Symlink(busybox, filepath.Join(tools, applet)); err != nil {
			t.Fatal(err)
		}
	}
	prefix := filepath.Join(t.TempDir(), "opt")
	r := pipe(t, []string{busybox, "sh"}, []string{"PATH=" + tools, "DS_INSTALL_BASE_URL=" + m.url}, "--prefix", prefix)
	dest := filepath.Join(prefix, "bin", name)
	mustContain(t, "busybox install", r, 0, "latest release is 0.1.2", "installed "+dest, "checksum verified")
	if !bytes.Equal(mustRead(t, dest), fakeNew.data) {
		t.Fatal("busybox install: wrong binary installed")
	}
}
