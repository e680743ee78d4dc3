package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clearance-broker/clearance/agreements"
)

// ConsentMessage is a consent granted or withdrawn, as a consent-management
// system sends it on clearance.consents.<source> or POST /v1/consents:
//
//	{"action": "grant", "subject": "cust-7", "purpose": "marketing",
//	 "recipients": ["promoreach-nl"], "at": "2026-11-28T10:00:00Z",
//	 "parental": false, "transfer_consent": false, "notice_version": "risk-notice-v3"}
//	{"action": "withdraw", "subject": "cust-7", "purpose": "marketing", "at": "2026-11-28T11:00:00Z"}
//
// At defaults to the time of receipt; a withdrawal takes only subject,
// purpose and at. A withdrawal without at withdraws the consents recorded
// before it even if one was dated a few minutes ahead (dateAtReceipt); a
// withdrawal is recorded even when no consent is in force at its time,
// and withdraws the consents granted before it that are recorded after
// it.
type ConsentMessage struct {
	Action          string     `json:"action"`
	Subject         string     `json:"subject"`
	Purpose         string     `json:"purpose"`
	Recipients      []string   `json:"recipients,omitempty"`
	At              *time.Time `json:"at,omitempty"`
	Parental        bool       `json:"parental,omitempty"`
	TransferConsent bool       `json:"transfer_consent,omitempty"`
	NoticeVersion   string     `json:"notice_version,omitempty"`
}

// The consent actions.
const (
	ActionGrant    = "grant"
	ActionWithdraw = "withdraw"
)

// ErasureMessage is an erasure request (Art. 17) as it arrives on
// clearance.erasures.<source>: {"subject": "cust-13", "at": "…"}. On POST
// /v1/subjects/{id}/erasure the subject is the path's and the body, if
// any, may give at. At defaults to the time of receipt.
type ErasureMessage struct {
	Subject string     `json:"subject"`
	At      *time.Time `json:"at,omitempty"`
}

// InvalidError is a consent or erasure message that cannot be recorded;
// Reason reads "invalid_request: <field>: <problem>" and names no personal
// data.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return e.Reason }

// Unwrap makes every InvalidError an ErrInvalidChange.
func (e *InvalidError) Unwrap() error { return ErrInvalidChange }

func invalid(field, problem string) error {
	return &InvalidError{Reason: "invalid_request: " + field + ": " + problem}
}

// ParseConsent decodes and checks a consent message strictly (unknown
// fields are errors) and returns the change it makes, received at now.
func ParseConsent(data []byte, now time.Time) (agreements.Change, error) {
	ch, _, err := parseConsent(data, now)
	return ch, err
}

// parseConsent is ParseConsent; atReceipt reports a message without at,
// dated now.
func parseConsent(data []byte, now time.Time) (ch agreements.Change, atReceipt bool, err error) {
	var m ConsentMessage
	if err := strictJSON(data, &m); err != nil {
		return agreements.Change{}, false, err
	}
	var errs []error
	if err := checkID("subject", m.Subject); err != nil {
		errs = append(errs, err)
	}
	if err := checkID("purpose", m.Purpose); err != nil {
		errs = append(errs, err)
	}
	if err := checkAt(m.At, now); err != nil {
		errs = append(errs, err)
	}
	at := now.UTC()
	if m.At != nil {
		at = m.At.UTC()
	}
	switch m.Action {
	case ActionGrant:
		for i, r := range m.Recipients {
			if err := checkID(fmt.Sprintf("recipients[%d]", i), r); err != nil {
				errs = append(errs, err)
			}
		}
		if m.NoticeVersion != "" {
			if err := checkID("notice_version", m.NoticeVersion); err != nil {
				errs = append(errs, err)
			}
		}
	case ActionWithdraw:
		if len(m.Recipients) > 0 || m.Parental || m.TransferConsent || m.NoticeVersion != "" {
			errs = append(errs, invalid("action", "a withdrawal takes only subject, purpose and at"))
		}
	case "":
		errs = append(errs, invalid("action", "required field is missing"))
	default:
		errs = append(errs, invalid("action", `must be "grant" or "withdraw"`))
	}
	if err := errors.Join(errs...); err != nil {
		return agreements.Change{}, false, err
	}
	if m.Action == ActionWithdraw {
		return agreements.Change{Withdrawals: []agreements.Withdrawal{{Subject: m.Subject, Purpose: m.Purpose, At: at}}}, m.At == nil, nil
	}
	return agreements.Change{Consents: []agreements.Consent{{
		Subject: m.Subject, Purpose: m.Purpose, Recipients: m.Recipients, GrantedAt: at,
		Parental: m.Parental, TransferConsent: m.TransferConsent, NoticeVersion: m.NoticeVersion,
	}}}, m.At == nil, nil
}

