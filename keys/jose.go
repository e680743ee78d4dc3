package keys

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// kidFor returns the JWS key id of a signing key version: "<name>:v<version>".
func kidFor(name string, version int) string {
	return name + ":v" + strconv.Itoa(version)
}

// splitVersioned splits "<name>:v<version>" (a kid or a kref).
func splitVersioned(s string) (name string, version int, ok bool) {
	i := strings.LastIndex(s, ":v")
	if i <= 0 {
		return "", 0, false
	}
	v, err := strconv.Atoi(s[i+2:])
	if err != nil || v < 1 {
		return "", 0, false
	}
	return s[:i], v, true
}

// wrappedVersion reads N from a wrapped key "vault:vN:..." (or "dev:vN:...").
func wrappedVersion(wrapped string) (int, bool) {
	_, rest, ok := strings.Cut(wrapped, ":v")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(num)
	if err != nil || v < 1 {
		return 0, false
	}
	return v, true
}

// signingInput returns the encoded JWS protected header for alg and kid.
func jwsHeader(alg jwa.SignatureAlgorithm, kid string) (string, error) {
	raw, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}{alg.String(), kid})
	if err != nil {
		return "", fmt.Errorf("keys: jws header: %w", err)
	}
	return b64.EncodeToString(raw), nil
}

// compactJWS assembles header.payload.signature.
func compactJWS(header string, payload, sig []byte) []byte {
	out := make([]byte, 0, len(header)+2+b64.EncodedLen(len(payload))+b64.EncodedLen(len(sig)))
	out = append(out, header...)
	out = append(out, '.')
	out = b64.AppendEncode(out, payload)
	out = append(out, '.')
	return b64.AppendEncode(out, sig)
}

// jwsKid reads the kid and alg from a compact JWS protected header.
func jwsKid(token []byte) (kid string, alg string, err error) {
	hdr, _, _, err := jws.SplitCompact(token)
	if err != nil {
		return "", "", fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	raw := make([]byte, b64.DecodedLen(len(hdr)))
	n, err := b64.Decode(raw, hdr)
	if err != nil {
		return "", "", fmt.Errorf("%w: jws header encoding", ErrMalformed)
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw[:n], &h); err != nil {
		return "", "", fmt.Errorf("%w: jws header", ErrMalformed)
	}
	return h.Kid, h.Alg, nil
}

// recipientKey returns a party's public key from its JWK (see
// parseRecipientKey), parsed once and then taken from recipientKeys.
func recipientKey(raw []byte) (parsedRecipient, error) {
	if k, ok := recipientKeys.get(raw); ok {
		return k, nil
	}
	pub, alg, err := parseRecipientKey(raw)
	if err != nil {
		return parsedRecipient{}, err
	}
	k := parsedRecipient{pub: pub, alg: alg, kid: pub.KeyID()}
	var ec ecdsa.PublicKey
	if alg == jwa.ECDH_ES_A256KW && pub.Raw(&ec) == nil && ec.Curve == elliptic.P256() {
		if p, err := ec.ECDH(); err == nil {
			k.p256 = p
		}
	}
	recipientKeys.put(raw, k)
	return k, nil
}

// parsedRecipient is a recipient's public key with its key-encryption
// algorithm and key id, and, for a P-256 key, the key as sealECDHES takes it.
type parsedRecipient struct {
	pub  jwk.Key
	alg  jwa.KeyEncryptionAlgorithm
	kid  string
	p256 *ecdh.PublicKey
}

// recipientCache keeps the recipient keys parsed from their JWK bytes: every
// delivery to a party names the same key, and parsing its JSON cost about
// 17 µs of each webhook delivery in the load harness. It holds at most
// maxRecipientKeys keys and starts over when full. A key is used read-only
// (jwe.Encrypt reads it), and a party whose key changes brings other bytes.
type recipientCache struct {
	mu   sync.RWMutex
	keys map[string]parsedRecipient
}

const maxRecipientKeys = 4096

var recipientKeys = &recipientCache{keys: map[string]parsedRecipient{}}

func (c *recipientCache) get(raw []byte) (parsedRecipient, bool) {
	c.mu.RLock()
	k, ok := c.keys[string(raw)]
	c.mu.RUnlock()
	return k, ok
}

func (c *recipientCache) put(raw []byte, k parsedRecipient) {
	c.mu.Lock()
	if len(c.keys) >= maxRecipientKeys {
		clear(c.keys)
	}
	c.keys[string(raw)] = k
	c.mu.Unlock()
}

// parseRecipientKey parses a party's public JWK and picks the
// key-encryption algorithm: ECDH-ES+A256KW for EC and X25519 keys,
// RSA-OAEP-256 for RSA. A private JWK is reduced to its public part.
func parseRecipientKey(raw []byte) (jwk.Key, jwa.KeyEncryptionAlgorithm, error) {
	key, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, "", newError("seal for recipient", ErrUnsupportedKey, fmt.Errorf("recipient key is not a JWK"))
	}
	pub, err := key.PublicKey()
	if err != nil {
		return nil, "", newError("seal for recipient", ErrUnsupportedKey, fmt.Errorf("recipient key has no public part"))
	}
	switch pub.KeyType() {
	case jwa.EC:
		return pub, jwa.ECDH_ES_A256KW, nil
	case jwa.RSA:
		return pub, jwa.RSA_OAEP_256, nil
	case jwa.OKP:
		if okp, ok := pub.(jwk.OKPPublicKey); ok && okp.Crv() == jwa.X25519 {
			return pub, jwa.ECDH_ES_A256KW, nil
		}
	}
	return nil, "", newError("seal for recipient", ErrUnsupportedKey, fmt.Errorf("key type %s cannot receive encrypted data", pub.KeyType()))
}

