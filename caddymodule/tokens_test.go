package caddymodule

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

var b64 = base64.RawURLEncoding

// mintToken signs header and claims as a compact JWS with alg and key
// (ed25519.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey or []byte).
func mintToken(t testing.TB, header, claims map[string]any, key any) string {
	t.Helper()
	hj, _ := json.Marshal(header)
	cj, _ := json.Marshal(claims)
	signed := b64.EncodeToString(hj) + "." + b64.EncodeToString(cj)
	var sig []byte
	switch k := key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(signed))
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256([]byte(signed))
		r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case *rsa.PrivateKey:
		sum := sha256.Sum256([]byte(signed))
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:]); err != nil {
			t.Fatal(err)
		}
	case []byte:
		m := hmac.New(sha256.New, k)
		m.Write([]byte(signed))
		sig = m.Sum(nil)
	case nil:
	default:
		t.Fatalf("key type %T", key)
	}
	return signed + "." + b64.EncodeToString(sig)
}

// testKeys are one key of each kind, and a JWKS of their public halves.
type testKeys struct {
	ed    ed25519.PrivateKey
	ec    *ecdsa.PrivateKey
	rsa   *rsa.PrivateKey
	hmac  []byte
	jwks  []byte
	other ed25519.PrivateKey // not in the JWKS
}

func newTestKeys(t testing.TB) *testKeys {
	t.Helper()
	k := &testKeys{hmac: []byte("0123456789abcdef0123456789abcdef-secret")}
	_, k.ed, _ = ed25519.GenerateKey(rand.Reader)
	_, k.other, _ = ed25519.GenerateKey(rand.Reader)
	k.ec, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	ecBytes, _ := k.ec.PublicKey.Bytes() // 04 || x || y
	set := map[string]any{"keys": []map[string]any{
		{"kty": "OKP", "crv": "Ed25519", "kid": "ed1", "x": b64.EncodeToString(k.ed.Public().(ed25519.PublicKey))},
		{"kty": "EC", "crv": "P-256", "kid": "ec1", "alg": "ES256", "x": b64.EncodeToString(ecBytes[1:33]), "y": b64.EncodeToString(ecBytes[33:])},
		{"kty": "RSA", "kid": "rsa1", "n": b64.EncodeToString(k.rsa.N.Bytes()), "e": "AQAB"},
	}}
	k.jwks, _ = json.Marshal(set)
	return k
}

