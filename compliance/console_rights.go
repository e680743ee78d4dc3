package compliance

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/clearance-broker/clearance/agreements"
)

// legalOrderForm is what the legal orders page needs besides the orders:
// the authorities and categories to choose from.
func (c *console) legalOrderForm(data map[string]any) map[string]any {
	reg := c.s.opts.Registry.Registry()
	content := reg.Content()
	var authorities []agreements.Party
	for _, p := range content.Parties {
		if p.Role == agreements.RoleAuthority {
			authorities = append(authorities, p)
		}
	}
	var cats []string
	for _, ds := range content.Datasets {
		for _, cat := range ds.Fields {
			if !slices.Contains(cats, cat) {
				cats = append(cats, cat)
			}
		}
	}
	slices.Sort(cats)
	for _, k := range []string{"ErrorField", "FormSubjects"} {
		if _, ok := data[k]; !ok {
			data[k] = ""
		}
	}
	data["Title"] = "Legal orders"
	data["Orders"] = c.s.legalOrders(true)
	data["Authorities"] = authorities
	data["Categories"] = cats
	data["CanCreate"] = c.s.rightsParts().changes != nil
	data["RegistryVersion"] = reg.Version()
	return data
}

func (c *console) legalOrdersPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "created"); err != nil {
		c.problem(w, r, err)
		return
	}
	data := map[string]any{"Form": LegalOrderInput{}}
	if id := q.Get("created"); id != "" && tokenRE.MatchString(id) {
		data["Created"] = id
	}
	c.render(w, r, "legal_orders.html", c.legalOrderForm(data))
}

// legalOrderCreate records the form's order and redirects to the list;
// a bad field re-renders the form (400) with the values typed, naming it.
func (c *console) legalOrderCreate(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLegalOrderBody)
	if err := r.ParseForm(); err != nil {
		c.errorPage(w, r, http.StatusBadRequest, "parameter body: unreadable form")
		return
	}
	f := r.PostForm
	in := LegalOrderInput{ID: strings.TrimSpace(f.Get("id")), Authority: f.Get("authority"),
		Categories: f["categories"], ValidUntil: strings.TrimSpace(f.Get("valid_until"))}
	for _, line := range strings.FieldsFunc(f.Get("subjects"), func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }) {
		if line = strings.TrimSpace(line); line != "" {
			in.Subjects = append(in.Subjects, line)
		}
	}
	v, _, err := c.s.createLegalOrder(r.Context(), in)
	if err != nil {
		var pe *paramError
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, ErrNoChanges):
			status = http.StatusServiceUnavailable
		case !errors.As(err, &pe):
			c.problem(w, r, err)
			return
		}
		msg := strings.TrimPrefix(err.Error(), "compliance: ")
		data := map[string]any{"Form": in, "FormSubjects": strings.Join(in.Subjects, "\n"), "Error": msg}
		if pe != nil {
			data["ErrorField"] = pe.name
		}
		c.renderStatus(w, r, status, "legal_orders.html", c.legalOrderForm(data))
		return
	}
	http.Redirect(w, r, "/console/legal-orders?created="+urlEscape(v.ID), http.StatusSeeOther)
}

// subjectRights adds, for an officer, the subject's consents and erasures
// and the erasure notices' status per recipient to the subject page.
func (c *console) subjectRights(r *http.Request, subject string, data map[string]any) error {
	if p := principalOf(r.Context()); p == nil || p.Role < RoleOfficer {
		return nil
	}
	data["ShowRights"] = true
	data["Consents"] = c.s.consentsOf(subject)
	data["Erasures"] = c.s.erasures(subject)
	if es := c.s.rightsParts().erasures; es != nil {
		ns, err := es.NoticeStatus(r.Context(), subject)
		if err != nil {
			return err
		}
		data["NoticesKnown"] = true
		data["Notices"] = ns
	}
	return nil
}
