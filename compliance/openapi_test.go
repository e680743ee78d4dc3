package compliance_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/policy"
	"gopkg.in/yaml.v3"
)

// documentedRoutes returns the "METHOD /path" of every operation of
// openapi.yaml.
func documentedRoutes(t *testing.T) []string {
	t.Helper()
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(compliance.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi: %q, want 3.x", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	return documented
}

// TestOpenAPIMatchesRoutes checks that every route is documented and that
// the document describes no route that is not served: the server's own
// and the rights routes the binary serves through GuardRoute.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	documented := documentedRoutes(t)
	f := compliancetest.New(t) // with the dev issuer: its JWKS route too
	served := append(f.Server.APIRoutes(), compliance.RightsRoutes()...)
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(served, d) {
			t.Errorf("openapi.yaml documents %s, which is not served", d)
		}
	}
}

// TestRightsRoutesAreMounted checks that compliance.RightsRoutes (which
// openapi.yaml documents) are the routes the live registry and erasure
// propagation mount and the binary guards: each listed route is served by
// their Mount, and every route pattern in their sources and in the
// binary's list is listed.
func TestRightsRoutesAreMounted(t *testing.T) {
	listed := compliance.RightsRoutes()
	mux := http.NewServeMux()
	(*policy.Live)(nil).Mount(mux, nil) // registers handlers only; none is called
	(*erasure.Notifier)(nil).Mount(mux, nil)
	for _, r := range listed {
		method, path, _ := strings.Cut(r, " ")
		concrete := strings.NewReplacer("{id}", "cust-1", "{recipient}", "swiftship-de").Replace(path)
		req := httptest.NewRequest(method, concrete, nil)
		if _, pattern := mux.Handler(req); pattern != r {
			t.Errorf("RightsRoutes lists %s; the live registry and erasure propagation serve %s %s as %q", r, method, concrete, pattern)
		}
	}

	root := compliancetest.Root(t)
	pattern := regexp.MustCompile(`"((?:GET|POST|PUT|PATCH|DELETE) /v1/[^"]*)"`)
	var sources []string
	for _, dir := range []string{"policy", "erasure"} {
		names, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if !strings.HasSuffix(n, "_test.go") {
				sources = append(sources, n)
			}
		}
	}
	var found []string
	for _, n := range sources {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pattern.FindAllStringSubmatch(string(b), -1) {
			found = append(found, m[1])
		}
	}
	if len(found) == 0 {
		t.Fatal("no route pattern found in policy/ and erasure/: the scan is broken")
	}
	for _, r := range found {
		if !slices.Contains(listed, r) {
			t.Errorf("%s is mounted by policy or erasure but not in compliance.RightsRoutes (nor openapi.yaml)", r)
		}
	}

	// The binary guards the rights routes (cmd/clearance/livepolicy.go
	// mountRights): by RightsRoutes itself, or by a list of its own that
	// must name only listed routes.
	b, err := os.ReadFile(filepath.Join(root, "cmd", "clearance", "livepolicy.go"))
	if err != nil {
		t.Fatal(err)
	}
	guarded := regexp.MustCompile(`\{http\.Method([A-Za-z]+), "(/v1/[^"]*)"\}`).FindAllStringSubmatch(string(b), -1)
	if len(guarded) == 0 && !strings.Contains(string(b), "compliance.RightsRoutes()") {
		t.Fatal("livepolicy.go guards no rights route that this test can find")
	}
	var binary []string
	for _, m := range guarded {
		r := strings.ToUpper(m[1]) + " " + m[2]
		binary = append(binary, r)
		if !slices.Contains(listed, r) {
			t.Errorf("the binary guards %s, which compliance.RightsRoutes (and openapi.yaml) does not list", r)
		}
	}
	for _, r := range listed {
		if len(binary) > 0 && !slices.Contains(binary, r) {
			t.Errorf("compliance.RightsRoutes lists %s, which the binary does not serve", r)
		}
	}
}

// rightsServer serves the rights routes as the binary does
// (cmd/clearance/livepolicy.go mountRights): a live registry and an erasure
// notifier on the fixture's store and audit log, mounted without
// authorization on a mux of their own, each route behind GuardRoute.
func rightsServer(t *testing.T, f *compliancetest.Fixture) string {
	t.Helper()
	url, _ := rightsServerNotifier(t, f)
	return url
}

