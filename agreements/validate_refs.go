package agreements

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// The checks of agreements and of the entries about people (consents,
// legal orders, erasures), which refer to everything else.

// categoryRefs checks agreement and legal order categories: exact names a
// dataset uses, or a prefix pattern "contact.*" (or "*") matching at least
// one; special categories cannot be reached through a pattern. Names and
// the stems of patterns have the form of categoryRule.
func (v *validator) categoryRefs(src Source, fb, key string, list []string) {
	for j, c := range list {
		k := fmt.Sprintf("%s[%d]", key, j)
		stem, pattern := strings.CutSuffix(c, ".*")
		switch {
		case c == "*":
		case pattern:
			if fault := v.categoryFault(stem); fault != "" {
				v.fail(src, fb, k, ErrInvalidValue, "pattern %s is refused (%s): a pattern is a category followed by .*, or *; %s", shownPattern(c), fault, categoryRule)
				continue
			}
			if isSpecial(stem) {
				v.fail(src, fb, k, ErrInvalidValue, "special categories (Art. 9) must be listed by name, not by %s", shownPattern(c))
				continue
			}
			prefix := stem + "."
			found := false
			for known := range v.categories {
				found = found || strings.HasPrefix(known, prefix)
			}
			if !found {
				v.fail(src, fb, k, ErrDanglingReference, "no dataset uses a category matching %s", shownPattern(c))
			}
		default:
			if fault := v.categoryFault(c); fault != "" {
				v.fail(src, fb, k, ErrInvalidValue, "category %s is refused (%s): %s, or a pattern such as contact.*", shownPattern(c), fault, categoryRule)
			} else if !v.categories[c] {
				v.fail(src, fb, k, ErrDanglingReference, "no dataset uses the category %s", shownID(c))
			}
		}
	}
}

var (
	kinds    = []string{string(KindDPA), string(KindDataSharing), string(KindIntraGroup), string(KindSCC), string(KindBCR)}
	statuses = []string{string(StatusDraft), string(StatusActive), string(StatusSuspended), string(StatusTerminated)}
	modules  = []string{"C2C", "C2P", "P2P", "P2C"}
)

func (v *validator) checkAgreements() {
	seen := map[string]Source{}
	for i := range v.c.Agreements {
		a := &v.c.Agreements[i]
		fb := fmt.Sprintf("agreements[%d]", i)
		if v.required(a.Src, fb, "id", a.ID == "") {
			if prev, dup := seen[a.ID]; dup {
				v.fail(a.Src, fb, "id", ErrDuplicate, "agreement id %q (%s)", a.ID, where(prev))
			}
			seen[a.ID] = a.Src
		}
		if _, present := a.Src.keys["version"]; a.Version < 1 && (present || a.Version < 0) && !a.Src.broken("version") {
			v.fail(a.Src, fb, "version", ErrInvalidValue, "a version is a positive integer")
		} else {
			v.required(a.Src, fb, "version", a.Version == 0)
		}
		mech := a.Kind == KindSCC || a.Kind == KindBCR
		if v.required(a.Src, fb, "kind", a.Kind == "") && !contains(kinds, string(a.Kind)) {
			v.fail(a.Src, fb, "kind", ErrInvalidValue, "%q is not one of %v", a.Kind, kinds)
		}
		switch {
		case a.Kind == KindSCC:
			if v.required(a.Src, fb, "module", a.Module == "") && !contains(modules, a.Module) {
				v.fail(a.Src, fb, "module", ErrInvalidValue, "%q is not one of %v", a.Module, modules)
			}
			if a.TIA == nil && !a.Src.broken("tia") {
				v.fail(a.Src, fb, "tia", ErrMissingKey, "an SCC agreement needs a transfer impact assessment (tia)")
			}
		case a.Module != "":
			v.fail(a.Src, fb, "module", ErrInvalidValue, "only scc agreements have a module")
		}
		if !mech && a.TIA != nil {
			v.fail(a.Src, fb, "tia", ErrInvalidValue, "only scc and bcr agreements have a tia")
		}
		if mech {
			if v.required(a.Src, fb, "destinations", len(a.Destinations) == 0) {
				v.places(a.Src, fb, "destinations", a.Destinations)
			}
		} else if len(a.Destinations) > 0 {
			v.fail(a.Src, fb, "destinations", ErrInvalidValue, "only scc and bcr agreements have destinations")
		}
		if v.required(a.Src, fb, "parties", len(a.Parties) == 0) {
			refs(v, a.Src, fb, "parties", "party", a.Parties, v.party)
		}
		if v.required(a.Src, fb, "purposes", len(a.Purposes) == 0) {
			refs(v, a.Src, fb, "purposes", "purpose", a.Purposes, v.purpose)
		}
		if v.required(a.Src, fb, "categories", len(a.Categories) == 0) {
			v.categoryRefs(a.Src, fb, "categories", a.Categories)
		}
		okFrom := v.required(a.Src, fb, "valid_from", a.ValidFrom.IsZero())
		okUntil := v.required(a.Src, fb, "valid_until", a.ValidUntil.IsZero())
		if okFrom && okUntil && a.ValidUntil.Before(a.ValidFrom) {
			v.fail(a.Src, fb, "valid_until", ErrInvalidValue, "ends before valid_from")
		}
		if v.required(a.Src, fb, "status", a.Status == "") && !contains(statuses, string(a.Status)) {
			v.fail(a.Src, fb, "status", ErrInvalidValue, "%q is not one of %v", a.Status, statuses)
		}
		if a.RetentionDays < 0 {
			v.fail(a.Src, fb, "retention_days", ErrInvalidValue, "must not be negative")
		}
		if a.DocumentSHA256 != "" {
			if b, err := hex.DecodeString(a.DocumentSHA256); err != nil || len(b) != 32 {
				v.fail(a.Src, fb, "document_sha256", ErrInvalidValue, "want 64 hexadecimal digits")
			}
		}
	}
}

