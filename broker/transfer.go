package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// result is what processing one transfer message produced. It holds ids and
// classes only; the record stays in req and is never logged.
type result struct {
	outcome   Outcome
	err       error
	requestID string
	source    string
	req       *agreements.Request
	// subject is the subject id a result without req keeps its dead
	// letter under (sealKept): that of a request refused after it parsed
	// (checkRouting), or of the message of an outcome rebuilt from the
	// audit log (finishRecorded). It is a copy, not the message's memory.
	subject string
	// severalSubjects: the message of a request the parser refused names
	// more than one subject (looseSubject); nothing of it is kept.
	severalSubjects bool
	// partyKey is the recipient's public key the payload was sealed to
	// (none: sealed with the broker's keys); a re-decision that finds
	// another in force seals the payload again (again).
	partyKey  []byte
	dec       *agreements.Decision
	reasons   []string
	connector string
	// attempted: a decided allow was audited and a delivery tried (or
	// found impossible), so a failure is audited as delivery_failed.
	attempted bool
	// redecided counts the decisions made again before delivery because
	// the registry changed (redecide.go).
	redecided int
	digest    string
	// keyRef is the key the delivered payload was sealed under, when not
	// the broker's own (a subject key for a regional stream).
	keyRef string
	seq    int64
	// size is the request's size in bytes, which bounds its payload's.
	size int
	// recorded: the final outcome was already in the audit log when the
	// message was redelivered (recorded.go).
	recorded bool
	// resent: the audit log refused the request's decision or rejection
	// because the request already has a final outcome, which res now holds
	// (recordedBefore).
	resent bool
}

// decisionPool holds the Decisions of messages in work (see DeciderInto).
var decisionPool = sync.Pool{New: func() any { return new(agreements.Decision) }}

func (b *Broker) handleTransfer(ctx context.Context, msg jetstream.Msg) {
	start := time.Now()
	attempt := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		attempt = md.NumDelivered
	}
	var plan Plan
	res := b.recorded(ctx, msg, redelivered(attempt))
	if res != nil {
		plan = b.finishRecorded(ctx, msg, res, attempt)
	} else {
		d := decisionPool.Get().(*agreements.Decision)
		// The decision's memory is reused by the next message once this one
		// is acknowledged, its receipt sent and its line logged: nothing
		// keeps res.dec, its reasons or its record past this function
		// (audit entries and receipts copy what they need).
		defer decisionPool.Put(d)
		res = b.process(ctx, msg, attempt, d)
		if !res.resent {
			plan = PlanFor(res.outcome, attempt, res.err, b.opts.Retry)
			plan, res = b.finish(ctx, msg, res, plan, attempt)
		}
		if res.resent {
			// Sent again after the de-duplication window: answered with
			// the outcome recorded (recordedBefore).
			plan = b.finishRecorded(ctx, msg, res, attempt)
		}
	}
	b.ack(msg, plan, res.outcome)
	b.metrics.done(res.outcome, start)
	level := slog.LevelDebug
	if res.outcome != OutcomeDelivered && res.outcome != OutcomeDenied {
		level = slog.LevelWarn
	}
	if !b.log.Enabled(ctx, level) {
		// The line's attributes are not built (a dozen allocations) for a
		// level that is off, as debug is in production.
		return
	}
	args := []any{"request_id", res.requestID, "source", res.source, "outcome", res.outcome.String(),
		"action", plan.Ack.String(), "attempt", attempt, "audit_sequence", res.seq}
	if res.connector != "" {
		args = append(args, "connector", res.connector)
	}
	if res.recorded {
		args = append(args, "already_recorded", true)
	}
	if res.err != nil {
		args = append(args, "err", res.err.Error())
	}
	b.log.Log(ctx, level, "transfer", args...)
}

