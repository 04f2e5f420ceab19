package caddymodule

import (
	"context"

	"fmt"
	"github.com/caddyserver/caddy/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func testPool(dials ...string) reverseproxy.UpstreamPool {
	var pool reverseproxy.UpstreamPool
	for _, d := range dials {
		pool = append(pool, &reverseproxy.Upstream{Dial: d})
	}
	return pool
}

func provisioned(t *testing.T, s *PlacementSelection) *PlacementSelection {
	t.Helper()
	if err := s.Provision(caddyContext()); err != nil {
		t.Fatal(err)
	}
	return s
}

// The group is quota's and rate_limit's (group_depth segments under the
// root); subscriptions live with the group their id names.
func TestPlacementRouterGroup(t *testing.T) {
	for _, tc := range []struct {
		depth    int
		re, path string
		want     string
	}{
		{1, "", "/v1/stream/tenant-7/chat/1", "tenant-7"},
		{1, "", "/v1/stream/solo", "solo"},
		{2, "", "/v1/stream/eu/tenant-7/chat", "eu/tenant-7"},
		{1, "", "/v1/stream/__ds/subscriptions/tenant-7.billing/claim", "tenant-7"},
		{1, "", "/v1/stream/__ds/subscriptions/plain", "plain"},
		{2, "", "/v1/stream/__ds/subscriptions/eu.tenant-7.billing", "eu/tenant-7"},
		{1, "", "/v1/stream/__ds/jwks.json", "__ds"},
		{1, `^([a-z0-9]+)-`, "/v1/stream/fork-create-head-src-17", "fork"},
		{1, `^([a-z0-9]+)-`, "/v1/stream/nodash/x", "nodash"}, // no match: group_depth
	} {
		p := Placement{GroupDepth: tc.depth, GroupRegexp: tc.re}
		if err := p.provision(); err != nil {
			t.Fatal(err)
		}
		if got := p.Group(tc.path); got != tc.want {
			t.Errorf("depth %d re %q: Group(%q) = %q, want %q", tc.depth, tc.re, tc.path, got, tc.want)
		}
	}
}

// Rendezvous placement: stable, spread over every node, and removing a node
// moves only that node's groups; a pin wins, even to a node the hash would
// not pick.
func TestPlacementOwner(t *testing.T) {
	s := provisioned(t, &PlacementSelection{})
	pool := testPool("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080")
	count := map[string]int{}
	owner := map[string]string{}
	for i := 0; i < 300; i++ {
		g := fmt.Sprintf("tenant-%d", i)
		up := s.Owner(pool, g)
		if again := s.Owner(pool, g); again != up {
			t.Fatalf("group %s: owner %s then %s", g, up.Dial, again.Dial)
		}
		owner[g] = up.Dial
		count[up.Dial]++
	}
	for _, up := range pool {
		if count[up.Dial] < 60 {
			t.Errorf("node %s holds %d of 300 groups; want a fair share (%v)", up.Dial, count[up.Dial], count)
		}
	}
	smaller := pool[:2]
	for g, was := range owner {
		now := s.Owner(smaller, g).Dial
		if was != pool[2].Dial && now != was {
			t.Errorf("group %s moved from %s to %s when another node left", g, was, now)
		}
	}

	var g string
	for g = range owner {
		if owner[g] != "10.0.0.3:8080" {
			break
		}
	}
	pinned := provisioned(t, &PlacementSelection{Pins: map[string]string{g: "10.0.0.3:8080", "gone": "10.9.9.9:1"}})
	if got := pinned.Owner(pool, g); got == nil || got.Dial != "10.0.0.3:8080" {
		t.Errorf("pinned group %s: owner %v, want 10.0.0.3:8080", g, got)
	}
	if got := pinned.Owner(pool, "gone"); got != nil {
		t.Errorf("group pinned to a node not in the pool: owner %s, want none", got.Dial)
	}
	r := httptest.NewRequest(http.MethodGet, "/v1/stream/"+g+"/x", nil)
	if got := pinned.Select(pool, r, nil); got == nil || got.Dial != "10.0.0.3:8080" {
		t.Errorf("Select for pinned group %s: %v, want 10.0.0.3:8080", g, got)
	}
	if got := pinned.Select(pool, httptest.NewRequest(http.MethodGet, "/v1/stream/gone/x", nil), nil); got != nil {
		t.Errorf("Select for a group pinned outside the pool: %s, want none (the router answers 502/503)", got.Dial)
	}
	if got := pinned.Select(pool, httptest.NewRequest(http.MethodGet, "/health", nil), nil); got == nil {
		t.Error("Select outside the stream root: no upstream, want any available one")
	}
}

