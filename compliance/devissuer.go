package compliance

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// The dev issuer's fixed claims.
const (
	// DevIssuerName is the "iss" of tokens the dev issuer mints.
	DevIssuerName = "clearance-dev"
	// DevAudience is the "aud" of tokens the dev issuer mints.
	DevAudience = "clearance-compliance"
	// DevIssuerKeyFile is the file name of the dev issuer's key in the dev
	// data directory.
	DevIssuerKeyFile = "console-issuer-key.json"
)

// DevIssuer is the built-in token issuer of `clearance dev`: an Ed25519 key
// kept in a file of the dev data directory, shared by the dev process (which
// verifies) and `clearance token` (which mints). It is for development only.
type DevIssuer struct {
	priv jwk.Key
	pub  jwk.Key
}

// LoadDevIssuer reads the issuer key that `clearance dev` created at path.
// A missing key is an error wrapping fs.ErrNotExist: a key made anywhere
// else would mint tokens no running dev process accepts.
func LoadDevIssuer(path string) (*DevIssuer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compliance: dev issuer key: %w", err)
	}
	key, err := jwk.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("compliance: dev issuer key %s: %w", path, err)
	}
	return newDevIssuer(key)
}

// LoadOrCreateDevIssuer reads the issuer key at path, creating it (mode
// 0600) on first use.
func LoadOrCreateDevIssuer(path string) (*DevIssuer, error) {
	iss, err := LoadDevIssuer(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return iss, err
	}
	_, raw, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("compliance: dev issuer key: %w", err)
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, fmt.Errorf("compliance: dev issuer key: %w", err)
	}
	if err := jwk.AssignKeyID(key); err != nil {
		return nil, fmt.Errorf("compliance: dev issuer key: %w", err)
	}
	_ = key.Set(jwk.AlgorithmKey, jwa.EdDSA)
	_ = key.Set(jwk.KeyUsageKey, jwk.ForSignature)
	out, err := json.Marshal(key)
	if err != nil {
		return nil, fmt.Errorf("compliance: dev issuer key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("compliance: dev issuer key: %w", err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return nil, fmt.Errorf("compliance: dev issuer key: %w", err)
	}
	return newDevIssuer(key)
}

func newDevIssuer(priv jwk.Key) (*DevIssuer, error) {
	if priv.KeyType() != "OKP" || priv.KeyID() == "" {
		return nil, errors.New("compliance: dev issuer key: want an Ed25519 private JWK with a kid")
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		return nil, fmt.Errorf("compliance: dev issuer key: %w", err)
	}
	return &DevIssuer{priv: priv, pub: pub}, nil
}

// Mint returns a signed token for subject with role, valid for ttl from now.
func (d *DevIssuer) Mint(subject string, role Role, ttl time.Duration, now time.Time) (string, error) {
	if role == RoleNone {
		return "", fmt.Errorf("%w: none", ErrUnknownRole)
	}
	tok, err := jwt.NewBuilder().
		Issuer(DevIssuerName).
		Audience([]string{DevAudience}).
		Subject(subject).
		IssuedAt(now).
		NotBefore(now).
		Expiration(now.Add(ttl)).
		Claim("roles", []string{role.String()}).
		Build()
	if err != nil {
		return "", fmt.Errorf("compliance: mint: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.EdDSA, d.priv))
	if err != nil {
		return "", fmt.Errorf("compliance: mint: %w", err)
	}
	return string(signed), nil
}

// JWKS returns the JSON JWK set of the issuer's public key.
func (d *DevIssuer) JWKS() []byte {
	set := jwk.NewSet()
	_ = set.AddKey(d.pub)
	out, err := json.Marshal(set)
	if err != nil {
		// A set of one parsed public key always encodes.
		panic("compliance: encode dev JWKS: " + err.Error())
	}
	return out
}

// Authenticator returns an Authenticator that accepts the tokens d mints.
func (d *DevIssuer) Authenticator(now func() time.Time) (*Authenticator, error) {
	return NewAuthenticator(AuthConfig{Issuer: DevIssuerName, Audience: DevAudience},
		AuthOptions{StaticJWKS: d.JWKS(), Now: now})
}