// ParseErasure decodes and checks an erasure message; subject, when not
// empty, is the subject named outside the body (the HTTP path) and the body
// may then be empty.
func ParseErasure(data []byte, subject string, now time.Time) (agreements.Change, error) {
	var m ErasureMessage
	if len(bytes.TrimSpace(data)) > 0 || subject == "" {
		if err := strictJSON(data, &m); err != nil {
			return agreements.Change{}, err
		}
	}
	if subject != "" {
		if m.Subject != "" && m.Subject != subject {
			return agreements.Change{}, invalid("subject", "does not match the path")
		}
		m.Subject = subject
	}
	if err := checkID("subject", m.Subject); err != nil {
		return agreements.Change{}, err
	}
	if err := checkAt(m.At, now); err != nil {
		return agreements.Change{}, err
	}
	at := now.UTC()
	if m.At != nil {
		at = m.At.UTC()
	}
	return agreements.Change{Erasures: []agreements.Erasure{{Subject: m.Subject, At: at}}}, nil
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute):
			return invalid(ute.Field, "wrong type")
		}
		if name, ok := agreements.UnknownField(err); ok {
			return invalid(name, "unknown field")
		}
		return invalid("body", "not a JSON object")
	}
	if dec.More() {
		return invalid("body", "trailing data after the JSON object")
	}
	return nil
}

// maxClockSkew is how far after its receipt a consent's or erasure's at
// may lie: a sender's clock running ahead. A later at is refused: a consent
// or an erasure is recorded as given, not dated to take effect later.
const maxClockSkew = 5 * time.Minute

// checkAt refuses an at more than maxClockSkew after now.
func checkAt(at *time.Time, now time.Time) error {
	if at != nil && at.After(now.Add(maxClockSkew)) {
		return invalid("at", "more than 5 minutes in the future; give the time it was given, or leave at out for the time of receipt")
	}
	return nil
}

// ReasonNoConsentInForce is the reason of the receipt of a withdrawal
// that found no consent of its subject for its purpose in force at its
// time (none recorded yet, or withdrawn already). It is recorded all the
// same: a consent granted before it and recorded after it (sent late, or
// sent again) is withdrawn by it (agreements.Withdrawal). The reason names
// neither the subject nor the purpose.
const ReasonNoConsentInForce = "no_consent_in_force: no consent of the subject for this purpose was in force at the withdrawal's time; recorded, it withdraws one granted before it that is recorded later"

// ErrAlreadyErased is Live.Change's answer to an erasure of a subject
// erased already at run time, by an erasure in force by now or by the new
// one's time: nothing is recorded.
var ErrAlreadyErased = errors.New("policy: the subject's erasure is in force already")

// ReasonAlreadyErased is the reason of the receipt of an erasure of a
// subject erased already at run time: it is answered as recorded, and
// nothing is recorded again (no second event, no second notice to the
// recipients).
const ReasonAlreadyErased = "already_erased: the subject's erasure is in force; nothing recorded again"

// found is what inForce finds of a change in the registry in force.
type found struct {
	// erased: the change erases a subject erased already at run time.
	erased bool
	// unmatched: a withdrawal of the change finds no consent in force at
	// its time.
	unmatched bool
}

