package native

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"unsafe"
)

// Every header name the engine can send (response.h) is interned, so a
// response's names are never copied; so is every value response.h names.
func TestInternedCoversResponseHeaderNames(t *testing.T) {
	src, err := os.ReadFile("response.h")
	if err != nil {
		t.Fatal(err)
	}
	consts := regexp.MustCompile(`inline constexpr std::string_view k\w+ =\s*((?:"[^"]*"\s*)+);`).FindAllSubmatch(src, -1)
	if len(consts) < 20 {
		t.Fatalf("found only %d constants in response.h: has its layout changed?", len(consts))
	}
	for _, m := range consts {
		var value strings.Builder
		for _, part := range regexp.MustCompile(`"([^"]*)"`).FindAllSubmatch(m[1], -1) {
			value.Write(part[1])
		}
		if _, ok := Interned(value.String()); !ok {
			t.Errorf("response.h constant %q is not interned", value.String())
		}
	}
}

// Interned returns its own string, never the one it was given (which may be
// engine memory), and declines what it does not know.
func TestInternedReturnsItsOwnString(t *testing.T) {
	for _, s := range []string{"Content-Type", "true", exposeHeaders, "text/plain"} {
		given := strings.Clone(s)
		got, ok := Interned(given)
		if !ok || got != s {
			t.Fatalf("Interned(%q) = %q, %v", s, got, ok)
		}
		if unsafe.StringData(got) == unsafe.StringData(given) {
			t.Errorf("Interned(%q) returned the caller's memory", s)
		}
	}
	for _, s := range []string{"", "Etag ", `"1:0:5"`, "text/html"} {
		if got, ok := Interned(s); ok {
			t.Errorf("Interned(%q) = %q, want none", s, got)
		}
	}
}

// The one Access-Control-Expose-Headers value is what Handle sends.
func TestInternedExposeHeadersMatchesTheEngine(t *testing.T) {
	e := open(t, Options{})
	resp, err := e.Handle(request("GET", "/v1/stream/missing", "", nil, ""), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	for name, value := range resp.Header() {
		if name == "Access-Control-Expose-Headers" {
			if value != exposeHeaders {
				t.Errorf("engine sends %q, interned %q", value, exposeHeaders)
			}
			return
		}
	}
	t.Error("no Access-Control-Expose-Headers")
}
