package policy_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/policy"
)

func TestParseConsent(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		give string
		want agreements.Change
		err  string
	}{
		{"grant", `{"action":"grant","subject":"cust-7","purpose":"marketing","recipients":["promoreach-nl"],"at":"2026-11-27T09:00:00Z"}`,
			agreements.Change{Consents: []agreements.Consent{{Subject: "cust-7", Purpose: "marketing", Recipients: []string{"promoreach-nl"}, GrantedAt: at}}}, ""},
		{"withdraw now", `{"action":"withdraw","subject":"cust-7","purpose":"marketing"}`,
			agreements.Change{Withdrawals: []agreements.Withdrawal{{Subject: "cust-7", Purpose: "marketing", At: now}}}, ""},
		{"no action", `{"subject":"cust-7","purpose":"marketing"}`, agreements.Change{}, "invalid_request: action: required field is missing"},
		{"unknown field", `{"action":"grant","subject":"cust-7","purpose":"marketing","colour":"red"}`, agreements.Change{}, "invalid_request: colour: unknown field"},
		{"unknown field named with an e-mail address", `{"action":"grant","subject":"cust-7","purpose":"marketing","ada@example.com":"red"}`, agreements.Change{},
			"invalid_request: " + agreements.WithheldName + ": unknown field"},
		{"withdrawal with recipients", `{"action":"withdraw","subject":"cust-7","purpose":"marketing","recipients":["x"]}`, agreements.Change{}, "invalid_request: action: a withdrawal takes only subject, purpose and at"},
		{"no subject", `{"action":"grant","purpose":"marketing"}`, agreements.Change{}, "invalid_request: subject: required field is missing"},
		{"not json", `nope`, agreements.Change{}, "invalid_request: body: not a JSON object"},
		{"wrong type", `{"action":"grant","subject":7,"purpose":"marketing"}`, agreements.Change{}, "invalid_request: subject: wrong type"},
		{"grant within the clock skew", `{"action":"grant","subject":"cust-7","purpose":"marketing","at":"2026-11-28T10:04:59Z"}`,
			agreements.Change{Consents: []agreements.Consent{{Subject: "cust-7", Purpose: "marketing", GrantedAt: now.Add(4*time.Minute + 59*time.Second)}}}, ""},
		{"grant in the future", `{"action":"grant","subject":"cust-7","purpose":"marketing","at":"2026-11-28T10:05:01Z"}`, agreements.Change{},
			"invalid_request: at: more than 5 minutes in the future; give the time it was given, or leave at out for the time of receipt"},
		{"withdrawal in the future", `{"action":"withdraw","subject":"cust-7","purpose":"marketing","at":"2027-01-01T00:00:00Z"}`, agreements.Change{},
			"invalid_request: at: more than 5 minutes in the future; give the time it was given, or leave at out for the time of receipt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := policy.ParseConsent([]byte(tt.give), now)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errors.Is(err, policy.ErrInvalidChange) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equalChange(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseErasure(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		give    string
		subject string
		want    string // erased subject
		err     string
	}{
		{"nats body", `{"subject":"cust-13"}`, "", "cust-13", ""},
		{"path, empty body", ``, "cust-13", "cust-13", ""},
		{"path and body differ", `{"subject":"cust-14"}`, "cust-13", "", "invalid_request: subject: does not match the path"},
		{"no subject", `{}`, "", "", "invalid_request: subject: required field is missing"},
		{"at in the future", `{"at":"2026-11-28T10:06:00Z"}`, "cust-13", "",
			"invalid_request: at: more than 5 minutes in the future; give the time it was given, or leave at out for the time of receipt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := policy.ParseErasure([]byte(tt.give), tt.subject, now)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errors.Is(err, policy.ErrInvalidChange) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || len(got.Erasures) != 1 || got.Erasures[0].Subject != tt.want || !got.Erasures[0].At.Equal(now) {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

// TestRightsHTTPChangesNothingTwice records over HTTP what the registry in
// force already holds: an erasure of a subject erased at run time is
// answered as recorded without a second event; one that only the registry
// files hold is recorded (an apply of files without it must not let the
// subject's data flow); a withdrawal of no consent in force is recorded
// all the same, with a reason that says so (it withdraws a consent granted
// before it that arrives later).
func TestRightsHTTPChangesNothingTwice(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	dir := registryDir(t)
	n := e.startApplied(t, nc, dir)
	post := n.rightsAPI(t).send
	count := func(t *testing.T, ev audit.Event) int { t.Helper(); return len(events(t, e.audit, ev)) }
	erasures, consents := count(t, audit.EventErasureRecorded), count(t, audit.EventConsentRecorded)

	t.Run("erasure, then the same again", func(t *testing.T) {
		code, first, _ := post(t, "/v1/subjects/cust-881/erasure", "er-1", ``)
		if code != http.StatusOK || first.Status != policy.StatusRecorded || first.Event == 0 {
			t.Fatalf("first erasure: %d %+v", code, first)
		}
		version := n.engine.Registry().Version()
		code, again, _ := post(t, "/v1/subjects/cust-881/erasure", "er-2", `{"at":"2026-11-30T00:00:00Z"}`)
		if code != http.StatusOK || again.Status != policy.StatusRecorded || again.Event != 0 ||
			len(again.Reasons) != 1 || again.Reasons[0] != policy.ReasonAlreadyErased || again.RegistryVersion != version {
			t.Fatalf("second erasure: %d %+v", code, again)
		}
		if got := count(t, audit.EventErasureRecorded); got != erasures+1 {
			t.Errorf("%d erasure entries, want %d", got, erasures+1)
		}
		if v := n.engine.Registry().Version(); v != version {
			t.Errorf("registry version changed to %s by a repeated erasure", v)
		}
	})
	t.Run("erasure of a subject only the registry files erase", func(t *testing.T) {
		code, rc, _ := post(t, "/v1/subjects/cust-13/erasure", "er-3", ``)
		if code != http.StatusOK || rc.Status != policy.StatusRecorded || rc.Event == 0 || len(rc.Reasons) != 0 {
			t.Fatalf("%d %+v", code, rc)
		}
		code, rc, _ = post(t, "/v1/subjects/cust-13/erasure", "er-3b", ``)
		if code != http.StatusOK || rc.Event != 0 || !slices.Equal(rc.Reasons, []string{policy.ReasonAlreadyErased}) {
			t.Fatalf("once erased at run time: %d %+v", code, rc)
		}
	})
	t.Run("withdrawal of no consent", func(t *testing.T) {
		code, rc, body := post(t, "/v1/consents", "wd-1", `{"action":"withdraw","subject":"cust-99","purpose":"marketing"}`)
		if code != http.StatusOK || rc.Status != policy.StatusRecorded || rc.Event == 0 || !slices.Equal(rc.Reasons, []string{policy.ReasonNoConsentInForce}) {
			t.Fatalf("%d %+v", code, rc)
		}
		if strings.Contains(body, "cust-99") {
			t.Errorf("the answer names the subject: %s", body)
		}
	})
	t.Run("an idempotency key that is not UTF-8", func(t *testing.T) {
		// Recorded under an id of its own: PostgreSQL would refuse the key
		// as text, and every retry would fail unaudited.
		code, rc, _ := post(t, "/v1/consents", "key-\xff\xfe", `{"action":"grant"}`)
		if code != http.StatusBadRequest || !strings.HasPrefix(rc.RequestID, "http-") {
			t.Fatalf("%d %+v", code, rc)
		}
		es, err := e.audit.Query(t.Context(), audit.Filter{RequestID: policy.RejectionID(rc.RequestID)})
		if err != nil || len(es) != 1 || es[0].Event != audit.EventRejected {
			t.Fatalf("audit %+v %v", es, err)
		}
	})
	t.Run("withdrawal of a consent to an unknown purpose", func(t *testing.T) {
		code, _, _ := post(t, "/v1/consents", "wd-2", `{"action":"withdraw","subject":"cust-7","purpose":"ada@example.com"}`)
		if code != http.StatusBadRequest {
			t.Fatalf("answered %d", code)
		}
		es, err := e.audit.Query(t.Context(), audit.Filter{RequestID: policy.RejectionID("wd-2")})
		if err != nil || len(es) != 1 || es[0].Purpose != "" {
			t.Fatalf("audit %+v %v", es, err)
		}
	})
	t.Run("withdrawal, then the same again", func(t *testing.T) {
		body := `{"action":"withdraw","subject":"cust-7","purpose":"marketing","at":"2026-11-20T00:00:00Z"}`
		if code, rc, _ := post(t, "/v1/consents", "wd-3", body); code != http.StatusOK || rc.Status != policy.StatusRecorded {
			t.Fatalf("withdrawal: %d %+v", code, rc)
		}
		if code, rc, _ := post(t, "/v1/consents", "wd-4", body); code != http.StatusOK || rc.Status != policy.StatusRecorded ||
			!slices.Equal(rc.Reasons, []string{policy.ReasonNoConsentInForce}) {
			t.Fatalf("second withdrawal: %d %+v", code, rc)
		}
	})
	t.Run("nothing else recorded", func(t *testing.T) {
		if got := count(t, audit.EventConsentRecorded); got != consents+3 {
			t.Errorf("%d consent entries, want %d", got, consents+3)
		}
	})
	t.Run("erasure dated in the future", func(t *testing.T) {
		at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		code, rc, _ := post(t, "/v1/subjects/cust-882/erasure", "er-4", `{"at":"`+at+`"}`)
		if code != http.StatusBadRequest || len(rc.Reasons) != 1 || !strings.HasPrefix(rc.Reasons[0], "invalid_request: at: more than 5 minutes in the future") {
			t.Fatalf("%d %+v", code, rc)
		}
	})
	// Record is also the NATS intake's path: it changes nothing twice either.
	t.Run("by Record, as over NATS", func(t *testing.T) {
		rc, retry := n.live.RecordErasure(t.Context(), "cust-881", nil, "er-nats-1", "nats")
		if retry || rc.Status != policy.StatusRecorded || rc.Event != 0 || len(rc.Reasons) != 1 || rc.Reasons[0] != policy.ReasonAlreadyErased {
			t.Fatalf("repeated erasure: %+v retry %v", rc, retry)
		}
		rc, retry = n.live.Record(t.Context(), policy.RightsConsents, []byte(`{"action":"withdraw","subject":"cust-99","purpose":"marketing"}`), "wd-nats-1", "nats")
		if retry || rc.Status != policy.StatusRecorded || !slices.Equal(rc.Reasons, []string{policy.ReasonNoConsentInForce}) {
			t.Fatalf("withdrawal of no consent: %+v retry %v", rc, retry)
		}
		if got := count(t, audit.EventErasureRecorded); got != erasures+2 {
			t.Errorf("%d erasure entries, want %d", got, erasures+2)
		}
		if got := count(t, audit.EventConsentRecorded); got != consents+4 {
			t.Errorf("%d consent entries, want %d", got, consents+4)
		}
	})
}

func FuzzParseConsent(f *testing.F) {
	f.Add([]byte(`{"action":"grant","subject":"cust-7","purpose":"marketing","recipients":["promoreach-nl"]}`))
	f.Add([]byte(`{"action":"withdraw","subject":"cust-7","purpose":"marketing","at":"2026-11-27T09:00:00Z"}`))
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		ch, err := policy.ParseConsent(data, now)
		if err != nil {
			if !errors.Is(err, policy.ErrInvalidChange) {
				t.Fatalf("error of another class: %v", err)
			}
			return
		}
		if len(ch.Consents)+len(ch.Withdrawals) != 1 {
			t.Fatalf("change of %d entries", len(ch.Consents)+len(ch.Withdrawals))
		}
	})
}

func equalChange(a, b agreements.Change) bool {
	if len(a.Consents) != len(b.Consents) || len(a.Withdrawals) != len(b.Withdrawals) {
		return false
	}
	for i := range a.Consents {
		x, y := a.Consents[i], b.Consents[i]
		if x.Subject != y.Subject || x.Purpose != y.Purpose || !x.GrantedAt.Equal(y.GrantedAt) || len(x.Recipients) != len(y.Recipients) {
			return false
		}
	}
	for i := range a.Withdrawals {
		if a.Withdrawals[i] != b.Withdrawals[i] {
			return false
		}
	}
	return true
}

// TestErasureRecordedOnceAcrossInstances erases one subject on two
// instances at once: the check that the erasure is new is made with the
// store's head locked, so exactly one is recorded and the other answers
// ErrAlreadyErased.
func TestErasureRecordedOnceAcrossInstances(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	dir := registryDir(t)
	a, b := e.start(t, nc, load(t, dir)), e.start(t, nc, load(t, dir))
	if _, _, err := a.live.Apply(t.Context(), load(t, dir)); err != nil {
		t.Fatal(err)
	}
	ch := agreements.Change{Erasures: []agreements.Erasure{{Subject: "cust-881", At: time.Now().UTC()}}}
	errs := make(chan error, 2)
	for _, n := range []*node{a, b} {
		go func() { _, err := n.live.Change(t.Context(), ch); errs <- err }()
	}
	var recorded, already int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			recorded++
		case errors.Is(err, policy.ErrAlreadyErased):
			already++
		default:
			t.Fatalf("Change: %v", err)
		}
	}
	if recorded != 1 || already != 1 {
		t.Errorf("%d recorded, %d already erased; want 1 and 1", recorded, already)
	}
	if got := len(events(t, e.audit, audit.EventErasureRecorded)); got != 1 {
		t.Errorf("%d erasure entries, want 1", got)
	}
	// A withdrawal dated the instant of the grant withdraws it: the
	// consent is in force from that instant. One dated before it does not.
	granted := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	if _, err := a.live.Change(t.Context(), agreements.Change{Consents: []agreements.Consent{{Subject: "cust-99", Purpose: "marketing", GrantedAt: granted}}}); err != nil {
		t.Fatal(err)
	}
	early := agreements.Change{Withdrawals: []agreements.Withdrawal{{Subject: "cust-99", Purpose: "marketing", At: granted.Add(-time.Second)}}}
	if _, err := b.live.Change(t.Context(), early); err != nil {
		t.Errorf("withdrawal before the grant: %v", err)
	}
	if consents, _ := b.engine.Registry().Subject("cust-99"); len(consents) != 1 || consents[0].WithdrawnAt != nil {
		t.Errorf("consents after a withdrawal before the grant: %+v", consents)
	}
	wd := agreements.Change{Withdrawals: []agreements.Withdrawal{{Subject: "cust-99", Purpose: "marketing", At: granted}}}
	if _, err := b.live.Change(t.Context(), wd); err != nil {
		t.Errorf("withdrawal at the instant of the grant: %v", err)
	}
	consents, _ := b.engine.Registry().Subject("cust-99")
	if len(consents) != 1 || consents[0].WithdrawnAt == nil || !consents[0].WithdrawnAt.Equal(granted) {
		t.Errorf("consents after the withdrawal: %+v", consents)
	}
}

