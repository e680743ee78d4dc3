package vaulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// Version is the Vault release integration/vaultdev builds; it names the
// cache directory scripts/vault-binary.sh writes to.
const Version = "v1.21.0"

// EnvBinary names the environment variable that overrides the binary path.
const EnvBinary = "CLEARANCE_VAULT_BIN"

// Binary returns the path of the Vault binary: $CLEARANCE_VAULT_BIN, else
// <user cache dir>/clearance/vault-v1.21.0/vault.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		return p, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("vaulttest: user cache dir: %w", err)
	}
	return filepath.Join(dir, "clearance", "vault-"+Version, "vault"), nil
}

// Server is a running Vault dev server for a test: a Process that Stop and
// Start (or Restart) can end and bring back, to simulate an outage. Its
// storage is in memory: the restarted server comes back on the same address
// with the same root token and the transit engine enabled, but without the
// keys created before.
type Server struct {
	// Addr is the server's URL, e.g. "http://127.0.0.1:43127".
	Addr string
	// Token is the root token.
	Token string
	// CAFile is the PEM CA that signs the server's certificate (WithTLS
	// only; empty for plain HTTP).
	CAFile string

	t   testing.TB
	cfg Config

	mu   sync.Mutex
	proc *Process
	out  string // the output of the last process stopped
}

// Option configures Start.
type Option func(*Server)

// WithTLS serves HTTPS with a certificate from a CA that Vault generates
// (-dev-tls); the CA's PEM file is Server.CAFile.
func WithTLS() Option {
	return func(s *Server) { s.cfg.CertDir = s.t.TempDir() }
}

// Start starts a Vault dev server, waits until it serves, enables transit at
// "transit/" and registers a cleanup that stops it. It fails the test if the
// binary is missing (naming scripts/vault-binary.sh) or Vault does not start.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, cfg: Config{Port: port, Token: "root-" + hex.EncodeToString(tok)}}
	for _, o := range opts {
		o(s)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("vaulttest: server output:\n%s", s.Output())
		}
	})
	s.Start()
	return s
}

// Start starts the server again after Stop (a no-op while it runs) and
// enables transit.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return
	}
	p, err := Launch(context.Background(), s.cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.proc = p
	s.Addr, s.Token, s.CAFile = p.Addr, p.Token, p.CAFile
}

// Stop stops the server (SIGTERM, then SIGKILL after 10s) and waits for it
// to exit. It is a no-op when the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.Stop()
	s.mu.Lock()
	s.out = p.Output()
	s.mu.Unlock()
}

// Restart stops and starts the server (a fresh, empty Vault on the same
// address and token, with transit enabled).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// Client returns a Vault client for the server with the root token.
func (s *Server) Client() *vault.Client {
	s.t.Helper()
	c, err := newClient(s.Addr, s.Token, s.CAFile)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// Write writes data to path as root, failing the test on error, e.g.
// s.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"}).
func (s *Server) Write(path string, data map[string]any) *vault.Secret {
	s.t.Helper()
	sec, err := s.Client().Logical().Write(path, data)
	if err != nil {
		s.t.Fatalf("vaulttest: write %s: %v", path, err)
	}
	return sec
}

// Output returns what the server printed so far (the last one stopped,
// while none runs).
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return s.proc.Output()
	}
	return s.out
}
