package webhook

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ringFromSeed builds a ring around a known seed, as if read from a key file
// at path (a fake path keeps tests' signing records apart).
func ringFromSeed(t *testing.T, path string, seed []byte) *KeyRing {
	t.Helper()
	kf := &keyFile{Format: keyFileFormat, TokenSecret: b64.EncodeToString(make([]byte, 32)),
		Active: activeEntry{Seed: b64.EncodeToString(seed)}}
	st, err := stateFromFile(path, kf)
	if err != nil {
		t.Fatal(err)
	}
	return newRing(path, st, zap.NewNop(), false)
}

// parseSignature splits a Webhook-Signature value into its three parameters.
func parseSignature(t *testing.T, header string) (ts, kid string, sig []byte) {
	t.Helper()
	parts := strings.Split(header, ",")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "t=") || !strings.HasPrefix(parts[1], "kid=") || !strings.HasPrefix(parts[2], "ed25519=") {
		t.Fatalf("Webhook-Signature %q is not t=…,kid=…,ed25519=…", header)
	}
	enc := strings.TrimPrefix(parts[2], "ed25519=")
	if strings.ContainsAny(enc, "=+/") {
		t.Fatalf("signature %q is not unpadded base64url", enc)
	}
	sig, err := b64.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(parts[0], "t="), strings.TrimPrefix(parts[1], "kid="), sig
}

