package compliance_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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