// process runs one request through parse, decide, minimise, seal, audit and
// deliver, stopping at the first step that fails.
//
// d is the Decision to decide into when the Decider can (DeciderInto).
func (b *Broker) process(ctx context.Context, msg jetstream.Msg, attempt uint64, d *agreements.Decision) *result {
	res := &result{source: sourceOf(msg.Subject()), requestID: msg.Headers().Get(jetstream.MsgIDHeader), size: len(msg.Data())}
	// The message owns its payload, which nothing changes: the request
	// shares its memory rather than copying it.
	req, err := agreements.ParseRequestShared(msg.Data())
	if err == nil {
		err = checkRouting(req, res.source, res.requestID)
	} else if p := rawIDProblem(msg.Data()); p != "" {
		// Refused for other problems too: say what is wrong with the id
		// (an HTTP caller's was replaced by a generated one).
		err = errors.Join(err, &agreements.RequestError{Field: "id", Problem: p})
	}
	if err != nil {
		res.outcome, res.err, res.reasons = OutcomeInvalid, err, invalidReasons(err)
		// The subject the request names is the key its dead letter is
		// sealed under, so that an erasure destroys it too: the parsed
		// request's (refused by checkRouting), or, for one the parser
		// refused, the id read loosely (looseSubject). Only the id is
		// kept, and it is copied: the request shares the message's
		// memory. The request is not res.req: the audit entry of a
		// rejection takes no recipient, purpose, dataset or subject from
		// it.
		if req != nil {
			res.subject = strings.Clone(req.Subject.ID)
		} else if b.opts.Subjects != nil {
			res.subject, res.severalSubjects = looseSubject(msg.Data())
		}
		if res.requestID == "" && req != nil && usableID(req.ID) {
			res.requestID = req.ID
		}
		if res.requestID == "" {
			if md, mdErr := msg.Metadata(); mdErr == nil {
				res.requestID = fmt.Sprintf("stream-seq-%d", md.Sequence.Stream)
			}
		}
		b.metrics.decision("reject", res.reasons)
		return res
	}
	res.requestID, res.req = req.ID, req

	t := time.Now()
	if into, ok := b.opts.Decider.(DeciderInto); ok && d != nil {
		into.DecideInto(d, req, b.opts.Now())
	} else {
		d = b.opts.Decider.Decide(req, b.opts.Now())
	}
	b.metrics.since(stageDecide, t)
	res.dec = d
	if attempt == 1 {
		b.metrics.decision(string(d.Decision), d.Reasons)
	}
	if !d.Allowed() {
		res.reasons = d.Reasons
		e := b.entry(audit.EventDecided, res)
		withholdUnknown(e, d.Reasons)
		seq, err := b.appendEntry(ctx, e)
		if err != nil {
			return b.refusedDecision(ctx, res, err)
		}
		res.outcome, res.seq = OutcomeDenied, seq
		return res
	}
	return b.deliver(ctx, res)
}

