package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

const (
	devKeyRef     = "dev:clearance-data"
	devSigningKey = "clearance-dev-signing"
	devWrapPrefix = "dev:v1:"
	devWrapAAD    = "clearance dev data key"
)

// DevKeyRingOptions configures the development key ring.
type DevKeyRingOptions struct {
	// Path is the key ring file; it is created (mode 0600) if missing.
	Path string
	// Allow must be true: only `clearance dev` sets it. Without it
	// NewDevKeyRing returns ErrDevKeyRingNotAllowed, so that `clearance
	// serve` can never run on keys kept in a local file.
	Allow bool
	// Logger receives the warning that this is not Vault.
	Logger *slog.Logger
	// DataKeyMaxUses and DataKeyMaxAge bound a data key as for Vault
	// (defaults 2^20 and 5m).
	DataKeyMaxUses uint64
	// DataKeyMaxAge bounds how long one data key seals messages.
	DataKeyMaxAge time.Duration
}

// DevKeyRing is a file-based key ring for local development: the same sealed
// format and signatures as Vault, with the keys in a local file. It is not a
// key management system; it exists so that `clearance dev` runs without
// Vault. It is safe for concurrent use and never blocks on the network.
type DevKeyRing struct {
	env  *envelope
	kek  cipher.AEAD
	priv ed25519.PrivateKey
}

// devKeyFile is the key ring file's format.
type devKeyFile struct {
	Warning          string `json:"warning"`
	KeyEncryptionKey string `json:"key_encryption_key"`
	SigningSeed      string `json:"signing_seed"`
}

// NewDevKeyRing opens (or creates) the key ring file. It refuses unless
// opts.Allow is set, and logs a warning that the keys are not in Vault.
func NewDevKeyRing(opts DevKeyRingOptions) (*DevKeyRing, error) {
	if !opts.Allow {
		return nil, newError("dev key ring", ErrDevKeyRingNotAllowed, errors.New("use Vault (keys.vault) outside `clearance dev`"))
	}
	if opts.Path == "" {
		return nil, newError("dev key ring", nil, errors.New("path required"))
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f, err := loadOrCreateDevFile(opts.Path)
	if err != nil {
		return nil, err
	}
	kekRaw, err1 := base64.StdEncoding.DecodeString(f.KeyEncryptionKey)
	seed, err2 := base64.StdEncoding.DecodeString(f.SigningSeed)
	if err1 != nil || err2 != nil || len(kekRaw) != dataKeySize || len(seed) != ed25519.SeedSize {
		return nil, newError("dev key ring", ErrMalformed, errors.New("key ring file is corrupt"))
	}
	block, err := aes.NewCipher(kekRaw)
	if err != nil {
		return nil, newError("dev key ring", nil, err)
	}
	kek, err := cipher.NewGCM(block)
	if err != nil {
		return nil, newError("dev key ring", nil, err)
	}
	maxAge := opts.DataKeyMaxAge
	if maxAge <= 0 {
		maxAge = DefaultDataKeyMaxAge
	}
	maxUses := opts.DataKeyMaxUses
	if maxUses == 0 {
		maxUses = DefaultDataKeyMaxUses
	}
	d := &DevKeyRing{kek: kek, priv: ed25519.NewKeyFromSeed(seed)}
	d.env = newEnvelope(devSource{d}, maxUses, maxAge, DefaultOpenCacheSize, DefaultOpenCacheTTL)
	logger.Warn("DEVELOPMENT KEY RING IN USE: keys are in a local file, NOT in Vault; never use it for real personal data",
		"component", "keys", "path", opts.Path)
	return d, nil
}

func loadOrCreateDevFile(path string) (devKeyFile, error) {
	var f devKeyFile
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kek := make([]byte, dataKeySize)
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(kek); err != nil {
			return f, newError("dev key ring", nil, err)
		}
		if _, err := rand.Read(seed); err != nil {
			return f, newError("dev key ring", nil, err)
		}
		f = devKeyFile{
			Warning:          "Clearance development key ring: not Vault, not for real personal data",
			KeyEncryptionKey: base64.StdEncoding.EncodeToString(kek),
			SigningSeed:      base64.StdEncoding.EncodeToString(seed),
		}
		out, _ := json.MarshalIndent(f, "", "  ")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return f, newError("dev key ring", nil, err)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			return f, newError("dev key ring", nil, err)
		}
		return f, nil
	}
	if err != nil {
		return f, newError("dev key ring", nil, err)
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return f, newError("dev key ring", ErrMalformed, errors.New("key ring file is not JSON"))
	}
	return f, nil
}

