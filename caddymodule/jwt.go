package caddymodule

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"sync"
	"time"
)

// ---- JSON Web Tokens ----------------------------------------------------
//
// Only what stream-scoped tokens need, with the standard library: compact
// JWS with EdDSA (Ed25519), ES256, RS256 or HS256. The key decides the
// algorithm: each key verifies exactly one alg, so a token cannot pick
// HS256 and have an RSA public key used as its HMAC secret, and "none"
// matches no key at all.

// Algorithms, as a key allows them.
const (
	algEdDSA = "EdDSA"
	algES256 = "ES256"
	algRS256 = "RS256"
	algHS256 = "HS256"
)

// verifyKey is one key and the one algorithm it verifies.
type verifyKey struct {
	kid string
	alg string
	key any // ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey or []byte (HMAC secret)
}

// keySet is the keys in force, by kid ("" for keys without one), and the
// tokens they verified (a new set starts with none: a key taken out of
// the JWKS verifies nothing more from the next request on).
type keySet struct {
	all      []*verifyKey
	byKid    map[string][]*verifyKey
	verified verifiedTokens
}

func newKeySet(keys []*verifyKey) *keySet {
	ks := &keySet{all: keys, byKid: make(map[string][]*verifyKey)}
	for i := range ks.verified.shards {
		ks.verified.shards[i].m = make(map[[sha256.Size]byte]verifiedToken)
	}
	for _, k := range keys {
		ks.byKid[k.kid] = append(ks.byKid[k.kid], k)
	}
	return ks
}

// candidates are the keys a token with kid and alg may be verified with:
// those with that kid (or, without a kid, every key) whose alg is alg.
func (ks *keySet) candidates(kid, alg string) (keys []*verifyKey, kidKnown bool) {
	pool := ks.all
	if kid != "" {
		pool = ks.byKid[kid]
		kidKnown = len(pool) > 0
	}
	for _, k := range pool {
		if k.alg == alg {
			keys = append(keys, k)
		}
	}
	return keys, kidKnown
}

// verifiedTokens remembers tokens whose signature and claims were checked,
// by their SHA-256, so a client sending the same token again costs a hash
// and a map lookup instead of a signature verification (EdDSA, ES256 and
// RS256 take 30-80 µs). The window (nbf, exp with leeway) is checked on
// every use; audience and issuer cannot change for a key set. Bounded: a
// shard that reaches its share of maxVerifiedTokens is emptied.
type verifiedTokens struct {
	shards [16]struct {
		mu sync.Mutex
		m  map[[sha256.Size]byte]verifiedToken
	}
}

// maxVerifiedTokens bounds the cache: about 150 bytes each.
const maxVerifiedTokens = 16384

type verifiedToken struct {
	scope       *scopeClaim
	from, until float64 // seconds since the epoch, leeway included
}

func (vt *verifiedTokens) get(sum *[sha256.Size]byte, now time.Time) (*scopeClaim, bool) {
	sh := &vt.shards[sum[0]%16]
	sh.mu.Lock()
	e, ok := sh.m[*sum]
	sh.mu.Unlock()
	t := float64(now.UnixNano()) / 1e9
	if !ok || t < e.from || t >= e.until {
		return nil, false
	}
	return e.scope, true
}

func (vt *verifiedTokens) put(sum *[sha256.Size]byte, c *tokenClaims, leeway time.Duration) {
	e := verifiedToken{scope: c.DS, from: math.Inf(-1), until: *c.Exp + leeway.Seconds()}
	if c.Nbf != nil {
		e.from = *c.Nbf - leeway.Seconds()
	}
	sh := &vt.shards[sum[0]%16]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.m) >= maxVerifiedTokens/16 {
		clear(sh.m)
	}
	sh.m[*sum] = e
}

// jwk is a JSON Web Key's fields we read.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// parseJWKS reads a JWK Set's public signing keys: OKP/Ed25519, EC/P-256
// and RSA (2048 bits or more). Keys for encryption ("use": "enc") and
// symmetric ("oct") keys are skipped: HMAC secrets come from the config.
func parseJWKS(data []byte) ([]*verifyKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("parsing JWKS: %w", err)
	}
	var keys []*verifyKey
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" || k.Kty == "oct" {
			continue
		}
		vk, err := k.verifyKey()
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, k.Kid, err)
		}
		if k.Alg != "" && k.Alg != vk.alg {
			return nil, fmt.Errorf("JWKS key %d (kid %q): alg %q does not fit a %s key", i, k.Kid, k.Alg, k.Kty)
		}
		keys = append(keys, vk)
	}
	return keys, nil
}

func (k jwk) verifyKey() (*verifyKey, error) {
	b64 := base64.RawURLEncoding
	switch {
	case k.Kty == "OKP" && k.Crv == "Ed25519":
		x, err := b64.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 x")
		}
		return &verifyKey{kid: k.Kid, alg: algEdDSA, key: ed25519.PublicKey(x)}, nil
	case k.Kty == "EC" && k.Crv == "P-256":
		x, errX := b64.DecodeString(k.X)
		y, errY := b64.DecodeString(k.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("bad P-256 x or y")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("bad P-256 point: %w", err)
		}
		return &verifyKey{kid: k.Kid, alg: algES256, key: pub}, nil
	case k.Kty == "RSA":
		n, errN := b64.DecodeString(k.N)
		e, errE := b64.DecodeString(k.E)
		if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA n or e")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits; at least 2048 are needed", pub.N.BitLen())
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, fmt.Errorf("bad RSA exponent %d", pub.E)
		}
		return &verifyKey{kid: k.Kid, alg: algRS256, key: pub}, nil
	}
	return nil, fmt.Errorf("unsupported key type %q (curve %q)", k.Kty, k.Crv)
}

