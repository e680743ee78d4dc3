package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
	go func() {
		code <- run(ctx, []string{"dev", "--dir", t.TempDir(), "--registry", filepath.Join(root, "examples", "registry"), "--listen", "127.0.0.1:0", "--nats-port", "-1"}, &stdout, &stderr)
	}()
	api := waitOutput(t, &stdout, `API\s+(http://127\.0\.0\.1:\d+)`)[1]
	waitOutput(t, &stdout, `nats --server nats://127\.0\.0\.1:\d+ pub clearance\.transfers\.order-service`)
	if !strings.Contains(stderr.String(), "NOT in Vault") {
		t.Errorf("no loud warning about the development key ring:\n%s", stderr.String())
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

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("clearance dev exited %d:\n%s", c, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("clearance dev did not stop")
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