// devSource wraps data keys with the key ring's key-encryption key.
type devSource struct{ d *DevKeyRing }

func (s devSource) keyRef() string { return devKeyRef }

func (s devSource) newDataKey(context.Context) ([]byte, string, int, error) {
	plain := make([]byte, dataKeySize)
	if _, err := rand.Read(plain); err != nil {
		return nil, "", 0, newError("dev data key", nil, err)
	}
	nonce := make([]byte, nonceSize, nonceSize+dataKeySize+tagSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", 0, newError("dev data key", nil, err)
	}
	wrapped := s.d.kek.Seal(nonce, nonce, plain, []byte(devWrapAAD))
	return plain, devWrapPrefix + base64.StdEncoding.EncodeToString(wrapped), 1, nil
}

func (s devSource) unwrap(_ context.Context, wrapped string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(wrapped, devWrapPrefix))
	if err != nil || !strings.HasPrefix(wrapped, devWrapPrefix) || len(raw) < nonceSize+tagSize {
		return nil, newError("open", ErrMalformed, errors.New("wrapped key"))
	}
	plain, err := s.d.kek.Open(nil, raw[:nonceSize], raw[nonceSize:], []byte(devWrapAAD))
	if err != nil {
		return nil, newError("open", ErrNotAuthentic, errors.New("wrapped key is not from this key ring"))
	}
	return plain, nil
}

// KeyRef names the key ring's encryption key: "dev:clearance-data".
func (d *DevKeyRing) KeyRef() string { return devKeyRef }

// Seal encrypts plaintext into the same compact JWE format as Vault.Seal.
func (d *DevKeyRing) Seal(ctx context.Context, plaintext []byte) ([]byte, error) {
	return d.env.seal(ctx, plaintext)
}

// SealAppend is Seal appending the message to dst.
func (d *DevKeyRing) SealAppend(ctx context.Context, dst, plaintext []byte) ([]byte, error) {
	return d.env.sealAppend(ctx, dst, plaintext)
}

// Open decrypts a message sealed by this key ring.
func (d *DevKeyRing) Open(ctx context.Context, sealed []byte) ([]byte, error) {
	return d.env.open(ctx, sealed)
}

func (d *DevKeyRing) verifyKey() verifyKey {
	return verifyKey{kid: kidFor(devSigningKey, 1), alg: jwa.EdDSA, pub: d.priv.Public()}
}

// Sign signs each payload into a compact EdDSA JWS with kid
// "clearance-dev-signing:v1".
func (d *DevKeyRing) Sign(_ context.Context, payloads [][]byte) ([][]byte, error) {
	k := d.verifyKey()
	header, err := jwsHeader(k.alg, k.kid)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(payloads))
	for i, p := range payloads {
		in := append([]byte(header+"."), b64.EncodeToString(p)...)
		out[i] = compactJWS(header, p, ed25519.Sign(d.priv, in))
	}
	return out, nil
}

// Verify checks a compact JWS signed by this key ring and returns its payload.
func (d *DevKeyRing) Verify(_ context.Context, token []byte) ([]byte, error) {
	k := d.verifyKey()
	kid, _, err := jwsKid(token)
	if err != nil {
		return nil, newError("verify", nil, err)
	}
	if kid != k.kid {
		return nil, newError("verify", ErrNotAuthentic, fmt.Errorf("unknown kid"))
	}
	return verifyWith(token, k)
}

// JWKS returns the key ring's verification key as a JSON JWK set.
func (d *DevKeyRing) JWKS(context.Context) ([]byte, error) {
	return jwksJSON([]verifyKey{d.verifyKey()})
}

// SealFor signs each payload and encrypts it to the recipient's public JWK,
// as Vault.SealFor does.
func (d *DevKeyRing) SealFor(ctx context.Context, recipientJWK []byte, payloads [][]byte) ([][]byte, error) {
	return sealFor(ctx, d.Sign, recipientJWK, payloads)
}

// Close releases nothing and returns nil; it exists so that the key ring and
// Vault can be closed alike.
func (d *DevKeyRing) Close(context.Context) error { return nil }
