package compliance_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

type client struct {
	t     *testing.T
	base  string
	token string
}

func (c client) do(method, path, contentType string, body io.Reader) (int, http.Header, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func (c client) get(path string) (int, []byte) {
	c.t.Helper()
	code, _, b := c.do("GET", path, "", nil)
	return code, b
}

// proposal returns the example registry's files with one edit applied.
func proposal(t *testing.T, f *compliancetest.Fixture, file, old, repl string) map[string]string {
	t.Helper()
	files := map[string]string{}
	names, _ := filepath.Glob(filepath.Join(f.Registry, "*.yaml"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(n)] = string(b)
	}
	if !strings.Contains(files[file], old) {
		t.Fatalf("%s does not hold %q", file, old)
	}
	files[file] = strings.Replace(files[file], old, repl, 1)
	return files
}

func jsonBody(t *testing.T, v any) io.Reader {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

// TestRoutesRoles checks every API route without a token, with a bad token,
// and with each role.
func TestRoutesRoles(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	whatif := func() io.Reader {
		return jsonBody(t, map[string]any{"files": proposal(t, f, "40-agreements.yaml", "status: active", "status: suspended")})
	}
	routes := []struct {
		method, path string
		body         func() io.Reader
		need         compliance.Role
		public       bool
		ok           int // the success status (default 200)
	}{
		{method: "GET", path: "/v1/me", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/openapi.yaml", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/auth/jwks.json", public: true},
		{method: "GET", path: "/v1/audit/entries", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/audit/entries/1", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/audit/export", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/subjects/cust-881/recipients", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/registry", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/registry/versions", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/registry/agreements", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/registry/agreements/dpa-swiftship-de/history", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/reports/overview", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/reports/ropa", need: compliance.RoleViewer},
		{method: "POST", path: "/v1/whatif", body: whatif, need: compliance.RoleOfficer},
		{method: "GET", path: "/v1/legal-orders", need: compliance.RoleViewer},
		{method: "POST", path: "/v1/legal-orders", body: legalOrderBody(t), need: compliance.RoleOfficer, ok: http.StatusCreated},
		{method: "GET", path: "/v1/legal-orders/order-2026-113", need: compliance.RoleViewer},
		{method: "GET", path: "/v1/consents?subject=cust-7", need: compliance.RoleOfficer},
		{method: "GET", path: "/v1/erasures", need: compliance.RoleOfficer},
	}
	f.Server.UseRights(engineChanger(f), nil)
	documented := f.Server.APIRoutes()
	if len(documented) != len(routes) {
		t.Fatalf("the server has %d API routes, this test checks %d: add the new ones", len(documented), len(routes))
	}
	roles := []compliance.Role{compliance.RoleViewer, compliance.RoleOfficer, compliance.RoleAdmin}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			body := func() io.Reader {
				if rt.body == nil {
					return nil
				}
				return rt.body()
			}
			ct := ""
			if rt.body != nil {
				ct = "application/json"
			}
			code, hdr, b := client{t: t, base: f.HTTP.URL}.do(rt.method, rt.path, ct, body())
			if rt.public {
				if code != http.StatusOK {
					t.Fatalf("without token: %d %s", code, b)
				}
				return
			}
			if code != http.StatusUnauthorized || !strings.Contains(string(b), `"unauthorized"`) || hdr.Get("WWW-Authenticate") == "" {
				t.Fatalf("without token: %d %s", code, b)
			}
			code, _, b = client{t: t, base: f.HTTP.URL, token: "x.y.z"}.do(rt.method, rt.path, ct, body())
			if code != http.StatusUnauthorized {
				t.Fatalf("bad token: %d %s", code, b)
			}
			for _, role := range roles {
				code, _, b := client{t: t, base: f.HTTP.URL, token: f.Token(t, role)}.do(rt.method, rt.path, ct, body())
				want := http.StatusOK
				if rt.ok != 0 {
					want = rt.ok
				}
				if role < rt.need {
					want = http.StatusForbidden
				}
				if code != want {
					t.Fatalf("role %v: %d %s, want %d", role, code, b, want)
				}
				if want == http.StatusForbidden && !strings.Contains(string(b), `"forbidden"`) {
					t.Fatalf("403 body: %s", b)
				}
			}
		})
	}
}

