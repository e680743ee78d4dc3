package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns the HTTP API:
//
//	POST /v1/transfers           one request or a JSON array; answers the receipt(s)
//	GET  /.well-known/jwks.json  the keys partners verify payload signatures with
//	GET  /healthz                the process is up
//	GET  /readyz                 NATS and every ready check (store, key service) answer
//	GET  /metrics                Prometheus metrics
func (b *Broker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/transfers", b.postTransfers)
	mux.HandleFunc("GET /.well-known/jwks.json", b.getJWKS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", b.getReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.opts.Gatherer, promhttp.HandlerOpts{}))
	return mux
}

// envelope is the little of a request the API reads to route it; the
// pipeline parses it strictly.
type envelope struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	// generated: the request named no usable id and ID was made here.
	generated bool
	// refused: the request named an id the broker refuses (idProblem); it
	// is published under the generated ID, and the pipeline rejects it.
	refused bool
}

// errNotTransfers is the answer to a body that is neither a JSON object nor
// a non-empty JSON array.
var errNotTransfers = errors.New("invalid_request: body is not a JSON request or a non-empty array of requests")

// splitTransfers splits a POST body into its requests (one, or the elements
// of an array); batch reports an array.
func splitTransfers(body []byte) (raws []json.RawMessage, batch bool, err error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(body, &raws); err != nil || len(raws) == 0 {
			return nil, true, errNotTransfers
		}
		return raws, true, nil
	}
	if !json.Valid(body) {
		return nil, false, errNotTransfers
	}
	return []json.RawMessage{body}, false, nil
}

// routeOf reads the id and source a request is published under. A request
// without an id, or with one the broker refuses (idProblem: too long,
// control characters, white space at either end, never trimmed), gets a
// generated one, under which the pipeline rejects it, audited, and answers
// at once; a source that is not a subject token, or is the reserved
// InboundSource, becomes "unknown" (the pipeline then rejects the request,
// audited).
func routeOf(raw []byte) envelope {
	var env envelope
	_ = json.Unmarshal(raw, &env) // a malformed request is still published, rejected and audited
	if env.ID == "" || idProblem(env.ID) != "" {
		env.refused = env.ID != ""
		env.ID, env.generated = "http-"+nuid.Next(), true
	}
	if !validToken(env.Source) || env.Source == InboundSource {
		env.Source = "unknown"
	}
	return env
}

func (b *Broker) postTransfers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), b.opts.RequestTimeout)
	defer cancel()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, b.opts.MaxBodyBytes))
	if err != nil {
		b.rejectUnpublished(ctx, w, fmt.Sprintf("invalid_request: body larger than %d bytes or unreadable", b.opts.MaxBodyBytes))
		return
	}
	raws, batch, err := splitTransfers(body)
	status := http.StatusOK
	if err != nil {
		// Not a request: it is still published as one, so that the
		// pipeline rejects it with the parser's reason, audits it and
		// keeps it sealed as a dead letter; the answer is 400.
		raws, batch, status = []json.RawMessage{body}, false, http.StatusBadRequest
	}
	if limit := b.opts.NATS.MaxPayload() - 4096; limit > 0 {
		for _, raw := range raws {
			if int64(len(raw)) > limit {
				b.rejectUnpublished(ctx, w, fmt.Sprintf("invalid_request: request larger than the transfer stream's %d byte message limit", limit))
				return
			}
		}
	}
	if err := b.listenForReplies(); err != nil {
		b.log.Warn("listen for receipts", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "receipts unavailable"})
		return
	}
	receipts := make([]Receipt, len(raws))
	chans := make([]<-chan Receipt, len(raws))
	acks := make([]jetstream.PubAckFuture, len(raws))
	envs := make([]envelope, len(raws))
	for i, raw := range raws {
		envs[i] = routeOf(raw)
	}
	answered := b.answeredBefore(ctx, envs)
	// Publish the whole batch asynchronously, then collect the stream's
	// acknowledgements: one round trip's latency for any batch size.
	for i, raw := range raws {
		env := envs[i]
		receipts[i] = Receipt{RequestID: env.ID, Status: StatusPending, Reasons: []string{}}
		if r, ok := answered[env.ID]; ok {
			receipts[i] = r
			continue
		}
		ch, stop := b.waiters.wait(env.ID)
		defer stop()
		chans[i] = ch
		msg := nats.NewMsg(TransfersSubject + "." + env.Source)
		msg.Data = raw
		msg.Header.Set(jetstream.MsgIDHeader, env.ID)
		msg.Header.Set(ReplyHeader, b.replies)
		ack, err := b.js.PublishMsgAsync(msg)
		if err != nil {
			b.log.Warn("publish transfer", "request_id", env.ID, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "transfer stream unavailable"})
			return
		}
		acks[i] = ack
	}
	for i, ack := range acks {
		if ack == nil {
			continue // answered before
		}
		select {
		case pa := <-ack.Ok():
			if pa.Duplicate {
				receipts[i].Status = StatusDuplicate
				chans[i] = nil
			}
		case err := <-ack.Err():
			b.log.Warn("publish transfer", "request_id", receipts[i].RequestID, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "transfer stream unavailable"})
			return
		case <-ctx.Done():
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "transfer stream did not acknowledge in time"})
			return
		}
	}
	for i, ch := range chans {
		if ch == nil {
			continue
		}
		select {
		case rc := <-ch:
			receipts[i] = rc
		case <-ctx.Done():
			status = http.StatusAccepted
		}
	}
	if batch {
		writeJSON(w, status, receipts)
		return
	}
	if envs[0].refused && receipts[0].Status == StatusRejected && status == http.StatusOK {
		// Refused for its id (the receipt's reason names it): 400, as
		// for a body that is not a request. In a batch each receipt
		// says so of its own request.
		status = http.StatusBadRequest
	}
	writeJSON(w, status, receipts[0])
}

