package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

func TestVaultSignBatchAndJWKS(t *testing.T) {
	tests := []struct {
		name    string
		keyType string
		wantAlg jwa.SignatureAlgorithm
	}{
		{"ecdsa p-256", "ecdsa-p256", jwa.ES256},
		{"ed25519", "ed25519", jwa.EdDSA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startVault(t, tt.keyType)
			cfg := tokenConfig(t, s, s.Token)
			cfg.KeyInfoTTL = 200 * time.Millisecond
			v := newVault(t, cfg)
			payloads := make([][]byte, 600)
			for i := range payloads {
				payloads[i] = fmt.Appendf(nil, `{"seq":%d}`, i)
			}
			before := v.RoundTrips()
			tokens, err := v.Sign(t.Context(), payloads)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.RoundTrips() - before; got != 3 {
				t.Errorf("round trips for 600 signatures = %d, want 3 (batches of 256)", got)
			}
			set := jwksSet(t, v)
			for i, tok := range tokens {
				msg, err := jws.Parse(tok)
				if err != nil {
					t.Fatal(err)
				}
				h := msg.Signatures()[0].ProtectedHeaders()
				if h.KeyID() != "clearance-signing:v1" || h.Algorithm() != tt.wantAlg {
					t.Fatalf("header kid=%q alg=%s", h.KeyID(), h.Algorithm())
				}
				got, err := jws.Verify(tok, jws.WithKeySet(set))
				if err != nil || string(got) != string(payloads[i]) {
					t.Fatalf("jwx verify %d: %v", i, err)
				}
				if got, err := v.Verify(t.Context(), tok); err != nil || string(got) != string(payloads[i]) {
					t.Fatalf("Verify %d: %v", i, err)
				}
			}
			tampered := slices.Clone(tokens[0])
			tampered[len(tampered)-5] ^= 1
			if _, err := v.Verify(t.Context(), tampered); !errors.Is(err, ErrNotAuthentic) {
				t.Errorf("tampered signature: %v", err)
			}

			// Rotation: new signatures use v2, old ones still verify, and the
			// JWKS lists both until v1 is retired.
			s.Write("transit/keys/clearance-signing/rotate", nil)
			time.Sleep(cfg.KeyInfoTTL)
			newer, err := v.Sign(t.Context(), payloads[:1])
			if err != nil {
				t.Fatal(err)
			}
			if kid, _, _ := jwsKid(newer[0]); kid != "clearance-signing:v2" {
				t.Fatalf("kid after rotation = %q", kid)
			}
			raw, _ := v.JWKS(t.Context())
			if kids := jwksKids(t, raw); !slices.Equal(kids, []string{"clearance-signing:v1", "clearance-signing:v2"}) {
				t.Fatalf("jwks kids = %v", kids)
			}
			if _, err := v.Verify(t.Context(), tokens[0]); err != nil {
				t.Fatalf("old signature after rotation: %v", err)
			}
			s.Write("transit/keys/clearance-signing/config", map[string]any{"min_decryption_version": 2})
			time.Sleep(cfg.KeyInfoTTL)
			raw, _ = v.JWKS(t.Context())
			if kids := jwksKids(t, raw); !slices.Equal(kids, []string{"clearance-signing:v2"}) {
				t.Fatalf("jwks kids after retiring v1 = %v", kids)
			}
			if _, err := v.Verify(t.Context(), tokens[0]); !errors.Is(err, ErrKeyRetired) {
				t.Fatalf("retired signature: %v", err)
			}
		})
	}
}

func TestVaultSealForPartner(t *testing.T) {
	s := startVault(t, "ecdsa-p256")
	v := newVault(t, tokenConfig(t, s, s.Token))
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	tests := []struct {
		name    string
		private any
		wantAlg jwa.KeyEncryptionAlgorithm
	}{
		{"ec partner", ec, jwa.ECDH_ES_A256KW},
		{"rsa partner", rs, jwa.RSA_OAEP_256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			partnerPriv, _ := jwk.FromRaw(tt.private)
			partnerPub, _ := partnerPriv.PublicKey()
			pubJSON, _ := json.Marshal(partnerPub)
			payloads := [][]byte{[]byte(`{"request_id":"ord-1","record":{"name":"x"}}`), []byte(`{"request_id":"ord-2"}`)}
			out, err := v.SealFor(t.Context(), pubJSON, payloads)
			if err != nil {
				t.Fatal(err)
			}
			// The partner's side: its private key, the published JWKS, jwx.
			set := jwksSet(t, v)
			for i, msg := range out {
				if bytesContains(msg, "request_id") {
					t.Fatal("payload visible in the JWE")
				}
				inner, err := jwe.Decrypt(msg, jwe.WithKey(tt.wantAlg, partnerPriv))
				if err != nil {
					t.Fatalf("partner decrypt: %v", err)
				}
				got, err := jws.Verify(inner, jws.WithKeySet(set))
				if err != nil || string(got) != string(payloads[i]) {
					t.Fatalf("partner verify: %q %v", got, err)
				}
			}
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			otherKey, _ := jwk.FromRaw(other)
			if _, err := jwe.Decrypt(out[0], jwe.WithKey(jwa.ECDH_ES_A256KW, otherKey)); err == nil {
				t.Fatal("another party decrypted the message")
			}
		})
	}
}

func bytesContains(b []byte, s string) bool { return strings.Contains(string(b), s) }