// tokenClaims are the claims we read; unknown ones are ignored.
type tokenClaims struct {
	Exp *float64        `json:"exp"`
	Nbf *float64        `json:"nbf"`
	Iss string          `json:"iss"`
	Aud json.RawMessage `json:"aud"`
	DS  *scopeClaim     `json:"ds"`
}

// tokenPolicy is what a valid token must satisfy besides its signature.
type tokenPolicy struct {
	audience string
	issuer   string // "" accepts any
	leeway   time.Duration
	maxSize  int
}

var (
	errTokenMalformed = errors.New("malformed token")
	errTokenOversize  = errors.New("token too large")
)

// verifyToken checks token's signature with keys, then its claims against
// p at now, and returns its scope. Errors are one-line reasons a client
// may see.
func verifyToken(token string, keys *keySet, p *tokenPolicy, now time.Time) (*scopeClaim, error) {
	c, err := verifyTokenClaims(token, keys, p, now)
	if err != nil {
		return nil, err
	}
	return c.DS, nil
}

// verifyTokenClaims is verifyToken returning all the claims it checked.
func verifyTokenClaims(token string, keys *keySet, p *tokenPolicy, now time.Time) (*tokenClaims, error) {
	if len(token) > p.maxSize {
		return nil, errTokenOversize
	}
	h64, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, errTokenMalformed
	}
	c64, s64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(s64, ".") {
		return nil, errTokenMalformed
	}
	b64 := base64.RawURLEncoding
	hdrJSON, err := b64.DecodeString(h64)
	if err != nil {
		return nil, errTokenMalformed
	}
	var hdr struct {
		Alg  string   `json:"alg"`
		Kid  string   `json:"kid"`
		Crit []string `json:"crit"`
	}
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
		return nil, errTokenMalformed
	}
	switch hdr.Alg {
	case algEdDSA, algES256, algRS256, algHS256:
	default:
		return nil, fmt.Errorf("token algorithm %q not accepted", hdr.Alg)
	}
	if len(hdr.Crit) > 0 {
		return nil, errors.New("token has critical header parameters we do not understand")
	}
	sig, err := b64.DecodeString(s64)
	if err != nil {
		return nil, errTokenMalformed
	}
	candidates, kidKnown := keys.candidates(hdr.Kid, hdr.Alg)
	if len(candidates) == 0 {
		if hdr.Kid != "" && !kidKnown {
			return nil, errUnknownKid
		}
		return nil, fmt.Errorf("no key accepts algorithm %s", hdr.Alg)
	}
	signed := token[:len(h64)+1+len(c64)]
	verified := false
	for _, k := range candidates {
		if verifySignature(k, signed, sig) {
			verified = true
			break
		}
	}
	if !verified {
		return nil, errors.New("token signature does not verify")
	}
	claimsJSON, err := b64.DecodeString(c64)
	if err != nil {
		return nil, errTokenMalformed
	}
	var c tokenClaims
	dec := json.NewDecoder(bytes.NewReader(claimsJSON))
	if err := dec.Decode(&c); err != nil {
		return nil, errTokenMalformed
	}
	if _, err := c.check(p, now); err != nil {
		return nil, err
	}
	return &c, nil
}

var errUnknownKid = errors.New("token key id (kid) unknown")

// check applies the policy to verified claims.
func (c *tokenClaims) check(p *tokenPolicy, now time.Time) (*scopeClaim, error) {
	if c.Exp == nil {
		return nil, errors.New("token has no expiry (exp)")
	}
	t := float64(now.UnixNano()) / 1e9
	leeway := p.leeway.Seconds()
	if math.IsNaN(*c.Exp) || t >= *c.Exp+leeway {
		return nil, errors.New("token expired")
	}
	if c.Nbf != nil && (math.IsNaN(*c.Nbf) || t < *c.Nbf-leeway) {
		return nil, errors.New("token not yet valid (nbf)")
	}
	if !c.hasAudience(p.audience) {
		return nil, errors.New("token audience (aud) does not name this server")
	}
	if p.issuer != "" && c.Iss != p.issuer {
		return nil, errors.New("token issuer (iss) not accepted")
	}
	if c.DS == nil {
		return nil, errors.New("token has no ds claim")
	}
	return c.DS, nil
}

func (c *tokenClaims) hasAudience(want string) bool {
	if len(c.Aud) == 0 {
		return false
	}
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(c.Aud, &many) == nil {
		for _, a := range many {
			if a == want {
				return true
			}
		}
	}
	return false
}

// verifySignature checks sig over signed with k, in k's one algorithm.
func verifySignature(k *verifyKey, signed string, sig []byte) bool {
	switch k.alg {
	case algEdDSA:
		return ed25519.Verify(k.key.(ed25519.PublicKey), []byte(signed), sig)
	case algES256:
		if len(sig) != 64 {
			return false
		}
		sum := sha256.Sum256([]byte(signed))
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k.key.(*ecdsa.PublicKey), sum[:], r, s)
	case algRS256:
		sum := sha256.Sum256([]byte(signed))
		return rsa.VerifyPKCS1v15(k.key.(*rsa.PublicKey), crypto.SHA256, sum[:], sig) == nil
	case algHS256:
		m := hmac.New(sha256.New, k.key.([]byte))
		m.Write([]byte(signed))
		return hmac.Equal(m.Sum(nil), sig)
	}
	return false
}
