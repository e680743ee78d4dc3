package agreements

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// File is one registry file: its name (used in error messages) and content.
type File struct {
	Name string
	Data []byte
}

// Load reads every .yaml and .yml file directly inside dir (not in
// sub-directories), merges them, validates the result and builds a Registry.
// Every problem is reported at once as a joined error of *LoadError values
// naming file, line and key; Problems splits it.
func Load(dir string) (*Registry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("agreements: read registry: %w", err)
	}
	var files []File
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("agreements: read registry: %w", err)
		}
		files = append(files, File{Name: filepath.Join(dir, e.Name()), Data: data})
	}
	if len(files) == 0 {
		return nil, &LoadError{File: dir, Err: ErrNoFiles, Detail: "want at least one .yaml or .yml file"}
	}
	return Parse(files...)
}

// Parse decodes registry files from memory, merges them in the order given,
// validates the result and builds a Registry. Errors are as for Load.
func Parse(files ...File) (*Registry, error) {
	var c Content
	var errs []error
	unreadable := false
	for _, f := range files {
		fileErrs, ok := decodeFile(&c, f)
		errs = append(errs, fileErrs...)
		unreadable = unreadable || !ok
	}
	if len(errs) > 0 {
		// Still cross-check what could be decoded, so that one run shows
		// every problem (validate skips keys already reported), unless a
		// whole file was unreadable: its entries would all look missing.
		if !unreadable {
			errs = append(errs, validate(&c, true)...)
		}
		return nil, errors.Join(errs...)
	}
	return newRegistry(c, true)
}

// topLevel lists the keys a registry file may have.
var topLevel = []string{"zones", "adequacy", "parties", "datasets", "purposes", "agreements", "consents", "legal_orders", "erasures"}

// decodeFile adds the entries of f to c. It returns the problems found and
// false when the file is not YAML at all.
func decodeFile(c *Content, f File) ([]error, bool) {
	d := &decoder{file: f.Name}
	dec := yaml.NewDecoder(bytes.NewReader(f.Data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true // an empty file is an empty registry part
		}
		return []error{&LoadError{File: f.Name, Line: yamlErrLine(err), Err: ErrSyntax, Detail: yamlErrText(err)}}, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		d.fail(&extra, "", ErrSyntax, "a registry file holds one YAML document")
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return d.errs, true
	}
	for _, tf := range d.fields(doc.Content[0], "", topLevel...) {
		switch tf.name {
		case "zones":
			d.zones(c, tf.val)
		case "adequacy":
			for i, n := range d.seq(tf.val, "adequacy") {
				c.Adequacy = append(c.Adequacy, d.adequacy(n, fmt.Sprintf("adequacy[%d]", i)))
			}
		case "parties":
			for i, n := range d.seq(tf.val, "parties") {
				c.Parties = append(c.Parties, d.party(n, fmt.Sprintf("parties[%d]", i)))
			}
		case "datasets":
			for i, n := range d.seq(tf.val, "datasets") {
				c.Datasets = append(c.Datasets, d.dataset(n, fmt.Sprintf("datasets[%d]", i)))
			}
		case "purposes":
			for i, n := range d.seq(tf.val, "purposes") {
				c.Purposes = append(c.Purposes, d.purpose(n, fmt.Sprintf("purposes[%d]", i)))
			}
		case "agreements":
			for i, n := range d.seq(tf.val, "agreements") {
				c.Agreements = append(c.Agreements, d.agreement(n, fmt.Sprintf("agreements[%d]", i)))
			}
		case "consents":
			for i, n := range d.seq(tf.val, "consents") {
				c.Consents = append(c.Consents, d.consent(n, fmt.Sprintf("consents[%d]", i)))
			}
		case "legal_orders":
			for i, n := range d.seq(tf.val, "legal_orders") {
				c.LegalOrders = append(c.LegalOrders, d.legalOrder(n, fmt.Sprintf("legal_orders[%d]", i)))
			}
		case "erasures":
			for i, n := range d.seq(tf.val, "erasures") {
				c.Erasures = append(c.Erasures, d.erasure(n, fmt.Sprintf("erasures[%d]", i)))
			}
		}
	}
	return d.errs, true
}

