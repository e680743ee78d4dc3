package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// signingInfo is what Vault says about the signing key: its type, latest
// version, and the public keys of the live versions.
type signingInfo struct {
	alg     jwa.SignatureAlgorithm
	latest  int
	min     int
	keys    map[int]verifyKey
	fetched time.Time
}

// transitSigner signs with a transit key and verifies locally with its
// public keys, which it re-reads every key_info_ttl.
type transitSigner struct {
	v  *Vault
	mu sync.Mutex
	si *signingInfo
}

// info returns the cached signing key info, reading it from Vault when it is
// older than key_info_ttl or when force is set.
func (s *transitSigner) info(ctx context.Context, force bool) (*signingInfo, error) {
	maxAge := s.v.cfg.KeyInfoTTL
	if force {
		maxAge = 0
	}
	return s.within(ctx, maxAge)
}

// within returns the cached signing key info if it was read from Vault less
// than maxAge ago, and reads it again otherwise. A failed read keeps what
// was cached.
func (s *transitSigner) within(ctx context.Context, maxAge time.Duration) (*signingInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.si != nil && time.Since(s.si.fetched) < maxAge {
		return s.si, nil
	}
	si, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	s.si = si
	return si, nil
}

func (s *transitSigner) read(ctx context.Context) (*signingInfo, error) {
	name := s.v.cfg.SigningKey
	sec, err := s.v.read(ctx, "transit read signing key", s.v.path("keys", name))
	if err != nil {
		return nil, err
	}
	si := &signingInfo{keys: map[int]verifyKey{}, fetched: time.Now()}
	typ, _ := sec.Data["type"].(string)
	switch typ {
	case "ecdsa-p256":
		si.alg = jwa.ES256
	case "ed25519":
		si.alg = jwa.EdDSA
	default:
		return nil, newError("transit read signing key", ErrUnsupportedKey, fmt.Errorf("key type %q, want ecdsa-p256 or ed25519", typ))
	}
	si.latest = toInt(sec.Data["latest_version"])
	si.min = max(toInt(sec.Data["min_decryption_version"]), 1)
	versions, _ := sec.Data["keys"].(map[string]any)
	for vs, raw := range versions {
		ver, err := strconv.Atoi(vs)
		if err != nil || ver < si.min {
			continue
		}
		m, _ := raw.(map[string]any)
		pubStr, _ := m["public_key"].(string)
		pub, err := parseTransitPublic(typ, pubStr)
		if err != nil {
			return nil, newError("transit read signing key", nil, fmt.Errorf("version %d: %w", ver, err))
		}
		si.keys[ver] = verifyKey{kid: kidFor(name, ver), alg: si.alg, pub: pub}
	}
	if _, ok := si.keys[si.latest]; !ok {
		return nil, newError("transit read signing key", nil, errors.New("no public key for the latest version"))
	}
	return si, nil
}

func parseTransitPublic(typ, s string) (any, error) {
	if typ == "ed25519" {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, errors.New("bad ed25519 public key")
		}
		return ed25519.PublicKey(raw), nil
	}
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("bad PEM public key")
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

func toInt(v any) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}

// Sign signs each payload into a compact JWS with the latest version of the
// signing key (kid "<signing_key>:v<version>"), sending up to
// sign_batch_size payloads per transit request (batch_input). Concurrent
// calls are coalesced into shared requests, so many callers signing one
// payload each still cost few round trips. Errors: ErrUnavailable,
// ErrPermissionDenied.
func (v *Vault) Sign(ctx context.Context, payloads [][]byte) ([][]byte, error) {
	if len(payloads) == 0 {
		return [][]byte{}, nil
	}
	return v.batcher.sign(ctx, payloads)
}

// signDirect signs payloads in chunks of sign_batch_size.
func (v *Vault) signDirect(ctx context.Context, payloads [][]byte) ([][]byte, error) {
	si, err := v.sign.info(ctx, false)
	if err != nil {
		return nil, err
	}
	header, err := jwsHeader(si.alg, kidFor(v.cfg.SigningKey, si.latest))
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(payloads))
	for start := 0; start < len(payloads); start += v.cfg.SignBatchSize {
		batch := payloads[start:min(start+v.cfg.SignBatchSize, len(payloads))]
		sigs, err := v.signBatch(ctx, si, header, batch)
		if err != nil {
			return nil, err
		}
		for i, p := range batch {
			out = append(out, compactJWS(header, p, sigs[i]))
		}
	}
	return out, nil
}

