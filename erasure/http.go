package erasure

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/policy"
)

// Mount registers the erasure status routes on mux:
//
//	GET  /v1/subjects/{id}/erasure                                the notices, per recipient
//	POST /v1/subjects/{id}/erasure/{recipient}/justification      {"justification": "…"}
//
// A justification is recorded as by the authenticated caller
// (Options.Caller); an "officer" in the body is ignored.
//
// authorize, when not nil, is asked first; its error is answered by
// policy.WriteAuthError as the compliance API answers it: 401 when the
// caller is not authenticated, 403 when the error wraps policy.ErrForbidden
// (role too low). (POST
// /v1/subjects/{id}/erasure, which records the erasure, belongs to the
// policy package.)
func (n *Notifier) Mount(mux *http.ServeMux, authorize func(*http.Request) error) {
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if authorize != nil {
				if err := authorize(r); err != nil {
					policy.WriteAuthError(w, err)
					return
				}
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /v1/subjects/{id}/erasure", guard(n.getStatus))
	mux.HandleFunc("POST /v1/subjects/{id}/erasure/{recipient}/justification", guard(n.postJustification))
}

func (n *Notifier) getStatus(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("id")
	notices, err := n.Status(r.Context(), subject)
	if err != nil {
		n.log.Warn("erasure status", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "store unavailable"})
		return
	}
	if notices == nil {
		notices = []Notice{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"subject_hmac": audit.SubjectHMAC(n.opts.SubjectKey, subject), "notices": notices})
}

func (n *Notifier) postJustification(w http.ResponseWriter, r *http.Request) {
	var body struct {
		// Officer, a name typed in, is taken and ignored (clients
		// written before the justifying account was the caller's send
		// it): the caller is recorded, as an HMAC, never this.
		Officer       string `json:"officer"`
		Justification string `json:"justification"`
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err == nil {
		err = json.Unmarshal(data, &body)
	}
	if err != nil || body.Justification == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request: justification is required"})
		return
	}
	account := ""
	if n.opts.Caller != nil {
		var ok bool
		if account, ok = n.opts.Caller(r.Context()); !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized: no authenticated caller"})
			return
		}
	}
	err = n.Justify(r.Context(), r.PathValue("id"), r.PathValue("recipient"), account, body.Justification)
	switch {
	case errors.Is(err, ErrNoNotice):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case err != nil:
		n.log.Warn("erasure justification", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "store unavailable"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": string(StatusJustified)})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