// TestBadInput checks that bad parameters get a 400 naming them.
func TestBadInput(t *testing.T) {
	f := compliancetest.New(t)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleAdmin)}
	tests := []struct {
		name, method, path, ct string
		body                   string
		wantParam              string
	}{
		{"unknown filter", "GET", "/v1/audit/entries?recipeint=x", "", "", "recipeint"},
		{"limit too big", "GET", "/v1/audit/entries?limit=5000", "", "", "limit"},
		{"limit not a number", "GET", "/v1/audit/entries?limit=ten", "", "", "limit"},
		{"decision", "GET", "/v1/audit/entries?decision=maybe", "", "", "decision"},
		{"country", "GET", "/v1/audit/entries?country=Germany", "", "", "country"},
		{"from", "GET", "/v1/audit/entries?from=yesterday", "", "", "from"},
		{"to before from", "GET", "/v1/audit/entries?from=2026-11-02&to=2026-11-01", "", "", "to"},
		{"after", "GET", "/v1/audit/entries?after=-1", "", "", "after"},
		{"subject hmac", "GET", "/v1/audit/entries?subject_hmac=xyz", "", "", "subject_hmac"},
		{"repeated", "GET", "/v1/audit/entries?purpose=a&purpose=b", "", "", "purpose"},
		{"seq", "GET", "/v1/audit/entries/abc", "", "", "seq"},
		{"export format", "GET", "/v1/audit/export?format=xml", "", "", "format"},
		{"recipients window", "GET", "/v1/subjects/cust-1/recipients?from=x", "", "", "from"},
		{"recipients unknown", "GET", "/v1/subjects/cust-1/recipients?limit=1", "", "", "limit"},
		{"ropa format", "GET", "/v1/reports/ropa?format=pdf", "", "", "format"},
		{"overview to", "GET", "/v1/reports/overview?to=soon", "", "", "to"},
		{"agreement id", "GET", "/v1/registry/agreements/a%20b/history", "", "", "id"},
		{"registry params", "GET", "/v1/registry?x=1", "", "", "x"},
		{"whatif content type", "POST", "/v1/whatif", "text/plain", "zones: []", "Content-Type"},
		{"whatif json", "POST", "/v1/whatif", "application/json", `{"file": {}}`, "files"},
		{"whatif empty", "POST", "/v1/whatif", "application/json", `{"files": {}}`, "registry"},
		{"whatif not yaml name", "POST", "/v1/whatif", "application/json", `{"files": {"a.txt": "zones: []"}}`, "registry"},
		{"whatif invalid registry", "POST", "/v1/whatif", "application/json", `{"files": {"a.yaml": "parties:\n  - id: x\n    colour: red\n"}}`, "registry"},
		{"whatif window", "POST", "/v1/whatif?from=never", "application/json", `{"files": {"a.yaml": "zones: {}"}}`, "from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			code, _, b := c.do(tt.method, tt.path, tt.ct, body)
			var e struct{ Error, Message, Parameter string }
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("%d %s", code, b)
			}
			if code != http.StatusBadRequest || e.Parameter != tt.wantParam || !strings.Contains(e.Message, tt.wantParam) {
				t.Fatalf("%d %+v, want 400 naming %q", code, e, tt.wantParam)
			}
		})
	}
}

