package keys

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jws"
)

// TestVaultSignSendsNoPayload signs through a proxy that records what
// reaches Vault: with an ES256 key Vault gets only digests (prehashed), so
// no part of a payload, in clear or in any base64 form, is in a request;
// the tokens still verify. With Ed25519, which transit cannot sign
// prehashed, the signing input is sent as before.
func TestVaultSignSendsNoPayload(t *testing.T) {
	for _, tc := range []struct {
		keyType string
		sent    bool
	}{{"ecdsa-p256", false}, {"ed25519", true}} {
		t.Run(tc.keyType, func(t *testing.T) {
			s := startVault(t, tc.keyType)
			target, err := url.Parse(s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var bodies bytes.Buffer
			rp := httputil.NewSingleHostReverseProxy(target)
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				bodies.Write(b)
				mu.Unlock()
				r.Body = io.NopCloser(bytes.NewReader(b))
				rp.ServeHTTP(w, r)
			}))
			t.Cleanup(proxy.Close)
			cfg := tokenConfig(t, s, s.Token)
			cfg.Address = proxy.URL
			v := newVault(t, cfg)
			payload := []byte(`{"record":{"name":"Ada Lovelace","street":"12 St James's Square"}}`)
			tokens, err := v.Sign(t.Context(), [][]byte{payload})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := jws.Verify(tokens[0], jws.WithKeySet(jwksSet(t, v))); err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("verify: %v", err)
			}
			// Never the payload in clear or as its base64url; the standard
			// base64 of the signing input (transit's "input") only where
			// the key cannot sign prehashed.
			signingInput := tokens[0][:bytes.LastIndexByte(tokens[0], '.')]
			mu.Lock()
			defer mu.Unlock()
			for _, f := range [][]byte{[]byte("Ada Lovelace"), []byte(b64.EncodeToString(payload)[:40])} {
				if bytes.Contains(bodies.Bytes(), f) {
					t.Errorf("requests to Vault hold %q", f)
				}
			}
			input := []byte(base64.StdEncoding.EncodeToString(signingInput)[:40])
			if got := bytes.Contains(bodies.Bytes(), input); got != tc.sent {
				t.Errorf("requests to Vault hold the signing input: %v, want %v", got, tc.sent)
			}
		})
	}
}
