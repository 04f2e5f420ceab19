// Package container builds the root Dockerfile's final stage with buildah
// (no registry needed: it is FROM scratch) and runs the image as its
// non-root user in a chroot: health, a stream round trip, and where the data
// lands. The builder stage needs the golang image from a registry, which is
// not reachable here, so the test assembles the builder's /rootfs from the
// same paths (DS_BIN as the binary) and takes every instruction of the final
// stage verbatim from the Dockerfile.
package container

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durable-streams-server/durable-streams-server/tests/internal/dsserver"
)

const uid = 65532

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// finalStage returns the Dockerfile's last stage with COPY --from=builder
// taken from the build context instead.
func finalStage(t *testing.T, dockerfile string) string {
	t.Helper()
	i := strings.LastIndex(dockerfile, "\nFROM ")
	if i < 0 {
		t.Fatal("Dockerfile: no FROM")
	}
	stage := dockerfile[i+1:]
	if !strings.HasPrefix(stage, "FROM scratch\n") {
		t.Fatalf("Dockerfile: the final stage is not FROM scratch:\n%s", stage)
	}
	return regexp.MustCompile(`--from=builder ((?:--\S+ )*)/rootfs`).ReplaceAllString(stage, "${1}rootfs")
}

// sharedLibs lists the files the dynamic loader needs for bin ("" if static).
func sharedLibs(t *testing.T, bin string) []string {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil { // "not a dynamic executable"
		return nil
	}
	var libs []string
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			libs = append(libs, f)
		}
	}
	return libs
}

type buildah struct {
	t    *testing.T
	args []string
}