// entry starts decoding one list item: it returns the item's Source and its
// fields, and each call of the returned visit function decodes one field,
// recording the key's line and whether it decoded cleanly.
func (d *decoder) entry(n *yaml.Node, path string, allowed ...string) (*Source, []field, func(f field, decode func(v *yaml.Node, path string))) {
	src := &Source{File: d.file, Line: n.Line, path: path, keys: map[string]int{}, bad: map[string]bool{}}
	fs := d.fields(n, path, allowed...)
	visit := func(f field, decode func(v *yaml.Node, path string)) {
		src.keys[f.name] = f.key.Line
		before := len(d.errs)
		decode(f.val, join(path, f.name))
		if len(d.errs) > before {
			src.bad[f.name] = true
		}
	}
	return src, fs, visit
}

func (d *decoder) zones(c *Content, n *yaml.Node) {
	for _, f := range d.fields(n, "zones") {
		z := Zone{ID: f.name, Src: Source{File: d.file, Line: f.key.Line, path: "zones." + f.name}}
		z.Countries = d.strings(f.val, "zones."+f.name, false)
		c.Zones = append(c.Zones, z)
	}
}

func (d *decoder) adequacy(n *yaml.Node, path string) (a Adequacy) {
	src, fs, visit := d.entry(n, path, "id", "from", "to", "requires", "reference")
	for _, f := range fs {
		visit(f, func(v *yaml.Node, p string) {
			switch f.name {
			case "id":
				a.ID = d.str(v, p)
			case "from":
				a.From = d.strings(v, p, true)
			case "to":
				a.To = d.strings(v, p, true)
			case "requires":
				a.Requires = d.str(v, p)
			case "reference":
				a.Reference = d.str(v, p)
			}
		})
	}
	a.Src = *src
	return a
}

func (d *decoder) party(n *yaml.Node, path string) (p Party) {
	src, fs, visit := d.entry(n, path, "id", "name", "role", "country", "dpf_certified", "connector", "public_key")
	for _, f := range fs {
		visit(f, func(v *yaml.Node, kp string) {
			switch f.name {
			case "id":
				p.ID = d.str(v, kp)
			case "name":
				p.Name = d.str(v, kp)
			case "role":
				p.Role = Role(d.str(v, kp))
			case "country":
				p.Country = d.str(v, kp)
			case "dpf_certified":
				p.DPFCertified = d.boolean(v, kp)
			case "connector":
				p.Connector = d.str(v, kp)
			case "public_key":
				p.PublicKey = d.jwk(v, kp)
			}
		})
	}
	p.Src = *src
	return p
}

// jwk decodes a public key written as a YAML mapping of strings into the raw
// JSON of the JWK.
func (d *decoder) jwk(n *yaml.Node, path string) json.RawMessage {
	key := map[string]string{}
	for _, f := range d.fields(n, path) {
		key[f.name] = d.str(f.val, join(path, f.name))
	}
	if _, ok := key["kty"]; !ok && n.Kind == yaml.MappingNode {
		d.fail(n, join(path, "kty"), ErrMissingKey, "a JWK needs kty")
	}
	raw, err := json.Marshal(key) // map keys are sorted: a canonical form
	if err != nil {
		d.fail(n, path, ErrSyntax, "not a JWK")
		return nil
	}
	return raw
}

func (d *decoder) dataset(n *yaml.Node, path string) (ds Dataset) {
	ds.Personal = true // deny by default: data is personal unless declared otherwise
	src, fs, visit := d.entry(n, path, "id", "personal", "fields")
	for _, f := range fs {
		visit(f, func(v *yaml.Node, p string) {
			switch f.name {
			case "id":
				ds.ID = d.str(v, p)
			case "personal":
				ds.Personal = d.boolean(v, p)
			case "fields":
				ds.Fields = map[string]string{}
				for _, ff := range d.fields(v, p) {
					ds.Fields[ff.name] = d.str(ff.val, p+"."+ff.name)
					src.keys["fields."+ff.name] = ff.key.Line
				}
			}
		})
	}
	ds.Src = *src
	return ds
}

func (d *decoder) purpose(n *yaml.Node, path string) (p Purpose) {
	src, fs, visit := d.entry(n, path, "id", "legal_basis")
	for _, f := range fs {
		visit(f, func(v *yaml.Node, kp string) {
			switch f.name {
			case "id":
				p.ID = d.str(v, kp)
			case "legal_basis":
				p.LegalBasis = LegalBasis(d.str(v, kp))
			}
		})
	}
	p.Src = *src
	return p
}

