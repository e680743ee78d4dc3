package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildClearance builds the clearance command into a temporary directory
// and returns the binary's path. Stdin is the process's own, so reading a
// request from it is tested through the real binary.
func buildClearance(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH to build the command")
	}
	bin := filepath.Join(t.TempDir(), "clearance")
	cmd := exec.CommandContext(t.Context(), goTool, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestCheckReadsStdin runs `clearance check --request -` as a process and
// feeds the request on stdin: the output must be what the same request
// gives from a file, and a malformed request must exit 2 naming the field.
func TestCheckReadsStdin(t *testing.T) {
	bin := buildClearance(t)
	const at = "2026-11-28T00:00:00Z"
	batch := "../../examples/requests/24-batch.json"
	tests := []struct {
		name       string
		giveFile   string // fed on stdin; "" feeds giveStdin
		giveStdin  string
		wantCode   int
		wantStderr string
	}{
		{"one request", exampleRequest, "", 0, ""},
		{"an array of requests", batch, "", 0, ""},
		{"malformed request names the field", "", `{"id": "r", "source": "s", "recipient": 5}`, 2, "invalid_request: recipient: want a string"},
		{"empty input", "", "", 2, "invalid_request: not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := []byte(tt.giveStdin)
			if tt.giveFile != "" {
				var err error
				if input, err = os.ReadFile(tt.giveFile); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(t.Context(), bin, "check", "--registry", exampleRegistry, "--request", "-", "--at", at)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(input), &stdout, &stderr
			code := 0
			if err := cmd.Run(); err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("run clearance: %v", err)
				}
				code = exit.ExitCode()
			}
			if code != tt.wantCode {
				t.Fatalf("exit code = %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantStderr, stderr.String())
			}
			if tt.giveFile == "" {
				return
			}
			var want, wantErr bytes.Buffer
			if code := run(t.Context(), []string{"check", "--registry", exampleRegistry, "--request", tt.giveFile, "--at", at}, &want, &wantErr); code != 0 {
				t.Fatalf("check from the file: exit %d: %s", code, wantErr.String())
			}
			if stdout.String() != want.String() {
				t.Errorf("decision from stdin differs from the file's:\n%s\nwant:\n%s", stdout.String(), want.String())
			}
		})
	}
}
