package policy_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker/brokertest"
)

// TestWithdrawalWhateverTheArrivalOrder: a withdrawal withdraws, as of its
// time, every matching consent granted by then, whether the consent
// arrived before it or after it: a grant sent late, one dated a few
// minutes ahead, one sent again. The withdrawal that finds no consent in
// force is recorded, not refused, and every instance (one that took the
// events as they came, one that replays them at its start, and one that
// carries them over a new apply) denies the transfer.
func TestWithdrawalWhateverTheArrivalOrder(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	a, b, srv, dir := e.startPair(t)
	api := a.rightsAPI(t)
	now := time.Now().UTC().Truncate(time.Second)
	t1, t2 := now.Add(-2*time.Hour).Format(time.RFC3339), now.Add(-time.Hour).Format(time.RFC3339)
	ahead := now.Add(3 * time.Minute).Format(time.RFC3339)
	grant := func(subject, at string) string {
		return `{"action":"grant","subject":"` + subject + `","purpose":"marketing","recipients":["promoreach-nl"],"at":"` + at + `"}`
	}
	withdraw := func(subject, at string) string {
		if at == "" {
			return `{"action":"withdraw","subject":"` + subject + `","purpose":"marketing"}`
		}
		return `{"action":"withdraw","subject":"` + subject + `","purpose":"marketing","at":"` + at + `"}`
	}
	type message struct{ key, body string }
	tests := []struct {
		name     string
		subject  string
		give     []message
		unforced int // the message (from 1) that finds no consent in force
	}{
		{"withdrawal, then a grant dated before it", "cust-51",
			[]message{{"51-w", withdraw("cust-51", t2)}, {"51-g", grant("cust-51", t1)}}, 1},
		{"grant dated ahead, then a withdrawal at receipt", "cust-52",
			[]message{{"52-g", grant("cust-52", ahead)}, {"52-w", withdraw("cust-52", "")}}, 0},
		{"grant, withdrawal, the same grant again", "cust-53",
			[]message{{"53-g", grant("cust-53", t1)}, {"53-w", withdraw("cust-53", t2)}, {"53-g-again", grant("cust-53", t1)}}, 0},
	}
	// Decided after every message's time, the grant dated ahead included.
	decideAt := now.Add(10 * time.Minute)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, m := range tt.give {
				code, rc := api.post(t, "/v1/consents", m.key, m.body)
				if code != http.StatusOK || rc.Status != "recorded" || rc.Event == 0 {
					t.Fatalf("message %d: %d %+v", i+1, code, rc)
				}
				unforced := slices.ContainsFunc(rc.Reasons, func(r string) bool { return strings.HasPrefix(r, "no_consent_in_force: ") })
				if unforced != (i+1 == tt.unforced) {
					t.Errorf("message %d: reasons %q", i+1, rc.Reasons)
				}
			}
			b.waitVersion(t, a.engine.Registry().Version())
			for name, n := range map[string]*node{"writer": a, "other": b} {
				if d := n.engine.Decide(consentFor(t, tt.subject), decideAt); d.Allowed() || !slices.Contains(d.Reasons, agreements.ReasonConsentWithdrawn) {
					t.Errorf("%s instance: %s %v, want consent_withdrawn", name, d.Decision, d.Reasons)
				}
			}
		})
	}
	replayed := e.start(t, brokertest.Connect(t, srv), load(t, dir))
	applied := applyNewBase(t, a, dir)
	b.waitVersion(t, applied.Version)
	for _, tt := range tests {
		if d := replayed.engine.Decide(consentFor(t, tt.subject), decideAt); d.Allowed() {
			t.Errorf("%s: allowed on an instance that replayed the events", tt.subject)
		}
		if d := b.engine.Decide(consentFor(t, tt.subject), decideAt); d.Allowed() {
			t.Errorf("%s: allowed after a new apply carried the changes", tt.subject)
		}
	}
}

// TestWithdrawalAtReceiptWithdrawsAtOnce: a withdrawal sent without a time
// withdraws the consent in force at once, and a grant of the subject dated
// a few minutes ahead as of that grant: the consent in force is not left
// in force until the grant dated ahead.
func TestWithdrawalAtReceiptWithdrawsAtOnce(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	dir := registryDir(t)
	n := e.startApplied(t, brokertest.Connect(t, brokertest.StartNATS(t)), dir)
	api := n.rightsAPI(t)
	now := time.Now().UTC().Truncate(time.Second)
	for _, m := range []struct{ key, body string }{
		{"54-g-old", `{"action":"grant","subject":"cust-54","purpose":"marketing","at":"` + now.Add(-time.Hour).Format(time.RFC3339) + `"}`},
		{"54-g-ahead", `{"action":"grant","subject":"cust-54","purpose":"marketing","at":"` + now.Add(3*time.Minute).Format(time.RFC3339) + `"}`},
		{"54-w", `{"action":"withdraw","subject":"cust-54","purpose":"marketing"}`},
	} {
		if code, rc := api.post(t, "/v1/consents", m.key, m.body); code != http.StatusOK || rc.Status != "recorded" || len(rc.Reasons) != 0 {
			t.Fatalf("%s: %d %+v", m.key, code, rc)
		}
	}
	for _, at := range []time.Time{now.Add(time.Minute), now.Add(10 * time.Minute)} {
		if d := n.engine.Decide(consentFor(t, "cust-54"), at); d.Allowed() {
			t.Errorf("decided at %s: allowed after the withdrawal", at.Sub(now))
		}
	}
}
