package policy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/clearance-broker/clearance/audit"
	"github.com/nats-io/nuid"
)

// maxRightsBody caps a consent or erasure body.
const maxRightsBody = 64 << 10

// Mount registers the data-subject rights routes on mux:
//
//	POST /v1/consents                 a ConsentMessage; answers a Receipt
//	POST /v1/subjects/{id}/erasure    records an erasure of id; answers a Receipt
//
// A call is recorded exactly as a NATS message is (validated, stored,
// audited, published). authorize, when not nil, is asked first; its error
// is answered by WriteAuthError (401 not authenticated, 403 when it wraps
// ErrForbidden: role too low).
// The Idempotency-Key header, when given, is the request id;
// Clearance-Source names the calling system (default "http").
//
// A message that would change nothing in the registry in force is not
// recorded: an erasure of a subject already erased answers 200, status
// recorded, reason ReasonAlreadyErased (idempotent: no second event, no
// second notice); a withdrawal of no consent in force at its time
// (ErrNothingToWithdraw) answers 404, status rejected, reason "not_found:
// consent: …", and is audited as rejected, never as a withdrawal. An
// invalid message answers 400, a store or audit failure 503.
func (l *Live) Mount(mux *http.ServeMux, authorize func(*http.Request) error) {
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if authorize != nil {
				if err := authorize(r); err != nil {
					WriteAuthError(w, err)
					return
				}
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /v1/consents", guard(func(w http.ResponseWriter, r *http.Request) {
		l.serveRecord(w, r, RightsConsents, "")
	}))
	mux.HandleFunc("POST /v1/subjects/{id}/erasure", guard(func(w http.ResponseWriter, r *http.Request) {
		l.serveRecord(w, r, RightsErasures, r.PathValue("id"))
	}))
}

func (l *Live) serveRecord(w http.ResponseWriter, r *http.Request, kind, subject string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRightsBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "invalid_request: body too large or unreadable"})
		return
	}
	id := headerToken(r, "Idempotency-Key", "http-"+nuid.Next())
	source := headerToken(r, "Clearance-Source", "http")
	var rc Receipt
	var retry bool
	if kind == RightsErasures {
		rc, retry = l.RecordErasure(r.Context(), subject, body, id, source)
	} else {
		rc, retry = l.Record(r.Context(), kind, body, id, source)
	}
	switch {
	case retry:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "registry store unavailable; retry"})
	case rc.Status == StatusRejected && len(rc.Reasons) == 1 && rc.Reasons[0] == reasonNothingToWithdraw:
		writeJSON(w, http.StatusNotFound, rc)
	case rc.Status == StatusRejected:
		writeJSON(w, http.StatusBadRequest, rc)
	default:
		writeJSON(w, http.StatusOK, rc)
	}
}

// headerToken returns a header usable as an id (one the audit log records,
// audit.RecordableID, without spaces or dots), or def.
func headerToken(r *http.Request, name, def string) string {
	v := r.Header.Get(name)
	if !audit.RecordableID(v) || strings.ContainsAny(v, " .") {
		return def
	}
	return v
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
