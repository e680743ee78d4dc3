package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/policy"
)

// TestMountRightsAuditsCalls serves rights routes through mountRights and
// checks that they are guarded and audited as the compliance API's own
// calls are: 401 and 403 with its JSON error body, and every call that
// changes something recorded as compliance_api_call with the route's
// pattern, the caller's role and the status, the account as an HMAC and
// never the subject named in the path.
func TestMountRightsAuditsCalls(t *testing.T) {
	dir := t.TempDir()
	subjectKey := []byte("livepolicy-test-subject-key-0123")
	db, err := audit.OpenDB(t.Context(), "sqlite://"+filepath.Join(dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	signer, _, _, _ := testSigningKey(t)
	auditLog, err := audit.Open(t.Context(), db, audit.Options{SubjectKey: subjectKey, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = auditLog.Close(t.Context()) })
	issuer, err := compliance.LoadOrCreateDevIssuer(filepath.Join(dir, compliance.DevIssuerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := issuer.Authenticator(nil)
	if err != nil {
		t.Fatal(err)
	}
	token := func(role compliance.Role) string {
		tok, err := issuer.Mint("officer-account-17", role, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// The rights handlers stand in for the live registry's and the erasure
	// notifier's: they answer with a status the test chooses and check
	// that the path's values reach them.
	rights := http.NewServeMux()
	answer := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if id := r.PathValue("id"); strings.Contains(r.URL.Path, "/subjects/") && id != "cust-4711" {
				t.Errorf("path value id = %q", id)
			}
			w.WriteHeader(status)
		}
	}
	rights.Handle("POST /v1/consents", answer(http.StatusOK))
	rights.Handle("POST /v1/subjects/{id}/erasure", answer(http.StatusBadRequest))
	rights.Handle("GET /v1/subjects/{id}/erasure", answer(http.StatusOK))
	rights.Handle("POST /v1/subjects/{id}/erasure/{recipient}/justification", answer(http.StatusOK))
	mux := http.NewServeMux()
	mountRights(mux, rights, auth, auditLog, subjectKey, nil)
	api := httptest.NewServer(mux)
	t.Cleanup(api.Close)

	tests := []struct {
		name        string
		method      string
		path        string
		token       string
		wantStatus  int
		wantError   string   // the JSON error code of a refusal
		wantReasons []string // the audit entry's; nil: no entry
	}{
		{"no token", "POST", "/v1/consents", "", http.StatusUnauthorized, "unauthorized", nil},
		{"viewer", "POST", "/v1/consents", token(compliance.RoleViewer), http.StatusForbidden, "forbidden", nil},
		{"consent", "POST", "/v1/consents", token(compliance.RoleOfficer), http.StatusOK, "",
			[]string{"POST /v1/consents", "role:officer", "status:OK"}},
		{"erasure refused", "POST", "/v1/subjects/cust-4711/erasure", token(compliance.RoleAdmin), http.StatusBadRequest, "",
			[]string{"POST /v1/subjects/{id}/erasure", "role:admin", "status:Bad Request"}},
		{"erasure status is read, not audited", "GET", "/v1/subjects/cust-4711/erasure", token(compliance.RoleOfficer), http.StatusOK, "", nil},
		{"justification", "POST", "/v1/subjects/cust-4711/erasure/swiftship-de/justification", token(compliance.RoleOfficer), http.StatusOK, "",
			[]string{"POST /v1/subjects/{id}/erasure/{recipient}/justification", "role:officer", "status:OK"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := apiCalls(t, auditLog)
			req, _ := http.NewRequest(tt.method, api.URL+tt.path, strings.NewReader(`{}`))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("answered %d %s, want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if tt.wantError != "" {
				var e struct{ Error, Message string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error != tt.wantError || e.Message == "" {
					t.Errorf("body %s, want error %q", body, tt.wantError)
				}
			}
			after := apiCalls(t, auditLog)
			if tt.wantReasons == nil {
				if len(after) != len(before) {
					t.Fatalf("%d compliance_api_call entries written, want none", len(after)-len(before))
				}
				return
			}
			if len(after) != len(before)+1 {
				t.Fatalf("%d compliance_api_call entries written, want 1", len(after)-len(before))
			}
			got := after[len(after)-1]
			if strings.Join(got.Reasons, "|") != strings.Join(tt.wantReasons, "|") || got.Source != "compliance-api" ||
				got.SubjectHMAC != audit.SubjectHMAC(subjectKey, "account:officer-account-17") {
				t.Errorf("entry %+v", got)
			}
			if wantDecision := map[bool]string{true: "allow", false: "deny"}[tt.wantStatus < 400]; got.Decision != wantDecision {
				t.Errorf("decision %q, want %q", got.Decision, wantDecision)
			}
			if b, _ := json.Marshal(got); strings.Contains(string(b), "cust-4711") || strings.Contains(string(b), "officer-account-17") {
				t.Errorf("the entry holds an id in clear: %s", b)
			}
		})
	}
}

func apiCalls(t *testing.T, l *audit.Log) []audit.Entry {
	t.Helper()
	es, err := l.Query(t.Context(), audit.Filter{Event: compliance.EventAPICall, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestMountRightsCoversEveryRightsRoute checks that every route the live
// registry and the erasure notifier mount is one mountRights guards: a
// route missing from its list would not be served.
func TestMountRightsCoversEveryRightsRoute(t *testing.T) {
	rights := http.NewServeMux()
	(*policy.Live)(nil).Mount(rights, nil) // registers only; nothing is called
	(*erasure.Notifier)(nil).Mount(rights, nil)
	guarded := http.NewServeMux()
	mountRights(guarded, rights, nil, nil, nil, nil)
	for _, probe := range []struct{ method, path string }{
		{"POST", "/v1/consents"},
		{"POST", "/v1/subjects/s-1/erasure"},
		{"GET", "/v1/subjects/s-1/erasure"},
		{"POST", "/v1/subjects/s-1/erasure/r-1/justification"},
	} {
		req := httptest.NewRequest(probe.method, probe.path, nil)
		_, inner := rights.Handler(req)
		_, outer := guarded.Handler(req)
		if inner == "" || inner != outer {
			t.Errorf("%s %s: rights mount %q, guarded %q", probe.method, probe.path, inner, outer)
		}
	}
}
