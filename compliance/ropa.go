package compliance

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/internal/csvsafe"
	"github.com/uptrace/bun"
)

// ROPA is the Art. 30 record of processing activities, built from the
// registry in force and the transfers (deliveries) the audit log recorded
// in a window.
type ROPA struct {
	GeneratedAt      time.Time          `json:"generated_at"`
	From             time.Time          `json:"from"`
	To               time.Time          `json:"to"`
	RegistryVersion  string             `json:"registry_version"`
	Purposes         []ProcessingRecord `json:"purposes"`
	SecurityMeasures []string           `json:"security_measures"`
	KeyRefs          []string           `json:"key_refs"`
}

// ProcessingRecord is the record of one purpose.
type ProcessingRecord struct {
	Purpose           string          `json:"purpose"`
	LegalBasis        string          `json:"legal_basis"`
	DataCategories    []string        `json:"data_categories"`
	SubjectCategories []string        `json:"subject_categories"`
	Recipients        []ROPARecipient `json:"recipients"`
	ThirdCountries    []ThirdCountry  `json:"third_countries"`
	Retention         []Retention     `json:"retention"`
	Transfers         int64           `json:"transfers"`
}

// ROPARecipient is a recipient (or category of recipient) of a purpose.
type ROPARecipient struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Role       string   `json:"role"`
	Country    string   `json:"country"`
	Agreements []string `json:"agreements"`
	Transfers  int64    `json:"transfers"`
}

// ThirdCountry is a destination outside the origin's zone and the
// mechanisms (Art. 45-49) transfers to it rest on.
type ThirdCountry struct {
	Country    string   `json:"country"`
	Mechanisms []string `json:"mechanisms"`
	Transfers  int64    `json:"transfers"`
}

// Retention is the retention period one agreement sets.
type Retention struct {
	Agreement string `json:"agreement"`
	Days      int    `json:"days"`
}

var securityMeasures = []string{
	"payloads encrypted to the recipient (JWE, A256GCM) and signed (JWS) with keys held in the key service named below",
	"only the categories an agreement or legal order permits leave (data minimisation, Art. 5(1)(c))",
	"tamper-evident audit log: hash chain with signed checkpoints, verified by `clearance audit verify`",
	"subject ids pseudonymised in the audit log by a keyed HMAC",
	"compliance API and console behind signed tokens with viewer, officer and admin roles",
}

// BuildROPA builds the records of processing for [from, to) from the
// registry in force and the audit log.
// The whole days of the window are counted from the records of
// processing's rollup (see rollup), the rest from the log.
func (s *Server) BuildROPA(ctx context.Context, from, to time.Time) (*ROPA, error) {
	rows, seenKeys, err := s.rollupFlows(ctx, from, to)
	if err != nil {
		return nil, err
	}
	return buildROPA(s.opts.Registry.Registry(), s.opts.KeyRefs, rows, seenKeys, from, to, s.opts.Now()), nil
}

// BuildROPA builds the records of processing for [from, to) from reg and the
// transfers (deliveries) of the audit log on db (read only). keyRefs name
// the key services in use besides those the log records.
func BuildROPA(ctx context.Context, db *bun.DB, reg *agreements.Registry, keyRefs []string, from, to, now time.Time) (*ROPA, error) {
	rows, seenKeys, err := flows(ctx, db, from, to)
	if err != nil {
		return nil, err
	}
	return buildROPA(reg, keyRefs, rows, seenKeys, from, to, now), nil
}

// BuildROPAFromSaved builds what BuildROPA does, taking the whole days of
// the window from the records of processing's rollup a console process
// saved in the store (rollup_store.go), when it still describes the log,
// and the rest from the log; without one, it counts from the log as
// BuildROPA does. It writes nothing. seq is the sequence up to which whole
// days came from the saved rollup (0: all from the log).
func BuildROPAFromSaved(ctx context.Context, db *bun.DB, log AuditLog, reg *agreements.Registry, keyRefs []string, from, to, now time.Time) (rp *ROPA, seq int64, err error) {
	// The rollup restores itself on its first update; without a saved one
	// that applies, a read-only rollup answers errNoSavedRollup.
	r := &rollup{readOnly: true}
	r.init(ropaRollup, 24*time.Hour, func() counter { return newFlowTally() }, slog.New(slog.DiscardHandler))
	rows, keys, used, err := flowsFromRollup(ctx, db, log, r, from, to)
	switch {
	case err == nil:
		if used {
			seq = r.hi
		}
		return buildROPA(reg, keyRefs, rows, keys, from, to, now), seq, nil
	case !errors.Is(err, errNoSavedRollup):
		return nil, 0, err
	}
	rp, err = BuildROPA(ctx, db, reg, keyRefs, from, to, now)
	return rp, 0, err
}

