package webhook

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// RetiredKeyPublication is how long a retired signing key's public half stays
// in the JWK Set: 10 minutes past the later of its rotation and the last
// signature this process made with it. Receivers are told to accept
// timestamps up to 5 minutes old (PROTOCOL.md §7.1), and a delivery can take
// up to the sender's timeout on top, so every signature a receiver may still
// accept can be verified from the published set (§6.5).
const RetiredKeyPublication = 10 * time.Minute

var b64 = base64.RawURLEncoding

// KeyRing holds the webhook signing keys: the active Ed25519 key that signs
// deliveries and the public halves of retired keys still published in the
// JWK Set. It is safe for concurrent use. A ring opened on a data_dir
// follows its key file: at most once per refreshInterval, when it signs or
// lists keys, it looks whether the file was replaced (a `webhook-key rotate`)
// and loads the new keys, so a running server starts signing with a rotated
// key within a second, without a reload.
type KeyRing struct {
	path      string // key file, "" = ephemeral
	follow    bool   // reload the key file when it is replaced
	ephemeral bool
	now       func() time.Time
	logger    *zap.Logger

	state     atomic.Pointer[ringState]
	checkedAt atomic.Int64 // unix nanoseconds of the last look at the file
	refreshMu sync.Mutex
}

// ringState is one version of the key file, swapped whole on a refresh.
type ringState struct {
	active      *signingKey
	retired     []retiredKey
	tokenSecret []byte
	file        os.FileInfo // what was read, to notice a replaced file
}

// refreshInterval bounds how often a ring stats its key file.
const refreshInterval = time.Second

type signingKey struct {
	kid       string
	x         string
	priv      ed25519.PrivateKey
	createdAt time.Time
	used      *usedKey
}

type retiredKey struct {
	kid       string
	x         string
	retiredAt time.Time
}

// usedKey remembers, for the whole process, when a key last signed: after a
// rotation is loaded, deliveries signed with the old key may still be on
// their way, and every ring of that file must keep publishing the key until
// those signatures expire.
type usedKey struct {
	ring       string // the key file's path ("" = ephemeral), so rings of different data_dirs stay apart
	kid        string
	x          string
	lastSigned atomic.Int64 // unix nanoseconds; 0 = never
}

var usedKeys sync.Map // ring + "\x00" + kid -> *usedKey

func registerUsed(ring, kid, x string) *usedKey {
	u, _ := usedKeys.LoadOrStore(ring+"\x00"+kid, &usedKey{ring: ring, kid: kid, x: x})
	return u.(*usedKey)
}

// newSigningKey derives the key, its JWK x and its kid from a 32-byte seed.
func newSigningKey(ring string, seed []byte, createdAt time.Time) (*signingKey, error) {
	priv, x, kid, err := keyFromSeed(seed)
	if err != nil {
		return nil, err
	}
	return &signingKey{kid: kid, x: x, priv: priv, createdAt: createdAt, used: registerUsed(ring, kid, x)}, nil
}

