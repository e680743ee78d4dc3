package policy_test

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/policy"
)

// TestRightsIDsNotUTF8Refused: an id that is not valid UTF-8 (here the
// subject of an erasure named in the path) is refused, naming the field,
// and nothing is stored: stored, it would be hashed into the registry
// version as it came and read back by every other instance as U+FFFD, and
// they would stop there. The same holds for the change of any caller.
func TestRightsIDsNotUTF8Refused(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	a, b, srv, dir := e.startPair(t)
	code, rc := a.rightsAPI(t).post(t, "/v1/subjects/cust-%FF/erasure", "er-ff", ``)
	if code != http.StatusBadRequest || rc.Status != "rejected" || len(rc.Reasons) != 1 || rc.Reasons[0] != "invalid_request: subject: not valid UTF-8" {
		t.Fatalf("erasure of cust-\\xff: %d %+v", code, rc)
	}
	changes := []struct {
		name  string
		give  agreements.Change
		field string
	}{
		{"erasure", agreements.Change{Erasures: []agreements.Erasure{{Subject: "cust-\xff", At: time.Now()}}}, "erasures[0].subject"},
		{"consent's notice version", agreements.Change{Consents: []agreements.Consent{{Subject: "cust-60", Purpose: "marketing",
			GrantedAt: time.Now(), NoticeVersion: "risk-notice-\xfe"}}}, "consents[0].notice_version"},
		{"legal order's subject", agreements.Change{LegalOrders: []agreements.LegalOrder{{ID: "order-ff", Authority: "bka-de",
			Subjects: []string{"cust-\xff"}, Categories: []string{"identity.name"}, ValidUntil: time.Now().AddDate(0, 1, 0)}}}, "legal_orders[0].subjects[0]"},
	}
	for _, tt := range changes {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.live.Change(t.Context(), tt.give)
			if !errors.Is(err, policy.ErrInvalidChange) || !strings.Contains(err.Error(), tt.field+": invalid value: not valid UTF-8") {
				t.Fatalf("Change: %v", err)
			}
		})
	}
	// Nothing was stored: the other instance changes the registry and a
	// new one starts on it.
	if seq, _, err := e.store.Head(t.Context()); err != nil || seq != 1 {
		t.Fatalf("head at %d (%v), want the apply only", seq, err)
	}
	ev, err := b.live.Change(t.Context(), agreements.Change{Erasures: []agreements.Erasure{{Subject: "cust-61", At: time.Now().UTC()}}})
	if err != nil {
		t.Fatal(err)
	}
	a.waitVersion(t, ev.Version)
	if c := e.start(t, brokertest.Connect(t, srv), load(t, dir)); c.engine.Registry().Version() != ev.Version {
		t.Fatalf("a new instance started at %s, want %s", c.engine.Registry().Version(), ev.Version)
	}
}

// TestRightsRecordedOnce: a rights message is recorded once, however
// often it is sent: the same Idempotency-Key (or Nats-Msg-Id) again is
// answered with the first receipt and records nothing; a change stored
// and in force whose audit entries could not be written is answered as
// recorded (they are written later), not as a failure to retry, so that
// the retry does not record it a second time.
func TestRightsRecordedOnce(t *testing.T) {
	defer policy.SetPendingGrace(0)()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) { recordedOnce(t, st.dsn(t)) })
	}
}

