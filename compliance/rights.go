package compliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
)

// RegistryChanger records a run-time change of the registry so that it
// propagates to every instance and is audited (the live registry's Change,
// adapted by the binary). A change the registry refuses wraps
// ErrChangeRefused. It must be safe for concurrent use.
type RegistryChanger interface {
	ChangeRegistry(ctx context.Context, ch agreements.Change) (ChangeResult, error)
}

// ChangeFunc adapts a function to a RegistryChanger.
type ChangeFunc func(ctx context.Context, ch agreements.Change) (ChangeResult, error)

// ChangeRegistry calls f.
func (f ChangeFunc) ChangeRegistry(ctx context.Context, ch agreements.Change) (ChangeResult, error) {
	return f(ctx, ch)
}

// ChangeResult is the registry event that recorded a change.
type ChangeResult struct {
	// Event is the event's number in the registry store.
	Event int64
	// Version is the registry version in force after it.
	Version string
}

// ErrChangeRefused is wrapped by a RegistryChanger's error when the
// registry refuses the change (unknown party or category, a missing
// field); its other wrapped errors say why and name no subject.
var ErrChangeRefused = errors.New("compliance: the registry refuses the change")

// NoticeStatus is where the erasure notice to one recipient stands.
type NoticeStatus struct {
	Recipient      string     `json:"recipient"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	LastError      string     `json:"last_error,omitempty"`
	ErasedAt       time.Time  `json:"erased_at"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	AcknowledgedAt *time.Time `json:"acknowledged_at,omitempty"`
	EscalatedAt    *time.Time `json:"escalated_at,omitempty"`
	Justified      bool       `json:"justified"`
}

// ErasureStatus gives the erasure notices of a subject, one per recipient
// (the erasure package's Notifier.Status, adapted by the binary). It must
// be safe for concurrent use.
type ErasureStatus interface {
	NoticeStatus(ctx context.Context, subject string) ([]NoticeStatus, error)
}

// ErasureStatusFunc adapts a function to an ErasureStatus.
type ErasureStatusFunc func(ctx context.Context, subject string) ([]NoticeStatus, error)

// NoticeStatus calls f.
func (f ErasureStatusFunc) NoticeStatus(ctx context.Context, subject string) ([]NoticeStatus, error) {
	return f(ctx, subject)
}

// rights are the live registry's change API and the erasure notices'
// status, attached when the binary has started them.
type rights struct {
	changes  RegistryChanger
	erasures ErasureStatus
}

// rightsHolder holds the attached rights parts for concurrent readers.
type rightsHolder struct{ p atomic.Pointer[rights] }

// UseRights attaches the live registry's change API (legal orders are
// recorded through it) and the erasure notices' status (shown on the
// subject page). Either may be nil. The binary calls it once both are
// started, which happens after the Server is built; until then creating a
// legal order answers 503 and the subject page shows no notice status.
func (s *Server) UseRights(changes RegistryChanger, erasures ErasureStatus) {
	s.rights.p.Store(&rights{changes: changes, erasures: erasures})
}

func (s *Server) rightsParts() rights {
	if p := s.rights.p.Load(); p != nil {
		return *p
	}
	return rights{changes: s.opts.Changes, erasures: s.opts.Erasures}
}

// ErrNoChanges means no live registry is attached to record changes.
var ErrNoChanges = errors.New("compliance: registry changes are not available on this instance")

// LegalOrderInput is the body of POST /v1/legal-orders. ID is optional (a
// new one is made); ValidUntil is a date (YYYY-MM-DD, the whole day UTC) or
// an RFC 3339 time.
type LegalOrderInput struct {
	ID         string   `json:"id"`
	Authority  string   `json:"authority"`
	Subjects   []string `json:"subjects"`
	Categories []string `json:"categories"`
	ValidUntil string   `json:"valid_until"`
}

