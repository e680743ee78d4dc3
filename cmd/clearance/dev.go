package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/audit/mirror"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/samplepartner"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/connectors/webhook"
	"github.com/clearance-broker/clearance/keys"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Subjects and streams of the embedded regional data centre in dev.
const (
	devRegionPrefix  = "clearance.region"
	devRegionStream  = "CLEARANCE_REGION_INBOUND"
	devRegionLocal   = "regional.received"
	devDefaultListen = "127.0.0.1:8080"
	devDefaultNATS   = 4222
)

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".clearance-dev", "data `DIR`ectory (NATS JetStream store, SQLite audit log, dev key ring)")
	regDir := fs.String("registry", filepath.Join("examples", "registry"), "registry `DIR`ectory")
	listen := fs.String("listen", devDefaultListen, "API `address`; another free port is taken when it is busy")
	natsPort := fs.Int("nats-port", devDefaultNATS, "embedded NATS `port`; another free port is taken when it is busy, and 0 takes one at once (so does -1)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance dev [--dir DIR] [--registry DIR] [--listen ADDR] [--nats-port N]")
		fmt.Fprintln(stderr, "\nRuns everything embedded: NATS with JetStream, SQLite, the development key ring")
		fmt.Fprintln(stderr, "(NOT Vault), the example registry, the API and a sample partner that prints what it receives.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if *natsPort < server.RANDOM_PORT || *natsPort > 65535 {
		fmt.Fprintln(stderr, "clearance dev: --nats-port: want 1 to 65535, or 0 for a free port")
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := dev(ctx, devSettings{dir: *dir, registry: *regDir, listen: *listen, natsPort: *natsPort}, stdout, stderr, logger); err != nil {
		fmt.Fprintln(stderr, "clearance dev:", err)
		return 1
	}
	return 0
}

type devSettings struct {
	dir, registry, listen string
	natsPort              int
}

