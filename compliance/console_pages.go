package compliance

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

func (c *console) overview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "from", "to"); err != nil {
		c.problem(w, r, err)
		return
	}
	from, to, err := window(q, c.s.opts.Now(), 30)
	if err != nil {
		c.problem(w, r, err)
		return
	}
	ov, err := c.s.overview(r.Context(), from, to)
	if err != nil {
		c.problem(w, r, err)
		return
	}
	reg := c.s.opts.Registry.Registry()
	var attention []AgreementStatus
	for _, a := range agreementStatuses(reg, c.s.opts.Now()) {
		if len(a.Warnings) > 0 {
			attention = append(attention, a)
		}
	}
	c.render(w, r, "overview.html", map[string]any{
		"Title": "Overview", "Overview": ov,
		"ByOutcome": outcomeChart(ov), "ByCountry": countryChart(ov), "Reasons": reasonBars(ov),
		"Attention": attention, "RegistryVersion": reg.Version(),
	})
}

func (c *console) auditPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k, v := range q { // empty form fields do not filter
		if len(v) == 1 && v[0] == "" {
			q.Del(k)
		}
	}
	data := map[string]any{"Title": "Audit explorer", "Q": q}
	fq, err := c.subjectFromToken(r, q)
	if err != nil {
		data["Error"] = err.Error()
		c.renderStatus(w, r, http.StatusBadRequest, "audit.html", data)
		return
	}
	f, err := parseFilter(fq, 50)
	if err != nil {
		data["Error"] = err.Error()
		c.renderStatus(w, r, http.StatusBadRequest, "audit.html", data)
		return
	}
	p, err := c.s.search(r.Context(), f)
	if err != nil {
		c.problem(w, r, err)
		return
	}
	data["Page"], data["Held"] = p, p.held
	exp := cloneValues(q)
	exp.Del("after")
	exp.Del("limit")
	data["ExportQuery"] = exp
	if p.NextAfter > 0 {
		next := cloneValues(q)
		next.Set("after", fmt.Sprint(p.NextAfter))
		data["NextQuery"] = next
	}
	if f.AfterSequence > 0 {
		first := cloneValues(q)
		first.Del("after")
		data["FirstQuery"] = first
	}
	c.render(w, r, "audit.html", data)
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, x := range v {
		out[k] = append([]string(nil), x...)
	}
	return out
}

func (c *console) entryPage(w http.ResponseWriter, r *http.Request) {
	seq, err := parseSeq(r.PathValue("seq"))
	if err != nil {
		c.problem(w, r, err)
		return
	}
	e, err := c.s.entry(r.Context(), seq)
	if errors.Is(err, errNotFound) {
		c.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("no audit entry with sequence %d", seq))
		return
	}
	if err != nil {
		c.problem(w, r, err)
		return
	}
	c.render(w, r, "entry.html", map[string]any{"Title": fmt.Sprintf("Audit entry %d", seq), "E": e,
		"X": Explain(e, c.s.opts.Registry.Registry())})
}

func (c *console) subjectPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := map[string]any{"Title": "Subject"}
	if err := onlyParams(q, "subject", "s"); err != nil {
		c.problem(w, r, err)
		return
	}
	q, err := c.subjectFromToken(r, q)
	if err != nil {
		c.problem(w, r, err)
		return
	}
	// The id is not written back into the page (its form stays empty):
	// the report names the subject by its HMAC.
	subject := q.Get("subject")
	if subject != "" {
		f, err := parseFilter(url.Values{"subject": {subject}}, 0)
		if err != nil {
			c.problem(w, r, err)
			return
		}
		rep, err := c.s.subjectReport(r.Context(), f)
		if err != nil {
			c.problem(w, r, err)
			return
		}
		f.Limit = 100
		p, err := c.s.search(r.Context(), f)
		if err != nil {
			c.problem(w, r, err)
			return
		}
		data["Report"], data["History"] = rep, p
		data["AuditQuery"] = c.subjectAuditQuery(r, subject)
		if err := c.subjectRights(r, subject, data); err != nil {
			c.problem(w, r, err)
			return
		}
	}
	c.render(w, r, "subject.html", data)
}

func (c *console) agreementsPage(w http.ResponseWriter, r *http.Request) {
	reg := c.s.opts.Registry.Registry()
	vs, err := c.s.registryVersions(r.Context())
	if err != nil {
		c.problem(w, r, err)
		return
	}
	c.render(w, r, "agreements.html", map[string]any{"Title": "Agreements",
		"Agreements": agreementStatuses(reg, c.s.opts.Now()), "Version": reg.Version(), "Versions": vs,
		"Note": registryStoreNotes})
}

func (c *console) agreementPage(w http.ResponseWriter, r *http.Request) {
	h, err := c.s.agreementHistory(r, r.PathValue("id"))
	if err != nil {
		c.problem(w, r, err)
		return
	}
	if h.Current == nil && len(h.Versions) == 0 && len(h.Stored) == 0 {
		c.errorPage(w, r, http.StatusNotFound, "no agreement "+h.ID+" in the registry or the audit log")
		return
	}
	c.render(w, r, "agreement.html", map[string]any{"Title": "Agreement " + h.ID, "H": h})
}

func (c *console) ropaData(w http.ResponseWriter, r *http.Request) (*ROPA, bool) {
	q := r.URL.Query()
	if err := onlyParams(q, "from", "to"); err != nil {
		c.problem(w, r, err)
		return nil, false
	}
	from, to, err := window(q, c.s.opts.Now(), 365)
	if err != nil {
		c.problem(w, r, err)
		return nil, false
	}
	rp, err := c.s.BuildROPA(r.Context(), from, to)
	if err != nil {
		c.problem(w, r, err)
		return nil, false
	}
	return rp, true
}

func (c *console) ropaPage(w http.ResponseWriter, r *http.Request) {
	if rp, ok := c.ropaData(w, r); ok {
		c.render(w, r, "ropa.html", map[string]any{"Title": "Records of processing", "ROPA": rp, "Q": r.URL.Query()})
	}
}

func (c *console) ropaPrint(w http.ResponseWriter, r *http.Request) {
	if rp, ok := c.ropaData(w, r); ok {
		c.render(w, r, "ropa_print.html", map[string]any{"ROPA": rp})
	}
}

func (c *console) whatIfPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "whatif.html", map[string]any{"Title": "What if", "Limits": WhatIfLimits})
}

func (c *console) whatIfRun(w http.ResponseWriter, r *http.Request) {
	data := map[string]any{"Title": "What if", "Limits": WhatIfLimits}
	res, err := c.s.runWhatIf(r)
	if err != nil {
		var pe *paramError
		if !errors.As(err, &pe) {
			c.problem(w, r, err)
			return
		}
		data["Error"] = pe.Error()
		c.renderStatus(w, r, http.StatusBadRequest, "whatif.html", data)
		return
	}
	data["Result"] = res
	c.render(w, r, "whatif.html", data)
}

// eventNames lists the events for the explorer's filter: every value the
// API's event filter takes.
var eventNames = filterEvents

// export is the console's export: the subject token of the explorer's
// address, if any, is opened before the filters are read.
func (c *console) export(w http.ResponseWriter, r *http.Request) {
	q, err := c.subjectFromToken(r, r.URL.Query())
	if err != nil {
		c.s.fail(w, err)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = q.Encode()
	c.s.export(w, r2)
}
