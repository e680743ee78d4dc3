package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// LocalSigner signs and verifies checkpoints with an Ed25519 key held in
// memory. It is for development and tests only: production checkpoints are
// signed by a Vault-managed key through the keys package, which implements
// the same methods. It is safe for concurrent use.
type LocalSigner struct {
	priv jwk.Key
	set  jwk.Set
}

// NewLocalSigner returns a signer for an Ed25519 private key. Its key id is
// derived from the public key.
func NewLocalSigner(key ed25519.PrivateKey) (*LocalSigner, error) {
	pubRaw, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("audit: local signer: not an ed25519 private key")
	}
	sum := sha256.Sum256(pubRaw)
	kid := "audit-dev-" + hex.EncodeToString(sum[:8])
	priv, err := jwk.FromRaw(key)
	if err != nil {
		return nil, fmt.Errorf("audit: local signer: %w", err)
	}
	pub, err := jwk.FromRaw(pubRaw)
	if err != nil {
		return nil, fmt.Errorf("audit: local signer: %w", err)
	}
	for _, k := range []jwk.Key{priv, pub} {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			return nil, fmt.Errorf("audit: local signer: %w", err)
		}
		if err := k.Set(jwk.AlgorithmKey, jwa.EdDSA); err != nil {
			return nil, fmt.Errorf("audit: local signer: %w", err)
		}
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("audit: local signer: %w", err)
	}
	return &LocalSigner{priv: priv, set: set}, nil
}

// GenerateLocalSigner returns a LocalSigner with a fresh random key.
func GenerateLocalSigner() (*LocalSigner, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("audit: local signer: %w", err)
	}
	return NewLocalSigner(key)
}

// Sign returns one compact JWS (EdDSA, with kid) per payload.
func (s *LocalSigner) Sign(_ context.Context, payloads [][]byte) ([][]byte, error) {
	out := make([][]byte, len(payloads))
	for i, p := range payloads {
		sig, err := jws.Sign(p, jws.WithKey(jwa.EdDSA, s.priv))
		if err != nil {
			return nil, fmt.Errorf("audit: local signer: sign: %w", err)
		}
		out[i] = sig
	}
	return out, nil
}

// Verify checks a compact JWS against the signer's public key and returns
// its payload.
func (s *LocalSigner) Verify(_ context.Context, msg []byte) ([]byte, error) {
	return verifyWithSet(s.set, msg)
}

// JWKS returns the JSON JWK set of the signer's public key, the form
// `clearance audit verify --jwks` reads.
func (s *LocalSigner) JWKS(context.Context) ([]byte, error) {
	b, err := json.Marshal(s.set)
	if err != nil {
		return nil, fmt.Errorf("audit: local signer: jwks: %w", err)
	}
	return b, nil
}

// JWKSVerifier verifies compact JWS against a JSON JWK set, such as the one
// the broker serves at /.well-known/jwks.json. Keys are matched by kid and
// the algorithm comes from the key. It is safe for concurrent use.
type JWKSVerifier struct {
	set jwk.Set
}

// NewJWKSVerifier parses a JSON JWK set of public verification keys.
func NewJWKSVerifier(jwks []byte) (*JWKSVerifier, error) {
	set, err := jwk.Parse(jwks)
	if err != nil {
		return nil, fmt.Errorf("audit: jwks: %w", err)
	}
	if set.Len() == 0 {
		return nil, fmt.Errorf("audit: jwks: no keys")
	}
	return &JWKSVerifier{set: set}, nil
}

// Verify checks a compact JWS against the set and returns its payload.
func (v *JWKSVerifier) Verify(_ context.Context, msg []byte) ([]byte, error) {
	return verifyWithSet(v.set, msg)
}

// UnknownKeyError is a signature by a key the verifier's JWK set does not
// hold: it cannot be checked, which is not the same as a signature found
// wrong.
type UnknownKeyError struct{ KeyID string }

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("audit: signed with key ID %q, which the key set does not hold", e.KeyID)
}

// UnknownKeyID returns the key ID of a signature err could not check for
// want of its key (an *UnknownKeyError, or a *TamperError made of one), or
// "".
func UnknownKeyID(err error) string {
	var uk *UnknownKeyError
	if errors.As(err, &uk) {
		return uk.KeyID
	}
	var te *TamperError
	if errors.As(err, &te) {
		return te.UnknownKeyID
	}
	return ""
}

func verifyWithSet(set jwk.Set, msg []byte) ([]byte, error) {
	if m, err := jws.Parse(msg); err == nil && len(m.Signatures()) == 1 {
		if kid := m.Signatures()[0].ProtectedHeaders().KeyID(); kid != "" {
			if _, ok := set.LookupKeyID(kid); !ok {
				return nil, &UnknownKeyError{KeyID: kid}
			}
		}
	}
	p, err := jws.Verify(msg, jws.WithKeySet(set, jws.WithInferAlgorithmFromKey(true), jws.WithRequireKid(true)))
	if err != nil {
		return nil, fmt.Errorf("audit: verify signature: %w", err)
	}
	return p, nil
}

var (
	_ Signer   = (*LocalSigner)(nil)
	_ Verifier = (*LocalSigner)(nil)
	_ Verifier = (*JWKSVerifier)(nil)
)