func dev(ctx context.Context, s devSettings, stdout, stderr io.Writer, logger *slog.Logger) error {
	var st stack
	defer st.close(logger)
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	unlock, err := lockDevDir(s.dir)
	if err != nil {
		return err
	}
	// Released last, once everything on the directory has stopped.
	st.add(func(context.Context) error { unlock(); return nil })
	reg, err := agreements.Load(s.registry)
	if err != nil {
		return fmt.Errorf("registry %s: %w", s.registry, err)
	}

	ns, natsURL, moved, err := startDevNATS(s.dir, s.natsPort)
	if err != nil {
		return err
	}
	st.add(func(context.Context) error { ns.Shutdown(); ns.WaitForShutdown(); return nil })
	switch {
	case s.natsPort <= 0:
		fmt.Fprintf(stderr, "NOTE: the embedded NATS server listens on %s, a free port (--nats-port %d)\n", natsURL, s.natsPort)
	case moved:
		fmt.Fprintf(stderr, "NOTE: port %d is busy; the embedded NATS server listens on %s instead\n", s.natsPort, natsURL)
	}

	fmt.Fprintln(stderr, devKeyWarning)
	ring, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: filepath.Join(s.dir, "dev-keyring.json"), Allow: true, Logger: logger})
	if err != nil {
		return err
	}
	subjectKey, err := devSubjectKey(filepath.Join(s.dir, "subject-hmac.key"))
	if err != nil {
		return err
	}
	db, err := audit.OpenDB(ctx, "sqlite://"+filepath.Join(s.dir, "audit.db"))
	if err != nil {
		return err
	}
	st.add(func(context.Context) error { return db.Close() })
	promReg := prometheus.NewRegistry()
	metrics := broker.NewMetrics(promReg)
	nc, err := connectNATS(&st, natsURL, nats.Name("clearance-dev"), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	// Its checkpoints are mirrored on the embedded server, as serve's are;
	// clearance audit verify --dir reads them (devCopies).
	if err := os.WriteFile(filepath.Join(s.dir, devNATSURLFile), []byte(natsURL+"\n"), 0o600); err != nil {
		return err
	}
	pub, err := mirrorCheckpoints(ctx, &st, nc, mirror.DefaultStream, 1, promReg, logger)
	if err != nil {
		return err
	}
	auditLog, err := audit.Open(ctx, db, audit.Options{SubjectKey: subjectKey, Signer: ring, Logger: logger,
		OnCommit: metrics.ObserveAuditBatch, OnCheckpoint: pub.OnCheckpoint()})
	if err != nil {
		return err
	}
	st.add(auditLog.Close)
	pub.CatchUp(mirror.DefaultStream, auditLog.CheckpointsAfter)

	apiLn, apiMoved, err := listenOrFree(s.listen)
	if err != nil {
		return err
	}
	apiURL := "http://" + apiLn.Addr().String()
	if apiMoved {
		fmt.Fprintf(stderr, "NOTE: %s is busy; the API listens on %s instead\n", s.listen, apiURL)
	}

	// The sample partner: its key pair is kept in the data directory, and
	// every webhook party of the example registry gets its public key, so
	// that it can read what is sent to any of them.
	pkey, err := samplepartner.LoadOrCreateKey(filepath.Join(s.dir, "sample-partner-key.json"), "clearance-dev-partner")
	if err != nil {
		return err
	}
	kinds := devConnectorKinds(reg)
	if reg, err = samplepartner.WithKeyFor(reg, pkey.PublicJWK, func(p agreements.Party) bool {
		return kinds[p.Connector] == webhook.KindName
	}); err != nil {
		return err
	}
	partnerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	partnerURL := "http://" + partnerLn.Addr().String() + "/deliveries"
	partner := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: &samplepartner.Handler{
		Key:       pkey,
		JWKS:      samplepartner.FromURL(http.DefaultClient, apiURL+"/.well-known/jwks.json"),
		OnReceive: partnerPrinter(stdout),
	}}
	go func() { _ = partner.Serve(partnerLn) }()
	st.add(partner.Shutdown)

	conns, err := devConnectors(ctx, kinds, partnerURL, natsURL, logger)
	if err != nil {
		return err
	}
	st.add(conns.Close)

	engine := agreements.NewEngine(reg)
	subjectKeys, err := openSubjectKeys(ctx, &st, db, ring, auditLog, nc, subjectKey, liveTuning{}, logger)
	if err != nil {
		return err
	}
	// regionIn is bound to the live registry, and ready given its check,
	// by startLivePolicy.
	regionIn := &regionErasures{}
	ready := map[string]func(context.Context) error{
		"store": db.PingContext,
		"keys":  func(ctx context.Context) error { _, err := ring.JWKS(ctx); return err },
	}
	b, err := broker.New(broker.Options{
		NATS: nc, Decider: engine, Parties: broker.PartiesOf(engine), Subjects: subjectKeys,
		Keys: ring, Audit: auditLog, Connectors: conns, Logger: logger,
		Retry:       broker.RetryPolicy{MaxDeliver: 5, BackoffBase: time.Second, BackoffMax: 30 * time.Second},
		Concurrency: 8, ShutdownGrace: 10 * time.Second, RequestTimeout: 15 * time.Second,
		Inbound:     &broker.InboundOptions{Stream: devRegionStream, Subject: devRegionPrefix + ".>", LocalSubject: devRegionLocal},
		Erasures:    regionIn,
		ReadyChecks: ready,
		Metrics:     metrics, Registerer: promReg, Gatherer: promReg,
	})
	if err != nil {
		return err
	}
	cs, err := devCompliance(s.dir, auditLog, db, engine, subjectKey, ring.KeyRef(), logger)
	if err != nil {
		return err
	}
	printFirstSteps(stdout, apiURL, natsURL, partnerURL, s)
	printConsoleSteps(stdout, apiURL, s.dir)
	authorize, err := devRightsAuth(s.dir)
	if err != nil {
		return err
	}
	rights, err := startLivePolicy(ctx, &st, livePolicyParts{erasures: regionIn, ready: ready, authorize: authorize, registerer: promReg, applyAlways: true, db: db, nc: nc, engine: engine, reg: reg, audit: auditLog,
		keys: ring, conns: conns, subjectKey: subjectKey, shred: subjectKeys, logger: logger, attach: complianceRights(cs, logger)})
	if err != nil {
		return err
	}
	return runBroker(ctx, b, "", apiLn, logger, cs.Mount, rights)
}

