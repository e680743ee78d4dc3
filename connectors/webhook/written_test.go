package webhook

import (
	"errors"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
)

// TestNoteWrittenKeepsAWrite: a request that went out whole stays so when
// the transport's retry of it (on another connection, the request being
// idempotent by its key) fails to write: the partner may hold the first.
func TestNoteWrittenKeepsAWrite(t *testing.T) {
	var wrote atomic.Bool
	hook := noteWritten(&wrote)
	hook(httptrace.WroteRequestInfo{Err: errors.New("write: broken pipe")})
	if wrote.Load() {
		t.Fatal("a request that failed to write counts as written")
	}
	hook(httptrace.WroteRequestInfo{})
	hook(httptrace.WroteRequestInfo{Err: errors.New("write: connection reset by peer")})
	if !wrote.Load() {
		t.Fatal("a retry that failed to write unsaid the write before it")
	}
}
