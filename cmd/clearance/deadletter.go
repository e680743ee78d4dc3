package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/clearance-broker/clearance/agreements"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runDeadLetter implements `clearance deadletter list|replay --config FILE`:
// the dead letters an operator looks at (headers only) and sends again once
// the cause is fixed, without ever seeing or printing what they hold.
func runDeadLetter(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: clearance deadletter list|replay --config FILE [flags]")
		fmt.Fprintln(stderr, "\n  list     the dead letters' sequence, time, source, request id, outcome and reasons (never their content)")
		fmt.Fprintln(stderr, "  replay   open one with the broker's keys and publish it again under a new request id")
		fmt.Fprintln(stderr, "\nRun 'clearance deadletter <list|replay> -h' for its flags.")
	}
	return subcommands(ctx, "deadletter", map[string]runFunc{"list": runDeadLetterList, "replay": runDeadLetterReplay}, usage, args, stdout, stderr)
}

// deadLetterConfig loads and validates the configuration at path for the
// deadletter subcommand name; it prints the problems and returns 2 on
// failure.
func deadLetterConfig(name, path string, stderr io.Writer) (*config.Config, int) {
	if path == "" {
		fmt.Fprintf(stderr, "clearance deadletter %s: --config is required\n", name)
		return nil, 2
	}
	return loadConfig("clearance deadletter "+name, path, stderr)
}

// deadLetters connects to NATS as cfg says and returns its JetStream and
// the dead-letter stream.
func deadLetters(ctx context.Context, st *stack, cfg *config.Config, logger *slog.Logger) (jetstream.JetStream, jetstream.Stream, error) {
	nopts, err := natsOptions(cfg.NATS, logger)
	if err != nil {
		return nil, nil, err
	}
	nc, err := connectNATS(st, joinURLs(cfg.NATS.URLs), nopts...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	s, err := js.Stream(ctx, broker.DeadLetterStream)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", broker.DeadLetterStream, err)
	}
	return js, s, nil
}

func runDeadLetterList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deadletter list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "broker configuration `FILE` (its nats section is used)")
	after := fs.Uint64("after", 0, "list dead letters after this stream `SEQUENCE` (paging)")
	limit := fs.Int("limit", 100, "at most `N` dead letters")
	if code, ok := parseFlags(fs, args, "clearance deadletter list", stderr); !ok {
		return code
	}
	cfg, code := deadLetterConfig("list", *cfgPath, stderr)
	if cfg == nil {
		return code
	}
	logger := cfg.Logging.NewLogger(stderr)
	var st stack
	defer st.close(logger)
	_, s, err := deadLetters(ctx, &st, cfg, logger)
	if err != nil {
		fmt.Fprintln(stderr, "clearance deadletter list:", err)
		return 1
	}
	info, err := s.Info(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "clearance deadletter list:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%-8s %-20s %-16s %-36s %-12s %s\n", "SEQ", "TIME", "SOURCE", "REQUEST", "OUTCOME", "REASONS")
	n := 0
	for seq := max(*after+1, info.State.FirstSeq); seq <= info.State.LastSeq && n < *limit; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			fmt.Fprintln(stderr, "clearance deadletter list:", err)
			return 1
		}
		n++
		fmt.Fprintf(stdout, "%-8d %-20s %-16s %-36s %-12s %s\n", m.Sequence, broker.DeadLetteredAt(m).UTC().Format(time.RFC3339),
			strings.TrimPrefix(m.Subject, broker.DeadLetterSubject+"."), m.Header.Get("Clearance-Request-Id"),
			m.Header.Get("Clearance-Outcome"), strings.Join(m.Header.Values("Clearance-Reason"), "; "))
	}
	if n == 0 {
		fmt.Fprintln(stdout, "(none)")
	}
	return 0
}

