package compliance_test

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

// TestSubjectNotInAddress: the console's subject searches are posted and
// redirect to addresses holding a token or the subject's HMAC, never the
// id typed.
func TestSubjectNotInAddress(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	viewer := f.Token(t, compliance.RoleViewer)
	const subject = "cust-881"

	code, hdr, _ := consolePost(t, f.HTTP.URL, "/console/subject", viewer, url.Values{"subject": {subject}})
	loc := hdr.Get("Location")
	// The whole id is looked for: a random token holds a short piece of it
	// now and then ("881" came up in one in CI), eight characters never.
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/subject?s=") || strings.Contains(loc, subject) {
		t.Fatalf("subject search: %d %q", code, loc)
	}
	code, _, body := consoleGet(t, f.HTTP.URL, loc, viewer)
	if code != http.StatusOK || !strings.Contains(body, "swiftship-de") {
		t.Fatalf("subject page by token: %d", code)
	}
	hmac := audit.SubjectHMAC(compliancetest.SubjectKey, subject)
	if !strings.Contains(body, "/console/audit?subject_hmac="+hmac) {
		t.Fatal("the subject page links the explorer by the clear id")
	}
	// A token is opaque: another search for the same subject differs, and
	// a tampered token is refused.
	_, hdr2, _ := consolePost(t, f.HTTP.URL, "/console/subject", viewer, url.Values{"subject": {subject}})
	if hdr2.Get("Location") == loc {
		t.Fatal("two tokens of one subject are equal")
	}
	bad := loc[:len(loc)-3] + "AAA"
	if code, _, body := consoleGet(t, f.HTTP.URL, bad, viewer); code != http.StatusBadRequest || !strings.Contains(body, "parameter s") {
		t.Fatalf("tampered token: %d", code)
	}

	code, hdr, _ = consolePost(t, f.HTTP.URL, "/console/audit", viewer, url.Values{"subject": {subject}, "decision": {"allow"}, "country": {""}})
	loc = hdr.Get("Location")
	if code != http.StatusSeeOther || strings.Contains(loc, subject) || !strings.Contains(loc, "subject_hmac="+hmac) || !strings.Contains(loc, "decision=allow") {
		t.Fatalf("audit search: %d %q", code, loc)
	}
	code, _, body = consoleGet(t, f.HTTP.URL, loc, viewer)
	if code != http.StatusOK || !strings.Contains(body, "swiftship-de") || !strings.Contains(body, `name="subject_hmac" value="`+hmac+`"`) {
		t.Fatalf("explorer by HMAC: %d", code)
	}
	for _, want := range []string{"subject_hmac=" + hmac + "&amp;format=csv"} {
		if !strings.Contains(body, want) {
			t.Fatalf("explorer page lacks %q", want)
		}
	}
	if code, _, _ := consolePost(t, f.HTTP.URL, "/console/subject", viewer, url.Values{"subject": {""}}); code != http.StatusBadRequest {
		t.Fatalf("empty subject: %d", code)
	}
}

// TestSubjectTokenIsTheSearchersOnly: a subject token opens for the account
// that searched only. Another account, whatever its role, is refused it
// with a message naming neither the subject nor the account, and the page
// shown to the searcher does not write the id back.
func TestSubjectTokenIsTheSearchersOnly(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	const subject = "alice@example.com"
	mint := func(sub string, role compliance.Role) string {
		t.Helper()
		tok, err := f.Issuer.Mint(sub, role, time.Hour, compliancetest.Now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	officer := mint("officer-ann", compliance.RoleOfficer)
	_, hdr, _ := consolePost(t, f.HTTP.URL, "/console/subject", officer, url.Values{"subject": {subject}})
	loc := hdr.Get("Location")
	if !strings.HasPrefix(loc, "/console/subject?s=") {
		t.Fatalf("subject search redirected to %q", loc)
	}
	code, _, body := consoleGet(t, f.HTTP.URL, loc, officer)
	if code != http.StatusOK || strings.Contains(body, subject) || !strings.Contains(body, `<input id="s-subject" name="subject" value=""`) {
		t.Fatalf("the searcher's page: %d, the id written back: %v", code, strings.Contains(body, subject))
	}
	tests := []struct {
		name  string
		token string
	}{
		{"viewer", mint("viewer-bob", compliance.RoleViewer)},
		{"another officer", mint("officer-cy", compliance.RoleOfficer)},
		{"admin", mint("admin-dee", compliance.RoleAdmin)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := consoleGet(t, f.HTTP.URL, loc, tt.token)
			if code != http.StatusBadRequest || !strings.Contains(body, "another account") {
				t.Fatalf("another account's token: %d", code)
			}
			for _, leak := range []string{subject, "alice", "officer-ann"} {
				if strings.Contains(body, leak) {
					t.Fatalf("the refusal names %q", leak)
				}
			}
		})
	}
}

// TestSubjectWithoutHMACKey: without the subject HMAC key the console
// selects a subject by token everywhere, the subject page's link to the
// audit explorer too, never by the id in the address.
func TestSubjectWithoutHMACKey(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	auth, err := f.Issuer.Authenticator(func() time.Time { return compliancetest.Now })
	if err != nil {
		t.Fatal(err)
	}
	srv, err := compliance.New(compliance.Options{Audit: f.Log, DB: f.DB, Registry: f.Engine, Auth: auth,
		Now: func() time.Time { return compliancetest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	const subject = "cust-881"
	viewer := f.Token(t, compliance.RoleViewer)
	_, hdr, _ := consolePost(t, hs.URL, "/console/subject", viewer, url.Values{"subject": {subject}})
	code, _, body := consoleGet(t, hs.URL, hdr.Get("Location"), viewer)
	if code != http.StatusOK || !strings.Contains(body, "swiftship-de") {
		t.Fatalf("subject page: %d", code)
	}
	if strings.Contains(body, subject) {
		t.Fatal("the subject page holds the id in clear")
	}
	m := regexp.MustCompile(`href="/console/audit\?(s=[^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("the subject page links the explorer by no token")
	}
	code, _, body = consoleGet(t, hs.URL, "/console/audit?"+html.UnescapeString(m[1]), viewer)
	if code != http.StatusOK || !strings.Contains(body, "swiftship-de") || strings.Contains(body, subject) {
		t.Fatalf("explorer by the subject page's token: %d", code)
	}
}