// signFunc signs payloads into compact JWS, as Sign does.
type signFunc func(ctx context.Context, payloads [][]byte) ([][]byte, error)

// sealFor signs each payload and encrypts each JWS to the recipient's
// public JWK, giving compact JWE with cty "JOSE" (a nested JWS).
func sealFor(ctx context.Context, sign signFunc, recipientJWK []byte, payloads [][]byte) ([][]byte, error) {
	rk, err := recipientKey(recipientJWK)
	if err != nil {
		return nil, err
	}
	signed, err := sign(ctx, payloads)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(signed))
	for i, token := range signed {
		if rk.p256 != nil {
			if out[i], err = sealECDHES(rk.p256, rk.kid, token); err != nil {
				return nil, err
			}
			continue
		}
		hdr := jwe.NewHeaders()
		if err := hdr.Set(jwe.ContentTypeKey, "JOSE"); err != nil {
			return nil, newError("seal for recipient", nil, err)
		}
		if rk.kid != "" {
			if err := hdr.Set(jwe.KeyIDKey, rk.kid); err != nil {
				return nil, newError("seal for recipient", nil, err)
			}
		}
		enc, err := jwe.Encrypt(token, jwe.WithKey(rk.alg, rk.pub), jwe.WithContentEncryption(jwa.A256GCM), jwe.WithProtectedHeaders(hdr))
		if err != nil {
			return nil, newError("seal for recipient", nil, err)
		}
		out[i] = enc
	}
	return out, nil
}

// jwksJSON marshals verification keys as a JWK set.
func jwksJSON(keys []verifyKey) ([]byte, error) {
	set := jwk.NewSet()
	for _, k := range keys {
		jk, err := jwk.FromRaw(k.pub)
		if err != nil {
			return nil, newError("jwks", ErrUnsupportedKey, err)
		}
		for name, v := range map[string]any{jwk.KeyIDKey: k.kid, jwk.AlgorithmKey: k.alg, jwk.KeyUsageKey: "sig"} {
			if err := jk.Set(name, v); err != nil {
				return nil, newError("jwks", nil, err)
			}
		}
		if err := set.AddKey(jk); err != nil {
			return nil, newError("jwks", nil, err)
		}
	}
	raw, err := json.Marshal(set)
	if err != nil {
		return nil, newError("jwks", nil, err)
	}
	return raw, nil
}

// verifyKey is one live verification key version.
type verifyKey struct {
	kid string
	alg jwa.SignatureAlgorithm
	pub any
}

// verifyWith checks a compact JWS against one key and returns its payload.
func verifyWith(token []byte, k verifyKey) ([]byte, error) {
	payload, err := jws.Verify(token, jws.WithKey(k.alg, k.pub))
	if err != nil {
		return nil, newError("verify", ErrNotAuthentic, fmt.Errorf("signature does not verify under %s", k.kid))
	}
	return payload, nil
}