// deliver seals, audits and delivers an allowed request.
func (b *Broker) deliver(ctx context.Context, res *result) *result {
	req, d := res.req, res.dec
	party, perr := b.opts.Parties.Party(req.Recipient)
	res.connector = d.Connector
	if res.connector == "" {
		res.connector = party.Connector
	}
	conn, ok := b.opts.Connectors.Connector(res.connector)
	if perr != nil || !ok {
		return b.failBeforeDelivery(ctx, res, fmt.Errorf("broker: recipient %s: no connector %q configured: %w", req.Recipient, res.connector, errPermanent))
	}
	if len(party.PublicKey) == 0 && NeedsPartyKey(conn) {
		return b.failBeforeDelivery(ctx, res, fmt.Errorf("broker: recipient %s has no public key for connector %s: %w", req.Recipient, res.connector, errPermanent))
	}
	pb := getBuf()
	payload, err := newPayload(*pb, req, d, res.size)
	if err != nil {
		return b.failBeforeDelivery(ctx, res, fmt.Errorf("broker: encode payload: %w", errPermanent))
	}
	t := time.Now()
	var body []byte
	keyRef := b.keys.KeyRef()
	res.partyKey = party.PublicKey
	if len(party.PublicKey) > 0 {
		var out [][]byte
		out, err = b.keys.SealFor(ctx, party.PublicKey, [][]byte{payload})
		if err == nil && len(out) == 1 {
			body = out[0]
		} else if err == nil {
			err = fmt.Errorf("broker: seal for %s: %d results for 1 payload", req.Recipient, len(out))
		}
	} else {
		var dst []byte
		if _, region := conn.(*natsregion.Region); region {
			// The natsregion connector copies a delivery when it publishes
			// and keeps nothing of it (TestDeliverKeepsNoBody), so the
			// envelope's buffer is reused once deliver returns. Other
			// connectors may hold on to the body.
			sb := getBuf()
			dst = *sb
			defer func() { putBuf(sb, body) }()
		}
		body, keyRef, err = b.sealShared(ctx, conn, req.Subject.ID, dst, payload)
		res.keyRef = keyRef
	}
	b.metrics.since(stageSeal, t)
	clear(payload)
	if err == nil {
		// Sealing is over (a failed one may have left work behind that
		// still reads the payload: that buffer is not reused).
		putBuf(pb, payload)
	}
	if err != nil {
		err = fmt.Errorf("broker: seal for %s: %w", req.Recipient, err)
		if Classify(err) == OutcomePermanent {
			return b.failBeforeDelivery(ctx, res, err)
		}
		res.outcome, res.err = OutcomeTransient, err
		return res
	}
	res.digest = audit.Digest(body)
	e := b.entry(audit.EventDecided, res)
	if _, err := b.appendEntry(ctx, e); err != nil {
		return b.refusedDecision(ctx, res, err)
	}
	res.attempted = true
	if r := b.again(ctx, res); r != nil {
		return r
	}
	d = res.dec
	t = time.Now()
	headers := map[string]string{"Clearance-Key-Ref": keyRef, "Clearance-Purpose": req.Purpose}
	if d.Agreement != nil {
		headers["Clearance-Agreement"] = d.Agreement.ID + "@" + strconv.Itoa(d.Agreement.Version)
	}
	err = conn.Deliver(ctx, &connectors.Delivery{
		RequestID: req.ID, Recipient: req.Recipient, Kind: "transfer",
		ContentType: "application/jose", Body: body, Headers: headers,
	})
	b.metrics.since(stageDeliver, t)
	outcome := Classify(err)
	b.metrics.deliveries.WithLabelValues(res.connector, outcome.String()).Inc()
	if err != nil {
		res.outcome, res.err = outcome, fmt.Errorf("broker: deliver via %s: %w", res.connector, err)
		return res
	}
	at := b.opts.Now()
	seq, err := b.appendEntry(ctx, b.deliveredEntry(res, at))
	if recordedByOther(res, err) {
		return res
	}
	if err != nil {
		if seq, err = b.recordDelivered(ctx, res, at, err); err == nil {
			res.outcome, res.seq, res.reasons = OutcomeDelivered, seq, nil
			return res
		}
		if recordedByOther(res, err) {
			return res
		}
		// Delivered, and still not recorded when the broker stops: the
		// message is handed back, so the record is written on its
		// redelivery (the recipient de-duplicates by request id).
		res.attempted = false
		res.outcome, res.err = OutcomeTransient, err
		return res
	}
	res.outcome, res.seq, res.reasons = OutcomeDelivered, seq, nil
	return res
}

// deliveredEntry is the delivered entry of res, at the time at.
func (b *Broker) deliveredEntry(res *result, at time.Time) *audit.Entry {
	e := b.entry(audit.EventDelivered, res)
	e.Time = at
	return e
}

// recordDelivered writes the delivered entry of a transfer the recipient has
// accepted after its first append failed with cause. It tries again, backing
// off as the pipeline's retries do, until the entry is written or ctx ends
// (the broker stops); the message meanwhile stays in work (the loop's beat).
// The delivery has happened: handed back to the pipeline instead, the
// request would be decided again, and a decision that had changed (a
// consent withdrawn, an agreement suspended), or the retries running out,
// would leave the delivery with no entry and its receipt saying it was not
// delivered. An append whose answer was lost but which was written is
// found as this request's recorded delivery, taken as this one's.
func (b *Broker) recordDelivered(ctx context.Context, res *result, at time.Time, cause error) (int64, error) {
	b.log.Warn("delivered, audit entry not yet written; retrying", "request_id", res.requestID, "err", cause.Error())
	err := cause
	for attempt := uint64(1); ; attempt++ {
		t := time.NewTimer(b.opts.Retry.Backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, err
		case <-t.C:
		}
		var seq int64
		if seq, err = b.appendEntry(ctx, b.deliveredEntry(res, at)); err == nil {
			return seq, nil
		}
		var dup *audit.DuplicateOutcomeError
		if errors.As(err, &dup) && dup.Event == audit.EventDelivered && dup.Recorded == audit.EventDelivered && dup.Sequence != 0 {
			return dup.Sequence, nil
		}
		if errors.Is(err, audit.ErrDuplicateOutcome) {
			return 0, err
		}
	}
}

