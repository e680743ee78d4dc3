package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clearance-broker/clearance/integration/vaulttest"

	vault "github.com/hashicorp/vault/api"
)

// ErrNoVaultBinary means the cached Vault binary is missing; run
// scripts/vault-binary.sh or set CLEARANCE_VAULT_BIN.
var ErrNoVaultBinary = errors.New("harness: no vault binary (run scripts/vault-binary.sh or set " + vaulttest.EnvBinary + ")")

// vaultServer is a Vault dev server child process with transit enabled and
// the two keys Clearance uses.
type vaultServer struct {
	addr  string
	token string
	cmd   *exec.Cmd
	done  chan struct{}
	out   *lockedBuffer
}

// startVault starts a Vault dev server on a free port, enables transit and
// creates clearance-data (aes256-gcm96) and clearance-signing (ecdsa-p256).
func startVault(ctx context.Context) (*vaultServer, error) {
	bin, err := vaulttest.Binary()
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("%w: looked at %s", ErrNoVaultBinary, bin)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("harness: vault port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	s := &vaultServer{
		addr:  "http://127.0.0.1:" + strconv.Itoa(port),
		token: "root-" + hex.EncodeToString(tok),
		done:  make(chan struct{}),
		out:   &lockedBuffer{},
	}
	cmd := exec.Command(bin, "server", "-dev",
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port),
		"-dev-root-token-id="+s.token, "-dev-no-store-token", "-log-level=warn")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("harness: start vault: %w", err)
	}
	s.cmd = cmd
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("harness: vault: %w\n%s", err, s.out.String())
	}
	c, err := s.client()
	if err != nil {
		s.stop()
		return nil, err
	}
	if err := c.Sys().MountWithContext(ctx, "transit", &vault.MountInput{Type: "transit"}); err != nil {
		s.stop()
		return nil, fmt.Errorf("harness: vault: enable transit: %w", err)
	}
	for name, typ := range map[string]string{"clearance-data": "aes256-gcm96", "clearance-signing": "ecdsa-p256"} {
		if _, err := c.Logical().WriteWithContext(ctx, "transit/keys/"+name, map[string]any{"type": typ}); err != nil {
			s.stop()
			return nil, fmt.Errorf("harness: vault: create key %s: %w", name, err)
		}
	}
	return s, nil
}

func (s *vaultServer) client() (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = s.addr
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("harness: vault client: %w", err)
	}
	c.SetToken(s.token)
	return c, nil
}

func (s *vaultServer) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.addr+"/v1/sys/health", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return errors.New("exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s", timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pid returns the server's process id, for its CPU time.
func (s *vaultServer) pid() int { return s.cmd.Process.Pid }

// stop terminates the server (SIGTERM, then SIGKILL after 10s) and waits.
func (s *vaultServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