func (d *decoder) agreement(n *yaml.Node, path string) (a Agreement) {
	src, fs, visit := d.entry(n, path, "id", "version", "kind", "module", "parties", "destinations", "purposes",
		"categories", "valid_from", "valid_until", "status", "tia", "retention_days", "document_sha256")
	for _, f := range fs {
		visit(f, func(v *yaml.Node, p string) {
			switch f.name {
			case "id":
				a.ID = d.str(v, p)
			case "version":
				a.Version = d.integer(v, p)
			case "kind":
				a.Kind = Kind(d.str(v, p))
			case "module":
				a.Module = d.str(v, p)
			case "parties":
				a.Parties = d.strings(v, p, false)
			case "destinations":
				a.Destinations = d.strings(v, p, false)
			case "purposes":
				a.Purposes = d.strings(v, p, false)
			case "categories":
				a.Categories = d.strings(v, p, false)
			case "valid_from":
				a.ValidFrom = d.date(v, p)
			case "valid_until":
				a.ValidUntil = d.date(v, p)
			case "status":
				a.Status = Status(d.str(v, p))
			case "tia":
				a.TIA = d.tia(v, p)
			case "retention_days":
				a.RetentionDays = d.integer(v, p)
			case "document_sha256":
				a.DocumentSHA256 = d.str(v, p)
			}
		})
	}
	a.Src = *src
	return a
}

func (d *decoder) tia(n *yaml.Node, path string) *TIA {
	t := &TIA{}
	have := map[string]bool{}
	for _, f := range d.fields(n, path, "reference", "review_by") {
		have[f.name] = true
		switch f.name {
		case "reference":
			t.Reference = d.str(f.val, join(path, f.name))
		case "review_by":
			t.ReviewBy = d.date(f.val, join(path, f.name))
		}
	}
	if n.Kind == yaml.MappingNode {
		for _, k := range []string{"reference", "review_by"} {
			if !have[k] {
				d.fail(n, join(path, k), ErrMissingKey, "a TIA needs %s", k)
			}
		}
	}
	return t
}

func (d *decoder) consent(n *yaml.Node, path string) (c Consent) {
	src, fs, visit := d.entry(n, path, "subject", "purpose", "recipients", "granted_at", "withdrawn_at",
		"parental", "transfer_consent", "notice_version")
	for _, f := range fs {
		visit(f, func(v *yaml.Node, p string) {
			switch f.name {
			case "subject":
				c.Subject = d.str(v, p)
			case "purpose":
				c.Purpose = d.str(v, p)
			case "recipients":
				c.Recipients = d.strings(v, p, false)
			case "granted_at":
				c.GrantedAt = d.timestamp(v, p)
			case "withdrawn_at":
				if !isNull(v) {
					t := d.timestamp(v, p)
					c.WithdrawnAt = &t
				}
			case "parental":
				c.Parental = d.boolean(v, p)
			case "transfer_consent":
				c.TransferConsent = d.boolean(v, p)
			case "notice_version":
				c.NoticeVersion = d.str(v, p)
			}
		})
	}
	c.Src = *src
	return c
}

func (d *decoder) legalOrder(n *yaml.Node, path string) (o LegalOrder) {
	src, fs, visit := d.entry(n, path, "id", "authority", "subjects", "categories", "valid_until")
	for _, f := range fs {
		visit(f, func(v *yaml.Node, p string) {
			switch f.name {
			case "id":
				o.ID = d.str(v, p)
			case "authority":
				o.Authority = d.str(v, p)
			case "subjects":
				o.Subjects = d.strings(v, p, false)
			case "categories":
				o.Categories = d.strings(v, p, false)
			case "valid_until":
				o.ValidUntil = d.date(v, p)
			}
		})
	}
	o.Src = *src
	return o
}

func (d *decoder) erasure(n *yaml.Node, path string) (e Erasure) {
	src, fs, visit := d.entry(n, path, "subject", "at")
	for _, f := range fs {
		visit(f, func(v *yaml.Node, p string) {
			switch f.name {
			case "subject":
				e.Subject = d.str(v, p)
			case "at":
				e.At = d.timestamp(v, p)
			}
		})
	}
	e.Src = *src
	return e
}