// failBeforeDelivery records an allowed request that can never be sealed or
// delivered: the decision is audited, then finish audits the failure.
func (b *Broker) failBeforeDelivery(ctx context.Context, res *result, cause error) *result {
	if _, err := b.appendEntry(ctx, b.entry(audit.EventDecided, res)); err != nil {
		return b.refusedDecision(ctx, res, err)
	}
	res.attempted = true
	res.outcome, res.err = OutcomePermanent, cause
	return res
}

// ReasonMayHaveReceived is the reason a delivery_failed entry carries, beside
// the failure's, when the payload was sent and no answer came
// (connectors.ErrOutcomeUnknown): the recipient may hold it, which the
// log says rather than record a plain failure.
const ReasonMayHaveReceived = audit.ReasonMayHaveReceived

// finish writes what the plan needs besides the acknowledgement: the audit
// entry of a failure or rejection, the sealed dead letter and the receipt.
// When one of these cannot be written the message is handed back instead.
// A rejection the log refuses as a second final outcome (the request sent
// again after the de-duplication window) returns the outcome recorded
// instead of res, marked resent, for handleTransfer to answer with.
func (b *Broker) finish(ctx context.Context, msg jetstream.Msg, res *result, plan Plan, attempt uint64) (Plan, *result) {
	failed := res.attempted && res.outcome != OutcomeDelivered
	if res.outcome == OutcomeInvalid || failed || plan.DeadLetter {
		if err := b.record(ctx, msg, res, plan, failed); err != nil {
			if res.outcome == OutcomeInvalid {
				var rec *result
				if rec, err = b.recordedBefore(ctx, res, err); rec != nil {
					return plan, rec
				}
			}
			res.err = errors.Join(res.err, err)
			return Plan{Ack: AckNak, Delay: b.opts.Retry.Backoff(attempt)}, res
		}
	}
	if plan.Final && !res.recorded {
		b.publishReceipt(res, plan, replyTo(msg.Headers()))
	}
	return plan, res
}

// record writes what finish needs before the acknowledgement: the audit
// entry of a rejection or of a failed delivery, and the sealed dead letter.
// A delivered or denied transfer, whose entries are written already, needs
// none, and no 10 s context (a timer) is made for it.
func (b *Broker) record(ctx context.Context, msg jetstream.Msg, res *result, plan Plan, failed bool) error {
	// The outcome is recorded even when the work context was cancelled by
	// a shutdown.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var e *audit.Entry
	switch {
	case res.outcome == OutcomeInvalid:
		e = b.entry(audit.EventRejected, res)
	case failed:
		reason := "delivery_failed: " + res.outcome.String()
		if plan.Exhausted {
			reason = "delivery_failed: max_deliver_reached"
		}
		res.reasons = []string{reason}
		if connectors.OutcomeUnknown(res.err) {
			res.reasons = append(res.reasons, ReasonMayHaveReceived)
		}
		e = b.entry(audit.EventDeliveryFailed, res)
	}
	if e != nil {
		seq, err := b.appendEntry(ctx, e)
		if err != nil {
			return err
		}
		res.seq = seq
	}
	if plan.DeadLetter {
		return b.deadLetter(ctx, msg, res)
	}
	return nil
}