// TestErasureBeforeOneOnFile: an erasure dated before the one the registry
// holds of the subject (here one sent a few minutes ahead) is recorded and
// in force from its own time; it is no repeat of the later one, which left
// the subject's data flowing until then. One dated after it is a repeat.
func TestErasureBeforeOneOnFile(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	n := e.start(t, brokertest.Connect(t, brokertest.StartNATS(t)), load(t, registryDir(t)))
	if _, _, err := n.live.Apply(t.Context(), load(t, registryDir(t))); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	erase := func(at time.Time) error {
		_, err := n.live.Change(t.Context(), agreements.Change{Erasures: []agreements.Erasure{{Subject: "cust-7", At: at}}})
		return err
	}
	if err := erase(now.Add(4 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	req := marketing(t)
	if d := n.engine.Decide(req, now.Add(time.Minute)); !d.Allowed() {
		t.Fatalf("before the erasure on file: %s %v", d.Decision, d.Reasons)
	}
	if err := erase(now); err != nil {
		t.Fatalf("an erasure before the one on file: %v", err)
	}
	if d := n.engine.Decide(req, now.Add(time.Minute)); d.Allowed() || !slices.Contains(d.Reasons, agreements.ReasonSubjectErased) {
		t.Fatalf("after the erasure dated now: %s %v", d.Decision, d.Reasons)
	}
	if err := erase(now.Add(2 * time.Minute)); !errors.Is(err, policy.ErrAlreadyErased) {
		t.Fatalf("an erasure after one in force: %v, want ErrAlreadyErased", err)
	}
}

// TestErasureFollowUpRetried: an erasure is stored, then its follow-up
// (OnErasure: the subject's keys destroyed, its recipients told) fails and
// the caller is told to try again. The retry, under the same request id,
// finds the erasure recorded already; the follow-up must run again rather
// than be skipped, a failure of it must be answered as one, not as an
// erasure done, and once it succeeds the retry is answered with the first
// attempt's receipt. A retry under another id finds the erasure in force
// and runs it again too.
func TestErasureFollowUpRetried(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	var calls, fail atomic.Int32
	fail.Store(2)
	e.onErasure = func(_ context.Context, subject string, _ time.Time) error {
		calls.Add(1)
		if subject != "cust-881" {
			t.Errorf("OnErasure(%q)", subject)
		}
		if fail.Add(-1) >= 0 {
			return errors.New("key store unavailable")
		}
		return nil
	}
	n := e.start(t, brokertest.Connect(t, brokertest.StartNATS(t)), load(t, registryDir(t)))
	if _, _, err := n.live.Apply(t.Context(), load(t, registryDir(t))); err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		id      string
		retry   bool
		reasons []string
	}{{"er-1", true, nil}, {"er-1", true, nil}, {"er-1", false, []string{}}, {"er-2", false, []string{policy.ReasonAlreadyErased}}} {
		rc, retry := n.live.RecordErasure(t.Context(), "cust-881", nil, want.id, "http")
		if retry != want.retry || (!retry && (rc.Status != policy.StatusRecorded || !slices.Equal(rc.Reasons, want.reasons))) {
			t.Fatalf("attempt %d: %+v, retry %v; want retry %v", i+1, rc, retry, want.retry)
		}
		if want.id == "er-1" && !retry && rc.Event != 2 {
			t.Fatalf("attempt %d: event %d, want the first attempt's, 2", i+1, rc.Event)
		}
		if got := calls.Load(); got != int32(i+1) {
			t.Fatalf("attempt %d: OnErasure called %d times, want %d", i+1, got, i+1)
		}
	}
	if got := len(events(t, e.audit, audit.EventErasureRecorded)); got != 1 {
		t.Errorf("%d erasure entries, want 1", got)
	}
}

// TestRegistryEventAuditedLate: the audit log fails for longer than the
// writer retries, after an erasure was stored and put in force. The retry
// finds the erasure in force and writes nothing, so the event stays
// pending, and an instance's next look writes its entry, once: an event in
// force never goes without its record.
func TestRegistryEventAuditedLate(t *testing.T) {
	defer policy.SetPendingGrace(0)()
	e := newEnv(t, brokertest.SQLiteDSN(t))
	var down atomic.Bool
	e.auditDown = &down
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	a := e.start(t, nc, load(t, registryDir(t)))
	if _, _, err := a.live.Apply(t.Context(), load(t, registryDir(t))); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	erase := agreements.Change{Erasures: []agreements.Erasure{{Subject: "cust-881", At: time.Now().UTC()}}}
	if _, err := a.live.Change(t.Context(), erase); err == nil || errors.Is(err, policy.ErrAlreadyErased) {
		t.Fatalf("Change with the audit log down: %v", err)
	}
	if _, err := a.live.Change(t.Context(), erase); !errors.Is(err, policy.ErrAlreadyErased) {
		t.Fatalf("the retry: %v, want ErrAlreadyErased", err)
	}
	if got := len(events(t, e.audit, audit.EventErasureRecorded)); got != 0 {
		t.Fatalf("%d erasure entries while the audit log was down", got)
	}
	down.Store(false)
	for range 2 { // an instance starting looks at once; a second finds nothing left
		e.start(t, nc, load(t, registryDir(t)))
		deadline := time.Now().Add(10 * time.Second)
		for len(events(t, e.audit, audit.EventErasureRecorded)) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond)
	es := events(t, e.audit, audit.EventErasureRecorded)
	if len(es) != 1 || es[0].RequestID == "" {
		t.Fatalf("erasure entries once the audit log is back: %+v", es)
	}
}