// RFC 8032 section 7.1, TEST 1 to 3. Go's crypto/ed25519 does the math; these
// prove our seed handling, the public key's JWK encoding, and that Sign's
// signature is plain Ed25519 over "<t>.<body>" (checked with the RFC's public
// key, not ours).
var rfc8032 = []struct{ secret, public, message, signature string }{
	{"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
		"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
		"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
	{"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
		"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
		"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
	{"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
		"fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
		"6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
}

func TestEd25519RFC8032Vectors(t *testing.T) {
	for i, v := range rfc8032 {
		priv, x, kid, err := keyFromSeed(unhex(t, v.secret))
		if err != nil {
			t.Fatal(err)
		}
		pub := unhex(t, v.public)
		if x != b64.EncodeToString(pub) {
			t.Errorf("TEST %d: x = %s, want base64url of the RFC public key %s", i+1, x, b64.EncodeToString(pub))
		}
		if got := hex.EncodeToString(ed25519.Sign(priv, unhex(t, v.message))); got != v.signature {
			t.Errorf("TEST %d: signature %s, want %s", i+1, got, v.signature)
		}
		if kid != "ds_"+Thumbprint(x) {
			t.Errorf("TEST %d: kid %s", i+1, kid)
		}
		r := ringFromSeed(t, "rfc8032", unhex(t, v.secret))
		body := unhex(t, v.message)
		ts, gotKID, sig := parseSignature(t, r.Sign(body, time.Unix(1778324210, 0)))
		if ts != "1778324210" || gotKID != kid {
			t.Errorf("TEST %d: t=%s kid=%s", i+1, ts, gotKID)
		}
		if !ed25519.Verify(pub, append([]byte("1778324210."), body...), sig) {
			t.Errorf("TEST %d: signature does not verify over <t>.<body> with the RFC public key", i+1)
		}
	}
}

// RFC 8037 appendix A.3 gives the RFC 7638 thumbprint of RFC 8032's TEST 1
// key; the other cases come from testdata/make_fixtures.py (Python's hashlib
// and json, computed independently, committed with the script).
func TestThumbprint(t *testing.T) {
	if got := Thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"); got != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Errorf("RFC 8037 A.3 thumbprint = %s", got)
	}
	fx := loadFixtures(t)
	for _, k := range fx.Keys {
		_, x, kid, err := keyFromSeed(unhex(t, k.Seed))
		if err != nil {
			t.Fatal(err)
		}
		if x != k.X || Thumbprint(x) != k.Thumbprint || kid != k.KID {
			t.Errorf("seed %s: x=%s thumbprint=%s kid=%s, Python says x=%s thumbprint=%s kid=%s", k.Seed, x, Thumbprint(x), kid, k.X, k.Thumbprint, k.KID)
		}
	}
}

type fixtures struct {
	Keys []struct {
		Seed, X, Thumbprint string
		KID                 string `json:"kid"`
	}
	Signatures []struct {
		Seed    string
		T       int64
		BodyHex string `json:"body_hex"`
		Header  string
	}
}

func loadFixtures(t *testing.T) fixtures {
	t.Helper()
	data, err := os.ReadFile("testdata/signing_fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx fixtures
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx.Keys) < 6 || len(fx.Signatures) < 6 {
		t.Fatalf("fixtures too short: %d keys, %d signatures", len(fx.Keys), len(fx.Signatures))
	}
	return fx
}

// Ed25519 is deterministic, so Sign must reproduce Python's header bytes.
func TestSignMatchesIndependentFixtures(t *testing.T) {
	for _, s := range loadFixtures(t).Signatures {
		r := ringFromSeed(t, "fixtures", unhex(t, s.Seed))
		if got := r.Sign(unhex(t, s.BodyHex), time.Unix(s.T, 0)); got != s.Header {
			t.Errorf("Sign(%s, %d) =\n  %s\nwant\n  %s", s.BodyHex, s.T, got, s.Header)
		}
	}
}

func TestJWKSExactBytes(t *testing.T) {
	r := ringFromSeed(t, "jwks-exact", unhex(t, rfc8032[0].secret))
	want := `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ds_kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","use":"sig","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`
	if got := string(r.JWKS()); got != want {
		t.Errorf("JWKS =\n  %s\nwant\n  %s", got, want)
	}
	if r.ActiveKID() != "ds_kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Errorf("ActiveKID = %s", r.ActiveKID())
	}
}

func jwksKIDs(t *testing.T, r *KeyRing) []string {
	t.Helper()
	var set struct{ Keys []JWK }
	if err := json.Unmarshal(r.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

func TestKeyRingPersistsInDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // not created yet, as on a first start
	core, logs := observer.New(zap.InfoLevel)
	a, err := OpenKeyRing(dir, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if a.Ephemeral() || logs.FilterMessage("webhook signing key created").Len() != 1 {
		t.Errorf("first open: ephemeral=%v, logs %v", a.Ephemeral(), logs.All())
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data_dir holds %v, want only %s (no temporary files left)", entries, KeyFileName)
	}
	if len(a.TokenSecret()) != 32 || bytes.Equal(a.TokenSecret(), make([]byte, 32)) {
		t.Errorf("token secret %x", a.TokenSecret())
	}
	b, err := OpenKeyRing(dir, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if b.ActiveKID() != a.ActiveKID() || !bytes.Equal(b.TokenSecret(), a.TokenSecret()) {
		t.Errorf("reopen changed keys: kid %s -> %s", a.ActiveKID(), b.ActiveKID())
	}
	if logs.FilterMessage("webhook signing key created").Len() != 1 {
		t.Errorf("reopen logged a creation")
	}
	// The signature verifies with the published key, found by kid.
	_, kid, sig := parseSignature(t, b.Sign([]byte(`{"a":1}`), time.Unix(100, 0)))
	var set struct{ Keys []JWK }
	_ = json.Unmarshal(b.JWKS(), &set)
	pub, _ := b64.DecodeString(set.Keys[0].X)
	if set.Keys[0].Kid != kid || !ed25519.Verify(pub, []byte(`100.{"a":1}`), sig) {
		t.Errorf("signature does not verify with the JWKS key")
	}
	other, err := OpenKeyRing(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if other.ActiveKID() == a.ActiveKID() || bytes.Equal(other.TokenSecret(), a.TokenSecret()) {
		t.Errorf("two data_dirs share a key")
	}
	if kids := jwksKIDs(t, other); len(kids) != 1 {
		t.Errorf("another data_dir's JWKS publishes %v", kids)
	}
}

func TestKeyFileReadableByOthersIsNarrowed(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenKeyRing(dir, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, KeyFileName)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	if _, err := OpenKeyRing(dir, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 || logs.Len() != 1 {
		t.Errorf("mode %v, %d warnings", fi.Mode().Perm(), logs.Len())
	}
}

func TestKeyFileCorruptOrNewerIsRefused(t *testing.T) {
	for name, content := range map[string]string{
		"torn":   `{"format":1,"token_se`,
		"newer":  `{"format":2,"token_secret":"` + b64.EncodeToString(make([]byte, 32)) + `","active":{"seed":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}`,
		"secret": `{"format":1,"token_secret":"AAAA","active":{"seed":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}`,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, KeyFileName), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenKeyRing(dir, nil); err == nil {
			t.Errorf("%s key file accepted", name)
		}
		if data, _ := os.ReadFile(filepath.Join(dir, KeyFileName)); string(data) != content {
			t.Errorf("%s key file was rewritten", name)
		}
	}
}

func TestRotationKeepsRetiredKeyForReplayWindow(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Unix(1_800_000_000, 0)
	a, err := OpenKeyRing(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.follow = false // a server that has not noticed the rotation yet
	a.now = func() time.Time { return t0 }
	a.Sign([]byte("x"), t0)
	kid1 := a.ActiveKID()

	b, err := RotateKeys(dir, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	kid2 := b.ActiveKID()
	if kid2 == kid1 || !bytes.Equal(a.TokenSecret(), b.TokenSecret()) {
		t.Fatalf("rotation: kid %s -> %s, token secret kept=%v", kid1, kid2, bytes.Equal(a.TokenSecret(), b.TokenSecret()))
	}
	reopened, err := OpenKeyRing(dir, nil) // what a restart sees
	if err != nil || reopened.ActiveKID() != kid2 {
		t.Fatalf("reload after rotation: %v, kid %s", err, reopened.ActiveKID())
	}
	reopened.follow = false
	at := func(d time.Duration) []string {
		reopened.now = func() time.Time { return t0.Add(d) }
		return jwksKIDs(t, reopened)
	}
	if got := at(10*time.Minute + 59*time.Second); len(got) != 2 || got[0] != kid2 || got[1] != kid1 {
		t.Errorf("10m59s after start (9m59s after rotation): JWKS %v, want [%s %s]", got, kid2, kid1)
	}
	if got := at(11 * time.Minute); len(got) != 1 || got[0] != kid2 {
		t.Errorf("10m after rotation: JWKS %v, want [%s]", got, kid2)
	}
	// A server that has not reloaded yet keeps signing with the old key;
	// once it reloads, the old key stays published until those signatures
	// are outside the window.
	a.now = func() time.Time { return t0.Add(20 * time.Minute) }
	a.Sign([]byte("late"), t0.Add(20*time.Minute))
	if got := at(29 * time.Minute); len(got) != 2 || got[1] != kid1 {
		t.Errorf("9m after the old key's last signature: JWKS %v, want it to include %s", got, kid1)
	}
	if got := at(30 * time.Minute); len(got) != 1 {
		t.Errorf("10m after the old key's last signature: JWKS %v, want [%s]", got, kid2)
	}
	// Rotating again drops retired keys older than the window from the file,
	// but this process, which signed with kid1 recently, still publishes it.
	a.Sign([]byte("later"), t0.Add(20*time.Minute))
	c, err := RotateKeys(dir, t0.Add(25*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return t0.Add(26 * time.Minute) }
	keys := c.Keys()
	if len(keys) != 2 || keys[1].KID != kid2 || keys[1].RetiredAt != t0.Add(25*time.Minute).UTC() {
		t.Errorf("file after second rotation: %+v, want active + %s", keys, kid2)
	}
	if got := jwksKIDs(t, c); len(got) != 3 || got[2] != kid1 {
		t.Errorf("JWKS after second rotation: %v, want [new %s %s]", got, kid2, kid1)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, KeyFileName)); strings.Contains(string(data), kid1) {
		t.Errorf("key file still lists %s after its window", kid1)
	}
}

// A running server follows its key file: within refreshInterval of a
// rotation it signs with the new key and publishes both; a replacement it
// cannot read leaves it signing with the key it has.
func TestRunningRingFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	core, logs := observer.New(zap.InfoLevel)
	r, err := OpenKeyRing(dir, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	kid1 := r.ActiveKID()
	secret := append([]byte(nil), r.TokenSecret()...)
	rotated, err := RotateKeys(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r.ActiveKID() != kid1 {
		t.Errorf("the ring looked at its file again sooner than refreshInterval")
	}
	r.checkedAt.Store(0) // refreshInterval has passed
	if r.ActiveKID() != rotated.ActiveKID() || !bytes.Equal(r.TokenSecret(), secret) {
		t.Fatalf("after a rotation the running ring has kid %s, want %s", r.ActiveKID(), rotated.ActiveKID())
	}
	if _, kid, _ := parseSignature(t, r.Sign([]byte("{}"), time.Now())); kid != rotated.ActiveKID() {
		t.Errorf("signed with %s", kid)
	}
	if kids := jwksKIDs(t, r); len(kids) != 2 || kids[0] != rotated.ActiveKID() || kids[1] != kid1 {
		t.Errorf("JWKS %v, want [new, %s]", kids, kid1)
	}
	if logs.FilterMessage("webhook signing key rotated").Len() != 1 {
		t.Errorf("no log line for the rotation: %v", logs.All())
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFileName+".new"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, KeyFileName+".new"), filepath.Join(dir, KeyFileName)); err != nil {
		t.Fatal(err)
	}
	r.checkedAt.Store(0)
	if r.ActiveKID() != rotated.ActiveKID() || logs.FilterMessageSnippet("cannot be loaded").Len() != 1 {
		t.Errorf("a torn key file replaced the keys: kid %s", r.ActiveKID())
	}
}

func TestRotateWithoutKeyFileCreatesTheFirstKey(t *testing.T) {
	dir := t.TempDir()
	r, err := RotateKeys(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if keys := r.Keys(); len(keys) != 1 || !keys[0].Active {
		t.Errorf("keys %+v, want one active key and nothing retired", keys)
	}
	again, err := OpenKeyRing(dir, nil)
	if err != nil || again.ActiveKID() != r.ActiveKID() {
		t.Errorf("server start after rotate: %v, kid %s want %s", err, again.ActiveKID(), r.ActiveKID())
	}
}

func TestCopyKeys(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "backup")
	if err := CopyKeys(src, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("copying from a data_dir without keys created %s: %v", dst, err)
	}
	a, err := OpenKeyRing(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := CopyKeys(src, dst); err != nil {
		t.Fatal(err)
	}
	b, err := OpenKeyRing(dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dst, KeyFileName))
	if b.ActiveKID() != a.ActiveKID() || !bytes.Equal(a.TokenSecret(), b.TokenSecret()) || fi.Mode().Perm() != 0o600 {
		t.Errorf("copy: kid %s vs %s, mode %v", b.ActiveKID(), a.ActiveKID(), fi.Mode().Perm())
	}
}

func TestRetiredKeysKeepNoPrivateHalf(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenKeyRing(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var before keyFile
	data, _ := os.ReadFile(filepath.Join(dir, KeyFileName))
	_ = json.Unmarshal(data, &before)
	if _, err := RotateKeys(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(filepath.Join(dir, KeyFileName))
	if strings.Contains(string(data), before.Active.Seed) {
		t.Errorf("the retired key %s's seed is still in the file", a.ActiveKID())
	}
}

func TestEphemeralKeyRing(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	a, err := OpenKeyRing("", zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenKeyRing("", zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Ephemeral() || a.ActiveKID() != b.ActiveKID() || !bytes.Equal(a.TokenSecret(), b.TokenSecret()) {
		t.Errorf("memory mode: ephemeral=%v, kids %s %s (a reload must keep the process's key)", a.Ephemeral(), a.ActiveKID(), b.ActiveKID())
	}
	if n := logs.FilterMessageSnippet("ephemeral").Len(); n != 2 {
		t.Errorf("%d log lines say the key is ephemeral, want one per open", n)
	}
}