func TestSearchExportAndSubject(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 2)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}

	// cust-881's transfers: allowed to swiftship-de in the example requests.
	code, b := c.get("/v1/audit/entries?subject=cust-881&limit=1000")
	var page compliance.Page
	if code != 200 || json.Unmarshal(b, &page) != nil || len(page.Entries) == 0 {
		t.Fatalf("%d %s", code, b)
	}
	hmac := audit.SubjectHMAC(compliancetest.SubjectKey, "cust-881")
	for _, e := range page.Entries {
		if e.SubjectHMAC != hmac {
			t.Fatalf("entry %d of another subject", e.Sequence)
		}
	}
	if strings.Contains(string(b), "cust-881") {
		t.Fatal("the subject id in clear is in the answer")
	}

	code, b = c.get("/v1/subjects/cust-881/recipients")
	var rep compliance.SubjectReport
	if code != 200 || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("%d %s", code, b)
	}
	if len(rep.Recipients) == 0 || rep.Recipients[0].Deliveries == 0 || rep.SubjectHMAC != hmac {
		t.Fatalf("recipients: %+v", rep)
	}
	// A subject with no entry is still named by its HMAC.
	code, b = c.get("/v1/subjects/cust-never-seen/recipients")
	var none compliance.SubjectReport
	if code != 200 || json.Unmarshal(b, &none) != nil || len(none.Recipients) != 0 || len(none.SubjectHMAC) != 64 || none.SubjectHMAC == hmac {
		t.Fatalf("recipients of a subject without entries: %d %s", code, b)
	}
	// Why and under which contract: the legal basis and the agreement
	// version each allowed transfer rested on.
	if r := rep.Recipients[0]; !slices.Equal(r.LegalBases, []string{"contract"}) || !slices.Equal(r.Agreements, []string{"dpa-swiftship-de v2"}) {
		t.Fatalf("recipient %s: legal bases %q, agreements %q", r.Recipient, r.LegalBases, r.Agreements)
	}

	// A disclosure to an authority rests on a legal order, which the
	// report names where an agreement would stand, and the explanation too.
	code, b = c.get("/v1/subjects/cust-9/recipients")
	var ordered compliance.SubjectReport
	if code != 200 || json.Unmarshal(b, &ordered) != nil {
		t.Fatalf("%d %s", code, b)
	}
	i := slices.IndexFunc(ordered.Recipients, func(r compliance.Recipient) bool { return r.Recipient == "bka-de" })
	if i < 0 || !slices.Equal(ordered.Recipients[i].LegalBases, []string{"legal_obligation"}) ||
		!slices.Equal(ordered.Recipients[i].Agreements, []string{"legal order order-2026-113"}) {
		t.Fatalf("recipients of cust-9: %+v", ordered.Recipients)
	}
	code, b = c.get("/v1/audit/entries?recipient=bka-de&event=decided&decision=allow&limit=1")
	if code != 200 || json.Unmarshal(b, &page) != nil || len(page.Entries) != 1 ||
		page.Entries[0].AgreementID != "legal-order:order-2026-113" || page.Entries[0].AgreementVersion != 0 {
		t.Fatalf("the authority's entry: %d %s", code, b)
	}
	code, b = c.get("/v1/audit/entries/" + itoa(page.Entries[0].Sequence))
	var ordDet compliance.EntryDetail
	if code != 200 || json.Unmarshal(b, &ordDet) != nil {
		t.Fatalf("%d %s", code, b)
	}
	if r := ordDet.Explanation.Rules[3]; r.Status != compliance.RulePassed ||
		r.Detail != "no agreement needed: legal order order-2026-113 carries the transfer (authority bka-de, valid until 2026-12-31)" {
		t.Fatalf("rule 4: %+v", r)
	}
	if code, _, body := consoleGet(t, f.HTTP.URL, "/console/audit/"+itoa(ordDet.Entry.Sequence), c.token); code != 200 ||
		!strings.Contains(body, "legal order <code>order-2026-113</code>") {
		t.Fatalf("the console's entry page: %d\n%s", code, body)
	}

	// A refused transfer and its explanation.
	code, b = c.get("/v1/audit/entries?decision=deny&event=decided&recipient=rapido-br&limit=1")
	if code != 200 || json.Unmarshal(b, &page) != nil || len(page.Entries) != 1 {
		t.Fatalf("%d %s", code, b)
	}
	seq := page.Entries[0].Sequence
	code, b = c.get("/v1/audit/entries/" + itoa(seq))
	var det compliance.EntryDetail
	if code != 200 || json.Unmarshal(b, &det) != nil {
		t.Fatalf("%d %s", code, b)
	}
	if r := det.Explanation.Rules[5]; r.Status != compliance.RuleFailed || r.Reasons[0] != "no_transfer_mechanism" {
		t.Fatalf("rule 6: %+v", r)
	}
	if det.Explanation.Rules[0].Status != compliance.RulePassed {
		t.Fatalf("rule 1: %+v", det.Explanation.Rules[0])
	}
	if code, _ = c.get("/v1/audit/entries/999999"); code != http.StatusNotFound {
		t.Fatalf("missing entry: %d", code)
	}

	// Export: CSV with a header and one row per refused decision.
	_, hdr, b := c.do("GET", "/v1/audit/export?format=csv&decision=deny&event=decided", "", nil)
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || rows[0][0] != "sequence" || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: %v %q", err, b[:min(200, len(b))])
	}
	var denied int
	_ = f.Log.Scan(context.Background(), audit.Filter{Decision: "deny", Event: audit.EventDecided}, func(*audit.Entry) error { denied++; return nil })
	if len(rows)-1 != denied || denied == 0 {
		t.Fatalf("csv rows = %d, want %d", len(rows)-1, denied)
	}
	_, _, b = c.do("GET", "/v1/audit/export?format=jsonl&limit=5", "", nil)
	if n := bytes.Count(b, []byte("\n")); n != 5 {
		t.Fatalf("jsonl lines = %d, want 5", n)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestRegistryAndReports(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}

	code, b := c.get("/v1/registry/agreements")
	if code != 200 || !strings.Contains(string(b), compliance.WarnTIAOverdue) {
		t.Fatalf("agreements: %d (want a %s warning for the example's overdue TIA)", code, compliance.WarnTIAOverdue)
	}
	code, b = c.get("/v1/registry/agreements/dpa-swiftship-de/history")
	var h compliance.AgreementHistory
	if code != 200 || json.Unmarshal(b, &h) != nil || h.Current == nil || len(h.Versions) != 1 || h.Versions[0].AgreementVersion != 2 {
		t.Fatalf("history: %d %s", code, b)
	}
	if code, _ = c.get("/v1/registry/agreements/no-such-agreement/history"); code != http.StatusNotFound {
		t.Fatalf("unknown agreement: %d", code)
	}
	code, b = c.get("/v1/registry/versions")
	if code != 200 || !strings.Contains(string(b), f.Engine.Registry().Version()) {
		t.Fatalf("versions: %d %s", code, b)
	}

	code, b = c.get("/v1/reports/ropa")
	var rp compliance.ROPA
	if code != 200 || json.Unmarshal(b, &rp) != nil {
		t.Fatalf("ropa: %d %s", code, b)
	}
	var delivery *compliance.ProcessingRecord
	for i := range rp.Purposes {
		if rp.Purposes[i].Purpose == "delivery" {
			delivery = &rp.Purposes[i]
		}
	}
	if delivery == nil || delivery.LegalBasis != "contract" || delivery.Transfers == 0 || len(delivery.Recipients) == 0 ||
		len(delivery.ThirdCountries) == 0 || len(delivery.Retention) == 0 || len(rp.KeyRefs) == 0 {
		t.Fatalf("delivery record: %+v keys %v", delivery, rp.KeyRefs)
	}
	_, hdr, b := c.do("GET", "/v1/reports/ropa?format=csv", "", nil)
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) != len(rp.Purposes)+1 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") {
		t.Fatalf("ropa csv: %v %d rows", err, len(rows))
	}
	_, hdr, b = c.do("GET", "/v1/reports/ropa?format=html", "", nil)
	if !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !bytes.Contains(b, []byte("Purpose: delivery")) || bytes.Contains(b, []byte("<script")) {
		t.Fatalf("ropa html: %s", b[:min(300, len(b))])
	}
	code, b = c.get("/v1/reports/overview")
	var ov compliance.Overview
	if code != 200 || json.Unmarshal(b, &ov) != nil || ov.Allowed == 0 || ov.Refused == 0 || len(ov.TopReasons) == 0 {
		t.Fatalf("overview: %d %s", code, b)
	}
}

