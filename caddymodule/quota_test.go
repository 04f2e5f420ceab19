package caddymodule

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/durable-streams-server/durable-streams-server/native"
)

// fakeFiles serves the named contents; anything else does not exist.
func fakeFiles(files map[string]string) readFile {
	return func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
}

const meminfo8GiB = "MemTotal:        8388608 kB\nMemFree:         1234 kB\n"

func TestDefaultMemoryBudget(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"nothing readable: no budget", nil, 0},
		{"MemTotal only", map[string]string{"/proc/meminfo": meminfo8GiB}, 4 << 30},
		{"cgroup v2 memory.max below MemTotal", map[string]string{
			"/proc/meminfo":     meminfo8GiB,
			"/proc/self/cgroup": "0::/system.slice/ds.scope\n",
			"/sys/fs/cgroup/system.slice/ds.scope/memory.max": "536870912\n",
		}, 256 << 20},
		{"cgroup namespace root", map[string]string{
			"/proc/meminfo":             meminfo8GiB,
			"/proc/self/cgroup":         "0::/\n",
			"/sys/fs/cgroup/memory.max": "1073741824\n",
		}, 512 << 20},
		{"memory.max is max: MemTotal", map[string]string{
			"/proc/meminfo":             meminfo8GiB,
			"/proc/self/cgroup":         "0::/\n",
			"/sys/fs/cgroup/memory.max": "max\n",
		}, 4 << 30},
		{"cgroup above MemTotal: MemTotal", map[string]string{
			"/proc/meminfo":             meminfo8GiB,
			"/proc/self/cgroup":         "0::/\n",
			"/sys/fs/cgroup/memory.max": "68719476736\n",
		}, 4 << 30},
		{"cgroup v1 without a memory limit file: MemTotal", map[string]string{
			"/proc/meminfo":     meminfo8GiB,
			"/proc/self/cgroup": "12:memory:/docker/abc\n",
		}, 4 << 30},
		{"cgroup v1 memory.limit_in_bytes", map[string]string{
			"/proc/meminfo":     meminfo8GiB,
			"/proc/self/cgroup": "5:cpuacct,memory:/docker/abc\n0::/\n",
			"/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "2147483648\n",
		}, 1 << 30},
		{"cgroup v1 unlimited: MemTotal", map[string]string{
			"/proc/meminfo":     meminfo8GiB,
			"/proc/self/cgroup": "4:memory:/x\n",
			"/sys/fs/cgroup/memory/x/memory.limit_in_bytes": "9223372036854771712\n",
		}, 4 << 30},
		{"cgroup v1 in a namespace: the mount's root", map[string]string{
			"/proc/meminfo":     meminfo8GiB,
			"/proc/self/cgroup": "4:memory:/host/path\n",
			"/sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n",
		}, 512 << 20},
		{"hybrid: v2 in unified", map[string]string{
			"/proc/meminfo":                       meminfo8GiB,
			"/proc/self/cgroup":                   "0::/s\n",
			"/sys/fs/cgroup/unified/s/memory.max": "1073741824\n",
		}, 512 << 20},
		{"garbage", map[string]string{
			"/proc/meminfo":             "MemTotal: lots kB\n",
			"/proc/self/cgroup":         "0::/\n",
			"/sys/fs/cgroup/memory.max": "-5\n",
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := defaultMemoryBudget(fakeFiles(tc.files)); got != tc.want {
				t.Fatalf("defaultMemoryBudget = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestDefaultInflightBodyBytesLeavesRoomForStreams(t *testing.T) {
	cg := func(limit string) readFile {
		return fakeFiles(map[string]string{"/proc/meminfo": meminfo8GiB, "/proc/self/cgroup": "0::/\n",
			"/sys/fs/cgroup/memory.max": limit})
	}
	for _, tc := range []struct {
		read      readFile
		maxAppend int64
		want      int64
	}{
		{fakeFiles(nil), 64 << 20, DefaultMaxInflightBodyBytes}, // unknown: the default
		{cg("max"), 64 << 20, DefaultMaxInflightBodyBytes},      // 8 GiB / 8 > 256 MiB
		{cg("536870912"), 16 << 20, 64 << 20},                   // 512 MiB / 8
		{cg("268435456"), 64 << 20, 64 << 20},                   // never below max_append_size
		{cg("536870912"), 512 << 20, 512 << 20},
	} {
		if got := defaultInflightBodyBytes(tc.read, tc.maxAppend); got != tc.want {
			t.Errorf("defaultInflightBodyBytes(max_append %d) = %d, want %d", tc.maxAppend, got, tc.want)
		}
	}
}

func TestMemoryBudgetAppliesInMemoryOnly(t *testing.T) {
	files := fakeFiles(map[string]string{"/proc/meminfo": meminfo8GiB})
	for _, tc := range []struct {
		h    Handler
		want int64
	}{
		{Handler{}, 4 << 30},
		{Handler{MaxMemoryBytes: 1000}, 1000},
		{Handler{MaxMemoryBytes: -1}, 0},
		{Handler{DataDir: "/var/lib/ds"}, 0},
		{Handler{DataDir: "/var/lib/ds", MaxMemoryBytes: 1000}, 0},
	} {
		if got := tc.h.memoryBudget(files); got != tc.want {
			t.Errorf("%+v: memoryBudget = %d, want %d", tc.h, got, tc.want)
		}
	}
}

func TestCaddyfileMemoryAndQuota(t *testing.T) {
	d := caddyfile.NewTestDispenser(`durable_streams {
		max_memory_bytes 512MiB
		quota {
			max_streams_per_group 1000
			max_bytes_per_group 1GiB
			group_depth 2
		}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.MaxMemoryBytes != 512<<20 || h.Quota == nil || *h.Quota != (Quotas{1000, 1 << 30, 2}) {
		t.Fatalf("parsed %d %+v", h.MaxMemoryBytes, h.Quota)
	}
	if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser("durable_streams {\nmax_memory_bytes off\n}")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"max_memory_bytes", "max_memory_bytes 0", "max_memory_bytes lots",
		"quota {\nmax_streams_per_group 0\n}", "quota {\nmax_streams_per_group -1\n}",
		"quota {\nmax_bytes_per_group 0\n}", "quota {\ngroup_depth x\n}", "quota {\nnonsense 1\n}", "quota x {\n}"} {
		d := caddyfile.NewTestDispenser("durable_streams {\n" + bad + "\n}")
		if err := new(Handler).UnmarshalCaddyfile(d); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestValidateLimits(t *testing.T) {
	for _, tc := range []struct {
		h    Handler
		want string // "" for valid
	}{
		{Handler{MaxMemoryBytes: -1}, ""},
		{Handler{MaxMemoryBytes: -2}, "max_memory_bytes must be a size, or -1 (off): -2"},
		{Handler{Quota: &Quotas{MaxStreamsPerGroup: -1}}, "quota max_streams_per_group must not be negative: -1"},
		{Handler{Quota: &Quotas{MaxBytesPerGroup: -1}}, "quota max_bytes_per_group must not be negative: -1"},
		{Handler{Quota: &Quotas{GroupDepth: 2}, RateLimit: &RateLimits{GroupDepth: 2}}, ""},
		{Handler{Quota: &Quotas{GroupDepth: 2}, RateLimit: &RateLimits{GroupDepth: 1}},
			"quota group_depth (2) and rate_limit group_depth (1) must agree: they name the same placement groups"},
	} {
		err := tc.h.validateLimits()
		if got := ""; err != nil {
			got = err.Error()
			if got != tc.want {
				t.Errorf("%+v: %q, want %q", tc.h, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%+v: accepted, want %q", tc.h, tc.want)
		}
	}
	// One group depth for both: quota's, else rate_limit's, else 1.
	if d := (&Handler{RateLimit: &RateLimits{GroupDepth: 3}}).groupDepth(); d != 3 {
		t.Errorf("groupDepth = %d, want rate_limit's 3", d)
	}
	if d := (&Handler{Quota: &Quotas{GroupDepth: 2}}).groupDepth(); d != 2 {
		t.Errorf("groupDepth = %d, want quota's 2", d)
	}
	if d := (&Handler{}).groupDepth(); d != 1 {
		t.Errorf("groupDepth = %d, want 1", d)
	}
}

func TestGroupMetricsAndEngineRejections(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatal(err)
	}
	opts := native.Options{StreamRoot: "/quota-metrics", MaxStreamsPerGroup: 1, MaxBytesPerGroup: 4, MaxMemoryBytes: 6}
	key := poolKey(opts)
	e, _, err := loadEngine(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseEngine(key)
	put := func(path, body string) int {
		var req native.Request
		req.Set(native.FieldMethod, "PUT")
		req.Set(native.FieldPath, path)
		req.Set(native.FieldContentType, "text/plain")
		req.Body = []byte(body)
		resp, err := e.Handle(&req, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Release()
		return resp.Status()
	}
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/quota-metrics/a/s", "1234", 201},
		{"/quota-metrics/a/t", "", 507},      // streams quota
		{"/quota-metrics/b/s", "12345", 403}, // larger than the bytes quota
		{"/quota-metrics/b/s", "12", 201},
		{"/quota-metrics/c/s", "1", 507}, // memory budget: 6 held
	} {
		if got := put(c.path, c.body); got != c.want {
			t.Fatalf("PUT %s %q: %d, want %d", c.path, c.body, got, c.want)
		}
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("gather (pedantic): %v", err)
	}
	storage := `storage="memory:/quota-metrics"`
	expected := `
# HELP caddy_durable_streams_group_bytes Stream data held by the 10 placement groups holding the most, by storage and group (the others: other_groups_bytes).
# TYPE caddy_durable_streams_group_bytes gauge
caddy_durable_streams_group_bytes{group="a",` + storage + `} 4
caddy_durable_streams_group_bytes{group="b",` + storage + `} 2
# HELP caddy_durable_streams_other_groups_bytes Stream data held by the placement groups group_bytes does not list, by storage.
# TYPE caddy_durable_streams_other_groups_bytes gauge
caddy_durable_streams_other_groups_bytes{` + storage + `} 0
# HELP caddy_durable_streams_stream_bytes Stream data held (each stream's own bytes: a fork's from its fork offset), by storage; in memory, what max_memory_bytes bounds.
# TYPE caddy_durable_streams_stream_bytes gauge
caddy_durable_streams_stream_bytes{` + storage + `} 6
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "caddy_durable_streams_group_bytes",
		"caddy_durable_streams_other_groups_bytes", "caddy_durable_streams_stream_bytes"); err != nil {
		t.Error(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "caddy_durable_streams_rejections_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			got[m.GetLabel()[0].GetValue()] += m.GetCounter().GetValue()
		}
	}
	// Other engines of this test binary may have refused too: at least ours.
	for reason, want := range map[string]float64{rejectMemoryBudget: 1, rejectQuotaStreams: 1, rejectQuotaBytes: 1} {
		if got[reason] < want {
			t.Errorf("rejections_total{reason=%q} = %v, want >= %v", reason, got[reason], want)
		}
	}
	if len(got) != int(rejectReasons)+3 {
		t.Errorf("rejections_total has %d reasons, want the fixed %d: %v", len(got), int(rejectReasons)+3, got)
	}
}