func keyFromSeed(seed []byte) (priv ed25519.PrivateKey, x, kid string, err error) {
	if len(seed) != ed25519.SeedSize {
		return nil, "", "", fmt.Errorf("webhook signing key: seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv = ed25519.NewKeyFromSeed(seed)
	x = b64.EncodeToString(priv.Public().(ed25519.PublicKey))
	return priv, x, KeyID(x), nil
}

// Thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 public key given
// as its JWK "x" member: base64url(SHA-256) of the canonical JSON of the
// required members (crv, kty, x) in lexicographic order, no whitespace.
func Thumbprint(x string) string {
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return b64.EncodeToString(sum[:])
}

// KeyID is the kid we give an Ed25519 key: "ds_" + its RFC 7638 thumbprint,
// stable for the key's lifetime and unique in the set (§6.5).
func KeyID(x string) string { return "ds_" + Thumbprint(x) }

var (
	ephemeralOnce sync.Once
	ephemeralFile *keyFile
	ephemeralErr  error
)

// OpenKeyRing loads the signing keys kept in dataDir, creating them (a new
// Ed25519 key and a 32-byte token secret, file mode 0600, written
// atomically) on first start. With dataDir "" the keys live in memory only:
// generated once per process (so config reloads keep them) and lost on
// restart, which the log says.
func OpenKeyRing(dataDir string, logger *zap.Logger) (*KeyRing, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if dataDir == "" {
		ephemeralOnce.Do(func() {
			ephemeralFile, ephemeralErr = newKeyFile(time.Now())
		})
		if ephemeralErr != nil {
			return nil, ephemeralErr
		}
		st, err := stateFromFile("", ephemeralFile)
		if err != nil {
			return nil, err
		}
		r := newRing("", st, logger, false)
		r.ephemeral = true
		logger.Info("webhook signing key is ephemeral: no data_dir, so it was generated for this process and receivers must fetch jwks.json again after a restart",
			zap.String("kid", r.ActiveKID()))
		return r, nil
	}
	kf, info, created, err := loadOrCreateKeyFile(dataDir, logger)
	if err != nil {
		return nil, err
	}
	st, err := stateFromFile(keyFilePath(dataDir), kf)
	if err != nil {
		return nil, fmt.Errorf("webhook signing keys in %s: %w", keyFilePath(dataDir), err)
	}
	st.file = info
	r := newRing(keyFilePath(dataDir), st, logger, true)
	if created {
		logger.Info("webhook signing key created", zap.String("kid", r.ActiveKID()), zap.String("file", keyFilePath(dataDir)))
	}
	return r, nil
}

func newRing(path string, st *ringState, logger *zap.Logger, follow bool) *KeyRing {
	r := &KeyRing{path: path, follow: follow, now: time.Now, logger: logger}
	r.state.Store(st)
	r.checkedAt.Store(time.Now().UnixNano())
	return r
}

// current is the ring's state, first reloading the key file if it was
// replaced since the last look (at most once per refreshInterval).
func (r *KeyRing) current() *ringState {
	st := r.state.Load()
	if !r.follow || time.Now().UnixNano()-r.checkedAt.Load() < int64(refreshInterval) {
		return st
	}
	if !r.refreshMu.TryLock() {
		return st // another goroutine is looking
	}
	defer r.refreshMu.Unlock()
	r.checkedAt.Store(time.Now().UnixNano())
	info, err := os.Stat(r.path)
	if err != nil || (st.file != nil && os.SameFile(st.file, info) && info.ModTime().Equal(st.file.ModTime()) && info.Size() == st.file.Size()) {
		return st
	}
	kf, err := readKeyFile(r.path, r.logger)
	var next *ringState
	if err == nil {
		next, err = stateFromFile(r.path, kf)
	}
	if err != nil {
		r.logger.Warn("webhook key file changed but cannot be loaded; still signing with the previous key", zap.String("file", r.path), zap.Error(err))
		return st
	}
	next.file = info
	r.state.Store(next)
	if next.active.kid != st.active.kid {
		r.logger.Info("webhook signing key rotated", zap.String("kid", next.active.kid), zap.String("previous_kid", st.active.kid))
	}
	return next
}

func stateFromFile(path string, kf *keyFile) (*ringState, error) {
	seed, err := b64.DecodeString(kf.Active.Seed)
	if err != nil {
		return nil, fmt.Errorf("active key seed: %w", err)
	}
	active, err := newSigningKey(path, seed, kf.Active.CreatedAt)
	if err != nil {
		return nil, err
	}
	secret, err := b64.DecodeString(kf.TokenSecret)
	if err != nil || len(secret) != tokenSecretSize {
		return nil, fmt.Errorf("token secret must be %d base64url bytes", tokenSecretSize)
	}
	r := &ringState{active: active, tokenSecret: secret}
	for _, k := range kf.Retired {
		pub, err := b64.DecodeString(k.X)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("retired key %s: x is not a base64url Ed25519 public key", k.KID)
		}
		r.retired = append(r.retired, retiredKey{kid: KeyID(k.X), x: k.X, retiredAt: k.RetiredAt})
	}
	return r, nil
}

// ActiveKID is the kid of the key that signs deliveries now.
func (r *KeyRing) ActiveKID() string { return r.current().active.kid }

// Ephemeral tells whether the keys live in memory only (no data_dir).
func (r *KeyRing) Ephemeral() bool { return r.ephemeral }

// TokenSecret is a 32-byte random secret kept with the keys, for HMAC-signed
// callback and claim tokens. Rotation keeps it, so rotating the signing key
// does not invalidate leases. Callers must not modify it.
func (r *KeyRing) TokenSecret() []byte { return r.current().tokenSecret }

// Sign returns the Webhook-Signature header value for body sent at t
// (PROTOCOL.md §7.1): `t=<unix seconds>,kid=<kid>,ed25519=<sig>`, the
// signature being Ed25519 over "<t>.<body>" in unpadded base64url.
func (r *KeyRing) Sign(body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	msg := make([]byte, 0, len(ts)+1+len(body))
	msg = append(append(append(msg, ts...), '.'), body...)
	active := r.current().active
	sig := ed25519.Sign(active.priv, msg)
	active.used.lastSigned.Store(r.now().UnixNano())
	return "t=" + ts + ",kid=" + active.kid + ",ed25519=" + b64.EncodeToString(sig)
}

// JWK is one entry of the published set (§6.5).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	X   string `json:"x"`
}

