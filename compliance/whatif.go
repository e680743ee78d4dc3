package compliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/policy"
)

// WhatIfLimits states what a what-if cannot know, because the audit log
// records metadata and never the records themselves.
var WhatIfLimits = []string{
	"records are reconstructed from the categories sent and the fields removed; for a refused transfer the kept fields were not recorded, so every field the dataset classifies is assumed present",
	"subjects are recognised only when the subject HMAC key is configured and the subject is named in a registry (consents, legal orders, erasures); others are evaluated as subjects the registries say nothing about",
	"whether a subject was a minor is not recorded; it is inferred only from a recorded minor_without_parental_consent refusal and otherwise taken as false",
	"a decision the registry in force does not reproduce from its reconstruction is not counted as a flip; it is listed as uncertain",
	"a disclosure to an authority is re-decided under the legal order its entry names; an entry written before the audit log named orders is matched to one by authority and subject",
	"a change of reasons alone is counted, not listed; a transfer that stays allowed but would carry other categories or fields is listed under sent_changes, judged on its reconstruction: a field of a category sent is taken as present, though the record may have lacked it",
	"the proposal is evaluated with the run-time changes of the live registry (consents, withdrawals, erasures, legal orders, suspensions) carried over it, as applying it would carry them; a change it cannot take (one naming a purpose or party it drops) is left out, as it would be then",
}

// WhatIfQuery selects the recorded decisions a what-if re-decides.
type WhatIfQuery struct {
	From, To  time.Time
	Recipient string
	Purpose   string
	Country   string
	// Max caps the decisions evaluated; MaxFlips the flips listed.
	Max, MaxFlips int
}

// Transfer names a past transfer a what-if lists: its entry, request and
// route.
type Transfer struct {
	Sequence  int64     `json:"sequence"`
	RequestID string    `json:"request_id"`
	Time      time.Time `json:"time"`
	Recipient string    `json:"recipient"`
	Country   string    `json:"country"`
	Purpose   string    `json:"purpose"`
	Dataset   string    `json:"dataset"`
}

func transferOf(e *audit.Entry) Transfer {
	return Transfer{Sequence: e.Sequence, RequestID: e.RequestID, Time: e.Time, Recipient: e.Recipient,
		Country: e.RecipientCountry, Purpose: e.Purpose, Dataset: e.Dataset}
}

// Flip is a past transfer whose outcome the proposed registry changes.
type Flip struct {
	Transfer
	Recorded          string   `json:"recorded"`
	RecordedReasons   []string `json:"recorded_reasons"`
	Proposed          string   `json:"proposed"`
	ProposedReasons   []string `json:"proposed_reasons"`
	ProposedMechanism string   `json:"proposed_mechanism"`
	Why               string   `json:"why"`
	// Uncertain marks a decision that the registry in force does not
	// reproduce either: the change may come from the reconstruction or from
	// a registry change since, not from the proposal.
	Uncertain bool `json:"uncertain,omitempty"`
}

// SentChange is a past transfer the proposed registry keeps allowed but
// with other data: categories (and the fields of them) it would no longer
// send, or fields recorded as removed that it would send.
type SentChange struct {
	Transfer
	// CategoriesNoLonger and CategoriesNew compare the categories sent;
	// FieldsNowRemoved and FieldsNowSent the fields, by path, sorted.
	CategoriesNoLonger []string `json:"categories_no_longer_sent"`
	CategoriesNew      []string `json:"categories_now_sent"`
	FieldsNowRemoved   []string `json:"fields_now_removed"`
	FieldsNowSent      []string `json:"fields_now_sent"`
	Why                string   `json:"why"`
	// Uncertain marks a transfer whose recorded categories or removed fields
	// the registry in force does not reproduce either.
	Uncertain bool `json:"uncertain,omitempty"`
}

// WhatIfResult answers which past transfers a proposed registry would flip.
// RuntimeChanges counts the run-time changes of the live registry carried
// over the proposal (WhatIfInForce).
type WhatIfResult struct {
	From            time.Time `json:"from"`
	To              time.Time `json:"to"`
	CurrentVersion  string    `json:"current_version"`
	ProposedVersion string    `json:"proposed_version"`
	Evaluated       int       `json:"evaluated"`
	Truncated       bool      `json:"truncated"`
	Unchanged       int       `json:"unchanged"`
	NowAllowed      int       `json:"now_allowed"`
	NowRefused      int       `json:"now_refused"`
	ReasonsChanged  int       `json:"reasons_changed"`
	// SentChanged counts the transfers that stay allowed but would carry
	// other categories or fields (SentChanges lists them).
	SentChanged      int           `json:"sent_changed"`
	BaselineMismatch int           `json:"baseline_mismatch"`
	Uncertain        int           `json:"uncertain"`
	SubjectsKnown    int           `json:"subjects_recognised"`
	RuntimeChanges   int           `json:"runtime_changes"`
	NewReasons       []ReasonCount `json:"new_refusal_reasons"`
	Flips            []Flip        `json:"flips"`
	SentChanges      []SentChange  `json:"sent_changes"`
	Limits           []string      `json:"limits"`
}