func (b *buildah) run(args ...string) string {
	b.t.Helper()
	out, err := b.cmd(args...).CombinedOutput()
	if err != nil {
		b.t.Fatalf("buildah %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (b *buildah) cmd(args ...string) *exec.Cmd {
	return exec.Command("buildah", append(append([]string{}, b.args...), args...)...)
}

type imageConfig struct {
	Config struct {
		User         string
		Env          []string
		Entrypoint   []string
		Cmd          []string
		WorkingDir   string
		Volumes      map[string]struct{}
		ExposedPorts map[string]struct{}
		Healthcheck  *struct {
			Test []string
		}
	} `json:"config"`
}

// buildImage builds the image from DS_BIN (skipping the test if it cannot)
// into a private buildah store under work, removed when the test ends.
func buildImage(t *testing.T, work string) *buildah {
	t.Helper()
	bin := os.Getenv("DS_BIN")
	if bin == "" {
		t.Skip("DS_BIN is not set; set it to the durable-streams-server binary to build the image")
	}
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Skip("buildah is not installed (apt-get install buildah); the image is not built")
	}
	if os.Geteuid() != 0 {
		t.Skip("buildah's chroot isolation needs root here")
	}
	root := dsserver.RepoRoot(t)
	b := &buildah{t: t, args: []string{"--storage-driver", "vfs", "--root", filepath.Join(work, "storage"), "--runroot", filepath.Join(work, "run")}}
	t.Cleanup(func() {
		b.cmd("rm", "--all").Run()
		b.cmd("rmi", "--all", "--force").Run()
	})

	// The builder stage's /rootfs, at the same paths.
	ctxDir := filepath.Join(work, "ctx")
	rootfs := filepath.Join(ctxDir, "rootfs")
	write(t, filepath.Join(rootfs, "usr/local/bin/durable-streams-server"), mustRead(t, bin), 0o755)
	if libs := sharedLibs(t, bin); len(libs) > 0 {
		// Before the static build (vendored LMDB/simdjson) is merged, the
		// binary still needs these; the image gets them beside it.
		t.Logf("DS_BIN is dynamically linked; copying %d shared libraries into the image", len(libs))
		for _, lib := range libs {
			write(t, filepath.Join(rootfs, lib), mustRead(t, lib), 0o755)
		}
	}
	write(t, filepath.Join(rootfs, "etc/durable-streams/Caddyfile"), mustRead(t, filepath.Join(root, "packaging/docker/Caddyfile")), 0o644)
	write(t, filepath.Join(rootfs, "etc/passwd"), []byte(fmt.Sprintf("root:x:0:0:root:/:/sbin/nologin\ndurable-streams:x:%d:%d:durable-streams:/data:/sbin/nologin\n", uid, uid)), 0o644)
	write(t, filepath.Join(rootfs, "etc/group"), []byte(fmt.Sprintf("root:x:0:\ndurable-streams:x:%d:\n", uid)), 0o644)
	for _, d := range []string{"../rootfs-data/data", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777|os.ModeSticky)
	write(t, filepath.Join(ctxDir, "Containerfile"), []byte(finalStage(t, string(mustRead(t, filepath.Join(root, "Dockerfile"))))), 0o644)

	start := time.Now()
	b.run("bud", "--format", "docker", "--isolation", "chroot", "--layers=false", "-t", "durable-streams-test:latest", "-f", filepath.Join(ctxDir, "Containerfile"), ctxDir)
	t.Logf("buildah bud: %v", time.Since(start).Round(time.Millisecond))
	return b
}

func TestContainerImage(t *testing.T) {
	work := t.TempDir()
	b := buildImage(t, work)
	rootfs := filepath.Join(work, "ctx", "rootfs")

	// The image's configuration.
	var inspect struct {
		OCIv1  imageConfig
		Docker struct {
			Config struct{ Healthcheck *struct{ Test []string } }
		}
	}
	if err := json.Unmarshal([]byte(b.run("inspect", "--type", "image", "durable-streams-test:latest")), &inspect); err != nil {
		t.Fatal(err)
	}
	c := inspect.OCIv1.Config
	if c.User != fmt.Sprintf("%d:%d", uid, uid) {
		t.Errorf("User %q, want %d:%d", c.User, uid, uid)
	}
	for _, want := range []string{"XDG_DATA_HOME=/data/caddy/data", "XDG_CONFIG_HOME=/data/caddy/config"} {
		if !strings.Contains(strings.Join(c.Env, "\n"), want) {
			t.Errorf("Env %q lacks %s", c.Env, want)
		}
	}
	if _, ok := c.Volumes["/data"]; !ok {
		t.Errorf("Volumes %v lack /data", c.Volumes)
	}
	if _, ok := c.ExposedPorts["4437/tcp"]; !ok {
		t.Errorf("ExposedPorts %v lack 4437/tcp", c.ExposedPorts)
	}
	// buildah keeps HEALTHCHECK in the Docker config, not the OCI one.
	hc := inspect.Docker.Config.Healthcheck
	if hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Test[1] != "/usr/local/bin/durable-streams-server" {
		t.Fatalf("HEALTHCHECK %+v: want an exec-form CMD running the binary (no shell in the image)", hc)
	}
	argv := append(append([]string{}, c.Entrypoint...), c.Cmd...)
	if len(argv) == 0 {
		t.Fatal("the image has no ENTRYPOINT/CMD")
	}

	// Run it: host network (chroot isolation), so the image's Caddyfile is
	// mounted with a free port instead of 4437; everything else is the image's.
	port := dsserver.FreePort(t)
	conf := filepath.Join(work, "conf")
	caddyfile := strings.Replace(string(mustRead(t, filepath.Join(rootfs, "etc/durable-streams/Caddyfile"))), ":4437 {", fmt.Sprintf(":%d {\n\tbind 127.0.0.1", port), 1)
	write(t, filepath.Join(conf, "Caddyfile"), []byte(caddyfile), 0o644)
	ctr := b.run("from", "--name", "ds-test", "durable-streams-test:latest")
	// /data in the image belongs to the user, so a new named volume (which
	// starts as a copy of it) is writable too.
	mnt := b.run("mount", ctr)
	if fi, err := os.Stat(filepath.Join(mnt, "data")); err != nil {
		t.Fatal(err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != uid {
		t.Fatalf("the image's /data is owned by %d:%d, want %d:%d", st.Uid, st.Gid, uid, uid)
	}

	// The volume: a host directory made by root, chowned as README says.
	data := filepath.Join(work, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, uid, uid); err != nil {
		t.Fatal(err)
	}
	runArgs := []string{"run", "--isolation", "chroot", "-v", conf + ":/etc/durable-streams:ro", "-v", data + ":/data", ctr, "--"}
	server := b.cmd(append(runArgs, argv...)...)
	var out bytes.Buffer
	server.Stdout, server.Stderr = &out, &out
	server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { server.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-server.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-server.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("server output:\n%s", out.String())
		}
	})

	// The HEALTHCHECK's own command, inside the container, against this port.
	health := append([]string{}, hc.Test[1:]...)
	for i, a := range health {
		health[i] = strings.Replace(a, "127.0.0.1:4437", fmt.Sprintf("127.0.0.1:%d", port), 1)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /health: %d, want 200", resp.StatusCode)
			}
			break
		}
		select {
		case <-exited:
			t.Fatalf("the server exited before it answered /health")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never answered /health: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// In a second container of the image: buildah runs one process per container.
	checker := b.run("from", "--name", "ds-health", "durable-streams-test:latest")
	hout, err := b.cmd(append([]string{"run", "--isolation", "chroot", checker, "--"}, health...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("the HEALTHCHECK command %q failed in the container: %v\n%s", health, err, hout)
	}
	t.Logf("HEALTHCHECK in the container: %s", bytes.TrimSpace(hout))

	// A stream round trip from the host.
	base := fmt.Sprintf("http://127.0.0.1:%d/v1/stream/container", port)
	dsserver.TextRequest(t, http.MethodPut, base, "", http.StatusCreated)
	dsserver.TextRequest(t, http.MethodPost, base, "hello from the container", http.StatusNoContent)
	if got := dsserver.TextRequest(t, http.MethodGet, base+"?offset=-1", "", http.StatusOK); got != "hello from the container" {
		t.Fatalf("read back %q", got)
	}

	// The store is in /data/streams and Caddy's state in /data/caddy, written by uid 65532.
	for _, p := range []string{"streams/LOCK", "streams/streams.db/data.mdb", "caddy/config/caddy/autosave.json"} {
		fi, err := os.Stat(filepath.Join(data, p))
		if err != nil {
			t.Fatalf("/data/%s: %v", p, err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != uid {
			t.Fatalf("/data/%s is owned by %d:%d, want %d:%d (the image's non-root user)", p, st.Uid, st.Gid, uid, uid)
		}
	}
}

// TestContainerConformance runs the protocol conformance suite against the
// image, in memory and with data_dir, through a wrapper that run.sh starts
// as its "binary": each start is a fresh container of the image running as
// uid 65532, with run.sh's temp directory (Caddyfile, data) mounted. It takes
// minutes, so it runs only with DS_CONTAINER_CONFORMANCE=1
// (make test-container-conformance).
func TestContainerConformance(t *testing.T) {
	if os.Getenv("DS_CONTAINER_CONFORMANCE") != "1" {
		t.Skip("set DS_CONTAINER_CONFORMANCE=1 (make test-container-conformance) to run the conformance suite against the image")
	}
	root := dsserver.RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "tests/conformance/node_modules/.bin/vitest")); err != nil {
		t.Skip("tests/conformance/node_modules is missing; run npm ci there")
	}
	work := t.TempDir()
	b := buildImage(t, work)
	wrapper := filepath.Join(work, "durable-streams-server")
	script := fmt.Sprintf(`#!/bin/sh
# run.sh starts: <this> run --config <dir>/Caddyfile --adapter caddyfile
dir=""
prev=""
for a in "$@"; do [ "$prev" = --config ] && dir=$(dirname "$a"); prev=$a; done
[ -n "$dir" ] || { echo "wrapper: no --config" >&2; exit 2; }
chown -R %d:%d "$dir"
ctr=$(buildah %s from durable-streams-test:latest) || exit 1
exec buildah %s run --isolation chroot -v "$dir:$dir" "$ctr" -- /usr/local/bin/durable-streams-server "$@"
`, uid, uid, strings.Join(b.args, " "), strings.Join(b.args, " "))
	write(t, wrapper, []byte(script), 0o755)
	for _, mode := range []string{"memory", "data_dir"} {
		cmd := exec.Command(filepath.Join(root, "tests/conformance/run.sh"), wrapper, mode)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		summary := lines[len(lines)-1]
		t.Logf("conformance (%s) against the image: %s", mode, summary)
		if err != nil {
			t.Errorf("conformance (%s): %v\n%s", mode, err, out)
		}
	}
}