func recordedOnce(t *testing.T, dsn string) {
	e := newEnv(t, dsn)
	var down atomic.Bool
	e.auditDown = &down
	srv := brokertest.StartNATS(t)
	dir := registryDir(t)
	n := e.startApplied(t, brokertest.Connect(t, srv), dir)
	api := n.rightsAPI(t)
	head := func(t *testing.T) int64 {
		t.Helper()
		seq, _, err := e.store.Head(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	consents := func(t *testing.T, subject string) int {
		t.Helper()
		cs, _ := n.engine.Registry().Subject(subject)
		return len(cs)
	}
	grant := func(subject string) string {
		return `{"action":"grant","subject":"` + subject + `","purpose":"marketing","recipients":["promoreach-nl"]}`
	}

	t.Run("the same key twice", func(t *testing.T) {
		entries := len(events(t, e.audit, audit.EventConsentRecorded))
		code, first := api.post(t, "/v1/consents", "grant-70", grant("cust-70"))
		if code != http.StatusOK || first.Status != "recorded" || first.Event == 0 {
			t.Fatalf("first: %d %+v", code, first)
		}
		before := head(t)
		code, again := api.post(t, "/v1/consents", "grant-70", grant("cust-70"))
		if code != http.StatusOK || again.Status != "recorded" || again.Event != first.Event || again.RegistryVersion != first.RegistryVersion {
			t.Fatalf("again: %d %+v, want %+v", code, again, first)
		}
		if got := head(t); got != before || consents(t, "cust-70") != 1 {
			t.Fatalf("head %d (was %d), %d consents of the subject", got, before, consents(t, "cust-70"))
		}
		if got := len(events(t, e.audit, audit.EventConsentRecorded)); got != entries+1 {
			t.Errorf("%d consent entries, want %d", got, entries+1)
		}
	})
	t.Run("a key that cannot be taken as it is", func(t *testing.T) {
		// Replaced by a fresh id, as it was, a retry would be recorded
		// twice; in the fallback ids' namespace, it could take the id of
		// a message that came without one.
		for _, key := range []string{"order.42", "two words", "rights-seq-1"} {
			before := head(t)
			code, rc := api.post(t, "/v1/consents", key, grant("cust-72"))
			if code != http.StatusBadRequest || head(t) != before {
				t.Fatalf("Idempotency-Key %q: %d %+v, head %d (was %d); want 400 and nothing recorded", key, code, rc, head(t), before)
			}
		}
	})
	t.Run("the audit log down", func(t *testing.T) {
		down.Store(true)
		defer down.Store(false)
		before := head(t)
		code, first := api.post(t, "/v1/consents", "grant-71", grant("cust-71"))
		if code != http.StatusOK || first.Status != "recorded" || first.Event != before+1 {
			t.Fatalf("with the audit log down: %d %+v", code, first)
		}
		code, again := api.post(t, "/v1/consents", "grant-71", grant("cust-71"))
		if code != http.StatusOK || again.Event != first.Event {
			t.Fatalf("the retry: %d %+v, want %+v", code, again, first)
		}
		// The NATS intake's path, with the same key from another source,
		// and again from the same source.
		rc, retry := n.live.Record(t.Context(), policy.RightsConsents, []byte(grant("cust-71")), "grant-71", "cms")
		if retry || rc.Status != "recorded" || rc.Event != first.Event+1 {
			t.Fatalf("from another source: %+v retry %v", rc, retry)
		}
		again, retry = n.live.Record(t.Context(), policy.RightsConsents, []byte(grant("cust-71")), "grant-71", "cms")
		if retry || again.Event != rc.Event {
			t.Fatalf("redelivered: %+v retry %v, want event %d", again, retry, rc.Event)
		}
		if got := head(t); got != before+2 || consents(t, "cust-71") != 2 {
			t.Fatalf("head %d (was %d), %d consents of the subject; want two events", got, before, consents(t, "cust-71"))
		}
	})
	t.Run("audited later", func(t *testing.T) {
		e.start(t, brokertest.Connect(t, srv), load(t, dir)) // an instance starting writes what is pending
		deadline := time.Now().Add(10 * time.Second)
		for {
			es, err := e.audit.Query(t.Context(), audit.Filter{Event: audit.EventConsentRecorded, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, x := range es {
				if x.RequestID == "registry-event-3" || x.RequestID == "registry-event-4" {
					n++
				}
			}
			if n == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d entries of the changes recorded while the audit log was down, want 2", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("the same key, another message", func(t *testing.T) {
		// An erasure under the key of the grant above: neither recorded
		// nor answered with the grant's receipt.
		before := head(t)
		code, other := api.post(t, "/v1/subjects/cust-99/erasure", "grant-70", "")
		if code != http.StatusBadRequest || other.Status != "rejected" || other.Event != 0 {
			t.Fatalf("another message under a recorded key: %d %+v", code, other)
		}
		if got := head(t); got != before {
			t.Fatalf("head %d, was %d", got, before)
		}
		if es, _ := n.engine.Registry().Subject("cust-99"); len(es) != 0 {
			t.Fatal("unexpected consents of cust-99")
		}
		// Under a key of its own it is recorded.
		if code, rc := api.post(t, "/v1/subjects/cust-99/erasure", "erase-99", ""); code != http.StatusOK || rc.Status != "recorded" || rc.Event != before+1 {
			t.Fatalf("the erasure under its own key: %d %+v", code, rc)
		}
	})
}

// TestRightsErasureOfFilesErasureOutlivesApply: the registry files erase
// cust-13; an erasure of cust-13 sent at run time is recorded all the
// same, so that an apply of files without that erasure keeps the subject
// erased. Once erased at run time, the subject's erasure is not recorded
// again.
func TestRightsErasureOfFilesErasureOutlivesApply(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	dir := registryDir(t)
	n := e.startApplied(t, brokertest.Connect(t, brokertest.StartNATS(t)), dir)
	api := n.rightsAPI(t)
	code, rc := api.post(t, "/v1/subjects/cust-13/erasure", "er-13", ``)
	if code != http.StatusOK || rc.Status != "recorded" || rc.Event == 0 {
		t.Fatalf("erasure of a subject the files erase: %d %+v", code, rc)
	}
	edit(t, dir, "50-subjects.yaml", "  - subject: cust-13\n    at: 2026-05-01T00:00:00Z\n", "")
	if _, _, err := n.live.Apply(t.Context(), load(t, dir)); err != nil {
		t.Fatal(err)
	}
	if _, erasures := n.engine.Registry().Subject("cust-13"); len(erasures) != 1 {
		t.Fatalf("cust-13's erasures after an apply of files without it: %+v", erasures)
	}
	code, rc = api.post(t, "/v1/subjects/cust-13/erasure", "er-13-again", ``)
	if code != http.StatusOK || rc.Event != 0 || len(rc.Reasons) != 1 || !strings.HasPrefix(rc.Reasons[0], "already_erased: ") {
		t.Fatalf("erased at run time already: %d %+v", code, rc)
	}
}

// TestRightsRejectionsApartFromTransfers: a rejected rights message is
// audited under "rights:" and its request id, so that it neither loses
// its entry to a transfer that used the same id first nor takes the one
// final outcome of a transfer that uses it later.
func TestRightsRejectionsApartFromTransfers(t *testing.T) {
	e := newEnv(t, brokertest.SQLiteDSN(t))
	n := e.start(t, brokertest.Connect(t, brokertest.StartNATS(t)), load(t, registryDir(t)))
	if _, _, err := n.live.Apply(t.Context(), load(t, registryDir(t))); err != nil {
		t.Fatal(err)
	}
	api := n.rightsAPI(t)
	invalid := `{"action":"grant","subject":"cust-7","purpose":"astrology"}`
	transfer := func(id string) *audit.Entry {
		return &audit.Entry{Time: time.Now(), Event: audit.EventDecided, RequestID: id, Source: "order-service", Decision: "deny",
			Reasons: []string{agreements.ReasonNoAgreement}}
	}
	rejections := func(t *testing.T, id string) int {
		t.Helper()
		es, err := e.audit.Query(t.Context(), audit.Filter{RequestID: id})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, x := range es {
			if x.Event == audit.EventRejected {
				n++
			}
		}
		return n
	}

	if _, err := e.audit.Append(t.Context(), transfer("ord-900")); err != nil {
		t.Fatal(err)
	}
	if code, rc := api.post(t, "/v1/consents", "ord-900", invalid); code != http.StatusBadRequest || rc.RequestID != "ord-900" {
		t.Fatalf("invalid consent under a transfer's id: %d %+v", code, rc)
	}
	if got := rejections(t, "rights:ord-900"); got != 1 {
		t.Errorf("%d rejected entries under rights:ord-900, want 1", got)
	}

	if code, _ := api.post(t, "/v1/consents", "ord-901", invalid); code != http.StatusBadRequest {
		t.Fatalf("invalid consent: %d", code)
	}
	if _, err := e.audit.Append(t.Context(), transfer("ord-901")); err != nil {
		t.Errorf("a transfer's decision under an id a rights message was rejected under: %v", err)
	}

	long := strings.Repeat("k", audit.MaxRequestID)
	if code, rc := api.post(t, "/v1/consents", long, invalid); code != http.StatusBadRequest || rc.RequestID != long {
		t.Fatalf("invalid consent under a long key: %d %+v", code, rc)
	}
	if got := rejections(t, policy.RejectionID(long)); got != 1 || !strings.HasPrefix(policy.RejectionID(long), "rights:") {
		t.Errorf("%d rejected entries under %s, want 1", got, policy.RejectionID(long))
	}
}

func TestRejectionID(t *testing.T) {
	tests := []struct {
		name, give, want string
	}{
		{"plain", "ord-900", "rights:ord-900"},
		{"longest that fits", strings.Repeat("k", audit.MaxRequestID-len("rights:")), "rights:" + strings.Repeat("k", audit.MaxRequestID-len("rights:"))},
		{"too long with the prefix", strings.Repeat("k", audit.MaxRequestID), "rights:sha256-"},
		{"not UTF-8", "ord-\xff", "rights:sha256-"},
		{"white space at an end", "ord-900 ", "rights:sha256-"},
		{"empty", "", "rights:sha256-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := policy.RejectionID(tt.give)
			if !strings.HasPrefix(got, tt.want) || (!strings.HasSuffix(tt.want, "-") && got != tt.want) || !audit.RecordableID(got) {
				t.Fatalf("RejectionID(%q) = %q, want %q…", tt.give, got, tt.want)
			}
			if again := policy.RejectionID(tt.give); again != got {
				t.Fatalf("RejectionID(%q) = %q, then %q", tt.give, got, again)
			}
		})
	}
}