func TestWhatIf(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleOfficer)}

	// Ending the first agreement of the example in 2025 refuses what it
	// carried.
	files := proposal(t, f, "40-agreements.yaml", "valid_until: 2027-12-31", "valid_until: 2025-01-31")
	var mp bytes.Buffer
	w := multipart.NewWriter(&mp)
	for name, content := range files {
		fw, _ := w.CreateFormFile("registry", name)
		_, _ = fw.Write([]byte(content))
	}
	_ = w.WriteField("from", "2026-10-01")
	_ = w.Close()
	code, _, b := c.do("POST", "/v1/whatif", w.FormDataContentType(), &mp)
	var res compliance.WhatIfResult
	if code != 200 || json.Unmarshal(b, &res) != nil {
		t.Fatalf("%d %s", code, b)
	}
	if res.Evaluated == 0 || res.NowRefused == 0 || len(res.Flips) != res.NowRefused+res.NowAllowed+res.Uncertain {
		t.Fatalf("result: %+v", res)
	}
	for _, fl := range res.Flips {
		if fl.Uncertain {
			continue
		}
		if fl.Recorded != "allow" || fl.Proposed != "deny" || !strings.Contains(fl.Why, "expired") {
			t.Fatalf("flip: %+v", fl)
		}
	}
	if res.BaselineMismatch != 0 {
		t.Fatalf("the registry in force does not reproduce %d recorded decisions", res.BaselineMismatch)
	}
	// The same registry flips nothing.
	same := proposal(t, f, "40-agreements.yaml", "agreements:", "agreements:")
	code, _, b = c.do("POST", "/v1/whatif", "application/json", jsonBody(t, map[string]any{"files": same}))
	if code != 200 || json.Unmarshal(b, &res) != nil || len(res.Flips) != 0 || res.Unchanged != res.Evaluated {
		t.Fatalf("unchanged registry: %d %+v", code, res)
	}
	if res.SentChanged != 0 || len(res.SentChanges) != 0 {
		t.Fatalf("unchanged registry: %d sent changes %+v", res.SentChanged, res.SentChanges)
	}
	// Narrowing an agreement keeps its transfers allowed and lists what
	// they would no longer send.
	narrow := proposal(t, f, "40-agreements.yaml",
		"categories: [order.reference, identity.name, contact.address, contact.phone]\n    valid_from: 2024-01-01",
		"categories: [order.reference, identity.name, contact.address]\n    valid_from: 2024-01-01")
	code, _, b = c.do("POST", "/v1/whatif", "application/json", jsonBody(t, map[string]any{"files": narrow}))
	if code != 200 || json.Unmarshal(b, &res) != nil || res.SentChanged == 0 || len(res.SentChanges) != res.SentChanged {
		t.Fatalf("narrowed agreement: %d %s", code, b)
	}
	for _, sc := range res.SentChanges {
		if sc.Recipient != "swiftship-de" || !slices.Equal(sc.CategoriesNoLonger, []string{"contact.phone"}) ||
			len(sc.CategoriesNew) != 0 || !slices.Equal(sc.FieldsNowRemoved, []string{"phone"}) || len(sc.FieldsNowSent) != 0 ||
			sc.Uncertain || !strings.Contains(sc.Why, "no longer sends contact.phone") {
			t.Fatalf("sent change: %+v", sc)
		}
	}
	if res.Unchanged+res.SentChanged+res.ReasonsChanged+len(res.Flips) != res.Evaluated {
		t.Fatalf("narrowed agreement: counts do not add up: %+v", res)
	}
	// Every run is audited.
	var calls int
	_ = f.Log.Scan(context.Background(), audit.Filter{Event: compliance.EventAPICall}, func(e *audit.Entry) error {
		if e.Reasons[0] == "POST /v1/whatif" && e.SubjectHMAC != "" {
			calls++
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("audited what-if calls = %d, want 3", calls)
	}
}

// TestPageStableSequence: a page carries the log's stable sequence read
// before it; with one chain that is the last entry written, and the page
// holds every matching entry up to it.
func TestPageStableSequence(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
	want, err := f.Log.StableSequence(t.Context())
	if err != nil || want == 0 {
		t.Fatalf("StableSequence = %d, %v", want, err)
	}
	code, b := c.get("/v1/audit/entries?limit=1000")
	var p compliance.Page
	if code != http.StatusOK || json.Unmarshal(b, &p) != nil {
		t.Fatalf("%d %.200s", code, b)
	}
	if len(p.Entries) == 0 || p.NextAfter != 0 {
		t.Fatalf("%d entries, next_after %d: want every entry in one page", len(p.Entries), p.NextAfter)
	}
	if last := p.Entries[len(p.Entries)-1].Sequence; p.StableSequence != want || last != want {
		t.Errorf("stable_sequence %d, last entry %d; want %d", p.StableSequence, last, want)
	}
}

// TestGuardRouteNoStore: a route served through GuardRoute (the erasure
// notices' status, consents) answers Cache-Control: no-store as every API
// answer does, success or error, whatever its handler sets.
func TestGuardRouteNoStore(t *testing.T) {
	f := compliancetest.New(t)
	auth, err := f.Issuer.Authenticator(func() time.Time { return compliancetest.Now })
	if err != nil {
		t.Fatal(err)
	}
	opts := compliance.Options{Auth: auth, Audit: f.Log, SubjectKey: compliancetest.SubjectKey, Now: func() time.Time { return compliancetest.Now }}
	status := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			http.Error(w, "officer and justification are required", http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(`{"subject_hmac": "ab", "notices": []}`))
	}
	mux := http.NewServeMux()
	for _, r := range []string{"GET /v1/subjects/{subject}/erasure", "POST /v1/subjects/{subject}/erasure/{recipient}/justification"} {
		method, path, _ := strings.Cut(r, " ")
		mux.Handle(r, compliance.GuardRoute(opts, method, path, compliance.RoleOfficer, http.HandlerFunc(status)))
	}
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	officer := f.Token(t, compliance.RoleOfficer)
	tests := []struct {
		name, method, path string
		token              string
		wantStatus         int
	}{
		{"erasure status", "GET", "/v1/subjects/cust-4711/erasure", officer, http.StatusOK},
		{"handler's error", "POST", "/v1/subjects/cust-4711/erasure/swiftship-de/justification", officer, http.StatusBadRequest},
		{"no token", "GET", "/v1/subjects/cust-4711/erasure", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client{t: t, base: hs.URL, token: tt.token}
			code, hdr, _ := c.do(tt.method, tt.path, "application/json", nil)
			if code != tt.wantStatus || hdr.Get("Cache-Control") != "no-store" {
				t.Fatalf("%d Cache-Control %q, want %d no-store", code, hdr.Get("Cache-Control"), tt.wantStatus)
			}
		})
	}
}