const devKeyWarning = `
################################################################################
##  WARNING: DEVELOPMENT KEY RING. Keys live in a local file, NOT in Vault.   ##
##  Never send real personal data through 'clearance dev'.                    ##
################################################################################`

// devNATSURLFile is the file of a dev data directory that names the
// embedded NATS server of the clearance dev running on it.
const devNATSURLFile = "nats.url"

// startDevNATS starts the embedded NATS server on port, or on a free port
// when port is busy (moved reports that) or is 0 or -1. nats-server takes
// port 0 for its default, 4222, and a free one only as -1 (RANDOM_PORT).
// A server that cannot start says why at once (startLog), rather than
// after the 10 s it is given to be ready.
func startDevNATS(dir string, port int) (*server.Server, string, bool, error) {
	moved := false
	switch {
	case port <= 0:
		port = server.RANDOM_PORT
	default:
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
			port, moved = server.RANDOM_PORT, true
		} else {
			_ = ln.Close()
		}
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "clearance-dev", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: filepath.Join(dir, "jetstream"), NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, "", false, fmt.Errorf("nats server: %w", err)
	}
	var log startLog
	ns.SetLoggerV2(&log, false, false, false)
	ns.Start()
	deadline := time.Now().Add(10 * time.Second)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		fatal, last := log.reported()
		if fatal == "" && time.Now().Before(deadline) {
			continue
		}
		ns.Shutdown()
		switch {
		case fatal != "":
			return nil, "", false, fmt.Errorf("nats server did not start: %s", fatal)
		case last != "":
			return nil, "", false, fmt.Errorf("nats server did not start within 10s: %s", last)
		}
		return nil, "", false, errors.New("nats server did not start within 10s")
	}
	return ns, ns.ClientURL(), moved, nil
}

// startLog is the embedded NATS server's logger in dev, where it logs
// nothing: it keeps the first fatal error and the last error the server
// reports, which say why a server that did not start failed (its port
// taken, its JetStream store unusable).
type startLog struct {
	mu          sync.Mutex
	fatal, last string
}

func (l *startLog) Fatalf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fatal == "" {
		l.fatal = fmt.Sprintf(format, v...)
	}
}

func (l *startLog) Errorf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = fmt.Sprintf(format, v...)
}

func (l *startLog) reported() (fatal, last string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal, l.last
}

func (*startLog) Noticef(string, ...any) {}
func (*startLog) Warnf(string, ...any)   {}
func (*startLog) Debugf(string, ...any)  {}
func (*startLog) Tracef(string, ...any)  {}

