package compliance_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func consoleGet(t *testing.T, base, path, token string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	if token != "" {
		req.AddCookie(&http.Cookie{Name: "clearance_session", Value: token})
	}
	resp, err := noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestConsolePages(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	officer := f.Token(t, compliance.RoleOfficer)
	tests := []struct {
		name, path string
		want       []string
	}{
		{"overview", "/console/", []string{"Transfers per day by outcome", "Transfers per day by destination country", "Top refusal reasons", "<svg", "no_transfer_mechanism"}},
		{"audit", "/console/audit?decision=deny&limit=2", []string{`<label for="f-subject">`, "export-csv", "no_transfer_mechanism",
			`href="/console/audit/export?decision=deny&amp;format=csv"`, `href="/console/audit?after=`}},
		{"audit bad filter", "/console/audit?country=xx", []string{"parameter country"}},
		{"entry", "/console/audit/3", []string{"Why: the decision rule by rule", "Transfer mechanism (Chapter V)"}},
		{"subject", "/console/subject?subject=cust-881", []string{"swiftship-de", "Recipients", "Legal bases", "dpa-swiftship-de v2"}},
		{"subject with a legal order", "/console/subject?subject=cust-9", []string{"bka-de", "legal_obligation", "legal order order-2026-113"}},
		{"agreements", "/console/agreements", []string{"tia_overdue", "dpa-swiftship-de"}},
		{"agreement", "/console/agreements/dpa-swiftship-de", []string{"Version history"}},
		{"ropa", "/console/ropa", []string{"Purpose: delivery", "Printable page"}},
		{"ropa print", "/console/ropa/print", []string{"Records of processing activities", "data-print"}},
		{"whatif", "/console/whatif", []string{`type="file"`, "What a what-if cannot know"}},
		{"static", "/console/static/app.css", []string{"--accent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := consoleGet(t, f.HTTP.URL, tt.path, officer)
			wantCode := http.StatusOK
			if strings.Contains(tt.name, "bad") {
				wantCode = http.StatusBadRequest
			}
			if code != wantCode {
				t.Fatalf("%d: %.300s", code, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			if strings.Contains(body, "cust-881") && tt.name != "subject" {
				t.Error("a subject id in clear on the page")
			}
			if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
				t.Error("the page refers to another origin (it must work offline)")
			}
		})
	}
}

func TestConsoleAuth(t *testing.T) {
	f := compliancetest.New(t)
	code, hdr, _ := consoleGet(t, f.HTTP.URL, "/console/audit?decision=deny", "")
	if code != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/console/signin?next=") {
		t.Fatalf("without session: %d %s", code, hdr.Get("Location"))
	}
	code, _, body := consoleGet(t, f.HTTP.URL, "/console/whatif", f.Token(t, compliance.RoleViewer))
	if code != http.StatusForbidden || !strings.Contains(body, "needs officer") {
		t.Fatalf("viewer on what-if: %d %.200s", code, body)
	}
	post := func(token, next string) *http.Response {
		resp, err := noRedirect().PostForm(f.HTTP.URL+"/console/signin", url.Values{"token": {token}, "next": {next}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("not-a-token", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token sign-in: %d", resp.StatusCode)
	}
	resp := post(f.Token(t, compliance.RoleViewer), "//evil.example/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("sign-in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "clearance_session" {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie: %+v", session)
	}
	// The console's cookie does not open the API: the API wants a bearer.
	req, _ := http.NewRequest("GET", f.HTTP.URL+"/v1/me", nil)
	req.AddCookie(session)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API with the console cookie: %d", r2.StatusCode)
	}
}

// TestConsoleOverviewLongWindow checks that the overview's charts stay
// bounded whatever the window: a window of a thousand years or of every
// date is drawn in runs of years, a window of months in weeks, and the
// figures are those of the same transfers over a short window.
func TestConsoleOverviewLongWindow(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	viewer := f.Token(t, compliance.RoleViewer)
	lede := func(body string) string {
		i := strings.Index(body, `<p class="lede">`)
		j := strings.Index(body[i:], "Registry in force")
		if i < 0 || j < 0 {
			t.Fatalf("no lede: %.300s", body)
		}
		_, figures, _ := strings.Cut(body[i:i+j], ":")
		return figures
	}
	_, _, short := consoleGet(t, f.HTTP.URL, "/console/", viewer)
	tests := []struct {
		name, query, unit string
	}{
		{"a thousand years", "from=1026-01-01&to=2027-01-01", "9 years"},
		{"every date", "from=0001-01-02&to=9999-12-31", "84 years"},
		{"two years", "from=2025-01-01&to=2027-01-01", "week"},
		{"a month", "from=2026-10-29&to=2026-11-29", "day"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := consoleGet(t, f.HTTP.URL, "/console/?"+tt.query, viewer)
			if code != http.StatusOK {
				t.Fatalf("%d: %.300s", code, body)
			}
			// Two charts, each with a table row per bucket.
			if n := strings.Count(body, `<tr><th scope="row">`); n == 0 || n > 2*compliance.MaxChartRows {
				t.Fatalf("%d table rows, want at most %d", n, 2*compliance.MaxChartRows)
			}
			if len(body) > 1<<20 {
				t.Fatalf("page of %d bytes", len(body))
			}
			for _, want := range []string{"Transfers per " + tt.unit + " by outcome", "Transfers per " + tt.unit + " by destination country"} {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			if got, want := lede(body), lede(short); got != want {
				t.Errorf("figures %q, want those of the last 30 days %q", got, want)
			}
		})
	}
}

// TestConsoleRefusesCrossOrigin: a form another site posts to the console
// (a sign-in that would set a session of its maker's choosing, a legal
// order) is refused, whatever the cookie; the console's own forms pass.
func TestConsoleRefusesCrossOrigin(t *testing.T) {
	f := compliancetest.New(t)
	officer := f.Token(t, compliance.RoleOfficer)
	post := func(t *testing.T, path string, form url.Values, site string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, f.HTTP.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", site)
		req.AddCookie(&http.Cookie{Name: "clearance_session", Value: officer})
		resp, err := noRedirect().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{"/console/signin", "/console/signout", "/console/legal-orders", "/console/whatif", "/console/subject", "/console/audit"} {
		resp := post(t, path, url.Values{"token": {officer}, "subject": {"cust-7"}}, "cross-site")
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Errorf("%s from another site: %d, cookies %v", path, resp.StatusCode, resp.Cookies())
		}
	}
	if resp := post(t, "/console/signin", url.Values{"token": {officer}}, "same-origin"); resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Errorf("sign-in from the console: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if resp := post(t, "/console/subject", url.Values{"subject": {"cust-7"}}, "same-origin"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("subject search from the console: %d", resp.StatusCode)
	}
}