// buildROPA builds the records of processing from reg and the flows of
// transfers (deliveries) and key references the audit log holds for
// [from, to).
func buildROPA(reg *agreements.Registry, keyRefs []string, rows []flowRow, seenKeys []string, from, to, now time.Time) *ROPA {
	c := reg.Content()
	parties := map[string]agreements.Party{}
	for _, p := range c.Parties {
		parties[p.ID] = p
	}
	type acc struct {
		rec     *ProcessingRecord
		cats    map[string]bool
		subj    map[string]bool
		rcpt    map[string]*ROPARecipient
		third   map[string]*ThirdCountry
		retains map[string]int
	}
	recs := map[string]*acc{}
	get := func(purpose, basis string) *acc {
		a := recs[purpose]
		if a == nil {
			a = &acc{rec: &ProcessingRecord{Purpose: purpose, LegalBasis: basis}, cats: map[string]bool{},
				subj: map[string]bool{}, rcpt: map[string]*ROPARecipient{}, third: map[string]*ThirdCountry{}, retains: map[string]int{}}
			recs[purpose] = a
		}
		return a
	}
	recipient := func(a *acc, id string) *ROPARecipient {
		r := a.rcpt[id]
		if r == nil {
			p := parties[id]
			r = &ROPARecipient{ID: id, Name: p.Name, Role: string(p.Role), Country: p.Country, Agreements: []string{}}
			a.rcpt[id] = r
		}
		return r
	}
	for _, p := range c.Purposes {
		get(p.ID, string(p.LegalBasis))
	}
	for _, ag := range c.Agreements {
		if ag.Status != agreements.StatusActive {
			continue
		}
		for _, pid := range ag.Purposes {
			a := get(pid, "")
			for _, cat := range ag.Categories {
				a.cats[cat] = true
			}
			for _, party := range ag.Parties {
				r := recipient(a, party)
				r.Agreements = appendNew(r.Agreements, agreementRef(ag.ID, ag.Version))
			}
			if ag.RetentionDays > 0 {
				a.retains[ag.ID] = ag.RetentionDays
			}
			if ag.Kind == agreements.KindSCC || ag.Kind == agreements.KindBCR {
				for _, dest := range ag.Destinations {
					tc := thirdCountry(a.third, dest)
					tc.Mechanisms = appendNew(tc.Mechanisms, string(ag.Kind)+":"+ag.ID)
				}
			}
		}
	}
	for _, lo := range c.LegalOrders {
		for _, p := range c.Purposes {
			if p.LegalBasis == agreements.BasisLegalObligation {
				a := get(p.ID, "")
				recipient(a, lo.Authority).Agreements = appendNew(recipient(a, lo.Authority).Agreements, "legal order "+lo.ID)
				for _, cat := range lo.Categories {
					a.cats[cat] = true
				}
			}
		}
	}
	for _, row := range rows {
		a := get(row.Purpose, row.LegalBasis)
		a.rec.Transfers += row.N
		var cats []string
		_ = json.Unmarshal([]byte(row.Categories), &cats) // written by the audit log as a JSON list
		for _, cat := range cats {
			a.cats[cat] = true
		}
		subj := "subjects of " + row.Dataset
		if row.Origin != "" {
			subj += " (" + row.Origin + ")"
		}
		a.subj[subj] = true
		if row.Recipient != "" {
			recipient(a, row.Recipient).Transfers += row.N
		}
		if isThirdCountryMechanism(row.Mechanism) {
			tc := thirdCountry(a.third, row.Country)
			tc.Mechanisms = appendNew(tc.Mechanisms, row.Mechanism)
			tc.Transfers += row.N
		}
	}
	out := &ROPA{GeneratedAt: now.UTC(), From: from, To: to, RegistryVersion: reg.Version(),
		SecurityMeasures: securityMeasures, KeyRefs: []string{}}
	for _, k := range append(slices.Clone(keyRefs), seenKeys...) {
		out.KeyRefs = appendNew(out.KeyRefs, k)
	}
	sort.Strings(out.KeyRefs)
	for _, a := range recs {
		r := a.rec
		if r.LegalBasis == "" {
			r.LegalBasis = "unknown purpose"
		}
		r.DataCategories, r.SubjectCategories = sortedSet(a.cats), sortedSet(a.subj)
		for _, x := range a.rcpt {
			sort.Strings(x.Agreements)
			r.Recipients = append(r.Recipients, *x)
		}
		sort.Slice(r.Recipients, func(i, j int) bool { return r.Recipients[i].ID < r.Recipients[j].ID })
		for _, x := range a.third {
			sort.Strings(x.Mechanisms)
			r.ThirdCountries = append(r.ThirdCountries, *x)
		}
		sort.Slice(r.ThirdCountries, func(i, j int) bool { return r.ThirdCountries[i].Country < r.ThirdCountries[j].Country })
		for id, d := range a.retains {
			r.Retention = append(r.Retention, Retention{Agreement: id, Days: d})
		}
		sort.Slice(r.Retention, func(i, j int) bool { return r.Retention[i].Agreement < r.Retention[j].Agreement })
		if r.Recipients == nil {
			r.Recipients = []ROPARecipient{}
		}
		if r.ThirdCountries == nil {
			r.ThirdCountries = []ThirdCountry{}
		}
		if r.Retention == nil {
			r.Retention = []Retention{}
		}
		out.Purposes = append(out.Purposes, *r)
	}
	sort.Slice(out.Purposes, func(i, j int) bool { return out.Purposes[i].Purpose < out.Purposes[j].Purpose })
	return out
}