// Scanner is what WhatIf reads of the audit log.
type Scanner interface {
	Scan(ctx context.Context, f audit.Filter, fn func(*audit.Entry) error) error
}

// WhatIf re-decides the decisions recorded in q's window under proposed and
// reports which would flip and why. Each decision is also re-decided under
// current; BaselineMismatch counts those where even the registry in force
// does not reproduce the recorded outcome (the registry changed since, or
// the reconstruction lacks what the decision depended on).
func WhatIf(ctx context.Context, log Scanner, current, proposed *agreements.Registry, subjectKey []byte, q WhatIfQuery) (*WhatIfResult, error) {
	if q.Max <= 0 {
		q.Max = 200000
	}
	if q.MaxFlips <= 0 {
		q.MaxFlips = 500
	}
	res := &WhatIfResult{From: q.From, To: q.To, CurrentVersion: current.Version(), ProposedVersion: proposed.Version(),
		Flips: []Flip{}, SentChanges: []SentChange{}, NewReasons: []ReasonCount{}, Limits: WhatIfLimits}
	subjects := subjectIndex(subjectKey, current, proposed)
	baseEng, propEng := agreements.NewEngine(current), agreements.NewEngine(proposed)
	curC, propC := current.Content(), proposed.Content()
	newReasons := map[string]int64{}
	known := map[string]bool{}
	errStop := errors.New("stop")
	// One Decision each, reused from entry to entry (DecideInto): a
	// what-if reads up to Max entries and decides each twice; flipOf copies
	// what a flip keeps.
	base, prop := new(agreements.Decision), new(agreements.Decision)
	f := audit.Filter{Event: audit.EventDecided, From: q.From, To: q.To, Recipient: q.Recipient,
		Purpose: q.Purpose, Country: q.Country, Limit: q.Max + 1}
	err := log.Scan(ctx, f, func(e *audit.Entry) error {
		if res.Evaluated == q.Max {
			res.Truncated = true
			return errStop
		}
		res.Evaluated++
		subject, ok := subjects[e.SubjectHMAC]
		if ok && !known[e.SubjectHMAC] {
			known[e.SubjectHMAC] = true
			res.SubjectsKnown++
		}
		if !ok {
			subject = "unrecognised:" + e.SubjectHMAC
		}
		req := reconstruct(e, subject, propC, curC, e.Time)
		baseEng.DecideInto(base, req, e.Time)
		propEng.DecideInto(prop, req, e.Time)
		reproduced := string(base.Decision) == e.Decision
		if !reproduced {
			res.BaselineMismatch++
		}
		switch {
		case prop.Allowed() && e.Decision == "allow":
			sc, changed := sentChange(e, prop)
			if !changed {
				res.Unchanged++
				return nil
			}
			res.SentChanged++
			if len(res.SentChanges) < q.MaxFlips {
				_, moved := sentChange(e, base)
				sc.Uncertain = !reproduced || moved
				res.SentChanges = append(res.SentChanges, sc)
			}
			return nil
		case string(prop.Decision) == e.Decision && slices.Equal(prop.Reasons, e.Reasons):
			res.Unchanged++
			return nil
		case string(prop.Decision) == e.Decision:
			res.ReasonsChanged++
			return nil
		case !reproduced:
			res.Uncertain++
		case prop.Allowed():
			res.NowAllowed++
		default:
			res.NowRefused++
			for _, r := range prop.Reasons {
				newReasons[r]++
			}
		}
		if len(res.Flips) < q.MaxFlips {
			fl := flipOf(e, prop)
			fl.Uncertain = !reproduced
			res.Flips = append(res.Flips, fl)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("compliance: what-if: %w", err)
	}
	for r, n := range newReasons {
		res.NewReasons = append(res.NewReasons, ReasonCount{Reason: r, Text: ReasonText(r), Count: n})
	}
	sort.Slice(res.NewReasons, func(i, j int) bool {
		a, b := res.NewReasons[i], res.NewReasons[j]
		return a.Count > b.Count || a.Count == b.Count && a.Reason < b.Reason
	})
	return res, nil
}

// RuntimeChanges gives the live registry's stored events, oldest first;
// its run-time changes are what a what-if carries over a proposal.
// *policy.Store satisfies it. It must be safe for concurrent use.
type RuntimeChanges interface {
	Events(ctx context.Context, after int64, limit int) ([]policy.Event, error)
}

// WhatIfInForce is WhatIf with proposed as the broker would decide with it
// once applied: every run-time change of changes carried over it
// (WithRuntimeChanges), so that a withdrawn consent, an erasure or a legal
// order recorded at run time holds under the proposal as it does under the
// registry in force. current must be the registry in force, run-time
// changes included. A nil changes carries nothing. The API and `clearance
// report whatif` both answer through it.
func WhatIfInForce(ctx context.Context, log Scanner, changes RuntimeChanges, current, proposed *agreements.Registry, subjectKey []byte, q WhatIfQuery) (*WhatIfResult, error) {
	proposed, n, err := WithRuntimeChanges(ctx, changes, proposed)
	if err != nil {
		return nil, err
	}
	res, err := WhatIf(ctx, log, current, proposed, subjectKey, q)
	if err != nil {
		return nil, err
	}
	res.RuntimeChanges = n
	return res, nil
}

// WithRuntimeChanges returns reg as the live registry puts a newly applied
// base in force: with every run-time change changes holds carried over it,
// oldest first, and the number carried. As the live registry does (policy's
// state.next and CarryAll), a suspension holds only while reg keeps the
// suspended version of the agreement, and a change reg cannot take (a
// purpose it drops) is left out. A nil changes returns reg.
func WithRuntimeChanges(ctx context.Context, changes RuntimeChanges, reg *agreements.Registry) (*agreements.Registry, int, error) {
	if changes == nil {
		return reg, 0, nil
	}
	evs, err := changes.Events(ctx, 0, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("compliance: run-time changes: %w", err)
	}
	evs = slices.DeleteFunc(evs, func(ev policy.Event) bool { return ev.Kind != policy.KindChange || ev.Change == nil })
	reg, n := policy.CarryAll(reg, evs)
	return reg, n, nil
}

func flipOf(e *audit.Entry, d *agreements.Decision) Flip {
	f := Flip{Transfer: transferOf(e), Recorded: e.Decision,
		RecordedReasons: e.Reasons, Proposed: string(d.Decision), ProposedReasons: slices.Clone(d.Reasons),
		ProposedMechanism: d.Mechanism}
	if f.ProposedReasons == nil {
		f.ProposedReasons = []string{}
	}
	if d.Allowed() {
		why := "now allowed"
		if d.Agreement != nil {
			why += " under agreement " + agreementRef(d.Agreement.ID, d.Agreement.Version)
		} else if d.LegalOrder != "" {
			why += " under legal order " + d.LegalOrder
		}
		if d.Mechanism != "" {
			why += ", mechanism " + d.Mechanism
		}
		if len(e.Reasons) > 0 {
			why += "; no longer: " + strings.Join(e.Reasons, ", ")
		}
		f.Why = why
	} else {
		f.Why = "now refused: " + texts(d.Reasons)
	}
	return f
}

// sentChange compares what an allowed transfer's entry records as sent and
// removed with what d, an allowed decision on its reconstruction, would
// send; changed is false when they agree.
func sentChange(e *audit.Entry, d *agreements.Decision) (sc SentChange, changed bool) {
	sc = SentChange{Transfer: transferOf(e),
		CategoriesNoLonger: missingFrom(e.CategoriesSent, d.Categories),
		CategoriesNew:      missingFrom(d.Categories, e.CategoriesSent),
		FieldsNowSent:      []string{}, FieldsNowRemoved: []string{}}
	for _, f := range d.Fields.Removed {
		if _, ok := e.FieldsRemoved[f.Path]; !ok {
			sc.FieldsNowRemoved = append(sc.FieldsNowRemoved, f.Path)
		}
	}
	for p := range e.FieldsRemoved {
		if d.Fields.Removed.Reason(p) == "" {
			sc.FieldsNowSent = append(sc.FieldsNowSent, p)
		}
	}
	sort.Strings(sc.FieldsNowRemoved)
	sort.Strings(sc.FieldsNowSent)
	if len(sc.CategoriesNoLonger)+len(sc.CategoriesNew)+len(sc.FieldsNowRemoved)+len(sc.FieldsNowSent) == 0 {
		return sc, false
	}
	var why []string
	if len(sc.CategoriesNoLonger) > 0 {
		why = append(why, "no longer sends "+strings.Join(sc.CategoriesNoLonger, ", "))
	}
	if len(sc.CategoriesNew) > 0 {
		why = append(why, "now sends "+strings.Join(sc.CategoriesNew, ", "))
	}
	if len(sc.FieldsNowRemoved) > 0 {
		why = append(why, "removes "+strings.Join(sc.FieldsNowRemoved, ", "))
	}
	if len(sc.FieldsNowSent) > 0 {
		why = append(why, "sends "+strings.Join(sc.FieldsNowSent, ", ")+", recorded as removed")
	}
	if d.Agreement != nil {
		why = append(why, "under agreement "+agreementRef(d.Agreement.ID, d.Agreement.Version))
	}
	sc.Why = strings.Join(why, "; ")
	return sc, true
}

// missingFrom returns the members of a that b lacks, in a's order; never
// nil.
func missingFrom(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// subjectIndex maps the HMAC of every subject named in the registries to
// its id.
func subjectIndex(key []byte, regs ...*agreements.Registry) map[string]string {
	out := map[string]string{}
	if len(key) == 0 {
		return out
	}
	add := func(id string) { out[audit.SubjectHMAC(key, id)] = id }
	for _, r := range regs {
		c := r.Content()
		for _, x := range c.Consents {
			add(x.Subject)
		}
		for _, x := range c.Erasures {
			add(x.Subject)
		}
		for _, o := range c.LegalOrders {
			for _, sub := range o.Subjects {
				add(sub)
			}
		}
	}
	return out
}

// reconstruct rebuilds a request from an entry's metadata (see
// WhatIfLimits). The dataset's fields come from the proposed registry, or
// the current one when the proposal drops the dataset.
func reconstruct(e *audit.Entry, subject string, proposed, current agreements.Content, at time.Time) *agreements.Request {
	req := &agreements.Request{ID: e.RequestID, Source: e.Source, Recipient: e.Recipient,
		Purpose: e.Purpose, Dataset: e.Dataset,
		Subject: agreements.Subject{ID: subject, Jurisdiction: e.Origin,
			Minor: slices.Contains(e.Reasons, agreements.ReasonMinorWithoutParentalConsent)},
		Record: map[string]any{}}
	fields := datasetFields(proposed, e.Dataset)
	if fields == nil {
		fields = datasetFields(current, e.Dataset)
	}
	paths := make([]string, 0, len(fields))
	for p := range fields {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if e.Decision == "allow" && !slices.Contains(e.CategoriesSent, fields[p]) {
			continue
		}
		setPath(req.Record, p)
	}
	for p := range e.FieldsRemoved {
		setPath(req.Record, p)
	}
	req.LegalOrder = legalOrderFor(e, subject, at, current, proposed)
	return req
}

func datasetFields(c agreements.Content, id string) map[string]string {
	for _, d := range c.Datasets {
		if d.ID == id {
			if d.Fields == nil {
				return map[string]string{}
			}
			return d.Fields
		}
	}
	return nil
}

// setPath puts a placeholder value at a dotted path; a "*" segment is a
// list of one element.
func setPath(rec map[string]any, path string) {
	parts := strings.Split(path, ".")
	var set func(m map[string]any, parts []string)
	set = func(m map[string]any, parts []string) {
		k := parts[0]
		if len(parts) == 1 {
			if _, ok := m[k]; !ok {
				m[k] = "x"
			}
			return
		}
		if parts[1] == "*" {
			list, _ := m[k].([]any)
			if len(list) == 0 {
				list = []any{map[string]any{}}
			}
			if len(parts) == 2 {
				list[0] = "x"
			} else if inner, ok := list[0].(map[string]any); ok {
				set(inner, parts[2:])
			}
			m[k] = list
			return
		}
		inner, ok := m[k].(map[string]any)
		if !ok {
			inner = map[string]any{}
			m[k] = inner
		}
		set(inner, parts[1:])
	}
	set(rec, parts)
}

// legalOrderFor returns the legal order a transfer to an authority answered:
// the one its entry names or, for an entry written before entries named
// them, one naming the recipient and the subject, valid at at, first in the
// current registry, then in the proposal.
func legalOrderFor(e *audit.Entry, subject string, at time.Time, regs ...agreements.Content) string {
	if e.LegalBasis != string(agreements.BasisLegalObligation) {
		return ""
	}
	if o := e.LegalOrder(); o != "" {
		return o // recorded since the audit log names it
	}
	for _, c := range regs {
		for _, o := range c.LegalOrders {
			if o.Authority == e.Recipient && slices.Contains(o.Subjects, subject) && !at.After(o.ValidUntil.AddDate(0, 0, 1)) {
				return o.ID
			}
		}
	}
	return ""
}
