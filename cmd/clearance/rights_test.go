package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevErasure runs `clearance dev`, sends a transfer, erases its subject
// through the API with an officer's token, and sees the recipient notified
// and the subject's next transfer refused.
func TestDevErasure(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"dev", "--dir", dir, "--registry", filepath.Join(root, "examples", "registry"), "--listen", "127.0.0.1:0", "--nats-port", "-1"}, &stdout, &stderr)
	}()
	api := waitOutput(t, &stdout, `API\s+(http://127\.0\.0\.1:\d+)`)[1]
	token := func(role string) string {
		var out, errs syncBuffer
		if c := run(t.Context(), []string{"token", "--dir", dir, "--role", role}, &out, &errs); c != 0 {
			t.Fatalf("token: %s", errs.String())
		}
		return strings.TrimSpace(out.String())
	}
	call := func(method, path, tok string, body []byte) (int, []byte) {
		req, _ := http.NewRequest(method, api+path, bytes.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	body, err := os.ReadFile(filepath.Join(root, "examples", "requests", "01-delivery-eea-allow.json"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, b := call(http.MethodPost, "/v1/transfers", "", body); c == http.StatusOK && strings.Contains(string(b), `"delivered"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first transfer never delivered:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	officer := token("officer")
	tests := []struct {
		name string
		tok  string
		want int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"invalid token", "not.a.token", http.StatusUnauthorized},
		{"viewer", token("viewer"), http.StatusForbidden},
		{"officer", officer, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, b := call(http.MethodPost, "/v1/subjects/cust-881/erasure", tt.tok, nil); c != tt.want {
				t.Fatalf("erasure: %d %s, want %d", c, b, tt.want)
			}
		})
	}
	for {
		_, b := call(http.MethodGet, "/v1/subjects/cust-881/erasure", officer, nil)
		var st struct {
			Notices []struct{ Recipient, Status string }
		}
		_ = json.Unmarshal(b, &st)
		if len(st.Notices) == 1 && st.Notices[0].Recipient == "swiftship-de" && st.Notices[0].Status == "acknowledged" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("erasure notice status: %s\n%s", b, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	again := bytes.Replace(body, []byte("ord-10023-delivery"), []byte("ord-10023-again"), 1)
	if _, b := call(http.MethodPost, "/v1/transfers", "", again); !strings.Contains(string(b), "subject_erased") {
		t.Fatalf("transfer of an erased subject: %s", b)
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
	if strings.Contains(stderr.String(), "cust-881") {
		t.Error("the log names the erased subject")
	}
}
