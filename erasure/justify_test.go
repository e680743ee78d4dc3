package erasure_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/uptrace/bun"
)

// flakyAudit is an audit log whose Append of event fails the first fail
// times it is asked, before writing anything.
type flakyAudit struct {
	erasure.AuditLog
	event audit.Event

	mu   sync.Mutex
	fail int
}

var errAuditDown = errors.New("audit log unavailable")

func (f *flakyAudit) Append(ctx context.Context, e *audit.Entry) (int64, error) {
	f.mu.Lock()
	failing := e.Event == f.event && f.fail > 0
	if failing {
		f.fail--
	}
	f.mu.Unlock()
	if failing {
		return 0, errAuditDown
	}
	return f.AuditLog.Append(ctx, e)
}

// entries returns the entries of log of event.
func entries(t *testing.T, log *audit.Log, event audit.Event) []*audit.Entry {
	t.Helper()
	var out []*audit.Entry
	if err := log.Scan(t.Context(), audit.Filter{Event: event}, func(e *audit.Entry) error {
		c := *e
		out = append(out, &c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// pendingNotice audits a delivery of subject's data to recipient and
// begins the subject's erasure: one pending notice, not sent (the notifier
// is not started).
func pendingNotice(t *testing.T, n *erasure.Notifier, log *audit.Log, subject, recipient string) erasure.Notice {
	t.Helper()
	if _, err := log.Append(t.Context(), &audit.Entry{Event: audit.EventDelivered, RequestID: "ord-" + subject, Recipient: recipient,
		SubjectID: subject}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Begin(t.Context(), subject, time.Now()); err != nil {
		t.Fatal(err)
	}
	list, err := n.Status(t.Context(), subject)
	if err != nil || len(list) != 1 || list[0].Status != erasure.StatusPending {
		t.Fatalf("notices %+v (%v), want one pending", list, err)
	}
	return list[0]
}

type accountKey struct{}

// TestJustificationNamesCaller: a justification posted with an officer's
// name in its body is recorded as by the authenticated caller's account,
// as its HMAC, and the name reaches neither the audit log nor the notice.
func TestJustificationNamesCaller(t *testing.T) {
	const name = "jane.doe@example.com"
	n, log, _ := newNotifier(t, brokertest.SQLiteDSN(t), func(o *erasure.Options) {
		o.Caller = func(ctx context.Context) (string, bool) {
			a, ok := ctx.Value(accountKey{}).(string)
			return a, ok
		}
	})
	pendingNotice(t, n, log, "cust-5", "swiftship-de")
	mux := http.NewServeMux()
	n.Mount(mux, nil)
	// The caller's account as the compliance API's guard authenticates it.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Test-Account"); a != "" {
			r = r.WithContext(context.WithValue(r.Context(), accountKey{}, a))
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	post := func(account, body string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/subjects/cust-5/erasure/swiftship-de/justification", strings.NewReader(body))
		if account != "" {
			req.Header.Set("Test-Account", account)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	body := `{"officer": "` + name + `", "justification": "recipient dissolved"}`
	tests := []struct {
		name    string
		account string
		body    string
		want    int
	}{
		{"no authenticated caller", "", body, http.StatusUnauthorized},
		{"no justification", "acct-7", `{"officer": "` + name + `"}`, http.StatusBadRequest},
		{"justified", "acct-7", body, http.StatusOK},
		{"without officer, again", "acct-7", `{"justification": "recipient dissolved"}`, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(tt.account, tt.body); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
		})
	}

	var all []string
	if err := log.Scan(t.Context(), audit.Filter{}, func(e *audit.Entry) error {
		b, _ := json.Marshal(e)
		all = append(all, string(b))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(all, "\n"), name) {
		t.Fatalf("the audit log names the officer typed in:\n%s", strings.Join(all, "\n"))
	}
	account := audit.SubjectHMAC(brokertest.SubjectKey, "account:acct-7") // as compliance_api_call records it
	got := entries(t, log, erasure.EventErasureJustified)
	if len(got) != 1 || strings.Join(got[0].Reasons, ",") != "account:"+account || got[0].SubjectHMAC != audit.SubjectHMAC(brokertest.SubjectKey, "cust-5") {
		t.Fatalf("justification entries %+v, want one naming account:%s", got, account)
	}
	list, err := n.Status(t.Context(), "cust-5")
	if err != nil || len(list) != 1 || list[0].Status != erasure.StatusJustified || list[0].Officer != account {
		t.Fatalf("notice %+v (%v), want justified by %s", list, err, account)
	}
}

// TestJustifyAuditFails: a justification whose audit entry cannot be
// appended closes the notice with its entry pending; the same
// justification again appends it, once, and later ones append nothing.
func TestJustifyAuditFails(t *testing.T) {
	onEachStore(t, func(t *testing.T, dsn string) {
		var flaky *flakyAudit
		n, log, _ := newNotifier(t, dsn, func(o *erasure.Options) {
			flaky = &flakyAudit{AuditLog: o.Audit, event: erasure.EventErasureJustified, fail: 1}
			o.Audit = flaky
		})
		pendingNotice(t, n, log, "cust-5", "swiftship-de")
		tests := []struct {
			name    string
			text    string
			wantErr error // errAuditDown, erasure.ErrNoNotice or nil
			entries int
		}{
			{"audit log down", "recipient dissolved", errAuditDown, 0},
			{"retried", "recipient dissolved", nil, 1},
			{"retried after success", "recipient dissolved", nil, 1},
			{"another text", "something else", erasure.ErrNoNotice, 1},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := n.Justify(t.Context(), "cust-5", "swiftship-de", "acct-7", tt.text)
				if (tt.wantErr == nil) != (err == nil) || !errors.Is(err, tt.wantErr) {
					t.Fatalf("Justify = %v, want %v", err, tt.wantErr)
				}
				if got := entries(t, log, erasure.EventErasureJustified); len(got) != tt.entries {
					t.Fatalf("%d justification entries, want %d", len(got), tt.entries)
				}
				list, err := n.Status(t.Context(), "cust-5")
				if err != nil || len(list) != 1 || list[0].Status != erasure.StatusJustified {
					t.Fatalf("notice %+v (%v), want justified", list, err)
				}
			})
		}
	})
}

// TestJustifyWhileAnotherRecords: the same justification sent again while
// another call holds its pending entry (a form sent twice, or a call that
// stopped within its lease) is answered as done, as an acknowledgement
// heard twice is: the entry is that call's to append, or the next round's.
func TestJustifyWhileAnotherRecords(t *testing.T) {
	var db *bun.DB
	n, log, _ := newNotifier(t, brokertest.SQLiteDSN(t), func(o *erasure.Options) {
		o.Audit = &flakyAudit{AuditLog: o.Audit, event: erasure.EventErasureJustified, fail: 1}
		db = o.DB
	})
	pendingNotice(t, n, log, "cust-5", "swiftship-de")
	if err := n.Justify(t.Context(), "cust-5", "swiftship-de", "acct-7", "recipient dissolved"); !errors.Is(err, errAuditDown) {
		t.Fatalf("first Justify = %v, want the audit log's failure", err)
	}
	if _, err := db.NewRaw("UPDATE erasure_pending_entries SET lease_owner = 'other', lease_until = ?", time.Now().Add(time.Hour).UTC()).
		Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := n.Justify(t.Context(), "cust-5", "swiftship-de", "acct-7", "recipient dissolved"); err != nil {
		t.Fatalf("Justify while another call records it = %v, want done", err)
	}
}
