package compliance_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

func consolePost(t *testing.T, base, path, token string, form url.Values) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "clearance_session", Value: token})
	resp, err := noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestConsoleLegalOrders lists, creates (and refuses) legal orders from
// the console; viewers may not.
func TestConsoleLegalOrders(t *testing.T) {
	f := compliancetest.New(t)
	f.Server.UseRights(engineChanger(f), nil)
	officer, viewer := f.Token(t, compliance.RoleOfficer), f.Token(t, compliance.RoleViewer)
	code, _, body := consoleGet(t, f.HTTP.URL, "/console/legal-orders", officer)
	for _, want := range []string{"order-2026-113", `<select id="lo-authority"`, `value="bka-de"`, `value="identity.name"`, `href="/console/legal-orders"`} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Fatalf("page: %d, missing %q", code, want)
		}
	}
	if strings.Contains(body, `value="swiftship-de"`) {
		t.Fatal("a party that is not an authority is offered")
	}
	if code, _, _ := consoleGet(t, f.HTTP.URL, "/console/legal-orders", viewer); code != http.StatusForbidden {
		t.Fatalf("viewer page: %d", code)
	}
	form := url.Values{"authority": {"bka-de"}, "subjects": {"cust-41\ncust-42"}, "categories": {"identity.name", "contact.address"},
		"valid_until": {"2026-12-31"}, "id": {"order-console-1"}}
	if code, _, _ := consolePost(t, f.HTTP.URL, "/console/legal-orders", viewer, form); code != http.StatusForbidden {
		t.Fatalf("viewer create: %d", code)
	}
	code, hdr, body := consolePost(t, f.HTTP.URL, "/console/legal-orders", officer, form)
	if code != http.StatusSeeOther || hdr.Get("Location") != "/console/legal-orders?created=order-console-1" {
		t.Fatalf("create: %d %s %s", code, hdr.Get("Location"), body)
	}
	code, _, body = consoleGet(t, f.HTTP.URL, hdr.Get("Location"), officer)
	if code != http.StatusOK || !strings.Contains(body, "Legal order <strong>order-console-1</strong> recorded") {
		t.Fatalf("after create: %d", code)
	}
	if strings.Contains(body, "cust-41") {
		t.Fatal("the list shows subject ids")
	}
	bad := url.Values{"authority": {"swiftship-de"}, "subjects": {"cust-43"}, "categories": {"identity.name"}, "valid_until": {"2026-12-31"}}
	code, _, body = consolePost(t, f.HTTP.URL, "/console/legal-orders", officer, bad)
	if code != http.StatusBadRequest || !strings.Contains(body, "parameter authority") || !strings.Contains(body, `aria-invalid="true"`) ||
		!strings.Contains(body, "cust-43</textarea>") {
		t.Fatalf("bad create: %d", code)
	}
}

// statusOf answers a fixed notice list for one subject.
type statusOf struct {
	subject string
	notices []compliance.NoticeStatus
}

func (s statusOf) NoticeStatus(_ context.Context, subject string) ([]compliance.NoticeStatus, error) {
	if subject != s.subject {
		return nil, nil
	}
	return s.notices, nil
}

// TestConsoleSubjectRights shows officers the subject's consents, erasure
// and notice status per recipient; viewers see none of it.
func TestConsoleSubjectRights(t *testing.T) {
	f := compliancetest.New(t)
	ack := compliancetest.Now.Add(-time.Hour)
	f.Server.UseRights(nil, statusOf{subject: "cust-13", notices: []compliance.NoticeStatus{
		{Recipient: "swiftship-de", Status: "acknowledged", Attempts: 1, AcknowledgedAt: &ack},
		{Recipient: "promoreach-nl", Status: "escalated", Attempts: 7, LastError: "unavailable"},
	}})
	officer, viewer := f.Token(t, compliance.RoleOfficer), f.Token(t, compliance.RoleViewer)
	code, _, body := consoleGet(t, f.HTTP.URL, "/console/subject?subject=cust-13", officer)
	for _, want := range []string{`id="consents"`, "Erasure recorded for 2026-05-01", `id="notices"`, "swiftship-de", "acknowledged", "promoreach-nl", "escalated", "unavailable"} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Fatalf("officer subject page: %d, missing %q", code, want)
		}
	}
	code, _, body = consoleGet(t, f.HTTP.URL, "/console/subject?subject=cust-8", officer)
	if code != http.StatusOK || !strings.Contains(body, "marketing") || !strings.Contains(body, "No erasure recorded") ||
		!strings.Contains(body, "No erasure notice for this subject") {
		t.Fatalf("cust-8: %d", code)
	}
	code, _, body = consoleGet(t, f.HTTP.URL, "/console/subject?subject=cust-13", viewer)
	if code != http.StatusOK || strings.Contains(body, `id="consents"`) || strings.Contains(body, `id="notices"`) {
		t.Fatalf("viewer subject page: %d", code)
	}
}

// TestConsoleNavOffersOnlyPermittedPages: a viewer's navigation links to
// no page that would answer 403 (legal orders, what-if); an officer's does.
func TestConsoleNavOffersOnlyPermittedPages(t *testing.T) {
	f := compliancetest.New(t)
	officer, viewer := f.Token(t, compliance.RoleOfficer), f.Token(t, compliance.RoleViewer)
	for _, page := range []string{`href="/console/whatif"`, `href="/console/legal-orders"`} {
		if code, _, body := consoleGet(t, f.HTTP.URL, "/console/agreements", viewer); code != http.StatusOK || strings.Contains(body, page) {
			t.Errorf("viewer's page: %d, links %s", code, page)
		}
		if code, _, body := consoleGet(t, f.HTTP.URL, "/console/agreements", officer); code != http.StatusOK || !strings.Contains(body, page) {
			t.Errorf("officer's page: %d, does not link %s", code, page)
		}
	}
}
