package agreements

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestWith(t *testing.T) {
	base := engineRegistry(t)
	at := mustTime(t, defaultAt)
	tests := []struct {
		name   string
		change Change
		give   give
		before []string
		after  []string
	}{
		{"a new consent allows", Change{Consents: []Consent{{Subject: "s-new", Purpose: "marketing", GrantedAt: mustTime(t, "2026-11-01T00:00:00Z")}}},
			give{recipient: "p-de", purpose: "marketing", subject: "s-new"}, []string{ReasonNoConsent}, []string{}},
		{"a withdrawal stops a consent", Change{Withdrawals: []Withdrawal{{Subject: "s-ok", Purpose: "marketing", At: mustTime(t, "2026-11-27T00:00:00Z")}}},
			give{recipient: "p-de", purpose: "marketing", subject: "s-ok"}, []string{}, []string{ReasonConsentWithdrawn}},
		{"an erasure stops everything", Change{Erasures: []Erasure{{Subject: "s-plain", At: mustTime(t, "2026-11-27T00:00:00Z")}}},
			give{recipient: "p-de", purpose: "delivery"}, []string{}, []string{ReasonSubjectErased}},
		{"a new legal order serves the authority", Change{LegalOrders: []LegalOrder{{ID: "lo-new", Authority: "auth-de", Subjects: []string{"s-plain"}, Categories: []string{"identity.name"}, ValidUntil: mustTime(t, "2026-12-31T00:00:00Z")}}},
			give{recipient: "auth-de", purpose: "police", order: "lo-new"}, []string{ReasonLegalOrderRequired, ReasonNoAgreement}, []string{}},
		{"a suspension stops an agreement", Change{Suspend: []string{"a-de"}},
			give{recipient: "p-de", purpose: "delivery"}, []string{}, []string{ReasonAgreementSuspended}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, err := base.With(tt.change)
			if err != nil {
				t.Fatalf("With: %v", err)
			}
			req, _ := tt.give.request()
			if got := NewEngine(base).Decide(req, at).Reasons; !slices.Equal(got, tt.before) {
				t.Errorf("before: reasons = %v, want %v", got, tt.before)
			}
			if got := NewEngine(next).Decide(req, at).Reasons; !slices.Equal(got, tt.after) {
				t.Errorf("after: reasons = %v, want %v", got, tt.after)
			}
			if next.Version() == base.Version() {
				t.Error("derived registry kept the version")
			}
			again, err := base.With(tt.change)
			if err != nil || again.Version() != next.Version() {
				t.Errorf("same change, different version: %s != %s (%v)", again.Version(), next.Version(), err)
			}
		})
	}
}

func TestWithRejectsBadChanges(t *testing.T) {
	base := engineRegistry(t)
	tests := []struct {
		name  string
		give  Change
		class error
	}{
		{"consent for an unknown purpose", Change{Consents: []Consent{{Subject: "s", Purpose: "nope", GrantedAt: time.Now()}}}, ErrDanglingReference},
		{"legal order for a processor", Change{LegalOrders: []LegalOrder{{ID: "x", Authority: "p-de", Subjects: []string{"s"}, Categories: []string{"identity.name"}, ValidUntil: time.Now()}}}, ErrInvalidValue},
		{"legal order with an existing id", Change{LegalOrders: []LegalOrder{{ID: "lo-de", Authority: "auth-de", Subjects: []string{"s"}, Categories: []string{"identity.name"}, ValidUntil: time.Now()}}}, ErrDuplicate},
		{"suspension of an unknown agreement", Change{Suspend: []string{"nope"}}, ErrDanglingReference},
		{"erasure without time", Change{Erasures: []Erasure{{Subject: "s"}}}, ErrMissingKey},
		{"withdrawal for an unknown purpose", Change{Withdrawals: []Withdrawal{{Subject: "s", Purpose: "nope", At: time.Now()}}}, ErrDanglingReference},
		{"erasure of a subject that is not UTF-8", Change{Erasures: []Erasure{{Subject: "cust-\xff", At: time.Now()}}}, ErrInvalidValue},
		{"consent with a notice version that is not UTF-8", Change{Consents: []Consent{{Subject: "s", Purpose: "marketing", GrantedAt: time.Now(), NoticeVersion: "v\xfe"}}}, ErrInvalidValue},
		{"legal order naming a subject that is not UTF-8", Change{LegalOrders: []LegalOrder{{ID: "lo-x", Authority: "auth-de", Subjects: []string{"s\xff"}, Categories: []string{"identity.name"}, ValidUntil: time.Now()}}}, ErrInvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := base.With(tt.give); !errors.Is(err, tt.class) {
				t.Errorf("error = %v, want %v", err, tt.class)
			}
		})
	}
}

