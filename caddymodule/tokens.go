package caddymodule

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// TokenAuth turns on stream-scoped bearer tokens (the `tokens` block): every
// request under stream_root except CORS preflights (OPTIONS) must carry a
// JWT, in `Authorization: Bearer <token>` or in the query parameter, signed
// by one of the keys and whose "ds" claim allows the request (scope.go).
// A missing or invalid token is answered 401 with WWW-Authenticate: Bearer,
// a valid token outside its scope 403; both with a one-line reason.
type TokenAuth struct {
	// The audience tokens must name in "aud" (a string or one of a list).
	// Required.
	Audience string `json:"audience"`
	// If set, the issuer tokens must name in "iss".
	Issuer string `json:"issuer,omitempty"`
	// Clock skew tolerated on exp and nbf. Default: 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	// HS256 shared secrets, each with an optional kid. Placeholders such as
	// {env.DS_TOKEN_SECRET} are replaced when the config loads.
	HMACSecrets []HMACSecret `json:"hmac_secrets,omitempty"`
	// A JWK Set file of public keys (Ed25519, P-256, RSA). Re-read when a
	// token names an unknown kid (at most every 10s) and every
	// jwks_refresh, so keys can be rotated without a reload.
	JWKSFile string `json:"jwks_file,omitempty"`
	// A JWK Set URL, fetched when the first token arrives, then refreshed
	// every jwks_refresh and on an unknown kid (at most every 10s).
	JWKSURL string `json:"jwks_url,omitempty"`
	// Default: 5m.
	JWKSRefresh caddy.Duration `json:"jwks_refresh,omitempty"`

	// The query parameter a token may come in, for EventSource (which
	// cannot set headers); "off" accepts tokens in the header only. Such a
	// response is marked Cache-Control: private, and the parameter is
	// removed before the request reaches the engine. Default: token.
	QueryParameter string `json:"query_parameter,omitempty"`
	// The longest token accepted, in bytes. Default: 8 KiB.
	MaxTokenSize int `json:"max_token_size,omitempty"`

	// Responses to requests with a token are marked Cache-Control: private
	// (the engine's catch-up reads say "public", which lets a shared cache
	// serve a response to an Authorization request to anyone, token or
	// not). shared_cache keeps the engine's Cache-Control for tokens from
	// the Authorization header: only for a cache in front that checks
	// tokens itself or keys on Authorization. Query tokens are always
	// private.
	SharedCache bool `json:"shared_cache,omitempty"`
}

// HMACSecret is one HS256 secret.
type HMACSecret struct {
	Kid    string `json:"kid,omitempty"`
	Secret string `json:"secret"`
}

const (
	defaultTokenLeeway   = 30 * time.Second
	defaultJWKSRefresh   = 5 * time.Minute
	defaultMaxTokenSize  = 8 << 10
	defaultQueryParam    = "token"
	minUnknownKidRefresh = 10 * time.Second
	minHMACSecretBytes   = 32
)

// Validate checks the token options.
func (t *TokenAuth) Validate() error {
	if t.Audience == "" {
		return errors.New("tokens: audience is required (tokens minted for another service must not work here)")
	}
	if len(t.HMACSecrets) == 0 && t.JWKSFile == "" && t.JWKSURL == "" {
		return errors.New("tokens: no key: set hmac_secret, jwks_file or jwks_url")
	}
	if t.Leeway < 0 || t.JWKSRefresh < 0 || t.MaxTokenSize < 0 {
		return errors.New("tokens: leeway, jwks_refresh and max_token_size must not be negative")
	}
	if t.JWKSURL != "" && !strings.HasPrefix(t.JWKSURL, "https://") && !strings.HasPrefix(t.JWKSURL, "http://") {
		return fmt.Errorf("tokens: jwks_url must be http(s): %q", t.JWKSURL)
	}
	return nil
}

