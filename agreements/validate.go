package agreements

import (
	"encoding/json"
	"fmt"
	"strings"
)

// validator checks a merged Content: required keys, enumerations, country
// codes, dates, duplicate ids and references between entries. It collects
// every problem.
type validator struct {
	c          *Content
	errs       []error
	zones      map[string]*Zone
	parties    map[string]*Party
	purposes   map[string]*Purpose
	categories map[string]bool
	// lookup, when set, resolves parties the content does not hold (the
	// registry a Change applies to).
	lookup func(string) *Party
	// files: the content comes from registry files (Parse), whose category
	// names are held to categoryRule. Content built in code or stored by
	// an earlier version (New, Restore) and the run-time changes keep the
	// rule registries were stored under (storedCategoryFault): a registry
	// stored before the rule must still load, its datasets' categories
	// being the ones the run-time changes can name.
	files bool
}

// categoryFault is categoryFault or storedCategoryFault, as v checks
// files or stored content.
func (v *validator) categoryFault(c string) string {
	if v.files {
		return categoryFault(c)
	}
	return storedCategoryFault(c)
}

func (v *validator) party(id string) *Party {
	if p := v.parties[id]; p != nil {
		return p
	}
	if v.lookup != nil {
		return v.lookup(id)
	}
	return nil
}

func (v *validator) purpose(id string) *Purpose { return v.purposes[id] }

func validate(c *Content, files bool) []error {
	v := &validator{c: c, zones: map[string]*Zone{}, parties: map[string]*Party{}, purposes: map[string]*Purpose{}, categories: map[string]bool{},
		files: files}
	v.checkZones()
	v.checkParties()
	v.checkDatasets()
	v.checkPurposes()
	v.checkAdequacy()
	v.checkAgreements()
	v.checkConsents()
	v.checkLegalOrders()
	v.checkErasures()
	return v.errs
}

// fail reports a problem of key in the entry defined at src; fallback is the
// entry's path when it was built in code.
func (v *validator) fail(src Source, fallback, key string, class error, format string, args ...any) {
	path := src.path
	if path == "" {
		path = fallback
	}
	line := src.Line
	if key != "" {
		line = src.line(strings.SplitN(key, "[", 2)[0])
		if strings.HasPrefix(key, "[") {
			path += key
		} else {
			path = join(path, key)
		}
	}
	v.errs = append(v.errs, &LoadError{File: src.File, Line: line, Key: path, Err: class, Detail: fmt.Sprintf(format, args...)})
}

// required reports an empty value whose key was not already reported.
func (v *validator) required(src Source, fallback, key string, empty bool) bool {
	if !empty {
		return true
	}
	if !src.broken(key) {
		if _, present := src.keys[key]; present {
			v.fail(src, fallback, key, ErrMissingKey, "must not be empty")
		} else {
			v.fail(src, fallback, key, ErrMissingKey, "%s is required", key)
		}
	}
	return false
}

// where names a previous definition for duplicate messages.
func where(src Source) string {
	if src.File == "" {
		return "defined before"
	}
	return fmt.Sprintf("first defined at %s:%d", src.File, src.Line)
}

// maxZones bounds the zones of a registry (a country's zones are a bitmask).
const maxZones = 64

func (v *validator) checkZones() {
	if len(v.c.Zones) > maxZones {
		z := v.c.Zones[maxZones]
		v.fail(z.Src, "zones."+z.ID, "", ErrInvalidValue, "a registry has at most %d zones", maxZones)
	}
	for i := range v.c.Zones {
		z := &v.c.Zones[i]
		fb := fmt.Sprintf("zones.%s", z.ID)
		if z.ID == "" {
			v.fail(z.Src, fmt.Sprintf("zones[%d]", i), "", ErrMissingKey, "a zone needs a name")
			continue
		}
		if ValidCountry(z.ID) {
			v.fail(z.Src, fb, "", ErrInvalidValue, "zone name %q is a country code", z.ID)
		}
		if prev, dup := v.zones[z.ID]; dup {
			v.fail(z.Src, fb, "", ErrDuplicate, "zone %q (%s)", z.ID, where(prev.Src))
			continue
		}
		v.zones[z.ID] = z
		if len(z.Countries) == 0 {
			v.fail(z.Src, fb, "", ErrMissingKey, "a zone lists at least one country")
		}
		for j, cc := range z.Countries {
			if !ValidCountry(cc) {
				v.fail(z.Src, fb, fmt.Sprintf("[%d]", j), ErrInvalidCountry, "%q is not an ISO 3166-1 alpha-2 code", cc)
			}
		}
	}
}

