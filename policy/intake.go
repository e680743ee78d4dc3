package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The NATS names of the data-subject rights intake.
const (
	// RightsStream captures consents and erasures until an instance has
	// recorded them.
	RightsStream = "CLEARANCE_RIGHTS"
	// RightsConsumer is the durable consumer every instance shares.
	RightsConsumer = "clearance-rights"
	// ConsentsSubject prefixes clearance.consents.<source>.
	ConsentsSubject = "clearance.consents"
	// ErasuresSubject prefixes clearance.erasures.<source>.
	ErasuresSubject = "clearance.erasures"
	// ReceiptsSubject prefixes the receipt of each message,
	// clearance.receipts.<source>, as for transfers.
	ReceiptsSubject = "clearance.receipts"
)

// Receipt answers a consent or erasure message: on
// clearance.receipts.<source> for NATS, in the response for HTTP.
type Receipt struct {
	// RequestID is the message's Nats-Msg-Id (or generated).
	RequestID string `json:"request_id"`
	// Status is "recorded" or "rejected".
	Status string `json:"status"`
	// Reasons say why a message was rejected.
	Reasons []string `json:"reasons"`
	// Event is the registry event that recorded it.
	Event int64 `json:"event,omitempty"`
	// RegistryVersion is the registry version in force after it.
	RegistryVersion string `json:"registry_version,omitempty"`
}

// The receipt statuses.
const (
	StatusRecorded = "recorded"
	StatusRejected = "rejected"
)

// Intake records the consents and erasures that arrive on NATS. Messages are
// taken one at a time across all instances (a grant and its withdrawal keep
// their order); each is validated, recorded through Live (stored, audited,
// published), acknowledged, and answered with a Receipt. An invalid message
// is audited as rejected and terminated (without a second receipt when its
// rejection was already recorded, audit.ErrDuplicateOutcome); a store or
// audit failure hands it back for a later attempt.
type Intake struct {
	live *Live
	nc   *nats.Conn
	js   jetstream.JetStream
	iter jetstream.MessagesContext
	done chan struct{}
	once sync.Once
}

