package agreements

import (
	"errors"
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
