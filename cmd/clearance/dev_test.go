package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/internal/syncbuf"
)

// syncBuffer is a concurrency-safe output capture.
type syncBuffer = syncbuf.Buffer

func waitOutput(t *testing.T, out *syncBuffer, pattern string) []string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("output never matched %q:\n%s", pattern, out.String())
	return nil
}

// TestDevWalkthrough runs `clearance dev` as a newcomer would, sends the
// first transfer it suggests and sees the sample partner print it.
func TestDevWalkthrough(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	dir := t.TempDir()
	go func() {
		code <- run(ctx, []string{"dev", "--dir", dir, "--registry", filepath.Join(root, "examples", "registry"), "--listen", "127.0.0.1:0", "--nats-port", "0"}, &stdout, &stderr)
	}()
	api := waitOutput(t, &stdout, `API\s+(http://127\.0\.0\.1:\d+)`)[1]
	waitOutput(t, &stdout, `nats --server nats://127\.0\.0\.1:\d+ pub clearance\.transfers\.order-service`)
	if !strings.Contains(stderr.String(), "NOT in Vault") {
		t.Errorf("no loud warning about the development key ring:\n%s", stderr.String())
	}
	if !regexp.MustCompile(`NOTE: the embedded NATS server listens on nats://127\.0\.0\.1:\d+, a free port \(--nats-port 0\)`).MatchString(stderr.String()) {
		t.Errorf("no note of the port --nats-port 0 took:\n%s", stderr.String())
	}

	body, err := os.ReadFile(filepath.Join(root, "examples", "requests", "01-delivery-eea-allow.json"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(api+"/v1/transfers", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	receipt, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(receipt), `"status": "delivered"`) {
		t.Fatalf("receipt: %s", receipt)
	}
	waitOutput(t, &stdout, `sample partner: delivery ord-10023-delivery`)
	waitOutput(t, &stdout, `"name": "Ada Lovelace"`)
	if strings.Contains(stdout.String(), "ada@example.invalid") {
		t.Error("the partner was sent a field the agreement does not cover")
	}

	body, _ = os.ReadFile(filepath.Join(root, "examples", "requests", "06-delivery-brazil-no-mechanism.json"))
	resp, err = http.Post(api+"/v1/transfers", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	receipt, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(receipt), "no_transfer_mechanism") {
		t.Errorf("refused receipt: %s", receipt)
	}

	// While it runs, verify reads the copies of its checkpoints through its
	// NATS server.
	verify := func() (int, string) {
		var out syncBuffer
		c := run(t.Context(), []string{"audit", "verify", "--dir", dir}, &out, &out)
		return c, out.String()
	}
	if c, out := verify(); c != 0 || !regexp.MustCompile(`mirrored copies: +\d+ checked \(stream CLEARANCE_AUDIT_CHECKPOINTS\)`).MatchString(out) {
		t.Errorf("verify --dir while dev runs: exit %d\n%s", c, out)
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("clearance dev exited %d:\n%s", c, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("clearance dev did not stop")
	}
	// Stopped, it sealed its log; verify reads the copies from its store,
	// and finds the last checkpoint's row deleted.
	if c, out := verify(); c != 0 || !regexp.MustCompile(`mirrored copies: +[1-9]\d* checked`).MatchString(out) {
		t.Fatalf("verify --dir after dev stopped: exit %d\n%s", c, out)
	}
	db, err := audit.OpenDB(t.Context(), "sqlite://"+filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.ExecContext(t.Context(), "DELETE FROM audit_checkpoints WHERE seq = (SELECT MAX(seq) FROM audit_checkpoints)")
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if c, out := verify(); c != 1 || !strings.Contains(out, "checkpoints kept outside the database are missing from the log") {
		t.Errorf("verify --dir with a checkpoint row deleted: exit %d\n%s", c, out)
	}
	for _, v := range []string{"Ada Lovelace", "Munich", "+49 89", "cust-881"} {
		if strings.Contains(stderr.String(), v) {
			t.Errorf("the broker's log holds %q", v)
		}
	}
	// The regions' connections are closed by the shutdown itself.
	if strings.Contains(stderr.String(), "disconnected") {
		t.Errorf("a clean shutdown logged a disconnection:\n%s", stderr.String())
	}
}

// TestStartDevNATSPortZero: nats-server takes port 0 for its default,
// 4222, so --nats-port 0 started nothing where 4222 was taken, and said so
// only after 10 s. It takes a free port.
func TestStartDevNATSPortZero(t *testing.T) {
	// 4222 is taken, by this test if nothing else holds it.
	if ln, err := net.Listen("tcp", "127.0.0.1:4222"); err == nil {
		defer ln.Close()
	}
	start := time.Now()
	ns, url, _, err := startDevNATS(t.TempDir(), 0)
	if err != nil {
		t.Fatalf("startDevNATS(0) after %v: %v", time.Since(start), err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if strings.HasSuffix(url, ":4222") || strings.HasSuffix(url, ":0") {
		t.Errorf("listens on %s, want a free port", url)
	}
}

// TestStartDevNATSSaysWhy: a server that cannot start (here its JetStream
// store, under a file) is reported with nats-server's reason at once,
// where it was "nats server did not start" after 10 s.
func TestStartDevNATSSaysWhy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-directory")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, _, err := startDevNATS(file, -1)
	if err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("startDevNATS on a store it cannot use = %v, want the reason", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to fail", d)
	}
}

// TestDevNATSPortFlag: a port no server can listen on is a usage error.
func TestDevNATSPortFlag(t *testing.T) {
	for _, port := range []string{"-2", "65536"} {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), []string{"dev", "--dir", t.TempDir(), "--nats-port", port}, &out, &errOut); code != 2 ||
			!strings.Contains(errOut.String(), "--nats-port: want 1 to 65535, or 0 for a free port") {
			t.Errorf("--nats-port %s: exit %d\n%s", port, code, errOut.String())
		}
	}
}