// inForce compares ch, a parsed consent or erasure message, with reg.
// An erasure of a subject that a run-time erasure in force by now or by
// the new one's time erases is a repeat (erased); base(subject) gives the
// erasures the applied registry files hold of the subject, which are no
// reason to record nothing: a later apply of files without them would
// leave the subject's data flowing. A withdrawal matching no consent in
// force at its time (as agreements.Registry.With would withdraw it) is
// unmatched.
func inForce(reg *agreements.Registry, ch agreements.Change, now time.Time, base func(subject string) ([]agreements.Erasure, error)) (found, error) {
	var f found
	// The subject's own entries only (Registry.Subject): a registry may
	// hold a consent per customer, and this runs for every message.
	// Only an erasure in force by now, or by the new one's time, makes it a
	// repeat: one on file dated later (a registry file's, or one sent a few
	// minutes ahead) leaves the subject's data flowing until then, and the
	// new one stops it sooner.
	for _, e := range ch.Erasures {
		by := e.At
		if now.After(by) {
			by = now
		}
		held := func(x agreements.Erasure) bool { return !x.At.After(by) }
		_, erasures := reg.Subject(e.Subject)
		n := countFunc(erasures, held)
		if n == 0 {
			continue
		}
		// The registry holds the files' erasures and every run-time one:
		// a run-time erasure is in force if it holds more than the files.
		files, err := base(e.Subject)
		if err != nil {
			return found{}, err
		}
		if n > countFunc(files, held) {
			f.erased = true
			return f, nil
		}
	}
	// A message's withdrawal (and those dateAtReceipt added for consents
	// dated ahead) finds no consent when none of them finds one in force
	// at its time.
	matched := false
	for _, w := range ch.Withdrawals {
		consents, _ := reg.Subject(w.Subject)
		matched = matched || slices.ContainsFunc(consents, func(k agreements.Consent) bool {
			return k.Purpose == w.Purpose && !k.GrantedAt.After(w.At) && (k.WithdrawnAt == nil || k.WithdrawnAt.After(w.At))
		})
	}
	f.unmatched = len(ch.Withdrawals) > 0 && !matched
	return f, nil
}

// dateAtReceipt returns ch with, beside each withdrawal sent without a
// time (dated at its receipt), one more at the grant of each consent reg
// holds of its subject and purpose that is not withdrawn and is granted
// after that receipt: a grant dated a few minutes ahead of its own receipt
// (a sender's clock running ahead, up to maxClockSkew) and recorded before
// the withdrawal is withdrawn by it, rather than coming into force after
// it, while the consents in force are withdrawn at once. Only consents
// recorded before the withdrawal add one, so the change is fixed when it
// is recorded, the same on every instance.
func dateAtReceipt(reg *agreements.Registry, ch agreements.Change) agreements.Change {
	out := ch
	out.Withdrawals = slices.Clone(ch.Withdrawals)
	for _, w := range ch.Withdrawals {
		consents, _ := reg.Subject(w.Subject)
		for _, c := range consents {
			if c.Purpose == w.Purpose && c.WithdrawnAt == nil && c.GrantedAt.After(w.At) {
				out.Withdrawals = append(out.Withdrawals, agreements.Withdrawal{Subject: w.Subject, Purpose: w.Purpose, At: c.GrantedAt.UTC()})
			}
		}
	}
	return out
}

func countFunc[T any](s []T, f func(T) bool) int {
	n := 0
	for _, x := range s {
		if f(x) {
			n++
		}
	}
	return n
}

// checkID rejects empty, overlong, control-character ids and ids that are
// not valid UTF-8 (which JSON cannot carry as they are: the change would
// be stored in another form than it was hashed in).
func checkID(field, id string) error {
	switch {
	case id == "":
		return invalid(field, "required field is missing")
	case len(id) > 256:
		return invalid(field, "longer than 256 bytes")
	case !utf8.ValidString(id):
		return invalid(field, "not valid UTF-8")
	case strings.ContainsFunc(id, unicode.IsControl):
		return invalid(field, "holds control characters")
	}
	return nil
}
