package agreements

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// base is a valid registry file the lint cases append to or replace parts of.
const base = `zones:
  EEA: [DE, FR]
parties:
  - {id: p1, name: P1, role: processor, country: DE, connector: hook}
  - {id: auth, name: Auth, role: authority, country: DE, connector: hook}
datasets:
  - id: ds
    fields: {name: identity.name, payment.method: financial.payment}
purposes:
  - {id: delivery, legal_basis: contract}
`

func TestParseValid(t *testing.T) {
	r, err := Parse(File{Name: "r.yaml", Data: []byte(base)})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !strings.HasPrefix(r.Version(), "sha256:") || len(r.Version()) != len("sha256:")+64 {
		t.Errorf("version = %q", r.Version())
	}
	p, err := r.Party("p1")
	if err != nil || p.Country != "DE" || p.Connector != "hook" {
		t.Errorf("Party(p1) = %+v, %v", p, err)
	}
	if _, err := r.Party("nope"); !errors.Is(err, ErrUnknownParty) {
		t.Errorf("Party(nope) error = %v, want ErrUnknownParty", err)
	}
}

func TestParseLintErrors(t *testing.T) {
	tests := []struct {
		name  string
		give  string
		class error
		want  string // a substring of one problem: "file:line: key: ..."
	}{
		{"not yaml", "parties: [", ErrSyntax, "r.yaml:1: invalid syntax"},
		{"top level is a list", "- a\n- b\n", ErrSyntax, "r.yaml:1: invalid syntax: want a mapping"},
		{"unknown top-level key", base + "partys: []\n", ErrUnknownKey, "r.yaml:11: partys: unknown key"},
		{"two documents in a file", base + "---\nparties: []\n", ErrSyntax, "r.yaml:11: invalid syntax: a registry file holds one YAML document"},
		{"unknown key in an entry", strings.Replace(base, "connector: hook}", "connector: hook, colour: red}", 1), ErrUnknownKey, "r.yaml:4: parties[0].colour: unknown key"},
		{"duplicate key in a mapping", strings.Replace(base, "role: processor,", "role: processor, role: controller,", 1), ErrDuplicate, "r.yaml:4: parties[0].role: duplicate"},
		{"duplicate purpose id", base + "  - {id: delivery, legal_basis: consent}\n", ErrDuplicate, `r.yaml:11: purposes[1].id: duplicate: purpose id "delivery" (first defined at r.yaml:10)`},
		{"invalid country", strings.Replace(base, "country: DE, connector: hook}\n  - {id: auth", "country: XX, connector: hook}\n  - {id: auth", 1), ErrInvalidCountry, `r.yaml:4: parties[0].country: invalid country code: "XX"`},
		{"lowercase country", strings.Replace(base, "[DE, FR]", "[DE, fr]", 1), ErrInvalidCountry, `r.yaml:2: zones.EEA[1]: invalid country code`},
		{"zone named like a country", strings.Replace(base, "EEA:", "DE:", 1), ErrInvalidValue, "zones.DE: invalid value"},
		{"invalid role", strings.Replace(base, "role: processor", "role: courier", 1), ErrInvalidValue, `r.yaml:4: parties[0].role: invalid value: "courier"`},
		{"missing connector", strings.Replace(base, ", connector: hook}\n  - {id: auth", "}\n  - {id: auth", 1), ErrMissingKey, "r.yaml:4: parties[0].connector: missing required key"},
		{"dpf outside the US", strings.Replace(base, "country: DE, connector: hook}\n  - {id: auth", "country: DE, dpf_certified: true, connector: hook}\n  - {id: auth", 1), ErrInvalidValue, "parties[0].dpf_certified"},
		{"boolean written as a string", strings.Replace(base, "country: DE, connector: hook}\n  - {id: auth", "country: DE, dpf_certified: \"yes\", connector: hook}\n  - {id: auth", 1), ErrSyntax, "parties[0].dpf_certified: invalid syntax: want true or false"},
		{"public key with a private part", strings.Replace(base, "connector: hook}\n  - {id: auth", "connector: hook, public_key: {kty: oct, k: c2VjcmV0}}\n  - {id: auth", 1), ErrInvalidValue,
			"parties[0].public_key: invalid value: holds a private key part (k)"},
		{"public key without kty", strings.Replace(base, "connector: hook}\n  - {id: auth", "connector: hook, public_key: {crv: P-256}}\n  - {id: auth", 1), ErrMissingKey, "parties[0].public_key.kty"},
		{"invalid legal basis", strings.Replace(base, "legal_basis: contract", "legal_basis: whim", 1), ErrInvalidValue, `r.yaml:10: purposes[0].legal_basis: invalid value: "whim"`},
		{"overlapping field paths", strings.Replace(base, "payment.method: financial.payment", "payment.method: financial.payment, payment: financial.all", 1), ErrInvalidValue, "datasets[0].fields.payment.method"},
		{"personal dataset without fields", strings.Replace(base, "    fields: {name: identity.name, payment.method: financial.payment}\n", "", 1), ErrMissingKey, "datasets[0].fields"},
		{"too many zones", strings.Replace(base, "[DE, FR]\n", "[DE, FR]\n"+manyZones(64), 1), ErrInvalidValue, "zones.Z63: invalid value: a registry has at most 64 zones"},
		{"anchors are refused", strings.Replace(base, "EEA: [DE, FR]", "EEA: &e [DE, FR]\n  X1: *e", 1), ErrSyntax, "anchors and aliases"},
		{"agreement naming an unknown party", base + agreement("parties: [ghost]"), ErrDanglingReference, `r.yaml:12: agreements[0].parties[0]: unknown reference: no party "ghost"`},
		{"agreement naming an unknown purpose", base + agreement("purposes: [fun]"), ErrDanglingReference, `agreements[0].purposes[0]: unknown reference: no purpose "fun"`},
		{"agreement naming a party by an e-mail address", base + agreement(`parties: ["ada@example.com"]`), ErrDanglingReference,
			`agreements[0].parties[0]: unknown reference: no party ` + WithheldName},
		{"agreement naming an unknown category", base + agreement("categories: [identity.nmae]"), ErrDanglingReference, `no dataset uses the category "identity.nmae"`},
		{"special wildcard", base + agreement("categories: [special.*]"), ErrInvalidValue, "must be listed by name"},
		{"invalid date", base + agreement("valid_from: 2026-13-01"), ErrInvalidValue, "r.yaml:12: agreements[0].valid_from: invalid value: want a date YYYY-MM-DD"},
		{"ends before it starts", base + agreement("valid_until: 2023-01-01"), ErrInvalidValue, "agreements[0].valid_until: invalid value: ends before valid_from"},
		{"invalid status", base + agreement("status: pending"), ErrInvalidValue, `agreements[0].status: invalid value: "pending"`},
		{"invalid kind", base + agreement("kind: handshake"), ErrInvalidValue, `agreements[0].kind`},
		{"scc without module and tia", base + agreement("kind: scc, destinations: [US]"), ErrMissingKey, "agreements[0].module"},
		{"scc without tia", base + agreement("kind: scc, module: C2P, destinations: [US]"), ErrMissingKey, "agreements[0].tia"},
		{"scc without destinations", base + agreement("kind: scc, module: C2P, tia: {reference: t, review_by: 2026-01-01}"), ErrMissingKey, "agreements[0].destinations"},
		{"destinations on a dpa", base + agreement("destinations: [US]"), ErrInvalidValue, "only scc and bcr agreements have destinations"},
		{"invalid destination", base + agreement("kind: bcr, destinations: [ZZ]"), ErrInvalidCountry, `agreements[0].destinations[0]: invalid country code`},
		{"invalid module", base + agreement("kind: scc, module: X2Y, destinations: [US], tia: {reference: t, review_by: 2026-01-01}"), ErrInvalidValue, "agreements[0].module"},
		{"tia without review date", base + agreement("kind: bcr, destinations: [US], tia: {reference: t}"), ErrMissingKey, "agreements[0].tia.review_by"},
		{"version zero", base + agreement("version: 0"), ErrInvalidValue, "agreements[0].version"},
		{"version as text", base + agreement("version: two"), ErrSyntax, "agreements[0].version: invalid syntax: want an integer"},
		{"bad document hash", base + agreement("document_sha256: abc"), ErrInvalidValue, "document_sha256"},
		{"duplicate agreement id", base + agreement("") + "  - {id: a1, version: 1, kind: dpa, parties: [p1], purposes: [delivery], categories: [identity.name], valid_from: 2024-01-01, valid_until: 2027-12-31, status: active}\n", ErrDuplicate, `r.yaml:13: agreements[1].id: duplicate: agreement id "a1" (first defined at r.yaml:12)`},
		{"adequacy from an unknown zone", base + "adequacy:\n  - {id: x, from: Europe, to: [JP]}\n", ErrDanglingReference, `adequacy[0].from[0]: unknown reference: "Europe" is neither a zone`},
		{"adequacy to an unassigned code", base + "adequacy:\n  - {id: x, from: EEA, to: [EU]}\n", ErrInvalidCountry, `adequacy[0].to[0]: invalid country code: "EU"`},
		{"adequacy with unknown requirement", base + "adequacy:\n  - {id: x, from: EEA, to: [US], requires: vibes}\n", ErrInvalidValue, "adequacy[0].requires"},
		{"consent for an unknown purpose", base + "consents:\n  - {subject: s, purpose: nope, granted_at: 2026-01-01T00:00:00Z}\n", ErrDanglingReference, "consents[0].purpose"},
		{"consent for an unknown recipient", base + "consents:\n  - {subject: s, purpose: delivery, recipients: [ghost], granted_at: 2026-01-01T00:00:00Z}\n", ErrDanglingReference, "consents[0].recipients[0]"},
		{"consent with a bad timestamp", base + "consents:\n  - {subject: s, purpose: delivery, granted_at: yesterday}\n", ErrInvalidValue, "consents[0].granted_at"},
		{"consent withdrawn before granted", base + "consents:\n  - {subject: s, purpose: delivery, granted_at: 2026-01-01T00:00:00Z, withdrawn_at: 2025-01-01T00:00:00Z}\n", ErrInvalidValue, "consents[0].withdrawn_at"},
		{"transfer consent without notice", base + "consents:\n  - {subject: s, purpose: delivery, granted_at: 2026-01-01T00:00:00Z, transfer_consent: true}\n", ErrMissingKey, "consents[0].notice_version"},
		{"legal order for a non-authority", base + "legal_orders:\n  - {id: o, authority: p1, subjects: [s], categories: [identity.name], valid_until: 2026-12-31}\n", ErrInvalidValue, `legal_orders[0].authority: invalid value: party "p1" has role "processor"`},
		{"legal order for an unknown authority", base + "legal_orders:\n  - {id: o, authority: ghost, subjects: [s], categories: [identity.name], valid_until: 2026-12-31}\n", ErrDanglingReference, "legal_orders[0].authority"},
		{"legal order without subjects", base + "legal_orders:\n  - {id: o, authority: auth, categories: [identity.name], valid_until: 2026-12-31}\n", ErrMissingKey, "legal_orders[0].subjects"},
		{"empty zone", strings.Replace(base, "EEA: [DE, FR]", "EEA: []", 1), ErrMissingKey, "r.yaml:2: zones.EEA: missing required key"},
		{"duplicate zone across files is caught per file", strings.Replace(base, "EEA: [DE, FR]", "EEA: [DE]\n  EEA: [FR]", 1), ErrDuplicate, "r.yaml:3: zones.EEA: duplicate"},
		{"duplicate adequacy id", base + "adequacy:\n  - {id: x, from: EEA, to: [JP]}\n  - {id: x, from: EEA, to: [GB]}\n", ErrDuplicate, `r.yaml:13: adequacy[1].id: duplicate: adequacy id "x"`},
		{"adequacy without destination", base + "adequacy:\n  - {id: x, from: EEA}\n", ErrMissingKey, "r.yaml:12: adequacy[0].to: missing required key: to is required"},
		{"duplicate dataset id", strings.Replace(base, "purposes:", "  - {id: ds, personal: false}\npurposes:", 1), ErrDuplicate, `r.yaml:9: datasets[1].id: duplicate: dataset id "ds" (first defined at r.yaml:7)`},
		{"malformed field path", strings.Replace(base, "payment.method: financial.payment", "payment..method: financial.payment", 1), ErrInvalidValue, "datasets[0].fields.payment..method: invalid value: a field path"},
		{"wildcard in a dataset category", strings.Replace(base, "name: identity.name,", "name: identity.*,", 1), ErrInvalidValue, `datasets[0].fields.name: invalid value: category "identity.*" is refused (character 10, '*', is not allowed)`},
		{"upper case in a dataset category", strings.Replace(base, "name: identity.name,", "name: Special.health,", 1), ErrInvalidValue,
			`datasets[0].fields.name: invalid value: category "Special.health" is refused (character 1, 'S', is not allowed): a category is dot-separated segments of lower-case ASCII letters, digits, _ and -`},
		{"white space in a dataset category", strings.Replace(base, "name: identity.name,", `name: " special.health",`, 1), ErrInvalidValue,
			"datasets[0].fields.name: invalid value: category (name withheld) is refused (character 1, U+0020, is not allowed): a category is"},
		{"look-alike letter in a dataset category", strings.Replace(base, "name: identity.name,", "name: \u0455pecial.health,", 1), ErrInvalidValue,
			"datasets[0].fields.name: invalid value: category (name withheld) is refused (character 1, U+0455, is not allowed)"},
		{"control character in a dataset category", strings.Replace(base, "name: identity.name,", `name: "special.health\nidentity.name",`, 1), ErrInvalidValue,
			"datasets[0].fields.name: invalid value: category (name withheld) is refused (character 15, U+000A, is not allowed)"},
		{"segment starting with an underscore", strings.Replace(base, "name: identity.name,", "name: identity._name,", 1), ErrInvalidValue,
			`category "identity._name" is refused (character 10, '_', starts a segment)`},
		{"empty segment in a dataset category", strings.Replace(base, "name: identity.name,", "name: identity..name,", 1), ErrInvalidValue,
			`category (name withheld) is refused (character 10 leaves a segment empty)`},
		{"upper case in an agreement category", base + agreement("categories: [Identity.name]"), ErrInvalidValue,
			`agreements[0].categories[0]: invalid value: category "Identity.name" is refused (character 1, 'I', is not allowed): a category is dot-separated`},
		{"upper case in an agreement pattern", base + agreement("categories: [Special.*]"), ErrInvalidValue,
			`agreements[0].categories[0]: invalid value: pattern "Special.*" is refused (character 1, 'S', is not allowed): a pattern is a category followed by .*, or *`},
		{"white space in a legal order category", base + "legal_orders:\n  - {id: o, authority: auth, subjects: [s], categories: [\"identity.name \"], valid_until: 2026-12-31}\n", ErrInvalidValue,
			"legal_orders[0].categories[0]: invalid value: category (name withheld) is refused (character 14, U+0020, is not allowed)"},
		{"purpose without legal basis", strings.Replace(base, "{id: delivery, legal_basis: contract}", "{id: delivery}", 1), ErrMissingKey, "r.yaml:10: purposes[0].legal_basis: missing required key"},
		{"module on a dpa", base + agreement("module: C2P"), ErrInvalidValue, "agreements[0].module: invalid value: only scc agreements have a module"},
		{"tia on a dpa", base + agreement("tia: {reference: t, review_by: 2026-01-01}"), ErrInvalidValue, "agreements[0].tia: invalid value: only scc and bcr agreements have a tia"},
		{"negative retention", base + agreement("retention_days: -1"), ErrInvalidValue, "agreements[0].retention_days"},
		{"agreement without parties", base + agreement("parties: []"), ErrMissingKey, "agreements[0].parties: missing required key: must not be empty"},
		{"agreement category pattern matching nothing", base + agreement("categories: [health.*]"), ErrDanglingReference, `no dataset uses a category matching "health.*"`},
		{"consent without subject", base + "consents:\n  - {purpose: delivery, granted_at: 2026-01-01T00:00:00Z}\n", ErrMissingKey, "consents[0].subject: missing required key: subject is required"},
		{"duplicate legal order id", base + "legal_orders:\n  - {id: o, authority: auth, subjects: [s], categories: [identity.name], valid_until: 2026-12-31}\n  - {id: o, authority: auth, subjects: [s], categories: [identity.name], valid_until: 2026-12-31}\n", ErrDuplicate, "legal_orders[1].id: duplicate"},
		{"legal order with an empty subject", base + "legal_orders:\n  - {id: o, authority: auth, subjects: [\"\"], categories: [identity.name], valid_until: 2026-12-31}\n", ErrMissingKey, "legal_orders[0].subjects[0]: missing required key"},
		{"legal order for an unknown category", base + "legal_orders:\n  - {id: o, authority: auth, subjects: [s], categories: [health.records], valid_until: 2026-12-31}\n", ErrDanglingReference, "legal_orders[0].categories[0]"},
		{"erasure without time", base + "erasures:\n  - {subject: s}\n", ErrMissingKey, "erasures[0].at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(File{Name: "r.yaml", Data: []byte(tt.give)})
			if err == nil {
				t.Fatal("Parse accepted an invalid registry")
			}
			if !errors.Is(err, tt.class) {
				t.Errorf("error is not %v:\n%v", tt.class, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error does not contain %q:\n%v", tt.want, err)
			}
		})
	}
}