// rightsServerNotifier is rightsServer, returning the erasure notifier too
// (not started: its notices stay pending).
func rightsServerNotifier(t *testing.T, f *compliancetest.Fixture) (string, *erasure.Notifier) {
	t.Helper()
	ctx := t.Context()
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	live, _ := startLive(t, f, nc)
	notifier, err := erasure.New(ctx, erasure.Options{DB: f.DB, Audit: f.Log, Keys: brokertest.DevKeys(t, filepath.Join(t.TempDir(), "keys.json")),
		SubjectKey: compliancetest.SubjectKey, Connectors: broker.ConnectorMap{},
		Parties: func() erasure.Parties { return f.Engine.Registry() },
		Caller:  compliance.CallerAccount})
	if err != nil {
		t.Fatal(err)
	}
	rights := http.NewServeMux()
	live.Mount(rights, nil)
	notifier.Mount(rights, nil)
	auth, err := f.Issuer.Authenticator(func() time.Time { return compliancetest.Now })
	if err != nil {
		t.Fatal(err)
	}
	opts := compliance.Options{Auth: auth, Audit: f.Log, SubjectKey: compliancetest.SubjectKey, Now: func() time.Time { return compliancetest.Now }}
	mux := http.NewServeMux()
	for _, r := range compliance.RightsRoutes() {
		method, path, _ := strings.Cut(r, " ")
		mux.Handle(r, compliance.GuardRoute(opts, method, path, compliance.RoleOfficer, rights))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, notifier
}

// TestRightsErrorsHaveMessage checks that the rights routes answer errors
// with the API's error body (openapi.yaml's Error: error and message),
// keeping a rejected receipt's fields, never repeating the subject, and
// leave their successful answers alone.
func TestRightsErrorsHaveMessage(t *testing.T) {
	f := compliancetest.New(t)
	c := client{t: t, base: rightsServer(t, f), token: f.Token(t, compliance.RoleOfficer)}
	tests := []struct {
		name, method, path, body string
		token                    string
		wantStatus               int
		wantError, wantSays      string
		wantReceipt              bool
	}{
		{"invalid consent", "POST", "/v1/consents", `{"action": "maybe", "subject": "cust-4711", "purpose": "marketing"}`, c.token,
			http.StatusBadRequest, "invalid_request", `action: must be "grant" or "withdraw"`, true},
		{"unknown field", "POST", "/v1/consents", `{"action": "grant", "subject": "cust-4711", "purpose": "marketing", "colour": "red"}`, c.token,
			http.StatusBadRequest, "invalid_request", "colour: unknown field", true},
		{"erasure dated ahead", "POST", "/v1/subjects/cust-4711/erasure", `{"at": "2027-01-01T00:00:00Z"}`, c.token,
			http.StatusBadRequest, "invalid_request", "at: more than 5 minutes in the future", true},
		{"body too large", "POST", "/v1/consents", `{"subject": "` + strings.Repeat("x", 70<<10) + `"}`, c.token,
			http.StatusRequestEntityTooLarge, "invalid_request", "body too large", false},
		{"justification incomplete", "POST", "/v1/subjects/cust-4711/erasure/swiftship-de/justification", `{"officer": "dpo"}`, c.token,
			http.StatusBadRequest, "invalid_request", "justification is required", false},
		{"no notice to justify", "POST", "/v1/subjects/cust-4711/erasure/swiftship-de/justification", `{"officer": "dpo", "justification": "gone"}`, c.token,
			http.StatusNotFound, "not_found", "no open notice for this recipient", false},
		{"no token", "POST", "/v1/consents", `{}`, "",
			http.StatusUnauthorized, "unauthorized", "", false},
		{"viewer", "GET", "/v1/subjects/cust-4711/erasure", ``, f.Token(t, compliance.RoleViewer),
			http.StatusForbidden, "forbidden", "officer", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := c
			cc.token = tt.token
			code, hdr, b := cc.do(tt.method, tt.path, "application/json", strings.NewReader(tt.body))
			var body struct {
				Error, Message, Status string
				RequestID              string `json:"request_id"`
				Reasons                []string
			}
			if err := json.Unmarshal(b, &body); err != nil || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Fatalf("%d %s: not a JSON body (%v)", code, b, err)
			}
			if code != tt.wantStatus || body.Error != tt.wantError || body.Message == "" || !strings.Contains(body.Message, tt.wantSays) {
				t.Fatalf("%d %s, want %d error %q message saying %q", code, b, tt.wantStatus, tt.wantError, tt.wantSays)
			}
			if strings.Contains(body.Message, "4711") {
				t.Fatalf("the message names the subject: %q", body.Message)
			}
			if tt.wantReceipt && (body.Status != "rejected" || len(body.Reasons) == 0 || !strings.HasPrefix(body.RequestID, "http-")) {
				t.Fatalf("the rejected receipt's fields are lost: %s", b)
			}
		})
	}

	// A success passes untouched: the receipt, no error.
	code, _, b := c.do("POST", "/v1/consents", "application/json",
		strings.NewReader(`{"action": "grant", "subject": "cust-4711", "purpose": "marketing", "recipients": ["promoreach-nl"]}`))
	var rc map[string]any
	if code != http.StatusOK || json.Unmarshal(b, &rc) != nil || rc["status"] != "recorded" || rc["error"] != nil || rc["message"] != nil {
		t.Fatalf("grant: %d %s", code, b)
	}
}

// TestOpenAPISchemasMatchJSON checks that the properties of a schema of
// openapi.yaml are the members the type's JSON holds, so that a field added
// to an answer is documented and a documented one is served.
func TestOpenAPISchemasMatchJSON(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]yaml.Node `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(compliance.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{
		"WhatIfResult":  compliance.WhatIfResult{},
		"Flip":          compliance.Flip{Uncertain: true},
		"SentChange":    compliance.SentChange{Uncertain: true},
		"Entry":         audit.Entry{},
		"Page":          compliance.Page{NextAfter: 1}, // its omitempty member set
		"Explanation":   compliance.Explanation{},
		"SubjectReport": compliance.SubjectReport{},
		"VersionSeen":   compliance.VersionSeen{AgreementID: "a", AgreementVersion: 1},
	} {
		schema, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("openapi.yaml has no schema %s", name)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(b, &members); err != nil {
			t.Fatal(err)
		}
		for m := range members {
			if _, ok := schema.Properties[m]; !ok {
				t.Errorf("schema %s lacks %q, which the answer holds", name, m)
			}
		}
		for p := range schema.Properties {
			if _, ok := members[p]; !ok {
				t.Errorf("schema %s documents %q, which the answer lacks", name, p)
			}
		}
	}
}
