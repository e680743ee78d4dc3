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
// purpose and at.
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
	var m ConsentMessage
	if err := strictJSON(data, &m); err != nil {
		return agreements.Change{}, err
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
		return agreements.Change{}, err
	}
	if m.Action == ActionWithdraw {
		return agreements.Change{Withdrawals: []agreements.Withdrawal{{Subject: m.Subject, Purpose: m.Purpose, At: at}}}, nil
	}
	return agreements.Change{Consents: []agreements.Consent{{
		Subject: m.Subject, Purpose: m.Purpose, Recipients: m.Recipients, GrantedAt: at,
		Parental: m.Parental, TransferConsent: m.TransferConsent, NoticeVersion: m.NoticeVersion,
	}}}, nil
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

// ErrNothingToWithdraw is a withdrawal that names no consent of its subject for its
// purpose that is in force at its time (none was granted, or it is withdrawn
// already). Nothing is recorded and no withdrawal is audited.
var ErrNothingToWithdraw = errors.New("policy: no consent in force to withdraw")

// reasonNothingToWithdraw is the receipt reason of ErrNothingToWithdraw; it
// names neither the subject nor the purpose.
const reasonNothingToWithdraw = "not_found: consent: the subject holds no consent for this purpose in force at the withdrawal's time (none was granted, or it is withdrawn already)"

// ErrAlreadyErased is Live.Change's answer to an erasure of a subject the
// registry in force holds an erasure of, in force by now or by the new
// one's time: nothing is recorded.
var ErrAlreadyErased = errors.New("policy: the subject's erasure is in force already")

// ReasonAlreadyErased is the reason of the receipt of an erasure of a
// subject the registry in force holds an erasure of already: it is
// answered as recorded, and nothing is recorded again (no second event, no
// second notice to the recipients).
const ReasonAlreadyErased = "already_erased: the subject's erasure is in force; nothing recorded again"

// inForce compares ch, a parsed consent or erasure message, with reg:
// erased reports an erasure of a subject reg holds an erasure of in force
// by now or by the new one's time; a
// withdrawal matching no consent in force at its time (as
// agreements.Registry.With would withdraw it) is ErrNothingToWithdraw.
func inForce(reg *agreements.Registry, ch agreements.Change, now time.Time) (erased bool, err error) {
	if len(ch.Erasures)+len(ch.Withdrawals) == 0 {
		return false, nil
	}
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
		_, erasures := reg.Subject(e.Subject)
		if slices.ContainsFunc(erasures, func(x agreements.Erasure) bool { return !x.At.After(by) }) {
			return true, nil
		}
	}
	for _, w := range ch.Withdrawals {
		consents, _ := reg.Subject(w.Subject)
		found := false
		for i := range consents {
			k := &consents[i]
			if k.Purpose == w.Purpose && !k.GrantedAt.After(w.At) && (k.WithdrawnAt == nil || k.WithdrawnAt.After(w.At)) {
				found = true
				break
			}
		}
		if !found {
			return false, ErrNothingToWithdraw
		}
	}
	return false, nil
}

// checkID rejects empty, overlong and control-character ids.
func checkID(field, id string) error {
	switch {
	case id == "":
		return invalid(field, "required field is missing")
	case len(id) > 256:
		return invalid(field, "longer than 256 bytes")
	case strings.ContainsFunc(id, unicode.IsControl):
		return invalid(field, "holds control characters")
	}
	return nil
}
