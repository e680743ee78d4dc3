package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/x25519"
)

func newDevRing(t *testing.T, path string) (*DevKeyRing, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	d, err := NewDevKeyRing(DevKeyRingOptions{Path: path, Allow: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return d, &logs
}

func TestDevKeyRingRefusesWithoutAllow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	_, err := NewDevKeyRing(DevKeyRingOptions{Path: path})
	if !errors.Is(err, ErrDevKeyRingNotAllowed) {
		t.Fatalf("err = %v, want ErrDevKeyRingNotAllowed", err)
	}
	if _, statErr := os.Stat(path); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatal("key file created although refused")
	}
}

func TestDevKeyRingSealOpenAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev", "keys.json")
	d, logs := newDevRing(t, path)
	if !strings.Contains(logs.String(), "NOT in Vault") || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("no loud warning logged: %q", logs.String())
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi, err)
	}
	sealed, err := d.Seal(t.Context(), []byte("record"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("record")) {
		t.Fatal("plaintext visible in sealed message")
	}
	again, _ := newDevRing(t, path)
	got, err := again.Open(t.Context(), sealed)
	if err != nil || string(got) != "record" {
		t.Fatalf("open after restart: %q %v", got, err)
	}
	other, _ := newDevRing(t, filepath.Join(t.TempDir(), "other.json"))
	if _, err := other.Open(t.Context(), sealed); !errors.Is(err, ErrNotAuthentic) {
		t.Fatalf("another key ring opened it: %v", err)
	}
	if d.KeyRef() != "dev:clearance-data" {
		t.Errorf("KeyRef = %q", d.KeyRef())
	}
}

func TestDevKeyRingSignVerifyJWKS(t *testing.T) {
	d, _ := newDevRing(t, filepath.Join(t.TempDir(), "keys.json"))
	payloads := [][]byte{[]byte(`{"n":1}`), []byte(`{"n":2}`), {}}
	tokens, err := d.Sign(t.Context(), payloads)
	if err != nil {
		t.Fatal(err)
	}
	set := jwksSet(t, d)
	for i, tok := range tokens {
		got, err := jws.Verify(tok, jws.WithKeySet(set))
		if err != nil || !bytes.Equal(got, payloads[i]) {
			t.Fatalf("jwx verify %d: %q %v", i, got, err)
		}
		if got, err := d.Verify(t.Context(), tok); err != nil || !bytes.Equal(got, payloads[i]) {
			t.Fatalf("Verify %d: %q %v", i, got, err)
		}
	}
	forged := append(bytes.Clone(tokens[0][:len(tokens[0])-4]), "AAAA"...)
	if _, err := d.Verify(t.Context(), forged); !errors.Is(err, ErrNotAuthentic) {
		t.Fatalf("forged signature: %v", err)
	}
}

func TestDevKeyRingSealFor(t *testing.T) {
	d, _ := newDevRing(t, filepath.Join(t.TempDir(), "keys.json"))
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, xk, _ := x25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		private any
		wantAlg jwa.KeyEncryptionAlgorithm
	}{
		{"ec p-256", ec, jwa.ECDH_ES_A256KW},
		{"rsa", rs, jwa.RSA_OAEP_256},
		{"x25519", xk, jwa.ECDH_ES_A256KW},
	}
	jwksRaw, _ := d.JWKS(t.Context())
	set, _ := jwk.Parse(jwksRaw)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			priv, _ := jwk.FromRaw(tt.private)
			pub, _ := priv.PublicKey()
			pub.Set(jwk.KeyIDKey, "partner-1")
			pubJSON, _ := json.Marshal(pub)
			out, err := d.SealFor(t.Context(), pubJSON, [][]byte{[]byte(`{"request_id":"r1"}`)})
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := jwe.Parse(out[0])
			if msg.ProtectedHeaders().Algorithm() != tt.wantAlg || msg.ProtectedHeaders().KeyID() != "partner-1" {
				t.Fatalf("alg %s kid %q", msg.ProtectedHeaders().Algorithm(), msg.ProtectedHeaders().KeyID())
			}
			inner, err := jwe.Decrypt(out[0], jwe.WithKey(tt.wantAlg, priv))
			if err != nil {
				t.Fatal(err)
			}
			got, err := jws.Verify(inner, jws.WithKeySet(set))
			if err != nil || string(got) != `{"request_id":"r1"}` {
				t.Fatalf("verify: %q %v", got, err)
			}
		})
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	edKey, _ := jwk.FromRaw(edPub)
	edJSON, _ := json.Marshal(edKey)
	if _, err := d.SealFor(t.Context(), edJSON, [][]byte{[]byte("x")}); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("signing-only recipient key: %v", err)
	}
	sym, _ := jwk.FromRaw([]byte("0123456789abcdef0123456789abcdef"))
	symJSON, _ := json.Marshal(sym)
	if _, err := d.SealFor(t.Context(), symJSON, [][]byte{[]byte("x")}); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("symmetric recipient key: %v", err)
	}
	if _, err := d.SealFor(t.Context(), []byte("not a jwk"), [][]byte{[]byte("x")}); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("garbage recipient key: %v", err)
	}
}

// TestSealAppend: SealAppend appends to the buffer it is given, leaving what
// it holds, and its message opens like Seal's, also in a buffer that held
// an earlier message.
func TestSealAppend(t *testing.T) {
	d, _ := newDevRing(t, filepath.Join(t.TempDir(), "keys.json"))
	buf := []byte("prefix:")
	out, err := d.SealAppend(t.Context(), buf, []byte("first record"))
	if err != nil || !bytes.HasPrefix(out, []byte("prefix:")) {
		t.Fatalf("SealAppend = %q, %v", out, err)
	}
	if got, err := d.Open(t.Context(), out[len("prefix:"):]); err != nil || string(got) != "first record" {
		t.Fatalf("open appended message: %q %v", got, err)
	}
	reused, err := d.SealAppend(t.Context(), out[:0], []byte("second"))
	if err != nil {
		t.Fatal(err)
	}
	if &reused[0] != &out[0] {
		t.Error("a buffer with room was not reused")
	}
	if got, err := d.Open(t.Context(), reused); err != nil || string(got) != "second" {
		t.Fatalf("open message in a reused buffer: %q %v", got, err)
	}
}
