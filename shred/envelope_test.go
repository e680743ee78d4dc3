package shred

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
)

// testKey returns a subject key with a known raw key.
func testKey(t testing.TB) (*subjectKey, []byte) {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	aead, err := newAEAD(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &subjectKey{kid: "sk-test", aead: aead}, raw
}

// TestEnvelopeIsCompactJWE proves that another JOSE library opens a subject
// envelope given the subject's raw key, and reads the header RFC 7516 asks.
func TestEnvelopeIsCompactJWE(t *testing.T) {
	k, raw := testKey(t)
	plain := []byte(`{"record":"kept copy"}`)
	env, err := seal(k, "hmac-of-subject", plain)
	if err != nil {
		t.Fatal(err)
	}
	parts := bytes.Split(env, []byte("."))
	if len(parts) != 5 || len(parts[1]) != 0 {
		t.Fatalf("%d parts, encrypted key %q: want 5 parts and an empty encrypted key", len(parts), parts[1])
	}
	got, err := jwe.Decrypt(env, jwe.WithKey(jwa.DIRECT, raw))
	if err != nil {
		t.Fatalf("jwx decrypt: %v", err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("jwx decrypt = %q, want %q", got, plain)
	}
	msg, err := jwe.Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	h := msg.ProtectedHeaders()
	skid, ok := h.Get(headerSKID)
	if !ok {
		t.Fatalf("no %s header", headerSKID)
	}
	if h.Algorithm() != jwa.DIRECT || h.ContentEncryption() != jwa.A256GCM || skid != "sk-test" {
		t.Errorf("header alg=%s enc=%s skid=%v, want dir, A256GCM, sk-test", h.Algorithm(), h.ContentEncryption(), skid)
	}
	if _, err := jwe.Decrypt(env, jwe.WithKey(jwa.DIRECT, make([]byte, 32))); err == nil {
		t.Error("jwx opens the envelope with another key")
	}
	if !IsEnvelope(env) {
		t.Error("IsEnvelope is false for a subject envelope")
	}
	back, err := parse(env)
	if err != nil {
		t.Fatal(err)
	}
	if opened, err := open(k, back); err != nil || !bytes.Equal(opened, plain) {
		t.Fatalf("open = %q, %v", opened, err)
	}
}

// TestEnvelopeRefused checks that what the opener must not accept is
// refused: altered parts, other JWE, and non-JWE input.
func TestEnvelopeRefused(t *testing.T) {
	k, raw := testKey(t)
	env, err := seal(k, "hmac-of-subject", []byte("kept copy"))
	if err != nil {
		t.Fatal(err)
	}
	parts := bytes.Split(env, []byte("."))
	join := func(ps ...[]byte) []byte { return bytes.Join(ps, []byte(".")) }
	hdr := func(v map[string]string) []byte {
		j, _ := json.Marshal(v)
		return []byte(base64.RawURLEncoding.EncodeToString(j))
	}
	flip := func(seg []byte) []byte {
		b, _ := base64.RawURLEncoding.DecodeString(string(seg))
		b[0] ^= 1
		return []byte(base64.RawURLEncoding.EncodeToString(b))
	}
	// A shared-key envelope (keys package) is a compact JWE without a
	// subject key: not a subject envelope.
	shared, err := jwe.Encrypt([]byte("x"), jwe.WithKey(jwa.DIRECT, raw), jwe.WithContentEncryption(jwa.A256GCM))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		data       []byte
		isEnvelope bool // IsEnvelope's answer
		parseErr   bool // parse refuses (else open must)
	}{
		{"other header", join(hdr(map[string]string{"alg": "dir", "enc": "A256GCM", "skid": "sk-test", "sh": "other"}), parts[1], parts[2], parts[3], parts[4]), true, false},
		{"altered iv", join(parts[0], parts[1], flip(parts[2]), parts[3], parts[4]), true, false},
		{"altered ciphertext", join(parts[0], parts[1], parts[2], flip(parts[3]), parts[4]), true, false},
		{"altered tag", join(parts[0], parts[1], parts[2], parts[3], flip(parts[4])), true, false},
		{"encrypted key present", join(parts[0], []byte("AAAA"), parts[2], parts[3], parts[4]), true, true},
		{"zip header", join(hdr(map[string]string{"alg": "dir", "enc": "A256GCM", "skid": "sk-test", "sh": "h", "zip": "DEF"}), parts[1], parts[2], parts[3], parts[4]), false, true},
		{"other enc", join(hdr(map[string]string{"alg": "dir", "enc": "A128GCM", "skid": "sk-test", "sh": "h"}), parts[1], parts[2], parts[3], parts[4]), false, true},
		{"no subject key", join(hdr(map[string]string{"alg": "dir", "enc": "A256GCM", "sh": "h"}), parts[1], parts[2], parts[3], parts[4]), false, true},
		{"shared-key JWE", shared, false, true},
		{"four parts", join(parts[0], parts[2], parts[3], parts[4]), false, true},
		{"not base64", []byte("!!.!!.!!.!!.!!"), false, true},
		{"empty", nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsEnvelope(tt.data); got != tt.isEnvelope {
				t.Errorf("IsEnvelope = %v, want %v", got, tt.isEnvelope)
			}
			e, err := parse(tt.data)
			if tt.parseErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("parse error = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if _, err := open(k, e); !errors.Is(err, ErrMalformed) {
				t.Errorf("open error = %v, want ErrMalformed", err)
			}
		})
	}
}

// FuzzParse checks that parse never panics and that whatever it accepts is
// also recognised by IsEnvelope.
func FuzzParse(f *testing.F) {
	k, _ := testKey(f)
	env, err := seal(k, "h", []byte("kept copy"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte("a.b.c.d.e"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := parse(data); err == nil && !IsEnvelope(data) {
			t.Errorf("parse accepts %q that IsEnvelope refuses", data)
		}
	})
}