// agreement returns an agreements section with one valid agreement on line
// 12 of base+section, with override (flow-mapping pairs) replacing the
// defaults it names.
func agreement(override string) string {
	fields := []string{"id: a1", "version: 1", "kind: dpa", "parties: [p1]", "purposes: [delivery]", "categories: [identity.name]",
		"valid_from: 2024-01-01", "valid_until: 2027-12-31", "status: active"}
	var extra []string
	for _, o := range strings.Split(override, ", ") {
		if o == "" {
			continue
		}
		replaced := false
		for i, f := range fields {
			if strings.SplitN(f, ":", 2)[0] == strings.SplitN(o, ":", 2)[0] {
				fields[i], replaced = o, true
			}
		}
		if !replaced {
			extra = append(extra, o)
		}
	}
	return "agreements:\n  - {" + strings.Join(append(fields, extra...), ", ") + "}\n"
}

// manyZones returns n zone definitions Z0..Z(n-1) for a zones mapping.
func manyZones(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  Z%d: [DE]\n", i)
	}
	return b.String()
}

func TestParseReportsEveryProblemAtOnce(t *testing.T) {
	give := strings.Replace(base, "role: processor", "role: courier", 1) +
		agreement("parties: [ghost], status: pending") + "erasures:\n  - {subject: s}\n"
	_, err := Parse(File{Name: "r.yaml", Data: []byte(give)})
	problems := Problems(err)
	if len(problems) != 4 {
		t.Fatalf("got %d problems, want 4:\n%v", len(problems), err)
	}
}

