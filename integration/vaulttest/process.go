package vaulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clearance-broker/clearance/internal/syncbuf"
	vault "github.com/hashicorp/vault/api"
)

// ErrNoBinary means the Vault binary is not where Binary says.
var ErrNoBinary = errors.New("vaulttest: no Vault binary: run scripts/vault-binary.sh (it builds and caches Vault " +
	Version + "; the first build takes 15-25 minutes) or set " + EnvBinary)

// Config says how Launch starts a dev server. The zero Config is a plain
// HTTP server on a free port with a random root token, ready within 30 s.
type Config struct {
	// Port is the local port to listen on; 0 takes a free one.
	Port int
	// Token is the root token; "" makes a random one.
	Token string
	// CertDir, when set, serves HTTPS with a certificate from a CA that
	// Vault generates there (-dev-tls); its PEM is Process.CAFile.
	CertDir string
	// Ready bounds the wait until the server serves; 0 is 30 s.
	Ready time.Duration
	// DieWithParent kills the server when the process that launched it
	// dies (for a program, where no test cleanup runs).
	DieWithParent bool
}

// Process is a running Vault dev server: a child process with its storage
// in memory and the transit engine enabled. It is what Start runs for a
// test and what the load harness runs for itself.
type Process struct {
	// Addr is the server's URL, e.g. "http://127.0.0.1:43127".
	Addr string
	// Token is the root token.
	Token string
	// CAFile is the PEM CA that signs the server's certificate (Config's
	// CertDir only; empty for plain HTTP).
	CAFile string

	cmd    *exec.Cmd
	exited chan struct{}
	out    *syncbuf.Buffer
	once   sync.Once
}

// Launch starts `vault server -dev` as cfg says, waits until it serves and
// enables transit at "transit/". The caller stops it with Stop. An error
// carries the server's output; a missing binary is ErrNoBinary.
func Launch(ctx context.Context, cfg Config) (*Process, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("%w (looked at %s)", ErrNoBinary, bin)
	}
	if cfg.Port == 0 {
		if cfg.Port, err = freePort(); err != nil {
			return nil, fmt.Errorf("vaulttest: %w", err)
		}
	}
	if cfg.Token == "" {
		tok := make([]byte, 16)
		if _, err := rand.Read(tok); err != nil {
			return nil, fmt.Errorf("vaulttest: token: %w", err)
		}
		cfg.Token = "root-" + hex.EncodeToString(tok)
	}
	if cfg.Ready == 0 {
		cfg.Ready = 30 * time.Second
	}
	p := &Process{
		Addr:   "http://127.0.0.1:" + strconv.Itoa(cfg.Port),
		Token:  cfg.Token,
		exited: make(chan struct{}),
		out:    &syncbuf.Buffer{},
	}
	args := []string{"server", "-dev",
		"-dev-listen-address=127.0.0.1:" + strconv.Itoa(cfg.Port),
		"-dev-root-token-id=" + cfg.Token,
		"-dev-no-store-token",
		"-log-level=warn"}
	if cfg.CertDir != "" {
		p.Addr = strings.Replace(p.Addr, "http://", "https://", 1)
		p.CAFile = filepath.Join(cfg.CertDir, "vault-ca.pem")
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+cfg.CertDir)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cfg.DieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("vaulttest: start %s: %w", bin, err)
	}
	p.cmd = cmd
	go func() { _ = cmd.Wait(); close(p.exited) }()
	fail := func(err error) (*Process, error) {
		p.Stop()
		return nil, fmt.Errorf("vaulttest: %w\n%s", err, p.Output())
	}
	if err := p.waitReady(ctx, cfg.Ready); err != nil {
		return fail(err)
	}
	c, err := p.Client()
	if err != nil {
		return fail(err)
	}
	if err := c.Sys().MountWithContext(ctx, "transit", &vault.MountInput{Type: "transit"}); err != nil {
		return fail(fmt.Errorf("enable transit: %w", err))
	}
	return p, nil
}

// Stop terminates the server (SIGTERM, then SIGKILL after 10 s) and waits
// for it to exit. Later calls return at once.
func (p *Process) Stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	})
}

// Pid is the server's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns what the server printed so far.
func (p *Process) Output() string { return p.out.String() }

// Client returns a Vault client for the server with the root token and no
// retries.
func (p *Process) Client() (*vault.Client, error) { return newClient(p.Addr, p.Token, p.CAFile) }

// newClient returns a Vault client for the server at addr with token, no
// retries and, for HTTPS, the CA in caFile.
func newClient(addr, token, caFile string) (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	if caFile != "" {
		if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: caFile}); err != nil {
			return nil, fmt.Errorf("vaulttest: tls: %w", err)
		}
	}
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vaulttest: client: %w", err)
	}
	c.SetToken(token)
	return c, nil
}

// waitReady polls the server's health until it is initialised and unsealed.
func (p *Process) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		// The CA file appears once Vault has generated it (CertDir).
		if p.CAFile == "" || fileExists(p.CAFile) {
			if c, err := p.Client(); err == nil {
				if h, err := c.Sys().HealthWithContext(ctx); err == nil && h.Initialized && !h.Sealed {
					return nil
				}
			}
		}
		select {
		case <-p.exited:
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
