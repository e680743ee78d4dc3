package compliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"

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

// RightsRoutes lists, as "METHOD /path" patterns, the data-subject rights
// routes of the live registry (policy.Live.Mount: consents and erasures)
// and of erasure propagation (erasure.Notifier.Mount: notice status and
// justifications), which the binary serves through GuardRoute at the
// officer role. openapi.yaml documents them next to APIRoutes.
func RightsRoutes() []string {
	return []string{
		"POST /v1/consents",
		"POST /v1/subjects/{id}/erasure",
		"GET /v1/subjects/{id}/erasure",
		"POST /v1/subjects/{id}/erasure/{recipient}/justification",
	}
}

// shapeErrors gives the error answers (status 400 and above) of h, a
// handler of another package served through GuardRoute, the API's error
// body: an object with error (a code) and message, keeping the fields h
// wrote. The rights routes answer {"error": "invalid_request: …"}, or a
// rejected receipt {request_id, status, reasons}; they become {"error":
// "invalid_request", "message": "…"} and the receipt with error and
// message (its reasons joined) added. The message is h's own text, which
// names no subject. Answers below 400 pass through untouched.
func shapeErrors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &errorShaper{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.body != nil {
			writeJSON(w, sw.status, errorBody(sw.status, sw.body.Bytes()))
		}
	})
}

// errorShaper holds back the body of an error answer for shapeErrors.
type errorShaper struct {
	http.ResponseWriter
	status int
	body   *bytes.Buffer // the held-back body of an error answer
	wrote  bool
}

func (w *errorShaper) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote, w.status = true, code
	if code >= http.StatusBadRequest {
		w.body = &bytes.Buffer{}
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *errorShaper) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.body != nil {
		return w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *errorShaper) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// errorCodeRE matches the prefix of an error text: a code
// ("invalid_request: …", with an underscore) or a package
// ("erasure: …").
var errorCodeRE = regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)

// errorBody returns the API's error body for an error answer of status
// whose body was raw.
func errorBody(status int, raw []byte) map[string]any {
	var obj map[string]any
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		obj = map[string]any{} // not a JSON object: nothing of it is repeated
	}
	code, _ := obj["error"].(string)
	if msg, _ := obj["message"].(string); msg != "" && errorCodeRE.MatchString(code) {
		return obj // the API's shape already
	}
	texts := []string{code}
	if reasons, ok := obj["reasons"].([]any); ok && code == "" {
		texts = texts[:0]
		for _, r := range reasons {
			if s, ok := r.(string); ok && s != "" {
				texts = append(texts, s)
			}
		}
	}
	code = statusCode(status)
	var msgs []string
	for i, t := range texts {
		c, rest, ok := strings.Cut(t, ": ")
		switch {
		case ok && errorCodeRE.MatchString(c):
			t = rest
			if i == 0 && strings.Contains(c, "_") {
				code = c
			}
		case errorCodeRE.MatchString(t) && strings.Contains(t, "_"):
			if i == 0 {
				code = t
			}
			continue
		}
		if t != "" {
			msgs = append(msgs, t)
		}
	}
	msg := strings.Join(msgs, "; ")
	if msg == "" {
		msg = strings.ToLower(http.StatusText(status))
	}
	obj["error"], obj["message"] = code, msg
	return obj
}

// statusCode is the error code of an answer that names none.
func statusCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	if status >= 500 {
		return "internal"
	}
	return strings.ReplaceAll(strings.ToLower(http.StatusText(status)), " ", "_")
}