// deadLetter keeps the original request, sealed (sealKept: under the
// subject's key when it names one and subject keys are configured, else
// with the broker's keys), on clearance.deadletter.<source>. Headers carry
// ids and reasons only.
func (b *Broker) deadLetter(ctx context.Context, msg jetstream.Msg, res *result) error {
	sealed, keyRef, err := b.sealKept(ctx, msg.Data(), res)
	if err != nil {
		return fmt.Errorf("broker: seal dead letter: %w", err)
	}
	dl := nats.NewMsg(DeadLetterSubject + "." + res.source)
	dl.Data = sealed
	if md, err := msg.Metadata(); err == nil {
		// One dead letter per stream message, even if the Term is retried.
		dl.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dl-%s-%d", md.Stream, md.Sequence.Stream))
	}
	dl.Header.Set("Clearance-Request-Id", res.requestID)
	dl.Header.Set("Clearance-Key-Ref", keyRef)
	dl.Header.Set("Clearance-Outcome", res.outcome.String())
	for _, r := range res.reasons {
		dl.Header.Add("Clearance-Reason", r)
	}
	if _, err := b.js.PublishMsg(ctx, dl); err != nil {
		return fmt.Errorf("broker: publish dead letter: %w", err)
	}
	return nil
}

// publishReceipt sends the receipt on clearance.receipts.<source> and, for
// a request posted over HTTP, to the reply subject of the instance whose
// client waits for it (reply, "" for none).
func (b *Broker) publishReceipt(res *result, plan Plan, reply string) {
	r := receiptOf(res)
	switch {
	case res.outcome == OutcomeDelivered:
		r.Status = StatusDelivered
	case res.outcome == OutcomeDenied:
		r.Status = StatusDenied
	case res.outcome == OutcomeInvalid:
		r.Status = StatusRejected
	case plan.DeadLetter:
		r.Status = StatusDeadLettered
	}
	data := r.appendJSON(make([]byte, 0, 128+len(r.RequestID)))
	if err := b.opts.NATS.Publish(ReceiptsSubject+"."+res.source, data); err != nil {
		b.log.Warn("publish receipt", "request_id", res.requestID, "err", err)
	}
	if reply == "" {
		return
	}
	if err := b.opts.NATS.Publish(reply, data); err != nil {
		b.log.Warn("publish receipt", "request_id", res.requestID, "reply", reply, "err", err)
	}
}

// receiptOf is the receipt of res but for its status: its request id,
// decision (deny when none was made), reasons and audit sequence.
func receiptOf(res *result) Receipt {
	r := Receipt{RequestID: res.requestID, Decision: string(agreements.Deny), Reasons: res.reasons, AuditSequence: res.seq}
	if res.dec != nil {
		r.Decision = string(res.dec.Decision)
	}
	if r.Reasons == nil {
		r.Reasons = []string{}
	}
	return r
}

// ack sends the plan's acknowledgement and counts it.
func (b *Broker) ack(msg jetstream.Msg, plan Plan, o Outcome) {
	var err error
	switch plan.Ack {
	case AckDone:
		err = msg.Ack()
	case AckTerm:
		err = msg.Term()
	case AckNak:
		err = msg.NakWithDelay(plan.Delay)
	case AckInProgress:
		err = msg.InProgress()
	}
	b.metrics.outcomes.WithLabelValues(o.String(), plan.Ack.String()).Inc()
	if err != nil {
		b.log.Warn("acknowledge", "action", plan.Ack.String(), "err", err)
	}
}

// withholdUnknown replaces in e, the audit entry of a denial, the
// recipient, purpose or dataset the registry does not know (the reasons say
// which) by agreements.WithheldName, unless it is a plain identifier
// (agreements.ShownName): it is then a producer's value, not a registry
// id, and the audit log, which is never edited, must not hold whatever a
// producer put there (an e-mail address).
func withholdUnknown(e *audit.Entry, reasons []string) {
	for _, r := range reasons {
		switch r {
		case agreements.ReasonUnknownRecipient:
			e.Recipient = agreements.ShownName(e.Recipient)
		case agreements.ReasonUnknownPurpose:
			e.Purpose = agreements.ShownName(e.Purpose)
		case agreements.ReasonUnknownDataset:
			e.Dataset = agreements.ShownName(e.Dataset)
		}
	}
}

