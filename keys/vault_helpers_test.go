package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/integration/vaulttest"
	"github.com/lestrrat-go/jwx/v2/jwe"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// startVault starts a Vault dev server with Clearance's two transit keys.
func startVault(t testing.TB, signingType string) *vaulttest.Server {
	t.Helper()
	s := vaulttest.Start(t)
	s.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	s.Write("transit/keys/clearance-signing", map[string]any{"type": signingType})
	return s
}

// tokenConfig returns a config logging in with token via a token file.
func tokenConfig(t testing.TB, s *vaulttest.Server, token string) VaultConfig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return VaultConfig{Address: s.Addr, Auth: VaultAuth{TokenFile: path}, Timeout: 5 * time.Second, MaxRetries: -1}
}

// jwksSet reads the JWK set v publishes (a Vault or the development key
// ring) and parses it as a partner would.
func jwksSet(t testing.TB, v interface {
	JWKS(context.Context) ([]byte, error)
}) jwk.Set {
	t.Helper()
	raw, err := v.JWKS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// newVault connects a *Vault and closes it at the end of the test.
func newVault(t testing.TB, cfg VaultConfig) *Vault {
	t.Helper()
	v, err := NewVault(t.Context(), cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatalf("NewVault: %v", err)
	}
	t.Cleanup(func() { v.Close(t.Context()) })
	return v
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// kref reads the key reference from a sealed message's protected header.
func kref(t testing.TB, sealed []byte) string {
	t.Helper()
	msg, err := jwe.Parse(sealed)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := msg.ProtectedHeaders().Get(headerKeyRef)
	s, _ := v.(string)
	return s
}

// mustSeal seals each payload, failing the test on error.
func mustSeal(t testing.TB, v *Vault, payloads ...string) [][]byte {
	t.Helper()
	out := make([][]byte, len(payloads))
	for i, p := range payloads {
		sealed, err := v.Seal(t.Context(), []byte(p))
		if err != nil {
			t.Fatalf("seal: %v", err)
		}
		if bytes.Contains(sealed, []byte(p)) {
			t.Fatal("plaintext visible in sealed message")
		}
		out[i] = sealed
	}
	return out
}

// jwksKids lists the kids in a JWKS document.
func jwksKids(t testing.TB, raw []byte) []string {
	t.Helper()
	var doc struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range doc.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// waitFor polls cond until it holds, failing the test after 10 s. Data keys
// and cached keys expire by timer: a timer's function runs in its own
// goroutine, which on a loaded machine may be scheduled after a sleep of the
// same length ends, so tests wait for the effect rather than for the time.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sealKeyExpired reports whether the envelope's sealing key is past its age.
func sealKeyExpired(e *envelope) func() bool {
	return func() bool { k := e.cur.Load(); return k == nil || k.expired.Load() }
}

// openCacheEmpty reports whether the envelope's cache of opened keys is empty.
func openCacheEmpty(e *envelope) func() bool {
	return func() bool {
		e.opened.mu.Lock()
		defer e.opened.mu.Unlock()
		return e.opened.order.Len() == 0
	}
}