// listenOrFree listens on addr, or on a free port of the same host when addr
// is busy.
func listenOrFree(addr string) (net.Listener, bool, error) {
	if ln, err := net.Listen("tcp", addr); err == nil {
		return ln, false, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, false, fmt.Errorf("listen %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, false, err
	}
	return ln, true, nil
}

// devSubjectKey reads the audit HMAC key of the dev data directory, making
// one on first start.
func devSubjectKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) >= 64 {
		return hex.DecodeString(string(bytes.TrimSpace(b)))
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// devConnectorKinds chooses a kind for every connector name in the
// registry: a connector serving a party with a public key, or an authority,
// is a webhook (to the sample partner); the others lead to regional data
// centres, reached over the embedded NATS.
func devConnectorKinds(reg *agreements.Registry) map[string]string {
	kind := map[string]string{}
	for _, p := range reg.Content().Parties {
		if p.Connector == "" {
			continue
		}
		if len(p.PublicKey) > 0 || p.Role == agreements.RoleAuthority || kind[p.Connector] == webhook.KindName {
			kind[p.Connector] = webhook.KindName
		} else {
			kind[p.Connector] = natsregion.KindName
		}
	}
	return kind
}

// devConnectors builds the connectors of devConnectorKinds.
func devConnectors(ctx context.Context, kind map[string]string, partnerURL, natsURL string, logger *slog.Logger) (broker.ConnectorMap, error) {
	names := make([]string, 0, len(kind))
	for n := range kind {
		names = append(names, n)
	}
	sort.Strings(names)
	conns := broker.ConnectorMap{}
	deps := connectors.Deps{Logger: logger}
	for _, name := range names {
		var c connectors.Connector
		var err error
		if kind[name] == webhook.KindName {
			cfg := webhook.DefaultConfig()
			cfg.DefaultURL, cfg.AllowHTTP = partnerURL, true
			var w *webhook.Webhook
			if w, err = webhook.New(name, cfg, deps); err == nil {
				c = broker.RequiresPartyKey(w)
			}
		} else {
			cfg := natsregion.DefaultConfig()
			cfg.URLs, cfg.SubjectPrefix, cfg.Stream = []string{natsURL}, devRegionPrefix, devRegionStream
			c, err = natsregion.New(ctx, name, cfg, deps)
		}
		if err != nil {
			_ = conns.Close(ctx)
			return nil, err
		}
		conns[name] = c
	}
	return conns, nil
}

// partnerPrinter prints each delivery as the partner sees it. This is the
// partner's own view, after decrypting with its private key: it goes to
// stdout, never through the broker's logger.
func partnerPrinter(w io.Writer) func(samplepartner.Received) {
	var mu sync.Mutex
	return func(r samplepartner.Received) {
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, r.Payload, "  ", "  "); err != nil {
			pretty.Write(r.Payload)
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "\n--- sample partner: delivery %s (%d bytes sealed on the wire), decrypted with the partner's private key and verified with the broker's JWKS:\n  %s\n",
			r.IdempotencyKey, len(r.Body), pretty.String())
	}
}

func printFirstSteps(w io.Writer, apiURL, natsURL, partnerURL string, s devSettings) {
	req := filepath.Join("examples", "requests")
	fmt.Fprintf(w, `
Clearance dev is running.
  API             %[1]s   (POST /v1/transfers, GET /.well-known/jwks.json, /healthz, /readyz, /metrics)
  NATS            %[2]s   (stream CLEARANCE_TRANSFERS on clearance.transfers.>)
  sample partner  %[3]s
  data            %[4]s   (JetStream store, SQLite audit log, dev key ring)

A first transfer, allowed (the partner below prints the minimised record it receives):
  curl -s -X POST %[1]s/v1/transfers -H 'Content-Type: application/json' --data-binary @%[5]s/01-delivery-eea-allow.json

A refused one (the receipt lists the reasons; nothing reaches the partner):
  curl -s -X POST %[1]s/v1/transfers -H 'Content-Type: application/json' --data-binary @%[5]s/06-delivery-brazil-no-mechanism.json

A batch:
  curl -s -X POST %[1]s/v1/transfers -H 'Content-Type: application/json' --data-binary @%[5]s/24-batch.json

With the nats CLI (receipts in one terminal, a request in another):
  nats --server %[2]s sub 'clearance.receipts.>'
  nats --server %[2]s pub clearance.transfers.order-service -H Nats-Msg-Id:ord-10025-delivery "$(cat %[5]s/04-delivery-us-scc-allow.json)"

A transfer to the Tokyo data centre goes over NATS, sealed; the receiving side republishes it on %[6]s:
  nats --server %[2]s sub %[6]s
  curl -s -X POST %[1]s/v1/transfers -H 'Content-Type: application/json' --data-binary @%[5]s/08-hosting-tokyo-adequacy.json

Stop with Ctrl-C; in-flight transfers finish first.
`, apiURL, natsURL, partnerURL, s.dir, req, devRegionLocal)
}