// TestSubjectRecipientsMayHaveReceived: a recipient whose delivery failed
// after the payload went out with no answer is named among the subject's
// recipients (Art. 15(1)(c)), its failed deliveries that may have reached
// it counted apart from its deliveries; one whose delivery failed with an
// answer counts no such delivery.
func TestSubjectRecipientsMayHaveReceived(t *testing.T) {
	f := compliancetest.New(t)
	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)}
	for _, e := range []struct {
		id, recipient string
		reasons       []string
	}{
		{"mhr-1", "swiftship-de", []string{"delivery_failed: max_deliver_reached", audit.ReasonMayHaveReceived}},
		{"mhr-2", "fastfreight-us", []string{"delivery_failed: permanent"}},
	} {
		if _, err := f.Log.Append(t.Context(), &audit.Entry{Time: compliancetest.Now.Add(-time.Hour), Event: audit.EventDeliveryFailed,
			RequestID: e.id, Source: "order-service", Recipient: e.recipient, Purpose: "delivery", Decision: "allow",
			Reasons: e.reasons, SubjectID: "cust-mhr"}); err != nil {
			t.Fatal(err)
		}
	}
	code, b := c.get("/v1/subjects/cust-mhr/recipients")
	var rep compliance.SubjectReport
	if code != http.StatusOK || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("%d %s", code, b)
	}
	got := map[string]int{}
	for _, r := range rep.Recipients {
		got[r.Recipient] = r.MayHaveReceived
		if r.Deliveries != 0 {
			t.Errorf("%s: %d deliveries, want none", r.Recipient, r.Deliveries)
		}
	}
	if got["swiftship-de"] != 1 || got["fastfreight-us"] != 0 {
		t.Errorf("may have received %v, want swiftship-de 1, fastfreight-us 0", got)
	}
}
