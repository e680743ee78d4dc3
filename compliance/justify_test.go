package compliance_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
	"github.com/clearance-broker/clearance/erasure"
)

// TestJustificationRecordsCaller: a justification posted through the
// compliance API's guard is recorded as by the caller's account, as the
// same HMAC its compliance_api_call entry holds, whatever officer the body
// names; that name (an e-mail address) is in no audit entry.
func TestJustificationRecordsCaller(t *testing.T) {
	const name = "jane.doe@example.com"
	f := compliancetest.New(t)
	url, notifier := rightsServerNotifier(t, f)
	if _, err := f.Log.Append(t.Context(), &audit.Entry{Event: audit.EventDelivered, RequestID: "ord-1", Recipient: "swiftship-de",
		SubjectID: "cust-4711"}); err != nil {
		t.Fatal(err)
	}
	if _, err := notifier.Begin(t.Context(), "cust-4711", compliancetest.Now); err != nil {
		t.Fatal(err)
	}
	c := client{t: t, base: url, token: f.Token(t, compliance.RoleOfficer)}
	code, _, b := c.do("POST", "/v1/subjects/cust-4711/erasure/swiftship-de/justification", "application/json",
		strings.NewReader(`{"officer": "`+name+`", "justification": "recipient dissolved"}`))
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}

	var all []string
	var justified, calls []*audit.Entry
	if err := f.Log.Scan(t.Context(), audit.Filter{}, func(e *audit.Entry) error {
		j, _ := json.Marshal(e)
		all = append(all, string(j))
		c := *e
		switch e.Event {
		case erasure.EventErasureJustified:
			justified = append(justified, &c)
		case compliance.EventAPICall:
			calls = append(calls, &c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(all, "\n"), name) {
		t.Fatalf("an audit entry names the officer typed in:\n%s", strings.Join(all, "\n"))
	}
	account := audit.SubjectHMAC(compliancetest.SubjectKey, "account:tester-officer")
	if len(calls) != 1 || calls[0].SubjectHMAC != account {
		t.Fatalf("api call entries %+v, want one of account %s", calls, account)
	}
	if len(justified) != 1 || strings.Join(justified[0].Reasons, ",") != "account:"+account {
		t.Fatalf("justification entries %+v, want one naming account:%s (the API call's)", justified, account)
	}
	if n := notifier.AccountHMAC("tester-officer"); n != account {
		t.Fatalf("AccountHMAC = %s, want %s", n, account)
	}
}