func (k *testKeys) verifier(t testing.TB) *tokenVerifier {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, k.jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := newTokenVerifier(&TokenAuth{Audience: "streams.test", Issuer: "https://auth.test",
		HMACSecrets: []HMACSecret{{Kid: "hs1", Secret: string(k.hmac)}}, JWKSFile: path})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var testNow = time.Unix(1_800_000_000, 0)

func validClaims() map[string]any {
	return map[string]any{"aud": "streams.test", "iss": "https://auth.test",
		"exp": testNow.Unix() + 600, "nbf": testNow.Unix() - 10,
		"ds": map[string]any{"read": []string{"chat/42/*"}, "append": []string{"chat/42/inbox"}}}
}

func with(c map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for kk, vv := range c {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestVerifyTokenVectors(t *testing.T) {
	k := newTestKeys(t)
	v := k.verifier(t)
	v.now = func() time.Time { return testNow }
	rsaPubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPubDER})
	c := validClaims()
	big := with(c, "pad", strings.Repeat("x", 9000))
	for _, tc := range []struct {
		name  string
		token string
		err   string // "" : valid
	}{
		{"EdDSA", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, c, k.ed), ""},
		{"EdDSA without kid", mintToken(t, map[string]any{"alg": "EdDSA"}, c, k.ed), ""},
		{"ES256", mintToken(t, map[string]any{"alg": "ES256", "kid": "ec1"}, c, k.ec), ""},
		{"RS256", mintToken(t, map[string]any{"alg": "RS256", "kid": "rsa1"}, c, k.rsa), ""},
		{"HS256", mintToken(t, map[string]any{"alg": "HS256", "kid": "hs1"}, c, k.hmac), ""},
		{"aud in a list", mintToken(t, map[string]any{"alg": "HS256"}, with(c, "aud", []string{"x", "streams.test"}), k.hmac), ""},
		{"expired", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, with(c, "exp", testNow.Unix()-31), k.ed), "token expired"},
		{"expired within leeway", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, with(c, "exp", testNow.Unix()-29), k.ed), ""},
		{"no exp", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, with(c, "exp", nil), k.ed), "token has no expiry (exp)"},
		{"not yet valid", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, with(c, "nbf", testNow.Unix()+31), k.ed), "token not yet valid (nbf)"},
		{"wrong audience", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, with(c, "aud", "other.test"), k.ed), "token audience (aud) does not name this server"},
		{"no audience", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, with(c, "aud", nil), k.ed), "token audience (aud) does not name this server"},
		{"wrong issuer", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, with(c, "iss", "https://evil.test"), k.ed), "token issuer (iss) not accepted"},
		{"no ds claim", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, with(c, "ds", nil), k.ed), "token has no ds claim"},
		{"wrong key", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, c, k.other), "token signature does not verify"},
		{"wrong key, no kid", mintToken(t, map[string]any{"alg": "EdDSA"}, c, k.other), "token signature does not verify"},
		{"unknown kid", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed9"}, c, k.ed), "token key id (kid) unknown"},
		{"kid of another key type", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "rsa1"}, c, k.ed), "no key accepts algorithm EdDSA"},
		{"alg none", mintToken(t, map[string]any{"alg": "none"}, c, nil), `token algorithm "none" not accepted`},
		{"alg none with kid", mintToken(t, map[string]any{"alg": "none", "kid": "ed1"}, c, nil), `token algorithm "none" not accepted`},
		{"RS256→HS256 with the PEM public key", mintToken(t, map[string]any{"alg": "HS256", "kid": "rsa1"}, c, rsaPubPEM), "no key accepts algorithm HS256"},
		{"RS256→HS256 with the DER public key, no kid", mintToken(t, map[string]any{"alg": "HS256"}, c, rsaPubDER), "token signature does not verify"},
		{"ES256 signed by RSA kid", mintToken(t, map[string]any{"alg": "ES256", "kid": "rsa1"}, c, k.ec), "no key accepts algorithm ES256"},
		{"crit header", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1", "crit": []string{"exp"}}, c, k.ed), "token has critical header parameters we do not understand"},
		{"malformed: two parts", "abc.def", "malformed token"},
		{"malformed: four parts", "a.b.c.d", "malformed token"},
		{"malformed: header not base64", "!!!.e30.AAAA", "malformed token"},
		{"malformed: header not JSON", b64.EncodeToString([]byte("nope")) + ".e30.AAAA", "malformed token"},
		{"oversize", mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, big, k.ed), "token too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scope, err := v.verify(tc.token)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err == "" && (scope == nil || len(scope.Read) != 1 || scope.Read[0] != "chat/42/*"):
				t.Fatalf("scope %+v", scope)
			case tc.err != "" && (err == nil || err.Error() != tc.err):
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// A token verified once is remembered, but only within its validity
// window and for the key set that verified it.
func TestVerifiedTokenCache(t *testing.T) {
	k := newTestKeys(t)
	v := k.verifier(t)
	now := testNow
	v.now = func() time.Time { return now }
	tok := mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, with(validClaims(), "nbf", testNow.Unix()), k.ed)
	if _, err := v.verify(tok); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.keys.Load().verified.get(ptr(sha256.Sum256([]byte(tok))), now); !ok {
		t.Fatal("a verified token was not remembered")
	}
	now = testNow.Add(600*time.Second + defaultTokenLeeway)
	if _, err := v.verify(tok); err == nil || err.Error() != "token expired" {
		t.Fatalf("remembered token past its exp: %v", err)
	}
	now = testNow.Add(-defaultTokenLeeway - time.Second)
	if _, err := v.verify(tok); err == nil || err.Error() != "token not yet valid (nbf)" {
		t.Fatalf("remembered token before its nbf: %v", err)
	}
	// A reload without the key: the token no longer verifies.
	now = testNow
	v.loaders = []func(context.Context) ([]*verifyKey, error){func(context.Context) ([]*verifyKey, error) { return nil, nil }}
	v.reload(true)
	if _, err := v.verify(tok); err == nil {
		t.Fatal("token verified after its key was withdrawn")
	}
}

func ptr[T any](v T) *T { return &v }

// A key added to the JWKS file is found when a token names its kid.
func TestJWKSFileRotation(t *testing.T) {
	k := newTestKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, []byte(`{"keys":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	now := testNow
	v, err := newTokenVerifier(&TokenAuth{Audience: "streams.test", JWKSFile: path})
	if err != nil {
		t.Fatal(err)
	}
	v.now = func() time.Time { return now }
	tok := mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, validClaims(), k.ed)
	if _, err := v.verify(tok); err == nil {
		t.Fatal("verified before the key was published")
	}
	if err := os.WriteFile(path, k.jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	now = now.Add(minUnknownKidRefresh)
	if _, err := v.verify(tok); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
}

func TestParseJWKSRefusesWeakOrMismatched(t *testing.T) {
	for _, set := range []string{
		`{"keys":[{"kty":"RSA","n":"` + b64.EncodeToString(make([]byte, 128)) + `","e":"AQAB"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"` + b64.EncodeToString(make([]byte, 32)) + `","y":"` + b64.EncodeToString(make([]byte, 32)) + `"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"HS256","x":"` + b64.EncodeToString(make([]byte, 32)) + `"}]}`,
		`not json`,
	} {
		if _, err := parseJWKS([]byte(set)); err == nil {
			t.Errorf("accepted %s", set)
		}
	}
	keys, err := parseJWKS([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	if err != nil || len(keys) != 0 {
		t.Errorf("oct key: %v %v; want skipped", keys, err)
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"chat/42/inbox", "chat/42/inbox", true},
		{"chat/42/inbox", "chat/42/inbox2", false},
		{"chat/42/*", "chat/42/inbox", true},
		{"chat/42/*", "chat/42", false},
		{"chat/42/*", "chat/42/a/b", false},
		{"chat/*/inbox", "chat/7/inbox", true},
		{"chat/**", "chat", true},
		{"chat/**", "chat/42/a/b", true},
		{"chat/**", "chatter", false},
		{"**", "anything/at/all", true},
		{"**/inbox", "inbox", true},
		{"**/inbox", "a/b/inbox", true},
		{"**/inbox", "a/b/outbox", false},
		{"a/**/b/**/c", "a/x/b/y/z/c", true},
		{"a/**/b/**/c", "a/c", false},
		{"chat/4*", "chat/42", false}, // * is a whole segment only
		{"*", "", true},               // the empty relative path is one (empty) segment
	} {
		if got := globMatch(tc.pattern, tc.path); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

func TestAuthorize(t *testing.T) {
	scope := &scopeClaim{
		Read:   []string{"chat/42/**"},
		Append: []string{"chat/42/inbox"},
		Create: []string{"chat/42/new/*"},
		Close:  []string{"chat/42/inbox"},
		Fork:   []string{"chat/42/forks/*"},
		Delete: []string{"chat/42/new/*"},
	}
	for _, tc := range []struct {
		method, path string
		hdr          map[string]string
		body         string
		want         bool
	}{
		{"GET", "/v1/stream/chat/42/inbox", nil, "", true},
		{"HEAD", "/v1/stream/chat/42/x/y", nil, "", true},
		{"GET", "/v1/stream/chat/43/inbox", nil, "", false},
		{"GET", "/v1/stream/chat/42/../43/inbox", nil, "", false},
		{"GET", "/v1/stream/chat/42//inbox", nil, "", false},
		{"POST", "/v1/stream/chat/42/inbox", nil, "hi", true},
		{"POST", "/v1/stream/chat/42/other", nil, "hi", false},
		{"POST", "/v1/stream/chat/42/inbox", map[string]string{"Stream-Closed": "true"}, "", true},
		{"POST", "/v1/stream/chat/42/inbox", map[string]string{"Stream-Closed": "true"}, "last", true},
		{"PUT", "/v1/stream/chat/42/new/a", nil, "", true},
		{"PUT", "/v1/stream/chat/42/inbox", nil, "", false},
		{"PUT", "/v1/stream/chat/42/forks/f", map[string]string{"Stream-Forked-From": "/v1/stream/chat/42/inbox"}, "", true},
		{"PUT", "/v1/stream/chat/42/new/f", map[string]string{"Stream-Forked-From": "/v1/stream/chat/42/inbox"}, "", true},
		{"PUT", "/v1/stream/chat/42/forks/f", map[string]string{"Stream-Forked-From": "/v1/stream/chat/43/inbox"}, "", false},
		{"PUT", "/v1/stream/chat/42/forks/f", map[string]string{"Stream-Forked-From": "/elsewhere/chat/42/inbox"}, "", false},
		{"PUT", "/v1/stream/chat/42/forks/f", nil, "", false}, // fork scope does not create plain streams
		{"PUT", "/v1/stream/chat/42/other", map[string]string{"Stream-Forked-From": "/v1/stream/chat/42/inbox"}, "", false},
		{"DELETE", "/v1/stream/chat/42/new/a", nil, "", true},
		{"DELETE", "/v1/stream/chat/42/inbox", nil, "", false},
		{"GET", "/v1/stream/__ds/subscriptions/x", nil, "", false},
		{"PATCH", "/v1/stream/chat/42/inbox", nil, "", false},
	} {
		r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		got, why := authorize(scope, r, "/v1/stream", relativePath("/v1/stream", r.URL.Path))
		if got != tc.want {
			t.Errorf("%s %s %v: %v (%s), want %v", tc.method, tc.path, tc.hdr, got, why, tc.want)
		}
	}
	// A close carrying no append scope may close without a body only.
	closer := &scopeClaim{Close: []string{"s"}}
	for body, want := range map[string]bool{"": true, "last": false} {
		r := httptest.NewRequest("POST", "/v1/stream/s", strings.NewReader(body))
		r.Header.Set("Stream-Closed", "true")
		if got, _ := authorize(closer, r, "/v1/stream", "s"); got != want {
			t.Errorf("close-only scope, body %q: %v, want %v", body, got, want)
		}
	}
	subs := &scopeClaim{Subscriptions: true}
	if ok, _ := authorize(subs, httptest.NewRequest("POST", "/v1/stream/__ds/subscriptions", nil), "/v1/stream", "__ds/subscriptions"); !ok {
		t.Error("subscriptions scope refused on a control path")
	}
}

// The handler answers 401 with WWW-Authenticate, 403 outside the scope, and
// takes a query token out of the request, marking the response private.
func TestAdmitTokens(t *testing.T) {
	k := newTestKeys(t)
	h := &Handler{StreamRoot: "/v1/stream"}
	h.tokens = k.verifier(t)
	h.tokens.now = func() time.Time { return testNow }
	tokensInUse.Store(true)
	tok := mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, validClaims(), k.ed)
	do := func(method, target, auth string) (*httptest.ResponseRecorder, *http.Request) {
		r := httptest.NewRequest(method, target, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		r2, _, _ := h.admit(w, r)
		return w, r2
	}
	w, _ := do("GET", "/v1/stream/chat/42/inbox", "")
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="durable-streams"` || w.Body.String() != "a bearer token is required\n" {
		t.Fatalf("no token: %d %q %q", w.Code, w.Header().Get("WWW-Authenticate"), w.Body)
	}
	// A page can read a refusal: CORS headers unless the route set its own.
	page := httptest.NewRequest("GET", "/v1/stream/chat/42/inbox", nil)
	page.Header.Set("Origin", "https://app.test")
	w = httptest.NewRecorder()
	h.admit(w, page)
	if w.Code != 401 || w.Header().Get("Access-Control-Allow-Origin") != "*" ||
		w.Header().Get("Access-Control-Expose-Headers") != "Retry-After, WWW-Authenticate" {
		t.Fatalf("refusal to a page: %d %v", w.Code, w.Header())
	}
	w = httptest.NewRecorder()
	w.Header().Set("Access-Control-Allow-Origin", "https://app.test")
	h.admit(w, page)
	if got := w.Header().Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "https://app.test" {
		t.Fatalf("the route's CORS origin replaced: %q", got)
	}
	w, _ = do("GET", "/v1/stream/chat/42/inbox", "Basic dTpw")
	if w.Code != 401 {
		t.Fatalf("Basic: %d", w.Code)
	}
	w, _ = do("GET", "/v1/stream/chat/42/inbox", "Bearer "+tok[:len(tok)-4]+"AAAA")
	if w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("bad signature: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	if w, r := do("GET", "/v1/stream/chat/42/inbox", "Bearer "+tok); w.Code != 200 || r == nil {
		t.Fatalf("header token: %d", w.Code)
	}
	w, _ = do("POST", "/v1/stream/chat/42/other", "Bearer "+tok)
	if w.Code != 403 || w.Body.String() != "token does not allow appending to this stream\n" {
		t.Fatalf("append outside scope: %d %q", w.Code, w.Body)
	}
	if w, _ := do("OPTIONS", "/v1/stream/chat/42/inbox", ""); w.Code != 200 {
		t.Fatalf("preflight needs no token: %d", w.Code)
	}
	w, r := do("GET", "/v1/stream/chat/42/inbox?offset=-1&token="+tok+"&live=sse", "")
	if w.Code != 200 || r == nil {
		t.Fatalf("query token: %d %q", w.Code, w.Body)
	}
	if r.URL.RawQuery != "offset=-1&live=sse" {
		t.Fatalf("query passed on: %q", r.URL.RawQuery)
	}
	rec := httptest.NewRecorder()
	rec.Header().Set("Cache-Control", "public, max-age=60, s-maxage=60, stale-while-revalidate=300")
	markPrivate(rec, r)
	if got := rec.Header().Get("Cache-Control"); got != "private, max-age=60, stale-while-revalidate=300" {
		t.Fatalf("Cache-Control %q", got)
	}
	rec = httptest.NewRecorder()
	rec.Header().Set("Cache-Control", "public, max-age=60")
	_, hr := do("GET", "/v1/stream/chat/42/inbox", "Bearer "+tok)
	markPrivate(rec, hr)
	if got := rec.Header().Get("Cache-Control"); got != "private, max-age=60" {
		t.Fatalf("header token: Cache-Control %q", got)
	}
	h.tokens.sharedCache = true
	rec = httptest.NewRecorder()
	rec.Header().Set("Cache-Control", "public, max-age=60")
	_, hr = do("GET", "/v1/stream/chat/42/inbox", "Bearer "+tok)
	markPrivate(rec, hr)
	if got := rec.Header().Get("Cache-Control"); got != "public, max-age=60" {
		t.Fatalf("header token with shared_cache: Cache-Control %q", got)
	}
	_, qr := do("GET", "/v1/stream/chat/42/inbox?token="+tok, "")
	rec = httptest.NewRecorder()
	rec.Header().Set("Cache-Control", "public, max-age=60")
	markPrivate(rec, qr)
	if got := rec.Header().Get("Cache-Control"); got != "private, max-age=60" {
		t.Fatalf("query token with shared_cache: Cache-Control %q", got)
	}
}

func TestCaddyfileTokens(t *testing.T) {
	d := caddyfile.NewTestDispenser(`durable_streams {
		tokens {
			audience streams.example.com
			issuer https://auth.example.com
			leeway 1m
			hmac_secret k1 {env.DS_SECRET}
			hmac_secret {env.DS_SECRET2}
			jwks_file /etc/ds/jwks.json
			jwks_url https://auth.example.com/jwks.json
			jwks_refresh 10m
			query_parameter access_token
			max_token_size 4KiB
			shared_cache
		}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	tk := h.Tokens
	got, _ := json.Marshal(tk)
	want := `{"audience":"streams.example.com","issuer":"https://auth.example.com","leeway":60000000000,` +
		`"hmac_secrets":[{"kid":"k1","secret":"{env.DS_SECRET}"},{"secret":"{env.DS_SECRET2}"}],` +
		`"jwks_file":"/etc/ds/jwks.json","jwks_url":"https://auth.example.com/jwks.json","jwks_refresh":600000000000,` +
		`"query_parameter":"access_token","max_token_size":4096,"shared_cache":true}`
	if string(got) != want {
		t.Fatalf("parsed\n%s\nwant\n%s", got, want)
	}
	if err := (&TokenAuth{HMACSecrets: []HMACSecret{{Secret: "x"}}}).Validate(); err == nil {
		t.Error("tokens without audience accepted")
	}
	if _, err := newTokenVerifier(&TokenAuth{Audience: "a", HMACSecrets: []HMACSecret{{Secret: "short"}}}); err == nil {
		t.Error("a short HMAC secret accepted")
	}
}

func BenchmarkVerifyToken(b *testing.B) {
	k := newTestKeys(b)
	v := k.verifier(b)
	v.now = func() time.Time { return testNow }
	for _, tc := range []struct {
		name string
		hdr  map[string]any
		key  any
	}{
		{"HS256", map[string]any{"alg": "HS256", "kid": "hs1"}, k.hmac},
		{"EdDSA", map[string]any{"alg": "EdDSA", "kid": "ed1"}, k.ed},
		{"ES256", map[string]any{"alg": "ES256", "kid": "ec1"}, k.ec},
		{"RS256", map[string]any{"alg": "RS256", "kid": "rsa1"}, k.rsa},
	} {
		tok := mintToken(b, tc.hdr, validClaims(), tc.key)
		r := httptest.NewRequest("GET", "/v1/stream/chat/42/inbox", nil)
		// The signature and claims checked on every request, as without
		// the cache; then a token seen before.
		b.Run(tc.name+"/first", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				scope, err := verifyToken(tok, v.keys.Load(), &v.policy, testNow)
				if err != nil {
					b.Fatal(err)
				}
				if ok, _ := authorize(scope, r, "/v1/stream", "chat/42/inbox"); !ok {
					b.Fatal("refused")
				}
			}
		})
		b.Run(tc.name+"/again", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				scope, err := v.verify(tok)
				if err != nil {
					b.Fatal(err)
				}
				if ok, _ := authorize(scope, r, "/v1/stream", "chat/42/inbox"); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}

// jwks_url: fetched when the first token needs it, again on an unknown kid
// (rotation), and a failed fetch keeps the keys in force.
func TestJWKSURL(t *testing.T) {
	k1, k2 := newTestKeys(t), newTestKeys(t)
	var mu sync.Mutex
	body, status, fetches := k1.jwks, 200, 0
	fetched := func() int {
		mu.Lock()
		defer mu.Unlock()
		return fetches
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		w.WriteHeader(status)
		w.Write(body)
	}))
	defer srv.Close()
	v, err := newTokenVerifier(&TokenAuth{Audience: "streams.test", JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if fetched() != 0 {
		t.Fatal("jwks_url fetched at load")
	}
	now := testNow
	v.now = func() time.Time { return now }
	tok1 := mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, validClaims(), k1.ed)
	if _, err := v.verify(tok1); err != nil || fetched() != 1 {
		t.Fatalf("first token: %v, %d fetches", err, fetched())
	}
	// Rotation: the new key set names its key ed2.
	mu.Lock()
	body = []byte(strings.Replace(string(k2.jwks), `"ed1"`, `"ed2"`, 1))
	mu.Unlock()
	tok2 := mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed2"}, validClaims(), k2.ed)
	now = now.Add(minUnknownKidRefresh)
	if _, err := v.verify(tok2); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if _, err := v.verify(mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, with(validClaims(), "sub", "x"), k1.ed)); err == nil {
		t.Fatal("a token of the withdrawn key verified")
	}
	// The server fails: the keys in force stay.
	mu.Lock()
	status = 500
	mu.Unlock()
	now = now.Add(defaultJWKSRefresh)
	if _, err := v.verify(mintToken(t, map[string]any{"alg": "EdDSA", "kid": "ed2"}, with(validClaims(), "sub", "y"), k2.ed)); err != nil {
		t.Fatalf("after a failed refresh: %v", err)
	}
}

// The blocks end where they should: options after them are still read.
func TestCaddyfileBlocksThenOptions(t *testing.T) {
	d := caddyfile.NewTestDispenser(`durable_streams {
		rate_limit {
			per_client 1/s
		}
		tokens {
			audience a
			hmac_secret s
		}
		max_append_size 1MiB
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.MaxAppendSize != 1<<20 || h.RateLimit.PerClient.PerSecond != 1 || h.Tokens.Audience != "a" {
		t.Fatalf("parsed %+v", h)
	}
}