// places checks a list of zones and countries.
func (v *validator) places(src Source, fb, key string, list []string) {
	for j, p := range list {
		if _, ok := v.zones[p]; ok || ValidCountry(p) {
			continue
		}
		k := fmt.Sprintf("%s[%d]", key, j)
		if len(p) == 2 && strings.ToUpper(p) == p {
			v.fail(src, fb, k, ErrInvalidCountry, "%q is neither a zone nor an assigned ISO 3166-1 alpha-2 code", p)
		} else {
			v.fail(src, fb, k, ErrDanglingReference, "%q is neither a zone nor an ISO 3166-1 alpha-2 country code", p)
		}
	}
}

func (v *validator) checkAdequacy() {
	seen := map[string]Source{}
	for i := range v.c.Adequacy {
		a := &v.c.Adequacy[i]
		fb := fmt.Sprintf("adequacy[%d]", i)
		if v.required(a.Src, fb, "id", a.ID == "") {
			if prev, dup := seen[a.ID]; dup {
				v.fail(a.Src, fb, "id", ErrDuplicate, "adequacy id %q (%s)", a.ID, where(prev))
			}
			seen[a.ID] = a.Src
		}
		if v.required(a.Src, fb, "from", len(a.From) == 0) {
			v.places(a.Src, fb, "from", a.From)
		}
		if v.required(a.Src, fb, "to", len(a.To) == 0) {
			v.places(a.Src, fb, "to", a.To)
		}
		if a.Requires != "" && a.Requires != RequiresDPF {
			v.fail(a.Src, fb, "requires", ErrInvalidValue, "%q is not %q", a.Requires, RequiresDPF)
		}
	}
}

var roles = []string{string(RoleProcessor), string(RoleSubsidiary), string(RoleController), string(RoleAuthority)}

func (v *validator) checkParties() {
	for i := range v.c.Parties {
		p := &v.c.Parties[i]
		fb := fmt.Sprintf("parties[%d]", i)
		if v.required(p.Src, fb, "id", p.ID == "") {
			if prev, dup := v.parties[p.ID]; dup {
				v.fail(p.Src, fb, "id", ErrDuplicate, "party id %q (%s)", p.ID, where(prev.Src))
			} else {
				v.parties[p.ID] = p
			}
		}
		v.required(p.Src, fb, "name", p.Name == "")
		if v.required(p.Src, fb, "role", p.Role == "") && !contains(roles, string(p.Role)) {
			v.fail(p.Src, fb, "role", ErrInvalidValue, "%q is not one of %v", p.Role, roles)
		}
		if v.required(p.Src, fb, "country", p.Country == "") && !ValidCountry(p.Country) {
			v.fail(p.Src, fb, "country", ErrInvalidCountry, "%q is not an ISO 3166-1 alpha-2 code", p.Country)
		}
		if p.DPFCertified && p.Country != "US" && ValidCountry(p.Country) {
			v.fail(p.Src, fb, "dpf_certified", ErrInvalidValue, "only US organisations can be certified under the EU-US Data Privacy Framework")
		}
		v.required(p.Src, fb, "connector", p.Connector == "")
		if len(p.PublicKey) > 0 && !p.Src.broken("public_key") {
			var jwk map[string]any
			if err := json.Unmarshal(p.PublicKey, &jwk); err != nil || jwk["kty"] == nil {
				v.fail(p.Src, fb, "public_key", ErrInvalidValue, "not a JWK with kty")
			} else if problem := checkRecipientJWK(p.PublicKey); problem != "" {
				v.fail(p.Src, fb, "public_key", ErrInvalidValue, "%s", problem)
			}
		}
	}
}

func (v *validator) checkDatasets() {
	seen := map[string]Source{}
	for i := range v.c.Datasets {
		ds := &v.c.Datasets[i]
		fb := fmt.Sprintf("datasets[%d]", i)
		if v.required(ds.Src, fb, "id", ds.ID == "") {
			if prev, dup := seen[ds.ID]; dup {
				v.fail(ds.Src, fb, "id", ErrDuplicate, "dataset id %q (%s)", ds.ID, where(prev))
			}
			seen[ds.ID] = ds.Src
		}
		if ds.Src.broken("fields") {
			continue
		}
		if ds.Personal && len(ds.Fields) == 0 {
			v.required(ds.Src, fb, "fields", true)
		}
		for _, path := range sortedKeys(ds.Fields) {
			cat := ds.Fields[path]
			key := "fields." + path
			if !validPath(path) {
				v.fail(ds.Src, fb, key, ErrInvalidValue, "a field path is dot-separated non-empty names")
			}
			if fault := v.categoryFault(cat); fault != "" {
				v.fail(ds.Src, fb, key, ErrInvalidValue, "category %s is refused (%s): %s", shownPattern(cat), fault, categoryRule)
			}
			v.categories[cat] = true
			for p := parentPath(path); p != ""; p = parentPath(p) {
				if _, ok := ds.Fields[p]; ok {
					v.fail(ds.Src, fb, key, ErrInvalidValue, "path lies inside the classified field %q: classify either the object or its members", p)
				}
			}
		}
	}
}

