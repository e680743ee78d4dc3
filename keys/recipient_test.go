package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strconv"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

func ecJWK(t *testing.T) []byte {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := jwk.FromRaw(&ec.PublicKey)
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRecipientKeyCached: a party's key is parsed once and then taken from
// the cache, another key's bytes give another key, a key that does not
// parse is refused every time and never cached, and a full cache starts
// over.
func TestRecipientKeyCached(t *testing.T) {
	a, b := ecJWK(t), ecJWK(t)
	ka, alg, err := recipientKey(a)
	if err != nil || alg != jwa.ECDH_ES_A256KW {
		t.Fatalf("recipientKey: %v, %v", alg, err)
	}
	again, _, err := recipientKey(append([]byte(nil), a...))
	if err != nil || again != ka {
		t.Fatalf("second look-up of the same key parsed it again (%v)", err)
	}
	kb, _, err := recipientKey(b)
	if err != nil || kb == ka {
		t.Fatalf("another key's bytes gave the first key (%v)", err)
	}
	bad := []byte(`{"kty":"EC","crv":"P-256"}`)
	for range 2 {
		if _, _, err := recipientKey(bad); !errors.Is(err, ErrUnsupportedKey) {
			t.Fatalf("bad key: %v", err)
		}
	}
	if _, ok := recipientKeys.get(bad); ok {
		t.Fatal("a key that does not parse was cached")
	}
	c := &recipientCache{keys: map[string]parsedRecipient{}}
	for i := range maxRecipientKeys {
		c.put([]byte(strconv.Itoa(i)), parsedRecipient{alg: jwa.ECDH_ES_A256KW})
	}
	c.put([]byte("one more"), parsedRecipient{alg: jwa.RSA_OAEP_256})
	if _, ok := c.get([]byte("0")); ok || len(c.keys) != 1 {
		t.Fatalf("full cache kept %d keys", len(c.keys))
	}
}

// BenchmarkRecipientKey: a party's key from the cache, against parsing its
// JWK as every delivery did before (same run).
func BenchmarkRecipientKey(b *testing.B) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, _ := jwk.FromRaw(&ec.PublicKey)
	raw, _ := json.Marshal(k)
	for _, bc := range []struct {
		name  string
		parse func([]byte) (jwk.Key, jwa.KeyEncryptionAlgorithm, error)
	}{{"cached", recipientKey}, {"parse", parseRecipientKey}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := bc.parse(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
