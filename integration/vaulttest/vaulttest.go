package vaulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// Server is a running Vault dev server. Its storage is in memory: Stop and
// Start (or Restart) simulate an outage, and the restarted server comes back
// on the same address with the same root token and the transit engine
// enabled, but without the keys created before.
type Server struct {
	// Addr is the server's URL, e.g. "http://127.0.0.1:43127".
	Addr string
	// Token is the root token.
	Token string
	// CAFile is the PEM CA that signs the server's certificate (WithTLS
	// only; empty for plain HTTP).
	CAFile string

	t       testing.TB
	bin     string
	port    int
	certDir string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncBuffer
}

// Option configures Start.
type Option func(*Server)

// WithTLS serves HTTPS with a certificate from a CA that Vault generates
// (-dev-tls); the CA's PEM file is Server.CAFile.
func WithTLS() Option {
	return func(s *Server) { s.certDir = s.t.TempDir() }
}

// Start starts a Vault dev server, waits until it serves, enables transit at
// "transit/" and registers a cleanup that stops it. It fails the test if the
// binary is missing (naming scripts/vault-binary.sh) or Vault does not start.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		t.Fatalf("vaulttest: no Vault binary at %s: run scripts/vault-binary.sh (it builds and caches Vault %s; the first build takes 15-25 minutes) or set %s", bin, Version, EnvBinary)
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Addr:  fmt.Sprintf("http://127.0.0.1:%d", port),
		Token: "root-" + hex.EncodeToString(tok),
		t:     t, bin: bin, port: port,
	}
	for _, o := range opts {
		o(s)
	}
	if s.certDir != "" {
		s.Addr = strings.Replace(s.Addr, "http://", "https://", 1)
		s.CAFile = filepath.Join(s.certDir, "vault-ca.pem")
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
	if s.cmd != nil {
		s.mu.Unlock()
		return
	}
	s.out = &syncBuffer{}
	args := []string{"server", "-dev",
		"-dev-listen-address=127.0.0.1:" + fmt.Sprint(s.port),
		"-dev-root-token-id=" + s.Token,
		"-dev-no-store-token",
		"-log-level=warn"}
	if s.certDir != "" {
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+s.certDir)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		s.t.Fatalf("vaulttest: start %s: %v", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	if err := s.waitReady(30*time.Second, exited); err != nil {
		s.Stop()
		s.t.Fatalf("vaulttest: %v\n%s", err, s.Output())
	}
	c := s.Client()
	if err := c.Sys().Mount("transit", &vault.MountInput{Type: "transit"}); err != nil {
		s.t.Fatalf("vaulttest: enable transit: %v", err)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10s) and waits for it
// to exit. It is a no-op when the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
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
	c, err := s.client()
	if err != nil {
		s.t.Fatalf("vaulttest: %v", err)
	}
	return c
}

func (s *Server) client() (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	if s.CAFile != "" {
		if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: s.CAFile}); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c.SetToken(s.Token)
	return c, nil
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

// Output returns what the server printed so far.
func (s *Server) Output() string {
	s.mu.Lock()
	out := s.out
	s.mu.Unlock()
	if out == nil {
		return ""
	}
	return out.String()
}

func (s *Server) waitReady(timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		// The CA file appears once Vault has generated it (WithTLS).
		if s.CAFile == "" || fileExists(s.CAFile) {
			if c, err := s.client(); err == nil {
				if h, err := c.Sys().HealthWithContext(ctx); err == nil && h.Initialized && !h.Sealed {
					return nil
				}
			}
		}
		select {
		case <-exited:
			return errors.New("vault exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("vault not ready after %s", timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// cleanEnv drops VAULT_* variables so the caller's Vault settings do not
// leak into the dev server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return env
}

// syncBuffer is a bytes.Buffer safe for the process's output goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