// checkRouting ties a request to how it arrived: the subject's source token
// must be the request's source, and a Nats-Msg-Id must be its id (the
// de-duplication key).
func checkRouting(req *agreements.Request, source, msgID string) error {
	var errs []error
	switch {
	case req.Source == InboundSource:
		errs = append(errs, &agreements.RequestError{Field: "source", Problem: "is reserved for the regional copies a receiving region takes in"})
	case req.Source != source:
		errs = append(errs, &agreements.RequestError{Field: "source", Problem: "does not match the subject it was published on"})
	}
	// The id travels as the Nats-Msg-Id and Idempotency-Key headers: it
	// must be one (the same rule as the HTTP API's). An id that is not is
	// refused for what it is, not also for differing from the header (NATS
	// trims a header value's leading white space).
	if problem := idProblem(req.ID); problem != "" {
		errs = append(errs, &agreements.RequestError{Field: "id", Problem: problem})
	} else if msgID != "" && msgID != req.ID {
		errs = append(errs, &agreements.RequestError{Field: "id", Problem: "does not match the Nats-Msg-Id header"})
	}
	// Identifiers go into the audit log, headers and logs: a control
	// character (a NUL the store refuses, a forged line break) is refused
	// here, so that the rejection itself can be audited.
	for _, f := range []struct{ name, v string }{
		{"source", req.Source}, {"recipient", req.Recipient}, {"purpose", req.Purpose}, {"dataset", req.Dataset},
		{"subject.id", req.Subject.ID}, {"subject.jurisdiction", req.Subject.Jurisdiction}, {"legal_order", req.LegalOrder},
	} {
		if strings.ContainsFunc(f.v, unicode.IsControl) {
			errs = append(errs, &agreements.RequestError{Field: f.name, Problem: "holds control characters"})
		}
	}
	return errors.Join(errs...)
}

// usableID reports whether a request id can be a header value and an
// audit key.
func usableID(id string) bool { return idProblem(id) == "" }

// rawIDProblem is idProblem of the id of a request that did not parse, if
// it names one.
func rawIDProblem(data []byte) string {
	var env struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(data, &env) != nil || env.ID == "" {
		return ""
	}
	return idProblem(env.ID)
}

// errIDTooLong is idProblem's answer for an id above audit.MaxRequestID.
var errIDTooLong = "the request id is longer than " + strconv.Itoa(audit.MaxRequestID) + " bytes"

// idProblem says why a request id cannot be a header value and an audit
// key, or returns "" when it can: an id of more than audit.MaxRequestID
// bytes, with a control character, or beginning or ending with white
// space, which a
// header does not carry as sent (NATS trims it, so the receipt and the
// audit entry would name another id than the producer's). Such an id is
// refused, never trimmed. So is an id under a prefix the audit log keeps
// for the refusals of others, whose one final outcome per request id it
// would take: a receiving region's (InboundRejectionPrefix) and the rights
// intake's (policy.RejectionPrefix).
func idProblem(id string) string {
	switch {
	case len(id) > audit.MaxRequestID:
		return errIDTooLong
	case audit.IDControl(id):
		return "the request id holds control characters"
	case strings.TrimSpace(id) != id:
		return "the request id begins or ends with white space; send it without (it is not trimmed)"
	case strings.HasPrefix(id, InboundRejectionPrefix):
		return "the request id begins with " + strconv.Quote(InboundRejectionPrefix) + ", which is reserved for the regional copies a receiving region refuses"
	case strings.HasPrefix(id, policy.RejectionPrefix):
		return "the request id begins with " + strconv.Quote(policy.RejectionPrefix) + ", which is reserved for the consents and erasures the rights intake refuses"
	}
	return ""
}

// invalidReasons turns parse problems into receipt reasons
// ("invalid_request: subject.id: required field is missing").
func invalidReasons(err error) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range agreements.Problems(err) {
		r := "invalid_request"
		var re *agreements.RequestError
		if errors.As(p, &re) {
			r = re.Error()
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		out = []string{"invalid_request"}
	}
	return out
}
