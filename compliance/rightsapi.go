package compliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/clearance-broker/clearance/agreements"
)

// maxLegalOrderBody caps the body of POST /v1/legal-orders.
const maxLegalOrderBody = 256 << 10

// decodeLegalOrder reads a LegalOrderInput strictly: unknown fields and
// wrong types are 400s naming the field.
func decodeLegalOrder(w http.ResponseWriter, r *http.Request) (LegalOrderInput, error) {
	var in LegalOrderInput
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLegalOrderBody))
	if err != nil {
		return in, badParam("body", "unreadable or larger than 256 KiB")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute) && ute.Field != "":
			return in, badParam(ute.Field, "wrong type")
		}
		if name, ok := agreements.UnknownField(err); ok {
			return in, badParam(name, "unknown field")
		}
		return in, badParam("body", "not a JSON object")
	}
	if dec.More() {
		return in, badParam("body", "trailing data after the JSON object")
	}
	return in, nil
}

func (s *Server) postLegalOrder(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		s.fail(w, err)
		return
	}
	if s.rightsParts().changes == nil {
		s.noChanges(w)
		return
	}
	in, err := decodeLegalOrder(w, r)
	if err != nil {
		s.fail(w, err)
		return
	}
	v, ev, err := s.createLegalOrder(r.Context(), in)
	if err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set("Location", "/v1/legal-orders/"+v.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"legal_order": v, "event": ev.Event, "registry_version": ev.Version})
}

func (s *Server) getLegalOrders(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		s.fail(w, err)
		return
	}
	p := principalOf(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{
		"registry_version": s.opts.Registry.Registry().Version(),
		"legal_orders":     s.legalOrders(p.Role >= RoleOfficer),
	})
}

func (s *Server) getLegalOrder(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		s.fail(w, err)
		return
	}
	id := r.PathValue("id")
	if !tokenRE.MatchString(id) {
		s.fail(w, badParam("id", "want a legal order id"))
		return
	}
	p := principalOf(r.Context())
	for _, o := range s.legalOrders(p.Role >= RoleOfficer) {
		if o.ID == id {
			writeJSON(w, http.StatusOK, o)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, apiError{Error: "not_found", Message: "no legal order " + id + " in the registry in force"})
}

func (s *Server) getConsents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "subject"); err != nil {
		s.fail(w, err)
		return
	}
	subject, err := subjectParam(q)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"subject_hmac":     s.subjectHMAC(subject),
		"registry_version": s.opts.Registry.Registry().Version(),
		"consents":         s.consentsOf(subject),
	})
}

func (s *Server) getErasures(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "subject"); err != nil {
		s.fail(w, err)
		return
	}
	subject := ""
	if _, ok := q["subject"]; ok {
		var err error
		if subject, err = subjectParam(q); err != nil {
			s.fail(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"registry_version": s.opts.Registry.Registry().Version(),
		"erasures":         s.erasures(subject),
	})
}