func TestEngineUpdate(t *testing.T) {
	base := engineRegistry(t)
	next, err := base.With(Change{Suspend: []string{"a-de"}})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(base)
	req, at := give{recipient: "p-de", purpose: "delivery"}.request()
	if d := e.Decide(req, at); !d.Allowed() || d.RegistryVersion != base.Version() {
		t.Fatalf("before update: %s %v", d.Decision, d.Reasons)
	}
	e.Update(next)
	if d := e.Decide(req, at); d.Allowed() || d.RegistryVersion != next.Version() || e.Registry() != next {
		t.Errorf("after update: %s %v %s", d.Decision, d.Reasons, d.RegistryVersion)
	}
}

// TestEngineConcurrentUpdate decides from several goroutines while the
// registry is swapped; run with -race. Every decision must come from exactly
// one of the two versions.
func TestEngineConcurrentUpdate(t *testing.T) {
	base := engineRegistry(t)
	next, err := base.With(Change{Suspend: []string{"a-de"}})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(base)
	req, at := give{recipient: "p-de", purpose: "delivery"}.request()
	errs := make(chan string, 4)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 2000 {
				d := e.Decide(req, at)
				switch {
				case d.RegistryVersion == base.Version() && d.Allowed():
				case d.RegistryVersion == next.Version() && !d.Allowed():
				default:
					errs <- d.RegistryVersion + " " + string(d.Decision)
					return
				}
			}
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			e.Update(next)
		} else {
			e.Update(base)
		}
	}
	for range 4 {
		<-done
	}
	close(errs)
	for msg := range errs {
		t.Errorf("decision mixed versions: %s", msg)
	}
}