func (v *Vault) signBatch(ctx context.Context, si *signingInfo, header string, batch [][]byte) ([][]byte, error) {
	const op = "transit sign"
	inputs := make([]map[string]any, len(batch))
	var in []byte
	for i, p := range batch {
		in = append(in[:0], header...)
		in = append(in, '.')
		in = b64.AppendEncode(in, p)
		if si.alg == jwa.ES256 {
			// ES256 signs the SHA-256 of the signing input: Vault gets
			// that digest (prehashed) rather than the payload, so that
			// no minimised record reaches Vault, and a batch is a few
			// kilobytes rather than hundreds.
			d := sha256.Sum256(in)
			inputs[i] = map[string]any{"input": base64.StdEncoding.EncodeToString(d[:])}
			continue
		}
		// Ed25519 signs the message itself; transit has no prehashed
		// form for it.
		inputs[i] = map[string]any{"input": base64.StdEncoding.EncodeToString(in)}
	}
	body := map[string]any{"batch_input": inputs, "key_version": si.latest}
	if si.alg == jwa.ES256 {
		body["hash_algorithm"] = "sha2-256"
		body["prehashed"] = true
		body["marshaling_algorithm"] = "jws"
	}
	sec, err := v.writeBatch(ctx, op, v.path("sign", v.cfg.SigningKey), body)
	if err != nil {
		return nil, err
	}
	results, _ := sec.Data["batch_results"].([]any)
	if len(results) != len(batch) {
		return nil, newError(op, nil, fmt.Errorf("vault returned %d results for %d inputs", len(results), len(batch)))
	}
	sigs := make([][]byte, len(batch))
	for i, r := range results {
		m, _ := r.(map[string]any)
		if e, _ := m["error"].(string); e != "" {
			return nil, classify(op, &vaultItemError{msg: e})
		}
		sig, _ := m["signature"].(string)
		prefix := "vault:v" + strconv.Itoa(si.latest) + ":"
		if !strings.HasPrefix(sig, prefix) {
			return nil, newError(op, nil, errors.New("signature from an unexpected key version"))
		}
		enc := base64.StdEncoding
		if si.alg == jwa.ES256 {
			enc = base64.RawURLEncoding // marshaling_algorithm=jws
		}
		raw, err := enc.DecodeString(strings.TrimPrefix(sig, prefix))
		if err != nil {
			return nil, newError(op, nil, errors.New("undecodable signature"))
		}
		sigs[i] = raw
	}
	return sigs, nil
}

// Verify checks a compact JWS signed by Sign against the live public keys of
// the signing key (read from Vault at most every key_info_ttl, or when an
// unknown newer version appears) and returns its payload. Errors:
// ErrMalformed, ErrNotAuthentic (unknown kid or bad signature), ErrKeyRetired.
func (v *Vault) Verify(ctx context.Context, token []byte) ([]byte, error) {
	kid, _, err := jwsKid(token)
	if err != nil {
		return nil, newError("verify", nil, err)
	}
	name, ver, ok := splitVersioned(kid)
	if !ok || name != v.cfg.SigningKey {
		return nil, newError("verify", ErrNotAuthentic, errors.New("kid does not name the signing key"))
	}
	si, err := v.sign.info(ctx, false)
	if err != nil {
		return nil, err
	}
	if ver > si.latest && time.Since(si.fetched) > time.Second {
		if si, err = v.sign.info(ctx, true); err != nil {
			return nil, err
		}
	}
	k, ok := si.keys[ver]
	switch {
	case ok:
		return verifyWith(token, k)
	case ver < si.min:
		return nil, newError("verify", ErrKeyRetired, fmt.Errorf("version %d is below min_decryption_version", ver))
	default:
		return nil, newError("verify", ErrNotAuthentic, fmt.Errorf("unknown key version %d", ver))
	}
}

// readyWithin is how recent a successful read of the signing key must be
// for Ready to answer without asking Vault.
const readyWithin = 5 * time.Second

// Ready reports whether Vault answers for this instance now: it reads the
// signing key (which takes a reachable, unsealed Vault, a live token and a
// policy that grants the read) unless a read succeeded within the last 5
// seconds, and refreshes the cache JWKS and Verify use. A readiness probe
// so notices an unreachable Vault or a revoked token within seconds, where
// the cache alone would take key_info_ttl; a probe every 10 seconds costs
// Vault one read per instance each time.
func (v *Vault) Ready(ctx context.Context) error {
	_, err := v.sign.within(ctx, v.readyWithin)
	return err
}

// JWKS returns the JSON JWK set of the signing key's live versions (from
// min_decryption_version to latest), each with kid "<signing_key>:v<n>",
// alg and use "sig". The broker serves it at /.well-known/jwks.json.
func (v *Vault) JWKS(ctx context.Context) ([]byte, error) {
	si, err := v.sign.info(ctx, false)
	if err != nil {
		return nil, err
	}
	versions := make([]int, 0, len(si.keys))
	for ver := range si.keys {
		versions = append(versions, ver)
	}
	sort.Ints(versions)
	keys := make([]verifyKey, len(versions))
	for i, ver := range versions {
		keys[i] = si.keys[ver]
	}
	return jwksJSON(keys)
}

// SealFor signs each payload (as Sign) and encrypts each JWS to the
// recipient's public JWK: a compact JWE with cty "JOSE", alg ECDH-ES+A256KW
// for EC or X25519 keys, RSA-OAEP-256 for RSA keys, enc A256GCM. The
// recipient decrypts with its private key and verifies with JWKS.
func (v *Vault) SealFor(ctx context.Context, recipientJWK []byte, payloads [][]byte) ([][]byte, error) {
	return sealFor(ctx, v.Sign, recipientJWK, payloads)
}
