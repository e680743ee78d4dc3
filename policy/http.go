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
// Clearance-Source names the calling system (default "http"). A request
// recorded before under the same source and key is answered 200 with the
// first one's receipt (its event and version) and not recorded again.
//
// An erasure of a subject erased already at run time is not recorded
// again: it answers 200, status recorded, reason ReasonAlreadyErased (no
// second event, no second notice); an erasure the registry files alone
// hold is recorded, so that it outlives an apply of files without it. A
// withdrawal is recorded even when no consent is in force at its time
// (200, reason ReasonNoConsentInForce): it withdraws a consent granted
// before it that is recorded later. An invalid message answers 400, a
// store failure 503 (retry); a change stored and in force whose audit
// entries could not be written yet answers 200 (they are written later).
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
	if key := r.Header.Get("Idempotency-Key"); key != "" && (id != key || strings.HasPrefix(key, fallbackIDPrefix)) {
		// Replaced by a fresh id and recorded, a retry would be recorded
		// twice: refused, and audited under the fresh id.
		rc := Receipt{RequestID: id, Status: StatusRejected, Reasons: []string{"invalid_request: Idempotency-Key: want at most 256 bytes of UTF-8 " +
			"without spaces, dots or control characters, not beginning " + fallbackIDPrefix}}
		if _, err := l.opts.Audit.Append(r.Context(), &audit.Entry{Time: l.opts.Now(), Event: audit.EventRejected,
			RequestID: RejectionID(id), Source: source, Decision: "deny", Reasons: rc.Reasons}); err != nil {
			l.log.Warn("audit rejected rights message", "request_id", id, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "audit log unavailable; retry"})
			return
		}
		writeJSON(w, http.StatusBadRequest, rc)
		return
	}
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