func validPath(p string) bool {
	for _, seg := range strings.Split(p, ".") {
		if seg == "" {
			return false
		}
	}
	return true
}

// categoryRule is the form of a category name, as problems state it.
const categoryRule = "a category is dot-separated segments of lower-case ASCII letters, digits, _ and -, each starting with a letter or a digit"

// categoryFault returns what keeps c from being a category name
// (categoryRule), or "" when it is one. Categories are compared byte for
// byte (an Art. 9 category is one named special or special.<name>), so
// each has one spelling only: no upper case, white space, control
// characters or letters of other scripts that look like ASCII ones. The
// fault names the first character not allowed by its position and code
// point, never the name, which problems show only when it is plain.
func categoryFault(c string) string {
	if c == "" {
		return "it is empty"
	}
	start, n := true, 0 // start: at the first character of a segment
	for _, r := range c {
		n++
		switch {
		case r == '.' && start:
			return fmt.Sprintf("character %d leaves a segment empty", n)
		case r == '.':
			start = true
			continue
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '_' || r == '-') && !start:
		case r == '_' || r == '-':
			return fmt.Sprintf("character %d, %s, starts a segment", n, shownRune(r))
		default:
			return fmt.Sprintf("character %d, %s, is not allowed", n, shownRune(r))
		}
		start = false
	}
	if start {
		return "it ends with a dot"
	}
	return ""
}

// storedCategoryFault is the rule category names were stored under
// before categoryRule: dot-separated non-empty names without wildcards.
func storedCategoryFault(c string) string {
	if !validPath(c) || strings.Contains(c, "*") {
		return "a category is dot-separated non-empty names without wildcards"
	}
	return ""
}

// shownRune names r for a problem: quoted when it is printable ASCII, else
// by its code point.
func shownRune(r rune) string {
	if r > ' ' && r < 0x7f {
		return fmt.Sprintf("%q", r)
	}
	return fmt.Sprintf("%U", r)
}

// isSpecial reports whether the category c is an Art. 9 special category:
// special itself or a category under it.
func isSpecial(c string) bool { return c == "special" || strings.HasPrefix(c, "special.") }

func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

var bases = []string{string(BasisConsent), string(BasisContract), string(BasisLegalObligation), string(BasisVitalInterests), string(BasisPublicTask), string(BasisLegitimateInterests)}

func (v *validator) checkPurposes() {
	for i := range v.c.Purposes {
		p := &v.c.Purposes[i]
		fb := fmt.Sprintf("purposes[%d]", i)
		if v.required(p.Src, fb, "id", p.ID == "") {
			if prev, dup := v.purposes[p.ID]; dup {
				v.fail(p.Src, fb, "id", ErrDuplicate, "purpose id %q (%s)", p.ID, where(prev.Src))
			} else {
				v.purposes[p.ID] = p
			}
		}
		if v.required(p.Src, fb, "legal_basis", p.LegalBasis == "") && !contains(bases, string(p.LegalBasis)) {
			v.fail(p.Src, fb, "legal_basis", ErrInvalidValue, "%q is not one of %v", p.LegalBasis, bases)
		}
	}
}

// refs checks that every id of list names an entry of known. The problem
// repeats an unknown id only when it is a plain identifier (ShownName): the
// ids of a run-time change are a caller's, who may have put anything there
// (an e-mail address), and its problems go into receipts and the audit log.
func refs[T any](v *validator, src Source, fb, key, what string, list []string, known func(string) *T) {
	for j, id := range list {
		if known(id) == nil {
			v.fail(src, fb, fmt.Sprintf("%s[%d]", key, j), ErrDanglingReference, "no %s %s", what, shownID(id))
		}
	}
}

// shownID is id quoted where a problem may repeat it (a plain identifier),
// else WithheldName.
func shownID(id string) string {
	if plainName(id) {
		return fmt.Sprintf("%q", id)
	}
	return WithheldName
}