func runDeadLetterReplay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deadletter replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "broker configuration `FILE` (its nats, vault, store, subject_keys and audit sections are used)")
	seq := fs.Uint64("seq", 0, "the dead letter's stream `SEQUENCE` (clearance deadletter list)")
	suffix := fs.String("id-suffix", "-replay-1", "appended to the request id: the audit log keeps one final outcome per id, so a replay needs a new one")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the replayed request's receipt (0: do not wait)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance deadletter replay --config FILE --seq N [--id-suffix S] [--wait D]")
		fmt.Fprintln(stderr, "\nOpens dead letter N with the broker's keys and publishes the request again on")
		fmt.Fprintln(stderr, "clearance.transfers.<source> under its id with the suffix; the broker decides it")
		fmt.Fprintln(stderr, "afresh and audits it. A regional copy an inbound region dead-lettered is put back")
		fmt.Fprintln(stderr, "on the inbound subject as it is. Nothing of the content is printed.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, "clearance deadletter replay", stderr); !ok {
		return code
	}
	if *seq == 0 || *suffix == "" {
		fmt.Fprintln(stderr, "clearance deadletter replay: --seq and a non-empty --id-suffix are required")
		return 2
	}
	cfg, code := deadLetterConfig("replay", *cfgPath, stderr)
	if cfg == nil {
		return code
	}
	if cfg.Vault == nil {
		fmt.Fprintln(stderr, "clearance deadletter replay: the vault section is required: dead letters are sealed with the broker's Vault keys")
		return 2
	}
	logger := cfg.Logging.NewLogger(stderr)
	msg, err := replayDeadLetter(ctx, cfg, *seq, *suffix, *wait, logger)
	if err != nil {
		fmt.Fprintln(stderr, "clearance deadletter replay:", err)
		return 1
	}
	fmt.Fprintln(stdout, msg)
	return 0
}

// replayDeadLetter opens dead letter seq and publishes it again; it returns
// what to tell the operator.
func replayDeadLetter(ctx context.Context, cfg *config.Config, seq uint64, suffix string, wait time.Duration, logger *slog.Logger) (string, error) {
	var st stack
	defer st.close(logger)
	js, s, err := deadLetters(ctx, &st, cfg, logger)
	if err != nil {
		return "", err
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return "", fmt.Errorf("dead letter %d: %w (clearance keys rewrap moves a dead letter to a new sequence, which clearance deadletter list shows)", seq, err)
		}
		return "", fmt.Errorf("dead letter %d: %w", seq, err)
	}
	source := strings.TrimPrefix(m.Subject, broker.DeadLetterSubject+".")
	oldID := m.Header.Get("Clearance-Request-Id")
	if len(m.Data) == 0 {
		return "", fmt.Errorf("dead letter %d (request %s) holds nothing: its subject was erased, or it named several subjects (refused), so nothing was kept; the source system must send it again", seq, oldID)
	}
	plain, err := openDeadLetter(ctx, &st, cfg, m.Data, logger)
	if err != nil {
		return "", fmt.Errorf("dead letter %d (request %s): %w", seq, oldID, err)
	}
	defer clear(plain)
	if source == broker.InboundSource {
		return replayInbound(ctx, js, cfg, m, seq, plain)
	}
	plain = broker.KeptData(plain)
	if err := replayable(plain); err != nil {
		return "", fmt.Errorf("dead letter %d (request %s) is not replayed: %w; the source system must send it again", seq, oldID, err)
	}

	var req map[string]json.RawMessage
	var id, reqSource string
	if json.Unmarshal(plain, &req) != nil || json.Unmarshal(req["id"], &id) != nil || id == "" ||
		json.Unmarshal(req["source"], &reqSource) != nil {
		return "", fmt.Errorf("dead letter %d is not a transfer request with an id (it was %s: %s): the source system must send it again",
			seq, m.Header.Get("Clearance-Outcome"), strings.Join(m.Header.Values("Clearance-Reason"), "; "))
	}
	if reqSource != source {
		return "", fmt.Errorf("dead letter %d names source %q but was kept under %q: not replayed", seq, reqSource, source)
	}
	newID := id + suffix
	req["id"], _ = json.Marshal(newID)
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	defer clear(body)
	var receipts *nats.Subscription
	if wait > 0 {
		if receipts, err = js.Conn().SubscribeSync(broker.ReceiptsSubject + "." + source); err != nil {
			return "", err
		}
		defer func() { _ = receipts.Unsubscribe() }()
	}
	out := nats.NewMsg(broker.TransfersSubject + "." + source)
	out.Data = body
	out.Header.Set(jetstream.MsgIDHeader, newID)
	ack, err := js.PublishMsg(ctx, out)
	if err != nil {
		return "", fmt.Errorf("publish %s: %w", out.Subject, err)
	}
	if ack.Duplicate {
		return "", fmt.Errorf("request %s was published within the stream's duplicate window already: choose another --id-suffix", newID)
	}
	done := fmt.Sprintf("dead letter %d (request %s) published again as request %s on %s", seq, oldID, newID, out.Subject)
	if receipts == nil {
		return done, nil
	}
	deadline := time.Now().Add(wait)
	for {
		r, err := receipts.NextMsg(time.Until(deadline))
		if err != nil {
			return done + fmt.Sprintf("; no receipt within %s (the broker may be down or busy; follow clearance.receipts.%s)", wait, source), nil
		}
		var rc broker.Receipt
		if json.Unmarshal(r.Data, &rc) == nil && rc.RequestID == newID {
			return done + "\nreceipt: " + string(r.Data), nil
		}
	}
}