// answeredBefore returns the receipts, by request id, of the requests of
// envs whose ids already have a final outcome in the audit log, all looked
// up at once: sent again after the transfer stream's de-duplication window
// (a client retrying after a 202, say), such a request would otherwise be
// published, decided and sealed again before the log refused its decision
// (it would then be answered from the log all the same, status
// "delivered" or the like). The receipt is the recorded outcome's, with
// status "duplicate"; nothing is published. Generated ids, new to the log,
// are not looked up. When the log cannot answer, the requests go on as
// usual and the pipeline meets them.
func (b *Broker) answeredBefore(ctx context.Context, envs []envelope) map[string]Receipt {
	ids := make([]string, 0, len(envs))
	for _, env := range envs {
		if !env.generated {
			ids = append(ids, env.ID)
		}
	}
	found, err := b.finalsFor(ctx, ids)
	if err != nil {
		b.log.Warn("look up outcomes", "requests", len(ids), "err", err)
		return nil
	}
	answered := make(map[string]Receipt, len(found))
	for id, res := range found {
		r := receiptOf(res)
		r.Status = StatusDuplicate
		answered[id] = r
	}
	return answered
}

// rejectUnpublished audits the rejection of a POST body that cannot be
// carried on the transfer stream (too large to read or to publish) and
// answers 413 with the reason, the generated request id and the audit
// sequence. The body is neither kept nor logged.
func (b *Broker) rejectUnpublished(ctx context.Context, w http.ResponseWriter, reason string) {
	res := &result{outcome: OutcomeInvalid, requestID: "http-" + nuid.Next(), source: "unknown", reasons: []string{reason}}
	b.metrics.decision("reject", res.reasons)
	seq, err := b.appendEntry(ctx, b.entry(audit.EventRejected, res))
	if err != nil {
		b.log.Warn("audit rejection", "request_id", res.requestID, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "audit log unavailable"})
		return
	}
	writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{
		"error": reason, "request_id": res.requestID, "status": StatusRejected, "audit_sequence": seq,
	})
}

func (b *Broker) getJWKS(w http.ResponseWriter, r *http.Request) {
	set, err := b.keys.JWKS(r.Context())
	if err != nil {
		b.log.Warn("jwks", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "key service unavailable"})
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=60")
	_, _ = w.Write(set)
}

func (b *Broker) getReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	checks := map[string]string{}
	ready := true
	if b.opts.NATS.IsConnected() {
		checks["nats"] = "ok"
	} else {
		checks["nats"] = "not connected: " + b.opts.NATS.Status().String()
		ready = false
	}
	for name, check := range b.opts.ReadyChecks {
		if err := check(ctx); err != nil {
			checks[name] = "unavailable"
			b.log.Warn("readiness", "check", name, "err", err)
			ready = false
			continue
		}
		checks[name] = "ok"
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ready, "checks": checks})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// An error here is the client gone or the handler timed out: the status
	// is sent and there is no one left to tell.
	_ = enc.Encode(v)
}