func isThirdCountryMechanism(m string) bool {
	return m != "" && m != agreements.MechanismDomestic && m != agreements.MechanismNone
}

func thirdCountry(m map[string]*ThirdCountry, c string) *ThirdCountry {
	tc := m[c]
	if tc == nil {
		tc = &ThirdCountry{Country: c, Mechanisms: []string{}}
		m[c] = tc
	}
	return tc
}

func appendNew(list []string, v string) []string {
	if v == "" || slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ropaCSVHeader is the column order of the CSV form: one row per purpose.
var ropaCSVHeader = []string{"purpose", "legal_basis", "data_categories", "subject_categories",
	"recipients", "third_countries_and_mechanisms", "retention", "transfers", "security_measures", "key_refs"}

// WriteCSV writes r as CSV, one row per purpose; lists are joined with "; ",
// and no cell is left for a spreadsheet to take for a formula (csvsafe).
func (r *ROPA) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ropaCSVHeader); err != nil {
		return err
	}
	for _, p := range r.Purposes {
		var rcpts, third, ret []string
		for _, x := range p.Recipients {
			rcpts = append(rcpts, fmt.Sprintf("%s (%s, %s; %s)", x.ID, x.Role, x.Country, strings.Join(x.Agreements, ", ")))
		}
		for _, x := range p.ThirdCountries {
			third = append(third, x.Country+": "+strings.Join(x.Mechanisms, ", "))
		}
		for _, x := range p.Retention {
			ret = append(ret, x.Agreement+": "+strconv.Itoa(x.Days)+" days")
		}
		row := []string{p.Purpose, p.LegalBasis, strings.Join(p.DataCategories, "; "),
			strings.Join(p.SubjectCategories, "; "), strings.Join(rcpts, "; "), strings.Join(third, "; "),
			strings.Join(ret, "; "), strconv.FormatInt(p.Transfers, 10),
			strings.Join(r.SecurityMeasures, "; "), strings.Join(r.KeyRefs, "; ")}
		if err := cw.Write(csvsafe.Row(row)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func (s *Server) getROPA(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "format", "from", "to"); err != nil {
		s.fail(w, err)
		return
	}
	from, to, err := window(q, s.opts.Now(), 365)
	if err != nil {
		s.fail(w, err)
		return
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" && format != "html" {
		s.fail(w, badParam("format", "want json, csv or html"))
		return
	}
	rp, err := s.BuildROPA(r.Context(), from, to)
	if err != nil {
		s.fail(w, err)
		return
	}
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="records-of-processing.csv"`)
		if err := rp.WriteCSV(w); err != nil {
			s.log.Error("ropa csv", "err", err)
		}
	case "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := rp.WriteHTML(w); err != nil {
			s.log.Error("ropa html", "err", err)
		}
	default:
		writeJSON(w, http.StatusOK, rp)
	}
}

func (s *Server) getOverview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "from", "to"); err != nil {
		s.fail(w, err)
		return
	}
	from, to, err := window(q, s.opts.Now(), 30)
	if err != nil {
		s.fail(w, err)
		return
	}
	ov, err := s.overview(r.Context(), from, to)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ov)
}

// WriteHTML writes r as a printable, self-contained HTML page (styles
// inline, no script), as `clearance report ropa --format html` and the API
// give it.
func (r *ROPA) WriteHTML(w io.Writer) error {
	t, err := template.New("ropa").Funcs(funcs).ParseFS(webFS, "web/templates/_ropa_body.html", "web/templates/ropa_file.html")
	if err != nil {
		return err
	}
	css, err := webFS.ReadFile("web/static/app.css")
	if err != nil {
		return err
	}
	print, err := webFS.ReadFile("web/static/print.css")
	if err != nil {
		return err
	}
	return t.ExecuteTemplate(w, "file", map[string]any{"ROPA": r, "CSS": template.CSS(string(css) + string(print))})
}
