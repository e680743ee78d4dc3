package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/clearance-broker/clearance/agreements"
)

// Kind is the kind of a registry event.
type Kind string

// The kinds of registry event.
const (
	// KindApply: a registry directory was applied (a new base version).
	KindApply Kind = "apply"
	// KindChange: a run-time change (consents, withdrawals, erasures, legal
	// orders, suspensions).
	KindChange Kind = "change"
)

// Event is one numbered change of the registry. Stored, it holds the change
// itself; published on the KV bucket, only its number, kind, base and
// version.
type Event struct {
	// Seq numbers the events of a store from 1, without gaps.
	Seq int64 `json:"seq"`
	// Kind says whether Base or Change is set.
	Kind Kind `json:"kind"`
	// Base is the applied content's version (KindApply).
	Base string `json:"base,omitempty"`
	// Change is the run-time change (KindChange).
	Change *agreements.Change `json:"change,omitempty"`
	// Suspended holds, for every agreement the change suspends, the version
	// it had: a later apply of another version lifts the suspension.
	Suspended map[string]int `json:"suspended,omitempty"`
	// Version is the registry version in force after the event.
	Version string `json:"version"`
	// At is when the event was stored.
	At time.Time `json:"at"`
	// Sync, on an event returned by Change or Apply, says which instances
	// confirmed it in force; it is not stored or published.
	Sync Sync `json:"-"`
}

func (ev *Event) row() (*eventRow, error) {
	r := &eventRow{Seq: ev.Seq, Kind: string(ev.Kind), Base: ev.Base, Version: ev.Version, At: ev.At.UTC()}
	if ev.Kind == KindChange {
		data, err := json.Marshal(struct {
			Change    *agreements.Change `json:"change"`
			Suspended map[string]int     `json:"suspended,omitempty"`
		}{ev.Change, ev.Suspended})
		if err != nil {
			return nil, fmt.Errorf("policy: encode event %d: %w", ev.Seq, err)
		}
		r.Change = string(data)
	}
	return r, nil
}

func (r *eventRow) event() (Event, error) {
	ev := Event{Seq: r.Seq, Kind: Kind(r.Kind), Base: r.Base, Version: r.Version, At: r.At.UTC()}
	if ev.Kind == KindChange {
		var body struct {
			Change    *agreements.Change `json:"change"`
			Suspended map[string]int     `json:"suspended,omitempty"`
		}
		if err := json.Unmarshal([]byte(r.Change), &body); err != nil || body.Change == nil {
			return Event{}, fmt.Errorf("policy: decode event %d: %w", r.Seq, ErrCorruptEvent)
		}
		ev.Change, ev.Suspended = body.Change, body.Suspended
	}
	return ev, nil
}

// state is a registry derived from the events up to seq. The run-time
// changes it holds are not kept beside it: an apply reads them from the
// store (source), so that an instance does not hold every consent ever
// recorded twice, and a start from a snapshot does not read them at all.
type state struct {
	seq  int64
	base string
	reg  *agreements.Registry
}

// source gives what an apply event needs from the store: the content of a
// base version, and the run-time changes stored before an event, oldest
// first, to carry over it.
type source struct {
	content func(version string) (agreements.Content, error)
	changes func(before int64) ([]Event, error)
}

// next returns the state after ev, which must be the event after s.
func (s *state) next(ev Event, src source) (*state, error) {
	if ev.Seq != s.seq+1 {
		return nil, fmt.Errorf("policy: event %d after %d: %w", ev.Seq, s.seq, ErrGap)
	}
	n := &state{seq: ev.Seq, base: s.base, reg: s.reg}
	switch ev.Kind {
	case KindApply:
		c, err := src.content(ev.Base)
		if err != nil {
			return nil, err
		}
		reg, err := agreements.New(c)
		if err != nil {
			return nil, fmt.Errorf("policy: base %s: %w", ev.Base, err)
		}
		changes, err := src.changes(ev.Seq)
		if err != nil {
			return nil, err
		}
		reg, _ = CarryAll(reg, changes)
		n.base, n.reg = ev.Base, reg
	case KindChange:
		if s.reg == nil {
			return nil, fmt.Errorf("policy: event %d: %w", ev.Seq, ErrNotApplied)
		}
		reg, err := s.reg.With(*ev.Change)
		if err != nil {
			return nil, err // the registry's own problems, one per entry
		}
		n.reg = reg
	default:
		return nil, fmt.Errorf("policy: event %d kind %q: %w", ev.Seq, ev.Kind, ErrCorruptEvent)
	}
	return n, nil
}

// run returns the state after evs, consecutive run-time changes after s,
// taken at once (agreements.Registry.WithEachVersions), which costs a
// fraction of taking them one by one when they are many; false when they
// do not follow s, one is refused, or a version one of them stored is not
// the one it derives, for the caller to take them one by one and name the
// event at fault.
func (s *state) run(evs []Event) (*state, bool) {
	if s.reg == nil || len(evs) == 0 {
		return nil, false
	}
	chs := make([]agreements.Change, len(evs))
	for i, ev := range evs {
		if ev.Kind != KindChange || ev.Change == nil || ev.Seq != s.seq+int64(i)+1 {
			return nil, false
		}
		chs[i] = *ev.Change
	}
	reg, versions := s.reg.WithEachVersions(chs)
	for i, v := range versions {
		if v == "" || v != evs[i].Version {
			return nil, false
		}
	}
	return &state{seq: evs[len(evs)-1].Seq, base: s.base, reg: reg}, true
}

// CarryAll applies the earlier run-time changes evs (of KindChange,
// oldest first) to reg, a newly applied base, as every instance does when
// a registry is applied, and returns it with the number of changes it
// took. A suspension holds only while the base keeps the suspended version
// of the agreement; a change that no longer fits the base (a purpose
// removed) is left out, the same way on every instance. Changes are taken
// in runs (agreements.Registry.WithEach), so that a store of a million
// consents is carried in a few steps rather than a million. The what-if of
// a proposed registry carries changes with it.
func CarryAll(reg *agreements.Registry, evs []Event) (*agreements.Registry, int) {
	// Run-time changes never change an agreement's version: the base's
	// versions hold for every change.
	current := agreementVersions(reg)
	chs := make([]agreements.Change, len(evs))
	for i, ev := range evs {
		ch := *ev.Change
		if len(ch.Suspend) > 0 {
			ch.Suspend = slices.DeleteFunc(slices.Clone(ch.Suspend), func(id string) bool {
				v, ok := ev.Suspended[id]
				return !ok || current[id] != v
			})
		}
		chs[i] = ch
	}
	return reg.WithEach(chs)
}

// agreementVersions maps every agreement id of reg to its version.
func agreementVersions(reg *agreements.Registry) map[string]int {
	as := reg.Agreements()
	out := make(map[string]int, len(as))
	for _, a := range as {
		out[a.ID] = a.Version
	}
	return out
}