// openDeadLetter opens a dead letter: under the subject's key (the subject
// key store: subject_keys.store, or the store section's) or under the
// broker's Vault keys.
func openDeadLetter(ctx context.Context, st *stack, cfg *config.Config, data []byte, logger *slog.Logger) ([]byte, error) {
	vault, err := keys.NewVault(ctx, *cfg.Vault, logger)
	if err != nil {
		return nil, err
	}
	st.add(vault.Close)
	if !shred.IsEnvelope(data) {
		return vault.Open(ctx, data)
	}
	subjectKey, err := cfg.Audit.SubjectKey()
	if err != nil {
		return nil, err
	}
	store, path := subjectKeyStoreConfig(cfg)
	kdb, err := openStore(ctx, st, store, path)
	if err != nil {
		return nil, err
	}
	k, err := shred.Open(ctx, shred.Options{DB: kdb, Keys: vault, Audit: noAudit{}, SubjectKey: subjectKey, Logger: logger})
	if err != nil {
		return nil, err
	}
	st.add(func(context.Context) error { k.Close(); return nil })
	plain, err := k.Open(ctx, data)
	if errors.Is(err, shred.ErrShredded) {
		return nil, fmt.Errorf("%w: the subject was erased since, and the dead letter with it", err)
	}
	return plain, err
}

// replayInbound puts a regional copy an inbound region dead-lettered (it
// opens now: openDeadLetter said so, to plain) back on the region's
// inbound subject, as it came: on its recipient's subject and under its
// request id, as the sending region published it and as the instance
// checks; the instance audits it as received. A producer's kept request is
// never put there (a dead letter with a key reference, or whose plaintext
// is a kept copy's: one kept under this source before the source was
// reserved). (An erasure notice that was dead-lettered is not one to
// replay: the sending region sends it again until it is acknowledged.)
func replayInbound(ctx context.Context, js jetstream.JetStream, cfg *config.Config, m *jetstream.RawStreamMsg, seq uint64, plain []byte) (string, error) {
	if cfg.InboundRegion == nil {
		return "", fmt.Errorf("dead letter %d is a regional copy and this configuration has no inbound_region", seq)
	}
	var p broker.Payload
	if m.Header.Get("Clearance-Key-Ref") != "" || len(broker.KeptData(plain)) != len(plain) ||
		json.Unmarshal(plain, &p) != nil || p.RequestID == "" || p.Recipient == "" {
		return "", fmt.Errorf("dead letter %d is no regional copy a sending region sealed: not replayed", seq)
	}
	subject, _ := broker.InboundSubject(cfg.InboundRegion.Subject, p.Recipient)
	out := nats.NewMsg(subject)
	out.Data = m.Data
	out.Header.Set(jetstream.MsgIDHeader, p.RequestID)
	ack, err := js.PublishMsg(ctx, out)
	if err != nil {
		return "", fmt.Errorf("publish %s: %w", subject, err)
	}
	if ack.Duplicate {
		return "", fmt.Errorf("request %s is within the inbound stream's duplicate window still: replay it once the window has passed", p.RequestID)
	}
	return fmt.Sprintf("dead letter %d (regional copy of request %s) put back on %s; follow it with clearance audit query --request %s",
		seq, p.RequestID, subject, p.RequestID), nil
}

// noAudit refuses appends: replaying opens subject keys and destroys none,
// and a keyring that tried to audit would be a programming error.
type noAudit struct{}

func (noAudit) Append(context.Context, *audit.Entry) (int64, error) {
	return 0, errors.New("clearance deadletter: the key ring only opens here")
}

// replayable says why a kept producer request may not be published again,
// or returns nil: it must be a request the broker parses as it is. replay
// rewrites the request's id through a decoded map, which keeps the last
// copy of a key given twice: a request refused as ambiguous (a subject
// given twice, one of them erased) would go out as the copy the map kept,
// decided and delivered. What the parser refuses, the source sends again.
func replayable(plain []byte) error {
	if _, err := agreements.ParseRequest(plain); err != nil {
		return fmt.Errorf("it was refused as an invalid request (%d problems: %s)", len(agreements.Problems(err)), firstProblem(err))
	}
	return nil
}

// firstProblem is the first of err's problems, as the parser names it
// (fields, never values).
func firstProblem(err error) string {
	if ps := agreements.Problems(err); len(ps) > 0 {
		return ps[0].Error()
	}
	return err.Error()
}
