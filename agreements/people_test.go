package agreements

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// copyingModel is how With kept consents and erasures before people.go:
// the lists copied whole at each change, its withdrawals applied to every
// consent recorded before them, its consents and erasures appended; and,
// as With keeps them now, every withdrawal recorded so far applied to each
// consent appended.
type copyingModel struct {
	consents    []Consent
	erasures    []Erasure
	withdrawals []Withdrawal
}

func (m copyingModel) with(ch Change) copyingModel {
	n := copyingModel{consents: slices.Clone(m.consents), erasures: slices.Clone(m.erasures),
		withdrawals: append(slices.Clone(m.withdrawals), ch.Withdrawals...)}
	for _, w := range ch.Withdrawals {
		for i := range n.consents {
			if c := &n.consents[i]; c.Subject == w.Subject && c.Purpose == w.Purpose {
				withdraw(c, w.At)
			}
		}
	}
	for _, c := range ch.Consents {
		for _, w := range n.withdrawals {
			if c.Subject == w.Subject && c.Purpose == w.Purpose {
				withdraw(&c, w.At)
			}
		}
		n.consents = append(n.consents, c)
	}
	n.erasures = append(n.erasures, ch.Erasures...)
	return n
}

// TestWithMatchesCopying derives registries through random changes (some
// from an older version, as two what-ifs or a live registry and a proposal
// do), past the folds of the subject index and of the pending changes,
// and holds each one's Content and subject index to the copying model.
func TestWithMatchesCopying(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	base := benchRegistry(t, 40)
	start := copyingModel{consents: base.Content().Consents, erasures: base.Content().Erasures}
	type version struct {
		reg   *Registry
		model copyingModel
	}
	versions := []version{{base, start}}
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func() time.Time { return day.Add(time.Duration(rng.IntN(400)) * 24 * time.Hour) }
	subject := func() string {
		if rng.IntN(3) == 0 {
			return fmt.Sprintf("cust-%d", rng.IntN(40)) // the base's own
		}
		return fmt.Sprintf("s-%d", rng.IntN(700))
	}
	purposes := []string{"marketing", "delivery"}
	check := func(step int, v version) {
		t.Helper()
		c := v.reg.Content()
		if !reflect.DeepEqual(c.Consents, v.model.consents) && !(len(c.Consents) == 0 && len(v.model.consents) == 0) {
			t.Fatalf("step %d: consents differ from the copying model (%d against %d)", step, len(c.Consents), len(v.model.consents))
		}
		if !reflect.DeepEqual(c.Erasures, v.model.erasures) && !(len(c.Erasures) == 0 && len(v.model.erasures) == 0) {
			t.Fatalf("step %d: erasures differ from the copying model (%d against %d)", step, len(c.Erasures), len(v.model.erasures))
		}
		if e := v.reg.Erasures(); !reflect.DeepEqual(e, v.model.erasures) && !(len(e) == 0 && len(v.model.erasures) == 0) {
			t.Fatalf("step %d: Erasures differs from the copying model (%d against %d)", step, len(e), len(v.model.erasures))
		}
		if got, want := v.reg.People(), len(v.model.consents)+len(v.model.erasures); got != want {
			t.Fatalf("step %d: People() = %d, want %d", step, got, want)
		}
		bySubject := map[string][]Consent{}
		for _, x := range v.model.consents {
			bySubject[x.Subject] = append(bySubject[x.Subject], x)
		}
		erased := map[string][]Erasure{}
		for _, x := range v.model.erasures {
			erased[x.Subject] = append(erased[x.Subject], x)
		}
		for id := range 700 {
			for _, s := range []string{fmt.Sprintf("s-%d", id), fmt.Sprintf("cust-%d", id%40)} {
				idx := v.reg.subject(s)
				var got []Consent
				for _, p := range idx.consents {
					got = append(got, *p)
				}
				var gotE []Erasure
				for _, p := range idx.erasures {
					gotE = append(gotE, *p)
				}
				if !reflect.DeepEqual(got, bySubject[s]) || !reflect.DeepEqual(gotE, erased[s]) {
					t.Fatalf("step %d: subject %s: index %v %v, model %v %v", step, s, got, gotE, bySubject[s], erased[s])
				}
			}
		}
	}
	for step := range 1200 {
		from := versions[len(versions)-1]
		if rng.IntN(10) == 0 {
			from = versions[rng.IntN(len(versions))] // a fork
		}
		var ch Change
		for range rng.IntN(4) {
			ch.Consents = append(ch.Consents, Consent{Subject: subject(), Purpose: purposes[rng.IntN(2)], GrantedAt: at()})
		}
		for range rng.IntN(3) {
			ch.Withdrawals = append(ch.Withdrawals, Withdrawal{Subject: subject(), Purpose: purposes[rng.IntN(2)], At: at()})
		}
		if rng.IntN(4) == 0 {
			ch.Erasures = append(ch.Erasures, Erasure{Subject: subject(), At: at()})
		}
		next, err := from.reg.With(ch)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		v := version{next, from.model.with(ch)}
		versions = append(versions, v)
		if step%50 == 0 || step > 1150 {
			check(step, v)
			check(step, from) // a registry With derived from is unchanged
		}
	}
	// Every version kept, forks included, still reads as its model.
	for i := 0; i < len(versions); i += 97 {
		check(-i, versions[i])
	}
}

// TestContentEmptyPeople: a registry without consents or erasures lists
// them as nil, so that its stored JSON reads null as it did before
// people.go.
func TestContentEmptyPeople(t *testing.T) {
	c := benchRegistry(t, 3).Content()
	c.Consents, c.Erasures = nil, nil
	reg, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Content(); got.Consents != nil || got.Erasures != nil || reg.Erasures() != nil {
		t.Fatalf("empty lists: consents %#v, erasures %#v", got.Consents, got.Erasures)
	}
}

