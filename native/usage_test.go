package native

import "testing"

// The limits reach the engine through Options and a reload through
// SetTunables; TopGroups and Stats report the usage.
func TestLimitsThroughTheBridge(t *testing.T) {
	e := open(t, Options{MaxMemoryBytes: 4, MaxStreamsPerGroup: 1, GroupDepth: 2})
	text := map[Field]string{FieldContentType: "text/plain"}
	status := func(method, path, body string) int {
		resp := handle(t, e, request(method, path, "", text, body), 0)
		defer resp.Release()
		return resp.Status()
	}
	if got := status("PUT", "/v1/stream/a/1/x", "abcd"); got != 201 {
		t.Fatalf("PUT: %d", got)
	}
	if got := status("POST", "/v1/stream/a/1/x", "e"); got != 507 {
		t.Fatalf("append past max_memory_bytes: %d, want 507", got)
	}
	if got := status("PUT", "/v1/stream/a/1/y", ""); got != 507 {
		t.Fatalf("second stream of group a/1: %d, want 507", got)
	}
	if got := status("PUT", "/v1/stream/a/2/y", ""); got != 201 {
		t.Fatalf("first stream of group a/2: %d, want 201", got)
	}
	s := e.Stats()
	if s.StreamBytes != 4 || s.RefusedMemoryBudget != 1 || s.RefusedQuotaStreams != 1 || s.RefusedQuotaBytes != 0 {
		t.Fatalf("stats %+v", s)
	}
	top, rest := e.TopGroups(1)
	if len(top) != 1 || top[0] != (GroupUsage{"a/1", 1, 4}) || rest != (GroupUsage{"", 1, 0}) {
		t.Fatalf("TopGroups(1) = %+v, %+v", top, rest)
	}

	if err := e.SetTunables(Tunables{MaxMemoryBytes: 5, MaxBytesPerGroup: 5}); err != nil {
		t.Fatal(err)
	}
	if got := status("POST", "/v1/stream/a/1/x", "e"); got != 204 {
		t.Fatalf("append after raising the budget: %d, want 204", got)
	}
	if got := status("PUT", "/v1/stream/a/1/y", ""); got != 201 {
		t.Fatalf("stream after lifting the streams quota: %d, want 201", got)
	}
	if got := status("POST", "/v1/stream/a/2/y", "123456"); got != 403 {
		t.Fatalf("body larger than the bytes quota: %d, want 403", got)
	}
	if err := e.SetTunables(Tunables{MaxBytesPerGroup: -1}); err == nil {
		t.Error("a negative quota was accepted")
	}
}
