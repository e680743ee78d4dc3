package compliance_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

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