// TestRestore: a registry With derived, rebuilt by Restore from its
// content and version, holds the same version, content and subjects; an
// empty version or content that is not a registry is refused.
func TestRestore(t *testing.T) {
	reg := benchRegistry(t, 30)
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 300 {
		ch := Change{Consents: []Consent{{Subject: fmt.Sprintf("s-%d", i), Purpose: "marketing", GrantedAt: day}}}
		if i%7 == 0 {
			ch.Withdrawals = []Withdrawal{{Subject: fmt.Sprintf("cust-%d", i%30), Purpose: "marketing", At: day.Add(time.Hour)}}
		}
		if i%11 == 0 {
			ch.Erasures = []Erasure{{Subject: fmt.Sprintf("s-%d", i-1), At: day}}
		}
		var err error
		if reg, err = reg.With(ch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Restore(reg.Content(), reg.Version())
	if err != nil {
		t.Fatal(err)
	}
	if got.Version() != reg.Version() || !reflect.DeepEqual(got.Content(), reg.Content()) || got.People() != reg.People() {
		t.Fatalf("restored %s (%d people), want %s (%d)", got.Version(), got.People(), reg.Version(), reg.People())
	}
	for i := range 300 {
		for _, s := range []string{fmt.Sprintf("s-%d", i), fmt.Sprintf("cust-%d", i%30)} {
			gc, ge := got.Subject(s)
			wc, we := reg.Subject(s)
			if !reflect.DeepEqual(gc, wc) || !reflect.DeepEqual(ge, we) {
				t.Fatalf("subject %s: restored %+v %+v, want %+v %+v", s, gc, ge, wc, we)
			}
		}
	}
	if _, err := Restore(reg.Content(), ""); err == nil {
		t.Fatal("restored without a version")
	}
	bad := reg.Content()
	bad.Agreements = append(bad.Agreements, Agreement{ID: "x", Parties: []string{"nobody"}})
	if _, err := Restore(bad, reg.Version()); err == nil {
		t.Fatal("restored content that is not a registry")
	}
}

// TestWithEachMatchesWith holds WithEach to With applied change by change
// over random runs of changes: consents, withdrawals, erasures, empty
// changes, changes With refuses (an unknown purpose, a missing subject)
// and suspensions, which end a run. Version, content and the number taken
// must agree.
func TestWithEachMatchesWith(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	base := benchRegistry(t, 40)
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func() time.Time { return day.Add(time.Duration(rng.IntN(400)) * 24 * time.Hour) }
	subject := func() string { return fmt.Sprintf("s-%d", rng.IntN(300)) }
	purposes := []string{"marketing", "delivery"}
	agreement := base.Content().Agreements[0].ID
	for round := range 40 {
		// Odd rounds are long enough to be taken in runs past With's
		// folds, even rounds short enough to go through With.
		size, odd := 120, round%2 == 1
		if odd {
			size = 1500
		}
		var chs []Change
		for range rng.IntN(size) {
			var ch Change
			k := rng.IntN(20)
			if odd && k == 3 && rng.IntN(10) > 0 {
				k = 4 // fewer suspensions, which end a run
			}
			switch {
			case k == 0: // empty
			case k == 1:
				ch.Consents = []Consent{{Subject: subject(), Purpose: "no-such-purpose", GrantedAt: at()}}
			case k == 2:
				ch.Erasures = []Erasure{{At: at()}} // no subject
			case k == 3:
				ch.Suspend = []string{agreement}
			default:
				for range rng.IntN(3) {
					ch.Consents = append(ch.Consents, Consent{Subject: subject(), Purpose: purposes[rng.IntN(2)], GrantedAt: at()})
				}
				if rng.IntN(4) == 0 {
					ch.Withdrawals = append(ch.Withdrawals, Withdrawal{Subject: subject(), Purpose: purposes[rng.IntN(2)], At: at()})
				}
				if rng.IntN(6) == 0 {
					ch.Erasures = append(ch.Erasures, Erasure{Subject: subject(), At: at()})
				}
			}
			chs = append(chs, ch)
		}
		want, wantTaken := base, 0
		wantVersions := make([]string, len(chs))
		for i, ch := range chs {
			if n, err := want.With(ch); err == nil {
				want, wantTaken, wantVersions[i] = n, wantTaken+1, n.Version()
			}
		}
		got, taken := base.WithEach(chs)
		if got.Version() != want.Version() || taken != wantTaken {
			t.Fatalf("round %d (%d changes): version %s, %d taken; change by change %s, %d", round, len(chs), got.Version(), taken, want.Version(), wantTaken)
		}
		// Each change's version, "" where With refuses it.
		if _, versions := base.WithEachVersions(chs); !slices.Equal(versions, wantVersions) {
			for i := range versions {
				if versions[i] != wantVersions[i] {
					t.Fatalf("round %d: change %d gave version %q, change by change %q", round, i, versions[i], wantVersions[i])
				}
			}
		}
		if !reflect.DeepEqual(got.Content(), want.Content()) {
			t.Fatalf("round %d: content differs from change by change", round)
		}
		for id := range 300 {
			s := fmt.Sprintf("s-%d", id)
			gc, ge := got.Subject(s)
			wc, we := want.Subject(s)
			if !reflect.DeepEqual(gc, wc) || !reflect.DeepEqual(ge, we) {
				t.Fatalf("round %d: subject %s differs from change by change", round, s)
			}
		}
	}
}