// tokenVerifier is TokenAuth in force.
type tokenVerifier struct {
	policy      tokenPolicy
	queryParam  string // "" : header only
	sharedCache bool
	static      []*verifyKey
	keys        atomic.Pointer[keySet]
	loaders     []func(context.Context) ([]*verifyKey, error)
	refresh     time.Duration
	now         func() time.Time

	mu          sync.Mutex // one reload at a time
	loadedAt    time.Time
	lastAttempt time.Time
	loadErr     error
}

func newTokenVerifier(t *TokenAuth) (*tokenVerifier, error) {
	if t == nil {
		return nil, nil
	}
	repl := caddy.NewReplacer()
	v := &tokenVerifier{
		policy: tokenPolicy{audience: t.Audience, issuer: t.Issuer, leeway: time.Duration(t.Leeway),
			maxSize: t.MaxTokenSize},
		queryParam:  t.QueryParameter,
		sharedCache: t.SharedCache,
		refresh:     time.Duration(t.JWKSRefresh),
		now:         time.Now,
	}
	if t.Leeway == 0 {
		v.policy.leeway = defaultTokenLeeway
	}
	if v.policy.maxSize == 0 {
		v.policy.maxSize = defaultMaxTokenSize
	}
	switch v.queryParam {
	case "":
		v.queryParam = defaultQueryParam
	case "off":
		v.queryParam = ""
	}
	if v.refresh == 0 {
		v.refresh = defaultJWKSRefresh
	}
	for i, s := range t.HMACSecrets {
		secret := repl.ReplaceKnown(s.Secret, "")
		if len(secret) < minHMACSecretBytes {
			return nil, fmt.Errorf("tokens: hmac secret %d (kid %q) is %d bytes; HS256 needs at least %d",
				i, s.Kid, len(secret), minHMACSecretBytes)
		}
		v.static = append(v.static, &verifyKey{kid: s.Kid, alg: algHS256, key: []byte(secret)})
	}
	if t.JWKSFile != "" {
		path := repl.ReplaceKnown(t.JWKSFile, "")
		load := func(context.Context) ([]*verifyKey, error) {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("tokens: jwks_file: %w", err)
			}
			return parseJWKS(data)
		}
		// A file that cannot be read is a config error, found now.
		if _, err := load(context.Background()); err != nil {
			return nil, err
		}
		v.loaders = append(v.loaders, load)
	}
	if t.JWKSURL != "" {
		v.loaders = append(v.loaders, jwksFetcher(repl.ReplaceKnown(t.JWKSURL, "")))
	}
	v.keys.Store(newKeySet(v.static))
	if len(v.loaders) > 0 && t.JWKSURL == "" {
		v.reload(true) // a URL is fetched when the first token needs it, not at load
	}
	return v, nil
}

// jwksFetcher loads a JWK Set over HTTP.
func jwksFetcher(url string) func(context.Context) ([]*verifyKey, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	return func(ctx context.Context) ([]*verifyKey, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, fmt.Errorf("tokens: jwks_url: %w", err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("tokens: fetching jwks_url: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("tokens: fetching jwks_url: status %d", resp.StatusCode)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("tokens: reading jwks_url: %w", err)
		}
		return parseJWKS(data)
	}
}

// reload loads every JWKS source again, keeping the old keys if one fails.
// Unless forced, it does nothing within minUnknownKidRefresh of the last
// attempt. Requests wait for it (it is rare and bounded by the fetch
// timeout).
func (v *tokenVerifier) reload(force bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if !force && now.Sub(v.lastAttempt) < minUnknownKidRefresh {
		return
	}
	v.lastAttempt = now
	keys := append([]*verifyKey(nil), v.static...)
	for _, load := range v.loaders {
		loaded, err := load(context.Background())
		if err != nil {
			v.loadErr = err
			return
		}
		keys = append(keys, loaded...)
	}
	v.loadErr = nil
	v.loadedAt = now
	v.keys.Store(newKeySet(keys))
}

// verify checks a token; keys are refreshed when stale or when the token
// names a kid we do not know.
func (v *tokenVerifier) verify(token string) (*scopeClaim, error) {
	now := v.now()
	if len(v.loaders) > 0 {
		v.mu.Lock()
		stale := now.Sub(v.loadedAt) >= v.refresh
		v.mu.Unlock()
		if stale {
			v.reload(false)
		}
	}
	if len(token) > v.policy.maxSize {
		return nil, errTokenOversize
	}
	sum := sha256.Sum256([]byte(token))
	keys := v.keys.Load()
	if scope, ok := keys.verified.get(&sum, now); ok {
		return scope, nil
	}
	c, err := verifyTokenClaims(token, keys, &v.policy, now)
	if errors.Is(err, errUnknownKid) && len(v.loaders) > 0 {
		v.reload(false)
		keys = v.keys.Load()
		c, err = verifyTokenClaims(token, keys, &v.policy, now)
	}
	if err != nil {
		return nil, err
	}
	keys.verified.put(&sum, c, v.policy.leeway)
	return c.DS, nil
}

// requestToken finds r's token: the Authorization header's, else the query
// parameter's. fromQuery says where it came from; malformed is a header
// that is not a Bearer token.
func (v *tokenVerifier) requestToken(r *http.Request) (token string, fromQuery bool, malformed bool) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", false, true
		}
		return strings.TrimSpace(tok), false, false
	}
	if v.queryParam != "" && strings.Contains(r.URL.RawQuery, v.queryParam) {
		q := r.URL.Query()
		if tok := q.Get(v.queryParam); tok != "" {
			return tok, true, false
		}
	}
	return "", false, false
}

