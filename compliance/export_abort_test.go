package compliance_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

// failingExport is an audit log whose export writes sent bytes and then
// fails, as a database lost in the middle of an export does.
type failingExport struct {
	compliance.AuditLog
	sent int
}

func (f failingExport) Export(_ context.Context, w io.Writer, _ audit.Format, _ audit.Filter) (int64, error) {
	if f.sent > 0 {
		if _, err := w.Write([]byte(strings.Repeat("x", f.sent))); err != nil {
			return 0, err
		}
	}
	return 1, errors.New("connection to the database lost")
}

// TestExportCutShortIsNoWholeFile: an export that fails once part of it
// is sent ends the connection without the end of the body, so that the
// client sees an incomplete download rather than a file that looks whole;
// one that fails before sending anything is answered as an error, not as
// a file.
func TestExportCutShortIsNoWholeFile(t *testing.T) {
	f := compliancetest.New(t)
	auth, err := f.Issuer.Authenticator(func() time.Time { return compliancetest.Now })
	if err != nil {
		t.Fatal(err)
	}
	token := f.Token(t, compliance.RoleViewer)
	get := func(t *testing.T, sent int) (*http.Response, []byte, error) {
		t.Helper()
		srv, err := compliance.New(compliance.Options{Audit: failingExport{AuditLog: f.Log, sent: sent}, DB: f.DB,
			Registry: f.Engine, Auth: auth, Now: func() time.Time { return compliancetest.Now }})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		req, _ := http.NewRequest(http.MethodGet, hs.URL+"/v1/audit/export?format=csv", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	t.Run("cut short", func(t *testing.T) {
		resp, b, err := get(t, 256<<10)
		if err == nil {
			t.Fatalf("read a whole answer of %d bytes, status %d", len(b), resp.StatusCode)
		}
	})
	t.Run("nothing sent", func(t *testing.T) {
		resp, b, err := get(t, 0)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Content-Disposition") != "" ||
			strings.Contains(string(b), "database") {
			t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, b)
		}
	})
}

// TestExportHTTP10IsWholeOrAnError: HTTP/1.0 has no chunked encoding, so a
// body without a length ends with the connection and a cut export would
// look whole. To an HTTP/1.0 request the export is sent once complete,
// with its Content-Length, or answered 500 if the store fails in the
// middle; HTTP/1.1 still streams.
func TestExportHTTP10IsWholeOrAnError(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	auth, err := f.Issuer.Authenticator(func() time.Time { return compliancetest.Now })
	if err != nil {
		t.Fatal(err)
	}
	token := f.Token(t, compliance.RoleViewer)
	serve := func(t *testing.T, log compliance.AuditLog) string {
		t.Helper()
		srv, err := compliance.New(compliance.Options{Audit: log, DB: f.DB, Registry: f.Engine, Auth: auth,
			Now: func() time.Time { return compliancetest.Now }})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		return hs.Listener.Addr().String()
	}
	// get sends a raw request of proto and reads the answer to the close.
	get := func(t *testing.T, addr, proto string) (*http.Response, []byte, error) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		req := "GET /v1/audit/export?format=jsonl " + proto + "\r\nHost: " + addr + "\r\nAuthorization: Bearer " + token + "\r\n"
		if proto == "HTTP/1.1" {
			req += "Connection: close\r\n"
		}
		if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	var whole bytes.Buffer
	if _, err := f.Log.Export(t.Context(), &whole, audit.FormatJSONL, audit.Filter{}); err != nil || whole.Len() == 0 {
		t.Fatalf("export of the log: %d bytes, %v", whole.Len(), err)
	}
	// The spool is a temporary file: none is left behind.
	spool := t.TempDir()
	t.Setenv("TMPDIR", spool)
	spoolEmpty := func(t *testing.T) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			left, err := os.ReadDir(spool)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d spool files left, %s first", len(left), left[0].Name())
			}
		}
	}
	tests := []struct {
		name       string
		log        compliance.AuditLog
		proto      string
		wantStatus int
		wantBody   []byte // nil: not a file
		wantLength bool
		wantCut    bool
	}{
		{"HTTP/1.0 whole", f.Log, "HTTP/1.0", http.StatusOK, whole.Bytes(), true, false},
		{"HTTP/1.0 failing in the middle", failingExport{AuditLog: f.Log, sent: 256 << 10}, "HTTP/1.0", http.StatusInternalServerError, nil, false, false},
		{"HTTP/1.1 failing in the middle streams and is cut", failingExport{AuditLog: f.Log, sent: 256 << 10}, "HTTP/1.1", http.StatusOK, nil, false, true},
		{"HTTP/1.1 whole streams", f.Log, "HTTP/1.1", http.StatusOK, whole.Bytes(), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b, err := get(t, serve(t, tt.log), tt.proto)
			spoolEmpty(t)
			if tt.wantCut {
				if err == nil {
					t.Fatalf("read a whole answer of %d bytes", len(b))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d (%d bytes), want %d", resp.StatusCode, len(b), tt.wantStatus)
			}
			if tt.wantBody == nil {
				if resp.Header.Get("Content-Disposition") != "" || strings.Contains(string(b), "xxx") || strings.Contains(string(b), "database") {
					t.Fatalf("a failed export answered as a file: %v %.200s", resp.Header, b)
				}
				return
			}
			if !bytes.Equal(b, tt.wantBody) || resp.Header.Get("Content-Disposition") == "" {
				t.Fatalf("%d bytes, want the log's %d", len(b), len(tt.wantBody))
			}
			if tt.wantLength && resp.ContentLength != int64(len(tt.wantBody)) {
				t.Fatalf("Content-Length %d, want %d", resp.ContentLength, len(tt.wantBody))
			}
		})
	}
}