func publicJWK(kid, x string) JWK {
	return JWK{Kty: "OKP", Crv: "Ed25519", Kid: kid, Use: "sig", Alg: "EdDSA", X: x}
}

// JWKS is the body of `GET <root>/__ds/jwks.json` (served as
// application/jwk-set+json): the active key first, then every retired key
// whose signatures a receiver may still accept (RetiredKeyPublication).
func (r *KeyRing) JWKS() []byte {
	now := r.now()
	st := r.current()
	keys := []JWK{publicJWK(st.active.kid, st.active.x)}
	seen := map[string]bool{st.active.kid: true}
	for _, k := range st.retired {
		if seen[k.kid] {
			continue
		}
		if now.Before(k.retiredAt.Add(RetiredKeyPublication)) {
			keys = append(keys, publicJWK(k.kid, k.x))
			seen[k.kid] = true
		}
	}
	// Keys this process signed with lately, retired in the file long ago
	// (the ring noticed the rotation late) or no longer listed at all
	// (rotated twice in a row): published until their last signature expires.
	var extra []JWK
	usedKeys.Range(func(_, v any) bool {
		u := v.(*usedKey)
		last := u.lastSigned.Load()
		if u.ring == r.path && !seen[u.kid] && last != 0 && now.Before(time.Unix(0, last).Add(RetiredKeyPublication)) {
			extra = append(extra, publicJWK(u.kid, u.x))
		}
		return true
	})
	sortJWKs(extra)
	keys = append(keys, extra...)
	out, err := json.Marshal(struct {
		Keys []JWK `json:"keys"`
	}{keys})
	if err != nil {
		panic("webhook: marshal JWKS: " + err.Error()) // plain strings cannot fail
	}
	return out
}

func sortJWKs(keys []JWK) {
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j].Kid < keys[j-1].Kid; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
}

// KeyInfo describes one key of the ring for `webhook-key show`.
type KeyInfo struct {
	KID       string
	Active    bool
	CreatedAt time.Time // active key only
	RetiredAt time.Time // retired keys only
	Published bool      // in JWKS() now
}

// Keys lists the active key, then the retired keys the file still holds.
func (r *KeyRing) Keys() []KeyInfo {
	var set struct{ Keys []JWK }
	_ = json.Unmarshal(r.JWKS(), &set)
	published := map[string]bool{}
	for _, k := range set.Keys {
		published[k.Kid] = true
	}
	st := r.current()
	out := []KeyInfo{{KID: st.active.kid, Active: true, CreatedAt: st.active.createdAt, Published: true}}
	for _, k := range st.retired {
		out = append(out, KeyInfo{KID: k.kid, RetiredAt: k.retiredAt, Published: published[k.kid]})
	}
	return out
}

const tokenSecretSize = 32

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("webhook keys: read random bytes: %w", err)
	}
	return b, nil
}
