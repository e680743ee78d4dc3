package agreements

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"testing"
)

// TestCheckRecipientJWK: a party's key is one the broker can encrypt to,
// public only, on its curve, and not a short RSA key.
func TestCheckRecipientJWK(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pad := func(i *big.Int) []byte { return i.FillBytes(make([]byte, 32)) }
	x, y := b64(pad(ec.X)), b64(pad(ec.Y))
	offY := new(big.Int).Add(ec.Y, big.NewInt(1))
	rsaKey := func(bits int) string {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`{"kty":"RSA","n":%q,"e":"AQAB"}`, b64(k.N.Bytes()))
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, give, want string // want: a part of the problem, "" for none
	}{
		{"EC P-256", fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q,"kid":"k1"}`, x, y), ""},
		{"EC with its private part", fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q,"d":%q}`, x, y, b64(pad(ec.D))), "private key part (d)"},
		{"EC off its curve", fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q}`, x, b64(pad(offY))), "not on the curve"},
		{"EC on another curve", fmt.Sprintf(`{"kty":"EC","crv":"secp256k1","x":%q,"y":%q}`, x, y), "P-256, P-384 or P-521"},
		{"EC short coordinates", `{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}`, "32 bytes"},
		{"RSA 2048", rsaKey(2048), ""},
		{"RSA 1024", rsaKey(1024), "1024 bits"},
		{"RSA without e", `{"kty":"RSA","n":"AQAB"}`, "needs n and e"},
		{"RSA with e of 1", strings.Replace(rsaKey(2048), `"e":"AQAB"`, `"e":"AQ"`, 1), "exponent"},
		{"RSA with an even e", strings.Replace(rsaKey(2048), `"e":"AQAB"`, `"e":"AQAC"`, 1), "exponent"},
		{"X25519 of low order", fmt.Sprintf(`{"kty":"OKP","crv":"X25519","x":%q}`, b64(make([]byte, 32))), "low order"},
		{"X25519", fmt.Sprintf(`{"kty":"OKP","crv":"X25519","x":%q}`, b64(x25519.PublicKey().Bytes())), ""},
		{"Ed25519", fmt.Sprintf(`{"kty":"OKP","crv":"Ed25519","x":%q}`, b64(x25519.PublicKey().Bytes())), "cannot receive encrypted data"},
		{"a shared secret", `{"kty":"oct","k":"c2VjcmV0"}`, "private key part (k)"},
		{"another kty", `{"kty":"XYZ"}`, "kty must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkRecipientJWK([]byte(tt.give))
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Fatalf("checkRecipientJWK() = %q, want %q", got, tt.want)
			}
			if got != "" && (strings.Contains(got, x) || strings.Contains(got, b64(pad(ec.D)))) {
				t.Errorf("the problem names key material: %q", got)
			}
		})
	}
}
