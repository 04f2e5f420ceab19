package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// KeyFileName is the file in data_dir that holds the webhook signing keys and
// the token secret. It is private (mode 0600): anyone who reads it can sign
// webhooks and mint callback tokens as this server.
const KeyFileName = "webhook-keys.json"

// keyFileFormat is the version of the JSON below; a newer one is refused.
const keyFileFormat = 1

// keyFile is the on-disk form:
//
//	{"format":1,
//	 "token_secret":"<32 bytes, base64url>",
//	 "active":{"kid":"ds_…","seed":"<Ed25519 seed, base64url>","created_at":"RFC 3339"},
//	 "retired":[{"kid":"ds_…","x":"<public key, base64url>","retired_at":"RFC 3339"}]}
//
// Retired keys keep only their public half: nothing signs with them again.
type keyFile struct {
	Format      int          `json:"format"`
	TokenSecret string       `json:"token_secret"`
	Active      activeEntry  `json:"active"`
	Retired     []retiredOut `json:"retired,omitempty"`
}

type activeEntry struct {
	KID       string    `json:"kid"`
	Seed      string    `json:"seed"`
	CreatedAt time.Time `json:"created_at"`
}

type retiredOut struct {
	KID       string    `json:"kid"`
	X         string    `json:"x"`
	RetiredAt time.Time `json:"retired_at"`
}

func keyFilePath(dataDir string) string {
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	return filepath.Join(filepath.Clean(dataDir), KeyFileName)
}

func newActiveEntry(now time.Time) (activeEntry, error) {
	seed, err := randomBytes(32)
	if err != nil {
		return activeEntry{}, err
	}
	_, _, kid, err := keyFromSeed(seed)
	if err != nil {
		return activeEntry{}, err
	}
	return activeEntry{KID: kid, Seed: b64.EncodeToString(seed), CreatedAt: now.UTC().Truncate(time.Second)}, nil
}

func newKeyFile(now time.Time) (*keyFile, error) {
	active, err := newActiveEntry(now)
	if err != nil {
		return nil, err
	}
	secret, err := randomBytes(tokenSecretSize)
	if err != nil {
		return nil, err
	}
	return &keyFile{Format: keyFileFormat, TokenSecret: b64.EncodeToString(secret), Active: active}, nil
}

// readKeyFile reads and checks the key file; fs.ErrNotExist if there is none.
// A file readable by others is narrowed to 0600 with a warning rather than
// refused, so a restore with loose permissions still starts.
func readKeyFile(path string, logger *zap.Logger) (*keyFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("webhook key file was readable by others; setting its mode to 0600",
			zap.String("file", path), zap.String("mode", fi.Mode().Perm().String()))
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("webhook keys: chmod 0600 %s: %w", path, err)
		}
	}
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("webhook keys: %s is not valid JSON: %w", path, err)
	}
	if kf.Format != keyFileFormat {
		return nil, fmt.Errorf("webhook keys: %s has format %d, this server reads %d", path, kf.Format, keyFileFormat)
	}
	return &kf, nil
}

// loadOrCreateKeyFile returns the key file in dataDir, creating it first if
// there is none. Creation and rotation hold an exclusive lock on dataDir so
// a server's first start and a `webhook-key rotate` cannot interleave.
func loadOrCreateKeyFile(dataDir string, logger *zap.Logger) (kf *keyFile, info os.FileInfo, created bool, err error) {
	path := keyFilePath(dataDir)
	// Stat before reading: if a rotation replaces the file in between, the
	// ring sees a changed file on its first refresh and reads it again.
	info, _ = os.Stat(path)
	kf, err = readKeyFile(path, logger)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return kf, info, false, err
	}
	err = withDirLock(filepath.Dir(path), func() error {
		info, _ = os.Stat(path)
		kf, err = readKeyFile(path, logger)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if kf, err = newKeyFile(time.Now()); err != nil {
			return err
		}
		created = true
		if err := writeFileAtomic(path, kf); err != nil {
			return err
		}
		info, err = os.Stat(path)
		return err
	})
	return kf, info, created, err
}

// RotateKeys makes a new active signing key in dataDir's key file and
// retires the old one, keeping its public half published for
// RetiredKeyPublication; retired keys older than that are dropped from the
// file. The token secret is kept. Without a key file it creates the first
// key. A running server signs with the new key
// within refreshInterval (it follows the file). Returns the ring as now on
// disk.
func RotateKeys(dataDir string, now time.Time) (*KeyRing, error) {
	path := keyFilePath(dataDir)
	var kf *keyFile
	err := withDirLock(filepath.Dir(path), func() error {
		var err error
		kf, err = readKeyFile(path, zap.NewNop())
		if errors.Is(err, fs.ErrNotExist) {
			// Nothing ever signed: the new key is simply the first one.
			if kf, err = newKeyFile(now); err != nil {
				return err
			}
			return writeFileAtomic(path, kf)
		}
		if err != nil {
			return err
		}
		seed, err := b64.DecodeString(kf.Active.Seed)
		if err != nil {
			return fmt.Errorf("webhook keys: active seed: %w", err)
		}
		_, oldX, oldKID, err := keyFromSeed(seed)
		if err != nil {
			return err
		}
		kept := []retiredOut{{KID: oldKID, X: oldX, RetiredAt: now.UTC().Truncate(time.Second)}}
		for _, k := range kf.Retired {
			if now.Before(k.RetiredAt.Add(RetiredKeyPublication)) {
				kept = append(kept, k)
			}
		}
		if kf.Active, err = newActiveEntry(now); err != nil {
			return err
		}
		kf.Retired = kept
		return writeFileAtomic(path, kf)
	})
	if err != nil {
		return nil, err
	}
	return fixedRing(path, kf)
}

// fixedRing is a ring of kf that does not follow the file (for the command
// line, which reads the file once).
func fixedRing(path string, kf *keyFile) (*KeyRing, error) {
	st, err := stateFromFile(path, kf)
	if err != nil {
		return nil, err
	}
	return newRing(path, st, zap.NewNop(), false), nil
}

// CopyKeys copies srcDir's key file into dstDir (atomically, mode 0600), so a
// server restored from a backup signs with the same kid and accepts the
// callback and claim tokens it issued. No key file in srcDir copies nothing.
func CopyKeys(srcDir, dstDir string) error {
	kf, err := readKeyFile(keyFilePath(srcDir), zap.NewNop())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return writeFileAtomic(keyFilePath(dstDir), kf)
}

// InspectKeys opens dataDir's key file read-only (fs.ErrNotExist if the server
// never started there).
func InspectKeys(dataDir string) (*KeyRing, error) {
	path := keyFilePath(dataDir)
	kf, err := readKeyFile(path, zap.NewNop())
	if err != nil {
		return nil, err
	}
	return fixedRing(path, kf)
}

// writeFileAtomic replaces path with kf's JSON so that a crash leaves either
// the old file or the new one, never a torn one: a private temporary file in
// the same directory, written and fsynced, renamed over path, then the
// directory fsynced so the rename itself survives a power loss.
func writeFileAtomic(path string, kf *keyFile) error {
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return fmt.Errorf("webhook keys: encode: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("webhook keys: create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+KeyFileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("webhook keys: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // a no-op once renamed
	// CreateTemp already uses 0600; chmod states it against any umask quirk.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("webhook keys: chmod %s: %w", tmpName, err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("webhook keys: write %s: %w", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("webhook keys: fsync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("webhook keys: close %s: %w", tmpName, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("webhook keys: rename to %s: %w", path, err)
	}
	return syncDir(dir)
}