// stripQueryToken removes the token parameter from r's query, so the engine
// (and anything it echoes) never sees it.
func (v *tokenVerifier) stripQueryToken(r *http.Request) {
	if v.queryParam == "" {
		return
	}
	parts := strings.Split(r.URL.RawQuery, "&")
	kept := parts[:0]
	for _, p := range parts {
		name, _, _ := strings.Cut(p, "=")
		if name == v.queryParam {
			continue
		}
		kept = append(kept, p)
	}
	r.URL.RawQuery = strings.Join(kept, "&")
}

// ---- Caddyfile ----------------------------------------------------------

// parseTokenAuth reads the tokens block:
//
//	tokens {
//	    audience        <aud>
//	    issuer          <iss>
//	    leeway          <duration>
//	    hmac_secret     [<kid>] <secret>
//	    jwks_file       <path>
//	    jwks_url        <url>
//	    jwks_refresh    <duration>
//	    query_parameter <name>|off
//	    max_token_size  <size>
//	    shared_cache
//	}
func parseTokenAuth(d *caddyfile.Dispenser) (*TokenAuth, error) {
	t := new(TokenAuth)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		switch option {
		case "audience", "issuer", "jwks_file", "jwks_url", "query_parameter":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.ArgErr()
			}
			switch option {
			case "audience":
				t.Audience = s
			case "issuer":
				t.Issuer = s
			case "jwks_file":
				t.JWKSFile = s
			case "jwks_url":
				t.JWKSURL = s
			default:
				t.QueryParameter = s
			}
		case "shared_cache":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			t.SharedCache = true
		case "leeway":
			if err := parseDuration(d, &t.Leeway); err != nil {
				return nil, err
			}
		case "jwks_refresh":
			if err := parseDuration(d, &t.JWKSRefresh); err != nil {
				return nil, err
			}
		case "hmac_secret":
			args := d.RemainingArgs()
			switch len(args) {
			case 1:
				t.HMACSecrets = append(t.HMACSecrets, HMACSecret{Secret: args[0]})
			case 2:
				t.HMACSecrets = append(t.HMACSecrets, HMACSecret{Kid: args[0], Secret: args[1]})
			default:
				return nil, d.ArgErr()
			}
		case "max_token_size":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.ArgErr()
			}
			n, err := humanize.ParseBytes(s)
			if err != nil || n == 0 || n > 1<<20 {
				return nil, d.Errf("max_token_size must be a size up to 1MiB, not '%s'", s)
			}
			t.MaxTokenSize = int(n)
		default:
			return nil, d.Errf("unrecognized tokens option '%s'", option)
		}
	}
	return t, nil
}