func (v *validator) checkConsents() {
	for i := range v.c.Consents {
		c := &v.c.Consents[i]
		fb := fmt.Sprintf("consents[%d]", i)
		v.required(c.Src, fb, "subject", c.Subject == "")
		if v.required(c.Src, fb, "purpose", c.Purpose == "") {
			refs(v, c.Src, fb, "purpose", "purpose", []string{c.Purpose}, v.purpose)
		}
		refs(v, c.Src, fb, "recipients", "party", c.Recipients, v.party)
		v.required(c.Src, fb, "granted_at", c.GrantedAt.IsZero())
		if c.WithdrawnAt != nil && !c.GrantedAt.IsZero() && c.WithdrawnAt.Before(c.GrantedAt) {
			v.fail(c.Src, fb, "withdrawn_at", ErrInvalidValue, "withdrawn before granted_at")
		}
		if c.TransferConsent && c.NoticeVersion == "" {
			v.fail(c.Src, fb, "notice_version", ErrMissingKey, "an explicit transfer consent (Art. 49(1)(a)) records the risk notice the subject saw")
		}
	}
}

func (v *validator) checkLegalOrders() {
	seen := map[string]Source{}
	for i := range v.c.LegalOrders {
		o := &v.c.LegalOrders[i]
		fb := fmt.Sprintf("legal_orders[%d]", i)
		if v.required(o.Src, fb, "id", o.ID == "") {
			if prev, dup := seen[o.ID]; dup {
				v.fail(o.Src, fb, "id", ErrDuplicate, "legal order id %s (%s)", shownID(o.ID), where(prev))
			}
			seen[o.ID] = o.Src
		}
		if v.required(o.Src, fb, "authority", o.Authority == "") {
			if p := v.party(o.Authority); p == nil {
				v.fail(o.Src, fb, "authority", ErrDanglingReference, "no party %s", shownID(o.Authority))
			} else if p.Role != RoleAuthority {
				v.fail(o.Src, fb, "authority", ErrInvalidValue, "party %s has role %q, not authority", shownID(o.Authority), p.Role)
			}
		}
		if v.required(o.Src, fb, "subjects", len(o.Subjects) == 0) {
			for j, s := range o.Subjects {
				if s == "" {
					v.fail(o.Src, fb, fmt.Sprintf("subjects[%d]", j), ErrMissingKey, "must not be empty")
				}
			}
		}
		if v.required(o.Src, fb, "categories", len(o.Categories) == 0) {
			v.categoryRefs(o.Src, fb, "categories", o.Categories)
		}
		v.required(o.Src, fb, "valid_until", o.ValidUntil.IsZero())
	}
}

func (v *validator) checkErasures() {
	for i := range v.c.Erasures {
		e := &v.c.Erasures[i]
		fb := fmt.Sprintf("erasures[%d]", i)
		v.required(e.Src, fb, "subject", e.Subject == "")
		v.required(e.Src, fb, "at", e.At.IsZero())
	}
}

// shownPattern is shownID for a category pattern such as health.*.
func shownPattern(p string) string {
	if stem, ok := strings.CutSuffix(p, ".*"); ok && plainName(stem) {
		return fmt.Sprintf("%q", p)
	}
	return shownID(p)
}