// legalOrder validates in against reg as of now and returns the order.
// Every problem is a *paramError naming the field; none repeats a subject.
func legalOrder(in LegalOrderInput, reg *agreements.Registry, now time.Time) (agreements.LegalOrder, error) {
	o := agreements.LegalOrder{ID: strings.TrimSpace(in.ID), Authority: in.Authority}
	c := reg.Content()
	if o.ID == "" {
		id := make([]byte, 6)
		_, _ = rand.Read(id)
		o.ID = "lo-" + now.UTC().Format("20060102") + "-" + hex.EncodeToString(id)
	} else if !tokenRE.MatchString(o.ID) {
		return o, badParam("id", "want an id of letters, digits, '.', '_', ':' or '-'")
	}
	for _, lo := range c.LegalOrders {
		if lo.ID == o.ID {
			return o, badParam("id", "a legal order "+o.ID+" exists already")
		}
	}
	if in.Authority == "" {
		return o, badParam("authority", "required")
	}
	p, perr := reg.Party(in.Authority)
	switch {
	case !tokenRE.MatchString(in.Authority) || perr != nil:
		return o, badParam("authority", "not a party of the registry")
	case p.Role != agreements.RoleAuthority:
		return o, badParam("authority", "party "+p.ID+" has role "+string(p.Role)+", not authority")
	}
	if len(in.Subjects) == 0 {
		return o, badParam("subjects", "required: at least one subject id")
	}
	seen := map[string]bool{}
	for _, sub := range in.Subjects {
		sub = strings.TrimSpace(sub)
		if sub == "" || len(sub) > 256 || strings.ContainsFunc(sub, isControl) {
			return o, badParam("subjects", "want subject ids of 1 to 256 printable characters")
		}
		if !seen[sub] {
			seen[sub] = true
			o.Subjects = append(o.Subjects, sub)
		}
	}
	if len(in.Categories) == 0 {
		return o, badParam("categories", "required: at least one data category")
	}
	known := map[string]bool{}
	for _, ds := range c.Datasets {
		for _, cat := range ds.Fields {
			known[cat] = true
		}
	}
	for _, cat := range in.Categories {
		if !known[cat] {
			return o, badParam("categories", "not a category of any dataset (see GET /v1/registry)")
		}
		if !slices.Contains(o.Categories, cat) {
			o.Categories = append(o.Categories, cat)
		}
	}
	if in.ValidUntil == "" {
		return o, badParam("valid_until", "required: a date (YYYY-MM-DD)")
	}
	until, err := time.Parse(time.DateOnly, in.ValidUntil)
	if err != nil {
		if until, err = time.Parse(time.RFC3339, in.ValidUntil); err != nil {
			return o, badParam("valid_until", "want a date (YYYY-MM-DD) or an RFC 3339 time")
		}
	}
	o.ValidUntil = until.UTC().Truncate(24 * time.Hour)
	if o.ValidUntil.Before(now.UTC().Truncate(24 * time.Hour)) {
		return o, badParam("valid_until", "lies in the past")
	}
	return o, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// createLegalOrder validates and records a legal order through the live
// registry. A change the registry refuses is a *paramError too.
func (s *Server) createLegalOrder(ctx context.Context, in LegalOrderInput) (*LegalOrderView, ChangeResult, error) {
	ch := s.rightsParts().changes
	if ch == nil {
		return nil, ChangeResult{}, ErrNoChanges
	}
	o, err := legalOrder(in, s.opts.Registry.Registry(), s.opts.Now())
	if err != nil {
		return nil, ChangeResult{}, err
	}
	ev, err := ch.ChangeRegistry(ctx, agreements.Change{LegalOrders: []agreements.LegalOrder{o}})
	switch {
	case errors.Is(err, ErrChangeRefused):
		return nil, ev, badParam("body", "the registry refuses the order: "+problemText(err))
	case err != nil:
		return nil, ev, err
	}
	v := s.legalOrderView(o, true)
	return &v, ev, nil
}

// problemText lists the registry's problems with a change; they name
// fields, parties and categories, never a subject.
func problemText(err error) string {
	var out []string
	for _, p := range agreements.Problems(err) {
		if errors.Is(p, ErrChangeRefused) || strings.HasPrefix(p.Error(), "policy: invalid change") {
			continue
		}
		out = append(out, strings.TrimPrefix(p.Error(), "agreements: "))
	}
	if len(out) == 0 {
		return "invalid change"
	}
	return strings.Join(out, "; ")
}

// LegalOrderView is a legal order as the API shows it. Subjects are given
// in clear to officers only; everyone sees their HMACs (as the audit log
// keeps them).
type LegalOrderView struct {
	ID           string    `json:"id"`
	Authority    string    `json:"authority"`
	Categories   []string  `json:"categories"`
	ValidUntil   time.Time `json:"valid_until"`
	Active       bool      `json:"active"`
	SubjectCount int       `json:"subject_count"`
	SubjectHMACs []string  `json:"subject_hmacs"`
	Subjects     []string  `json:"subjects,omitempty"`
}

func (s *Server) legalOrderView(o agreements.LegalOrder, clear bool) LegalOrderView {
	v := LegalOrderView{ID: o.ID, Authority: o.Authority, Categories: o.Categories, ValidUntil: o.ValidUntil.UTC(),
		Active: s.opts.Now().Before(o.ValidUntil.AddDate(0, 0, 1)), SubjectCount: len(o.Subjects), SubjectHMACs: []string{}}
	for _, sub := range o.Subjects {
		if h := s.subjectHMAC(sub); h != "" {
			v.SubjectHMACs = append(v.SubjectHMACs, h)
		}
	}
	if clear {
		v.Subjects = o.Subjects
	}
	return v
}

// legalOrders lists the orders of the registry in force, newest expiry
// first.
func (s *Server) legalOrders(clear bool) []LegalOrderView {
	out := []LegalOrderView{}
	for _, o := range s.opts.Registry.Registry().Content().LegalOrders {
		out = append(out, s.legalOrderView(o, clear))
	}
	slices.SortStableFunc(out, func(a, b LegalOrderView) int { return b.ValidUntil.Compare(a.ValidUntil) })
	return out
}

// ConsentView is one consent of a subject, as the registry in force holds
// it (the subject itself is not repeated).
type ConsentView struct {
	Purpose         string     `json:"purpose"`
	Recipients      []string   `json:"recipients"`
	GrantedAt       time.Time  `json:"granted_at"`
	WithdrawnAt     *time.Time `json:"withdrawn_at,omitempty"`
	Parental        bool       `json:"parental"`
	TransferConsent bool       `json:"transfer_consent"`
	NoticeVersion   string     `json:"notice_version,omitempty"`
}

// consentsOf returns the consents of subject, matched as the registry
// store keeps them, from the registry's subject index.
func (s *Server) consentsOf(subject string) []ConsentView {
	out := []ConsentView{}
	consents, _ := s.opts.Registry.Registry().Subject(subject)
	for _, c := range consents {
		v := ConsentView{Purpose: c.Purpose, Recipients: c.Recipients, GrantedAt: c.GrantedAt.UTC(), WithdrawnAt: c.WithdrawnAt,
			Parental: c.Parental, TransferConsent: c.TransferConsent, NoticeVersion: c.NoticeVersion}
		if v.Recipients == nil {
			v.Recipients = []string{}
		}
		out = append(out, v)
	}
	return out
}

// ErasureView is one recorded erasure, by the subject's HMAC.
type ErasureView struct {
	SubjectHMAC string    `json:"subject_hmac"`
	At          time.Time `json:"at"`
}

// erasures lists the registry's erasures, newest first; subject, when not
// empty, keeps only that subject's.
func (s *Server) erasures(subject string) []ErasureView {
	out := []ErasureView{}
	reg := s.opts.Registry.Registry()
	var all []agreements.Erasure
	if subject != "" {
		_, all = reg.Subject(subject)
	} else {
		all = reg.Erasures()
	}
	for _, e := range all {
		out = append(out, ErasureView{SubjectHMAC: s.subjectHMAC(e.Subject), At: e.At.UTC()})
	}
	slices.SortStableFunc(out, func(a, b ErasureView) int { return b.At.Compare(a.At) })
	return out
}

// subjectParam reads the required subject query parameter.
func subjectParam(q map[string][]string) (string, error) {
	v := q["subject"]
	switch {
	case len(v) == 0 || v[0] == "":
		return "", badParam("subject", "required")
	case len(v) > 1:
		return "", badParam("subject", "given more than once")
	case len(v[0]) > 256 || strings.ContainsFunc(v[0], isControl):
		return "", badParam("subject", "want a subject id of at most 256 printable characters")
	}
	return v[0], nil
}

func (s *Server) noChanges(w http.ResponseWriter) {
	writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "unavailable", Message: strings.TrimPrefix(ErrNoChanges.Error(), "compliance: ")})
}

// subjectHMAC is the subject's HMAC as the audit log keeps it ("" without
// the subject key).
func (s *Server) subjectHMAC(subject string) string {
	if len(s.opts.SubjectKey) == 0 {
		return ""
	}
	return audit.SubjectHMAC(s.opts.SubjectKey, subject)
}
