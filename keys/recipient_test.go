package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
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
	ka, err := recipientKey(a)
	if err != nil || ka.alg != jwa.ECDH_ES_A256KW || ka.p256 == nil {
		t.Fatalf("recipientKey: %+v, %v", ka, err)
	}
	again, err := recipientKey(append([]byte(nil), a...))
	if err != nil || again.pub != ka.pub {
		t.Fatalf("second look-up of the same key parsed it again (%v)", err)
	}
	kb, err := recipientKey(b)
	if err != nil || kb.pub == ka.pub {
		t.Fatalf("another key's bytes gave the first key (%v)", err)
	}
	bad := []byte(`{"kty":"EC","crv":"P-256"}`)
	for range 2 {
		if _, err := recipientKey(bad); !errors.Is(err, ErrUnsupportedKey) {
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
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := recipientKey(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := parseRecipientKey(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAESKeyWrap is the 256-bit key under a 256-bit KEK of RFC 3394 §4.6.
func TestAESKeyWrap(t *testing.T) {
	kek, _ := hex.DecodeString("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	key, _ := hex.DecodeString("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	want := "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
	got, err := aesKeyWrap(kek, key)
	if err != nil || !strings.EqualFold(hex.EncodeToString(got), want) {
		t.Fatalf("wrap = %X, %v; want %s", got, err, want)
	}
	if _, err := aesKeyWrap(kek, key[:12]); err == nil {
		t.Fatal("a 12-byte key was wrapped")
	}
}

// TestConcatKDF is the ECDH-ES key agreement of RFC 7518 Appendix C: its
// shared secret Z, algorithm A128GCM, 128 bits, and PartyUInfo "Alice",
// PartyVInfo "Bob" -- which concatKDF leaves empty, so the appendix's
// inputs are checked through the same construction with them written in.
func TestConcatKDF(t *testing.T) {
	z := []byte{158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196}
	want := "VqqN6vgjbSBcIijNcacQGg"
	// Appendix C with its PartyUInfo and PartyVInfo.
	h := sha256.New()
	for _, part := range [][]byte{{0, 0, 0, 1}, z, {0, 0, 0, 7}, []byte("A128GCM"), {0, 0, 0, 5}, []byte("Alice"), {0, 0, 0, 3}, []byte("Bob"), {0, 0, 0, 128}} {
		h.Write(part)
	}
	if got := base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16]); got != want {
		t.Fatalf("appendix C construction = %s, want %s", got, want)
	}
	// concatKDF is that construction with both empty.
	h.Reset()
	for _, part := range [][]byte{{0, 0, 0, 1}, z, {0, 0, 0, 14}, []byte(ecdhAlg), {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 1, 0}} {
		h.Write(part)
	}
	if got := concatKDF(z, ecdhAlg, 256); !bytes.Equal(got[:], h.Sum(nil)) {
		t.Fatalf("concatKDF = %x", got)
	}
}

// TestSealECDHESOpensWithJWX: what sealECDHES writes opens with jwx and the
// recipient's private key, with the header fields jwx would write, a fresh
// ephemeral key and content key each time, and does not open with another
// key.
func TestSealECDHESOpensWithJWX(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privJWK, _ := jwk.FromRaw(priv)
	pub, _ := priv.PublicKey.ECDH()
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherJWK, _ := jwk.FromRaw(other)
	seen := map[string]bool{}
	for _, tc := range []struct{ kid, plaintext string }{{"party-1", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"}, {"", "x"}, {"k<\"&>", strings.Repeat("x", 5000)}} {
		out, err := sealECDHES(pub, tc.kid, []byte(tc.plaintext))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := jwe.Decrypt(out, jwe.WithKey(jwa.ECDH_ES_A256KW, privJWK))
		if err != nil || string(pt) != tc.plaintext {
			t.Fatalf("jwx opens %q as %q, %v", out, pt, err)
		}
		msg, err := jwe.Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		h := msg.ProtectedHeaders()
		if h.Algorithm() != jwa.ECDH_ES_A256KW || h.ContentEncryption() != jwa.A256GCM || h.ContentType() != "JOSE" || h.KeyID() != tc.kid || h.EphemeralPublicKey() == nil {
			t.Errorf("headers alg %s enc %s cty %s kid %q epk %v", h.Algorithm(), h.ContentEncryption(), h.ContentType(), h.KeyID(), h.EphemeralPublicKey())
		}
		parts := strings.Split(string(out), ".")
		for _, p := range parts[:3] {
			if seen[p] {
				t.Errorf("header, wrapped key or IV repeated: %s", p)
			}
			seen[p] = true
		}
		if _, err := jwe.Decrypt(out, jwe.WithKey(jwa.ECDH_ES_A256KW, otherJWK)); err == nil {
			t.Error("opened with another party's key")
		}
	}
}

// BenchmarkSealForParty encrypts a 1.5 KB JWS to a P-256 party: sealECDHES
// against jwx's jwe.Encrypt with the same key and headers (same run).
func BenchmarkSealForParty(b *testing.B) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubJWK, _ := jwk.FromRaw(&priv.PublicKey)
	pub, _ := priv.PublicKey.ECDH()
	token := bytes.Repeat([]byte("a"), 1500)
	b.Run("sealECDHES", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sealECDHES(pub, "party", token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jwx", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hdr := jwe.NewHeaders()
			_ = hdr.Set(jwe.ContentTypeKey, "JOSE")
			_ = hdr.Set(jwe.KeyIDKey, "party")
			if _, err := jwe.Encrypt(token, jwe.WithKey(jwa.ECDH_ES_A256KW, pubJWK), jwe.WithContentEncryption(jwa.A256GCM), jwe.WithProtectedHeaders(hdr)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
