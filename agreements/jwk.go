package agreements

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
)

// minRSABits is the smallest RSA modulus a party's key may have.
const minRSABits = 2048

// checkRecipientJWK reports what makes raw unfit as a party's public key,
// or "": the broker encrypts to it (ECDH-ES with an EC P-256, P-384 or
// P-521 key or an X25519 key, RSA-OAEP-256 with an RSA key of at least
// 2048 bits). A key holding a private part is refused, not reduced to its
// public part: the partner's private key would be stored in the registry
// and copied to every instance. An EC point off its curve is refused here
// rather than at the first delivery. The problem names no key material.
func checkRecipientJWK(raw []byte) string {
	var k map[string]json.RawMessage
	if json.Unmarshal(raw, &k) != nil {
		return "not a JWK"
	}
	str := func(name string) string {
		var s string
		_ = json.Unmarshal(k[name], &s)
		return s
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := k[private]; ok {
			return fmt.Sprintf("holds a private key part (%s): give the partner's public key only", private)
		}
	}
	b64 := func(name string) ([]byte, bool) {
		b, err := base64.RawURLEncoding.DecodeString(str(name))
		return b, err == nil && len(b) > 0
	}
	switch kty := str("kty"); kty {
	case "EC":
		curves := map[string]struct {
			c    ecdh.Curve
			size int
		}{"P-256": {ecdh.P256(), 32}, "P-384": {ecdh.P384(), 48}, "P-521": {ecdh.P521(), 66}}
		c, ok := curves[str("crv")]
		if !ok {
			return "an EC key must be on P-256, P-384 or P-521"
		}
		x, okx := b64("x")
		y, oky := b64("y")
		if !okx || !oky || len(x) != c.size || len(y) != c.size {
			return fmt.Sprintf("x and y must be %d bytes, base64url", c.size)
		}
		if _, err := c.c.NewPublicKey(append(append([]byte{4}, x...), y...)); err != nil {
			return "the point is not on the curve"
		}
	case "RSA":
		n, okn := b64("n")
		e, oke := b64("e")
		if !okn || !oke {
			return "an RSA key needs n and e, base64url"
		}
		if bits := new(big.Int).SetBytes(n).BitLen(); bits < minRSABits {
			return fmt.Sprintf("an RSA key of %d bits; at least %d are needed", bits, minRSABits)
		}
		if n[len(n)-1]&1 == 0 {
			return "an RSA modulus is odd"
		}
		if ev := new(big.Int).SetBytes(e); ev.Bit(0) == 0 || ev.Cmp(big.NewInt(3)) < 0 || ev.BitLen() > 31 {
			return "an RSA public exponent is odd, at least 3 and below 2^31"
		}
	case "OKP":
		if str("crv") != "X25519" {
			return "an OKP key must be X25519 (an Ed25519 key signs, it cannot receive encrypted data)"
		}
		x, ok := b64("x")
		if !ok || len(x) != 32 {
			return "x must be 32 bytes, base64url"
		}
		// A point of low order gives an all-zero shared secret, which
		// the encryption refuses at every delivery: tried here once.
		pub, err := ecdh.X25519().NewPublicKey(x)
		if err != nil {
			return "x is not an X25519 public key"
		}
		probe, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err == nil {
			if _, err = probe.ECDH(pub); err != nil {
				return "x is a point of low order"
			}
		}
	default:
		return "kty must be EC, RSA or OKP: a key data can be encrypted to"
	}
	return ""
}
