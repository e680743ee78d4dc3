package connectortest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
)

// Sealer seals test records as compact JWE (ECDH-ES+A256KW, A256GCM) to a
// key of its own, standing in for the broker's keys package.
type Sealer struct {
	key *ecdsa.PrivateKey
}

// NewSealer returns a Sealer with a fresh P-256 key.
func NewSealer(t testing.TB) *Sealer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("connectortest: generate key: %v", err)
	}
	return &Sealer{key: key}
}

// Seal returns record as JSON sealed in a compact JWE.
func (s *Sealer) Seal(t testing.TB, record any) []byte {
	t.Helper()
	plain, err := json.Marshal(record)
	if err != nil {
		t.Fatalf("connectortest: marshal record: %v", err)
	}
	sealed, err := jwe.Encrypt(plain,
		jwe.WithKey(jwa.ECDH_ES_A256KW, &s.key.PublicKey),
		jwe.WithContentEncryption(jwa.A256GCM))
	if err != nil {
		t.Fatalf("connectortest: seal: %v", err)
	}
	return sealed
}

// Open returns the plaintext of a JWE made by Seal.
func (s *Sealer) Open(sealed []byte) ([]byte, error) {
	plain, err := jwe.Decrypt(sealed, jwe.WithKey(jwa.ECDH_ES_A256KW, s.key))
	if err != nil {
		return nil, fmt.Errorf("connectortest: open: %w", err)
	}
	return plain, nil
}

// Canaries are planted personal values: unique strings that must never be
// seen on the wire in plaintext.
type Canaries struct {
	Name, Email, Phone, Address string
}

// NewCanaries returns canary values unique to this run.
func NewCanaries() Canaries {
	var b [6]byte
	_, _ = rand.Read(b[:])
	tag := fmt.Sprintf("%x", b)
	return Canaries{
		Name:    "Zebedee Canaryfield " + tag,
		Email:   "canary." + tag + "@example.invalid",
		Phone:   "+49 30 " + tag,
		Address: "Kanarienweg " + tag + ", 10115 Berlin",
	}
}

// Record returns a transfer record holding the canaries.
func (c Canaries) Record(orderID string) map[string]any {
	return map[string]any{
		"order_id": orderID,
		"name":     c.Name,
		"email":    c.Email,
		"phone":    c.Phone,
		"address":  c.Address,
	}
}

// Values returns the canary values.
func (c Canaries) Values() []string {
	return []string{c.Name, c.Email, c.Phone, c.Address}
}

// Forms returns the ways a value can appear on a wire without encryption:
// itself and, for every byte alignment, the stable core of its base64
// encodings (standard and URL alphabet), as in an unencrypted JWS payload.
func Forms(v string) []string {
	forms := []string{v}
	for pad := range 3 {
		src := strings.Repeat("\x00", pad) + v
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			s := enc.EncodeToString([]byte(src))
			// Drop characters that depend on neighbouring bytes: the
			// leading ones mixed with the padding, the last one mixed
			// with whatever follows.
			start := (pad*8 + 5) / 6
			if len(s)-1 > start+8 {
				forms = append(forms, s[start+1:len(s)-1])
			}
		}
	}
	return forms
}