func TestParseDuplicateAcrossFiles(t *testing.T) {
	other := "parties:\n  - {id: p1, name: Again, role: processor, country: FR, connector: hook}\n"
	_, err := Parse(File{Name: "a.yaml", Data: []byte(base)}, File{Name: "b.yaml", Data: []byte(other)})
	want := `b.yaml:2: parties[0].id: duplicate: party id "p1" (first defined at a.yaml:4)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

func TestLoadDirectory(t *testing.T) {
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrNoFiles) {
		t.Errorf("empty directory: error = %v, want ErrNoFiles", err)
	}
	if _, err := Load("testdata/does-not-exist"); err == nil {
		t.Error("missing directory accepted")
	}
	r, err := Load("../examples/registry")
	if err != nil {
		t.Fatalf("example registry: %v", err)
	}
	if _, err := r.Party("swiftship-de"); err != nil {
		t.Errorf("example party: %v", err)
	}
}

func TestVersionIsAContentHash(t *testing.T) {
	split1 := File{Name: "a.yaml", Data: []byte(base)}
	parts := strings.SplitN(base, "datasets:", 2)
	split2a := File{Name: "x.yaml", Data: []byte("# comment\ndatasets:" + parts[1])}
	split2b := File{Name: "y.yaml", Data: []byte(parts[0])}
	r1, err1 := Parse(split1)
	r2, err2 := Parse(split2a, split2b)
	if err1 != nil || err2 != nil {
		t.Fatalf("Parse: %v %v", err1, err2)
	}
	if r1.Version() != r2.Version() {
		t.Errorf("same content, different layout: %s != %s", r1.Version(), r2.Version())
	}
	r3, err := Parse(File{Name: "a.yaml", Data: []byte(strings.Replace(base, "name: P1", "name: P One", 1))})
	if err != nil {
		t.Fatal(err)
	}
	if r3.Version() == r1.Version() {
		t.Error("changed content kept its version")
	}
}

func TestUnreadableFileDoesNotCascade(t *testing.T) {
	broken := File{Name: "parties.yaml", Data: []byte("parties: [\n")}
	agreementsFile := File{Name: "agreements.yaml", Data: []byte(strings.Replace(agreement(""), "parties: [p1]", "parties: [p9]", 1))}
	_, err := Parse(broken, agreementsFile)
	problems := Problems(err)
	if len(problems) != 1 || !errors.Is(problems[0], ErrSyntax) || !strings.HasPrefix(problems[0].Error(), "parties.yaml:") {
		t.Errorf("problems = %v, want only the syntax error of parties.yaml", problems)
	}
}