// TestWithWithholdsCallerIDs checks that the problems of a run-time change
// (which go into receipts and the audit log) repeat an unknown id only when
// it is a plain identifier, never what a caller put there instead.
func TestWithWithholdsCallerIDs(t *testing.T) {
	base := engineRegistry(t)
	tests := []struct {
		name string
		give Change
		want string
	}{
		{"recipient given as an e-mail address", Change{Consents: []Consent{{Subject: "s", Purpose: "nope", Recipients: []string{"ada@example.com"}, GrantedAt: time.Now()}}},
			"consents[0].recipients[0]: unknown reference: no party " + WithheldName},
		{"purpose given as a name", Change{Consents: []Consent{{Subject: "s", Purpose: "Ada Lovelace", GrantedAt: time.Now()}}},
			"consents[0].purpose[0]: unknown reference: no purpose " + WithheldName},
		{"unknown plain id", Change{Consents: []Consent{{Subject: "s", Purpose: "astrology", GrantedAt: time.Now()}}},
			`consents[0].purpose[0]: unknown reference: no purpose "astrology"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := base.With(tt.give)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			for _, personal := range []string{"ada@", "Ada Lovelace"} {
				if strings.Contains(err.Error(), personal) {
					t.Errorf("error repeats %q: %v", personal, err)
				}
			}
		})
	}
}

// TestWithdrawalWhateverTheOrder: a withdrawal withdraws, as of its time,
// every matching consent granted by then, whether the consent was
// recorded before it or after it (sent late, dated a few minutes ahead,
// sent again). It holds for changes taken one by one (With), in a run
// (WithEach past a fold), in Content, and across a Restore that is given
// back the withdrawals its content does not list.
func TestWithdrawalWhateverTheOrder(t *testing.T) {
	t1, t2, t3 := mustTime(t, "2026-11-01T10:00:00Z"), mustTime(t, "2026-11-01T11:00:00Z"), mustTime(t, "2026-11-01T12:00:00Z")
	grant := func(at time.Time) Change {
		return Change{Consents: []Consent{{Subject: "s-late", Purpose: "marketing", GrantedAt: at}}}
	}
	withdrawAt := func(at time.Time) Change {
		return Change{Withdrawals: []Withdrawal{{Subject: "s-late", Purpose: "marketing", At: at}}}
	}
	tests := []struct {
		name string
		give []Change
		want []*time.Time // the subject's consents' WithdrawnAt, in the order recorded
	}{
		{"withdrawal, then a consent granted before it", []Change{withdrawAt(t2), grant(t1)}, []*time.Time{&t2}},
		{"withdrawal, then a consent granted at its instant", []Change{withdrawAt(t1), grant(t1)}, []*time.Time{&t1}},
		{"withdrawal, then a consent granted after it", []Change{withdrawAt(t1), grant(t2)}, []*time.Time{nil}},
		{"consent, withdrawal, the same consent again", []Change{grant(t1), withdrawAt(t2), grant(t1)}, []*time.Time{&t2, &t2}},
		{"two withdrawals, then a consent between them", []Change{withdrawAt(t3), withdrawAt(t1), grant(t2)}, []*time.Time{&t3}},
		{"withdrawal and an earlier consent in one change",
			[]Change{{Withdrawals: withdrawAt(t2).Withdrawals, Consents: grant(t1).Consents}}, []*time.Time{&t2}},
		{"withdrawal of another purpose", []Change{{Withdrawals: []Withdrawal{{Subject: "s-late", Purpose: "delivery", At: t2}}}, grant(t1)},
			[]*time.Time{nil}},
	}
	base := benchRegistry(t, 3)
	var pad []Change // enough consents of others for WithEach to take a run past a fold
	for i := range 300 {
		pad = append(pad, Change{Consents: []Consent{{Subject: fmt.Sprintf("pad-%d", i), Purpose: "marketing", GrantedAt: t1}}})
	}
	paths := []struct {
		name   string
		derive func(t *testing.T, chs []Change) *Registry
	}{
		{"With", func(t *testing.T, chs []Change) *Registry {
			reg := base
			for _, ch := range chs {
				var err error
				if reg, err = reg.With(ch); err != nil {
					t.Fatal(err)
				}
			}
			return reg
		}},
		{"WithEach", func(t *testing.T, chs []Change) *Registry {
			reg, taken := base.WithEach(append(slices.Clone(pad), chs...))
			if taken != len(pad)+len(chs) {
				t.Fatalf("WithEach took %d of %d", taken, len(pad)+len(chs))
			}
			return reg
		}},
		{"Restore after the first change", func(t *testing.T, chs []Change) *Registry {
			first, err := base.With(chs[0])
			if err != nil {
				t.Fatal(err)
			}
			reg, err := Restore(first.Content(), first.Version())
			if err != nil {
				t.Fatal(err)
			}
			reg = reg.RestoreWithdrawals(first.Withdrawals())
			for _, ch := range chs[1:] {
				if reg, err = reg.With(ch); err != nil {
					t.Fatal(err)
				}
			}
			return reg
		}},
	}
	for _, tt := range tests {
		for _, p := range paths {
			t.Run(tt.name+"/"+p.name, func(t *testing.T) {
				reg := p.derive(t, tt.give)
				consents, _ := reg.Subject("s-late")
				var listed []Consent
				for _, c := range reg.Content().Consents {
					if c.Subject == "s-late" {
						listed = append(listed, c)
					}
				}
				for _, got := range [][]Consent{consents, listed} {
					if len(got) != len(tt.want) {
						t.Fatalf("%d consents, want %d", len(got), len(tt.want))
					}
					for i, c := range got {
						if w := tt.want[i]; (w == nil) != (c.WithdrawnAt == nil) || (w != nil && !c.WithdrawnAt.Equal(*w)) {
							t.Errorf("consent %d withdrawn at %v, want %v", i, c.WithdrawnAt, w)
						}
					}
				}
			})
		}
	}
}
