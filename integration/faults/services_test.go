package faults

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// restartableNATS is an embedded NATS server with JetStream on a fixed port
// and store directory, so that a restart keeps the streams and consumers.
type restartableNATS struct {
	t    testing.TB
	opts server.Options
	mu   sync.Mutex
	srv  *server.Server
}

func startNATS(t testing.TB) *restartableNATS {
	t.Helper()
	n := &restartableNATS{t: t, opts: server.Options{
		Host: "127.0.0.1", Port: freePort(t), JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true,
	}}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// URL is the client URL of the server.
func (n *restartableNATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

// Addr is the host:port of the server.
func (n *restartableNATS) Addr() string { return fmt.Sprintf("127.0.0.1:%d", n.opts.Port) }

// Start starts the server on its port and store directory.
func (n *restartableNATS) Start() {
	n.t.Helper()
	opts := n.opts
	s, err := server.NewServer(&opts)
	if err != nil {
		n.t.Fatalf("faults: nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		n.t.Fatal("faults: nats server not ready")
	}
	n.mu.Lock()
	n.srv = s
	n.mu.Unlock()
}

// Stop shuts the server down and waits for it.
func (n *restartableNATS) Stop() {
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// child is one `clearance serve` process. Its stderr (the log) is kept
// across restarts for the canary and secret searches.
type child struct {
	t      testing.TB
	bin    string
	args   []string
	env    []string
	api    string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    bytes.Buffer
	starts int
}

func newChild(t testing.TB, bin, config, listen string, env []string) *child {
	t.Helper()
	c := &child{t: t, bin: bin, args: []string{"serve", "--config", config},
		env: append(env, "CLEARANCE_HTTP_LISTEN="+listen), api: "http://" + listen}
	c.Start()
	t.Cleanup(func() {
		c.terminate()
		if t.Failed() {
			t.Logf("faults: log of the instance at %s (last 4 KiB):\n%s", c.api, tail(c.Log(), 4096))
		}
		// CLEARANCE_FAULTS_LOGDIR keeps every instance's whole log.
		if dir := os.Getenv("CLEARANCE_FAULTS_LOGDIR"); dir != "" {
			name := filepath.Join(dir, "instance-"+strings.NewReplacer(":", "_", "/", "_").Replace(listen)+".log")
			if err := os.WriteFile(name, []byte(c.Log()), 0o600); err != nil {
				t.Errorf("faults: keep log: %v", err)
			}
		}
	})
	return c
}

// Start runs the process and waits until /readyz answers 200.
func (c *child) Start() {
	c.t.Helper()
	cmd := exec.Command(c.bin, c.args...)
	cmd.Env = append(filterEnv(os.Environ(), "CLEARANCE_"), c.env...)
	cmd.Stdout, cmd.Stderr = lockedWriter{c}, lockedWriter{c}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("faults: start clearance serve: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.starts++
	c.mu.Unlock()
	c.waitReady(90 * time.Second)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (c *child) Kill() {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// terminate stops the process gracefully (SIGTERM), killing it after 30s.
func (c *child) terminate() {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// Log returns everything the process printed, over all its runs.
func (c *child) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

func (c *child) waitReady(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get(c.api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		c.mu.Lock()
		exited := c.exited
		c.mu.Unlock()
		select {
		case <-exited:
			c.t.Fatalf("faults: clearance serve exited before it was ready:\n%s", tail(c.Log(), 4096))
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.t.Fatalf("faults: clearance serve not ready after %s:\n%s", timeout, tail(c.Log(), 4096))
}

type lockedWriter struct{ c *child }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.log.Write(p)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// goBuild builds cmd/clearance into bin.
func goBuild(root, bin string) error {
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/clearance")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/clearance: %w\n%s", err, out)
	}
	return nil
}
