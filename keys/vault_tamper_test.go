package keys

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestVaultTamperedWrappedKey: a message whose wrapped data key was altered
// is refused by transit decrypt and rewrap with 400 ("cipher: message
// authentication failed", "invalid ciphertext length"; for rewrap in
// batch_results); Open and Rewrap report ErrNotAuthentic, which the broker
// does not retry, not an unclassified error it would retry as transient.
// Against the fake (no Vault binary needed) and a Vault dev server.
func TestVaultTamperedWrappedKey(t *testing.T) {
	t.Run("fake", func(t *testing.T) {
		checkTampered(t, newVault(t, newFakeTransit(t, false).config(t)))
	})
	t.Run("vault", func(t *testing.T) {
		s := startVault(t, "ed25519")
		checkTampered(t, newVault(t, tokenConfig(t, s, s.Token)))
	})
}

// checkTampered seals a message with v, alters its wrapped key and checks
// that Open and Rewrap refuse it as not authentic.
func checkTampered(t *testing.T, v *Vault) {
	t.Helper()
	sealed := mustSeal(t, v, "tampered")[0]
	p, err := parseCompact(sealed)
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHeader(p.header)
	if err != nil {
		t.Fatal(err)
	}
	// One character of the wrapped key's ciphertext changed, so that the
	// tag fails; and no ciphertext at all.
	flipped := []byte(h.WK)
	if i := len(flipped) - 8; flipped[i] == 'A' {
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}
	parts := bytes.Split(sealed, []byte("."))
	for _, alt := range []struct{ name, wk string }{{"altered", string(flipped)}, {"not a ciphertext", "vault:v1:tampered"}} {
		header, err := encodeHeader(h.KRef, alt.wk)
		if err != nil {
			t.Fatal(err)
		}
		tampered := bytes.Join([][]byte{[]byte(header), parts[1], parts[2], parts[3], parts[4]}, []byte("."))
		tests := []struct {
			name string
			call func() ([][]byte, error)
		}{
			{"open", func() ([][]byte, error) {
				pt, err := v.Open(t.Context(), tampered)
				return [][]byte{pt}, err
			}},
			{"rewrap", func() ([][]byte, error) { return v.Rewrap(t.Context(), [][]byte{sealed, tampered}) }},
		}
		for _, tt := range tests {
			t.Run(alt.name+" "+tt.name, func(t *testing.T) {
				out, err := tt.call()
				t.Log(err)
				if !errors.Is(err, ErrNotAuthentic) || errors.Is(err, ErrUnavailable) {
					t.Fatalf("err = %v, want ErrNotAuthentic", err)
				}
				for _, o := range out {
					if o != nil {
						t.Errorf("output returned with the error")
					}
				}
			})
		}
	}
}

// TestVaultSignItemRefused: transit refuses a signing batch item by item
// (400, the items' errors in batch_results, no "errors"), as it refuses a
// rewrap batch: Sign reads the items' errors and classifies them (a key
// version disallowed by policy is ErrKeyRetired), where the client library
// saw a 400 with no message and Sign returned it unclassified.
func TestVaultSignItemRefused(t *testing.T) {
	f := newFakeTransit(t, false)
	f.signRefusal = "requested version for signing is less than minimum encryption version; disallowed by policy"
	v := newVault(t, f.config(t))
	_, err := v.Sign(t.Context(), [][]byte{[]byte("payload")})
	if !errors.Is(err, ErrKeyRetired) || !strings.Contains(err.Error(), "disallowed by policy") {
		t.Fatalf("Sign = %v, want ErrKeyRetired naming transit's reason", err)
	}
}