func TestPlacementPinsFileAndCaddyfile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pins.txt")
	if err := os.WriteFile(file, []byte("# moved groups\nalpha 10.0.0.2:8080\n\nbeta 10.0.0.1:8080 # pinned\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := caddyfile.NewTestDispenser(`durable_streams {
		stream_root /streams
		group_depth 2
		pin beta 10.0.0.3:8080
		pins_file ` + file + `
	}`)
	var s PlacementSelection
	if err := s.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	provisioned(t, &s)
	if s.StreamRoot != "/streams" || s.GroupDepth != 2 {
		t.Errorf("stream_root %q group_depth %d", s.StreamRoot, s.GroupDepth)
	}
	want := map[string]string{"alpha": "10.0.0.2:8080", "beta": "10.0.0.3:8080"} // inline pin wins
	if fmt.Sprint(s.pins) != fmt.Sprint(want) {
		t.Errorf("pins %v, want %v", s.pins, want)
	}
	if err := os.WriteFile(file, []byte("alpha\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (&PlacementSelection{PinsFile: file}).Provision(caddyContext()); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("bad pins file: error %v, want one naming line 1", err)
	}
	if err := (&PlacementSelection{}).UnmarshalCaddyfile(caddyfile.NewTestDispenser(`durable_streams { bogus 1 }`)); err == nil {
		t.Error("unknown option accepted")
	}
}

// A fork across placement groups gets a 400 from the router; within one
// group, and requests without Stream-Forked-From, go on to reverse_proxy.
func TestRouterRefusesForksAcrossGroups(t *testing.T) {
	rt := &Router{}
	if err := rt.Provision(caddyContext()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, source string
		status       int
		body         string
	}{
		{"/v1/stream/a/fork", "/v1/stream/a/src", http.StatusTeapot, ""},
		{"/v1/stream/a/fork", "", http.StatusTeapot, ""},
		{"/health", "/v1/stream/b/src", http.StatusTeapot, ""},
		{"/v1/stream/a/fork", "/v1/stream/b/src", http.StatusBadRequest,
			"bad request: Stream-Forked-From names a stream of placement group \"b\", this stream is in group \"a\"; a fork must stay in its source's group\n"},
		{"/v1/stream/a/fork", "/elsewhere/src", http.StatusBadRequest,
			"bad request: Stream-Forked-From \"/elsewhere/src\" is not a stream under /v1/stream\n"},
	} {
		r := httptest.NewRequest(http.MethodPut, tc.path, nil)
		if tc.source != "" {
			r.Header.Set("Stream-Forked-From", tc.source)
		}
		w := httptest.NewRecorder()
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusTeapot)
			return nil
		})
		if err := rt.ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		if w.Code != tc.status || w.Body.String() != tc.body {
			t.Errorf("PUT %s from %q: %d %q, want %d %q", tc.path, tc.source, w.Code, w.Body.String(), tc.status, tc.body)
		}
	}
}

// A frozen group's writes get 503 + Retry-After without reaching the
// engine; its reads and other groups' writes go on.
func TestFrozenGroupRefusesWrites(t *testing.T) {
	e := newFakeEngine(&fakeResponse{status: 204, body: ""})
	h := testHandler(e)
	setFrozen("a", true)
	defer setFrozen("a", false)
	do := func(method, path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader("x")), nil); err != nil {
			t.Fatal(err)
		}
		return w
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		w := do(m, "/v1/stream/a/s")
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" ||
			w.Body.String() != "service unavailable: group \"a\" is moving to another node; retry\n" {
			t.Errorf("%s to a frozen group: %d Retry-After %q %q", m, w.Code, w.Header().Get("Retry-After"), w.Body.String())
		}
	}
	if _, _, released, _ := e.snapshot(); released != 0 {
		t.Errorf("the engine saw %d requests for a frozen group's writes", released)
	}
	if w := do(http.MethodGet, "/v1/stream/a/s"); w.Code == http.StatusServiceUnavailable {
		t.Error("a read of a frozen group was refused")
	}
	if w := do(http.MethodPost, "/v1/stream/b/s"); w.Code == http.StatusServiceUnavailable {
		t.Error("a write to another group was refused")
	}
	setFrozen("a", false)
	if w := do(http.MethodPost, "/v1/stream/a/s"); w.Code == http.StatusServiceUnavailable {
		t.Error("a write after unfreeze was refused")
	}
}

func caddyContext() caddy.Context { return caddy.Context{Context: context.Background()} }