// StartIntake creates (or updates) the rights stream and its consumer and
// starts recording what arrives. Stop ends it.
func (l *Live) StartIntake(ctx context.Context) (*Intake, error) {
	js, err := jetstream.New(l.opts.NATS)
	if err != nil {
		return nil, fmt.Errorf("policy: jetstream: %w", err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: RightsStream, Description: "Consents and erasures waiting to be recorded",
		Subjects: []string{ConsentsSubject + ".>", ErasuresSubject + ".>"},
		Storage:  jetstream.FileStorage, Replicas: l.opts.Replicas, Retention: jetstream.WorkQueuePolicy,
		Duplicates: 24 * time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("policy: rights stream: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, RightsStream, jetstream.ConsumerConfig{
		Durable: RightsConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		MaxAckPending: 1, MaxDeliver: -1, BackOff: nil,
	})
	if err != nil {
		return nil, fmt.Errorf("policy: rights consumer: %w", err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		return nil, fmt.Errorf("policy: rights consumer: %w", err)
	}
	in := &Intake{live: l, nc: l.opts.NATS, js: js, iter: iter, done: make(chan struct{})}
	go in.run()
	return in, nil
}

// fallbackIDPrefix begins the id of a rights message that came without a
// usable Nats-Msg-Id; no caller may take an id in it (over HTTP it is
// refused, over NATS replaced).
const fallbackIDPrefix = "rights-seq-"

// streamCreated is when the rights stream was made (Unix seconds), or 0
// when it cannot be read.
func (in *Intake) streamCreated(ctx context.Context) int64 {
	s, err := in.js.Stream(ctx, RightsStream)
	if err != nil {
		return 0
	}
	return s.CachedInfo().Created.Unix()
}

// Stop stops taking messages and waits for the one in work. It is
// idempotent.
func (in *Intake) Stop() {
	in.once.Do(func() { in.iter.Drain() })
	<-in.done
}

func (in *Intake) run() {
	defer close(in.done)
	for {
		msg, err := in.iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		in.handle(msg)
	}
}

// handle records one message and acknowledges it.
func (in *Intake) handle(msg jetstream.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kind, source := splitSubject(msg.Subject())
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if !audit.RecordableID(id) || strings.TrimSpace(id) != id || strings.HasPrefix(id, fallbackIDPrefix) {
		// No id, or one that cannot be a key of the store and the audit
		// log as it came (NATS headers need not be UTF-8), or one in the
		// fallback ids' own namespace: the message's place in the
		// stream, the same at every delivery, and the stream's creation
		// time, since a stream deleted and made again counts from 1 (the
		// ids recorded are kept).
		id = ""
		if md, err := msg.Metadata(); err == nil {
			id = fmt.Sprintf("%s%d-%d", fallbackIDPrefix, in.streamCreated(ctx), md.Sequence.Stream)
		}
	}
	rc, retry, recorded := in.live.record(ctx, kind, msg.Data(), "", id, source)
	if retry {
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if recorded {
		// Its outcome was recorded, and its receipt sent, before (by
		// another instance, or by an earlier delivery whose acknowledgement
		// was lost): done, without a second receipt.
		_ = msg.Term()
		return
	}
	if rc.Status == StatusRejected {
		_ = msg.Term()
	} else {
		_ = msg.Ack()
	}
	if data, err := json.Marshal(rc); err == nil {
		_ = in.nc.Publish(ReceiptsSubject+"."+source, data)
	}
}

// splitSubject returns "consents" or "erasures" and the source token.
func splitSubject(subject string) (kind, source string) {
	rest, ok := strings.CutPrefix(subject, "clearance.")
	if !ok {
		return "", "unknown"
	}
	kind, source, _ = strings.Cut(rest, ".")
	if source == "" {
		source = "unknown"
	}
	return kind, source
}

// The kinds of rights message Record takes.
const (
	RightsConsents = "consents"
	RightsErasures = "erasures"
)

// Record validates and records a consent ("consents") or erasure
// ("erasures") message from source. subject, for erasures, is the subject
// named outside the body (the HTTP path; "" on NATS). It returns the
// receipt, and retry when the message could not be recorded for a
// transient reason (the store or the audit log) and should be tried again.
func (l *Live) Record(ctx context.Context, kind string, data []byte, id, source string) (Receipt, bool) {
	rc, retry, _ := l.record(ctx, kind, data, "", id, source)
	return rc, retry
}

// RecordErasure records an erasure of subject (body may be empty or give
// "at"), as POST /v1/subjects/{id}/erasure does.
func (l *Live) RecordErasure(ctx context.Context, subject string, body []byte, id, source string) (Receipt, bool) {
	rc, retry, _ := l.record(ctx, RightsErasures, body, subject, id, source)
	return rc, retry
}

// RejectionPrefix begins the request id under which a rights message that
// is rejected is audited (RejectionID). No transfer producer may send a
// request id that begins with it (the broker refuses one).
const RejectionPrefix = "rights:"

// RejectionID is the request id of the `rejected` entry of a rights message
// sent under the request id id. A rejection is a final outcome, of which
// the audit log holds one per request id; under the caller's id itself, it
// would share that one place with a transfer sent under the same id, and
// the second of the two would find it taken (a rejection left unaudited,
// or a transfer refused as already decided). Under its own prefix it takes
// nothing from a transfer. An id that cannot be an audit key with the
// prefix (not recordable, white space at either end, too long) is replaced
// by a digest of it, the same for every attempt.
func RejectionID(id string) string {
	if rid := RejectionPrefix + id; audit.ClaimedID(id) && len(rid) <= audit.MaxRequestID {
		return rid
	}
	sum := sha256.Sum256([]byte(id))
	return RejectionPrefix + "sha256-" + hex.EncodeToString(sum[:16])
}

// record is Record and RecordErasure; recorded reports that the message's
// rejection was not audited because its request id already has a final
// outcome in the audit log (audit.ErrDuplicateOutcome): recorded, and
// answered, before. The receipt then says rejected, as that outcome did.
//
// A change is recorded with its request (source and id): the same request
// again is answered with the first one's receipt (its event and version)
// and recorded nothing. Once a change is stored it is answered as
// recorded even if its audit entries could not be written: they are
// written later (ErrAuditPending), and an answer of "retry" would have the
// caller record it again.
func (l *Live) record(ctx context.Context, kind string, data []byte, subject, id, source string) (rc Receipt, retry, recorded bool) {
	rc = Receipt{RequestID: id, Reasons: []string{}}
	now := l.opts.Now()
	var ch agreements.Change
	var atReceipt bool
	var err error
	switch kind {
	case RightsConsents:
		ch, atReceipt, err = parseConsent(data, now)
	case RightsErasures:
		ch, err = ParseErasure(data, subject, now)
	default:
		err = invalid("subject", "not a consents or erasures subject")
	}
	reg := l.opts.Engine.Registry()
	var res changed
	if err == nil {
		var req *request
		if audit.RecordableID(id) && audit.RecordableID(source) {
			req = &request{source: source, id: id, digest: requestDigest(kind, subject, data)}
		}
		// A message that would change nothing is not recorded: an erasure
		// in force already is answered as recorded (no second event, no
		// second notice).
		res, err = l.change(ctx, ch, req, atReceipt)
		if errors.Is(err, ErrAlreadyErased) {
			rc.Status, rc.Reasons, rc.RegistryVersion = StatusRecorded, []string{ReasonAlreadyErased}, l.opts.Engine.Registry().Version()
			return rc, false, false
		}
		if err != nil && !errors.Is(err, ErrInvalidChange) {
			l.log.Warn("record rights message", "request_id", id, "source", source, "err", err)
			return rc, true, false
		}
		if res.audit != nil {
			l.log.Warn("rights message recorded; its audit entries are written later", "request_id", id, "source", source,
				"seq", res.ev.Seq, "err", res.audit)
		}
	}
	if err != nil {
		rc.Status, rc.Reasons = StatusRejected, rejectReasons(err)
		e := &audit.Entry{Time: now, Event: audit.EventRejected, RequestID: RejectionID(id), Source: source, Decision: "deny", Reasons: rc.Reasons}
		switch {
		case len(ch.Consents) > 0:
			e.SubjectID, e.Purpose = ch.Consents[0].Subject, ch.Consents[0].Purpose
		case len(ch.Withdrawals) > 0:
			e.SubjectID, e.Purpose = ch.Withdrawals[0].Subject, ch.Withdrawals[0].Purpose
		}
		if !hasPurpose(reg, e.Purpose) {
			e.Purpose = "" // a purpose of the registry only, not whatever the caller sent
		}
		if _, aerr := l.opts.Audit.Append(ctx, e); errors.Is(aerr, audit.ErrDuplicateOutcome) {
			l.log.Info("rights message already recorded", "request_id", id, "source", source)
			return rc, false, true
		} else if aerr != nil {
			l.log.Warn("audit rejected rights message", "request_id", id, "err", aerr)
			return rc, true, false
		}
		return rc, false, false
	}
	rc.Status, rc.Event, rc.RegistryVersion = StatusRecorded, res.ev.Seq, res.ev.Version
	if res.reason != "" {
		rc.Reasons = []string{res.reason}
	}
	return rc, false, false
}

// rejectReasons lists the problems of an invalid message; they name fields,
// purposes and parties, never a subject.
func rejectReasons(err error) []string {
	var out []string
	for _, p := range agreements.Problems(err) {
		if p == ErrInvalidChange {
			continue
		}
		var ie *InvalidError
		if errors.As(p, &ie) {
			out = append(out, ie.Reason)
			continue
		}
		out = append(out, "invalid_request: "+strings.TrimPrefix(p.Error(), "agreements: "))
	}
	if len(out) == 0 {
		out = []string{"invalid_request"}
	}
	return out
}

// hasPurpose reports whether reg defines the purpose id.
func hasPurpose(reg *agreements.Registry, id string) bool {
	_, ok := reg.Purpose(id)
	return ok
}
