package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/audit/mirror"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/connectors/webhook"
	"github.com/clearance-broker/clearance/internal/gcpercent"
	"github.com/clearance-broker/clearance/internal/natsclose"
	"github.com/clearance-broker/clearance/keys"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/uptrace/bun"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "broker configuration `FILE` (YAML; see examples/config/clearance.yaml)")
	checkOnly := fs.Bool("check-config", false, "validate the configuration, print every problem, and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance serve --config FILE [--check-config]")
		fmt.Fprintln(stderr, "\nRuns the broker against external NATS, Postgres and Vault. Environment")
		fmt.Fprintln(stderr, "variables CLEARANCE_<SECTION>_<KEY> override scalar keys of the file.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	kinds, err := connectorKinds()
	if err != nil {
		fmt.Fprintln(stderr, "clearance serve:", err)
		return 1
	}
	cfg, err := config.Load(*cfgPath)
	if err == nil {
		// Every problem at once: the configuration's, its secrets', and a
		// development key ring where the production one belongs.
		var devRing error
		if cfg.DevKeyring != nil {
			devRing = errors.New("dev_keyring: the development key ring is for `clearance dev` only; configure vault")
		}
		err = errors.Join(cfg.ValidateWith(kinds), cfg.CheckSecrets(), devRing)
	}
	if err != nil {
		fmt.Fprintf(stderr, "clearance serve: configuration %s:\n", *cfgPath)
		for _, p := range agreements.Problems(err) {
			fmt.Fprintln(stderr, "  -", p)
		}
		return 2
	}
	if *checkOnly {
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}
	logger := cfg.Logging.NewLogger(stderr)
	pct, from := gcpercent.Apply(cfg.Pipeline.GCPercent)
	limit, limitFrom := gcpercent.ApplyMemoryLimit(cfg.Pipeline.MemoryLimitBytes)
	logger.Info("garbage collector", "component", "main", "gc_percent", gcpercent.String(pct), "from", from,
		"memory_limit", gcpercent.LimitString(limit), "memory_limit_from", limitFrom)
	if err := serve(ctx, cfg, kinds, logger); err != nil {
		logger.Error("serve", "err", err)
		return 1
	}
	return 0
}

// connectorKinds is the explicit registry of connector kinds this binary
// knows.
func connectorKinds() (*connectors.Registry, error) {
	return connectors.NewRegistry(webhook.Kind(), natsregion.Kind())
}

// serve builds the parts from a validated configuration and runs them until
// ctx ends.
func serve(ctx context.Context, cfg *config.Config, kinds *connectors.Registry, logger *slog.Logger) error {
	var st stack
	defer st.close(logger)

	vault, err := keys.NewVault(ctx, *cfg.Vault, logger)
	if err != nil {
		return err
	}
	st.add(vault.Close)
	subjectKey, err := cfg.Audit.SubjectKey()
	if err != nil {
		return err
	}
	db, err := openStore(ctx, &st, cfg.Store, "store")
	if err != nil {
		return err
	}
	promReg := prometheus.NewRegistry()
	metrics := broker.NewMetrics(promReg)
	nopts, err := natsOptions(cfg.NATS, logger)
	if err != nil {
		return err
	}
	// Connected before the audit log opens, so that it drains after the
	// log's last checkpoint is mirrored (st closes last first).
	nc, err := connectNATS(&st, joinURLs(cfg.NATS.URLs), nopts...)
	if err != nil {
		return err
	}
	pub, err := mirrorCheckpoints(ctx, &st, nc, cfg.Audit.CheckpointStream, cfg.NATS.Replicas, promReg, logger)
	if err != nil {
		return err
	}
	auditLog, err := audit.Open(ctx, db, audit.Options{
		SubjectKey: subjectKey, Signer: vault, Logger: logger, Chains: cfg.Audit.Chains, OnCommit: metrics.ObserveAuditBatch,
		CheckpointEvery: int64(cfg.Audit.CheckpointEvery), CheckpointInterval: cfg.Audit.CheckpointInterval,
		GatherWindow: cfg.Audit.GatherWindowOption(), OnCheckpoint: pub.OnCheckpoint(),
	})
	if err != nil {
		return err
	}
	st.add(auditLog.Close)
	if pub != nil {
		// Copies of what was signed while no instance mirrored: before
		// mirroring was turned on, or while NATS refused them.
		pub.CatchUp(cfg.Audit.CheckpointStream, auditLog.CheckpointsAfter)
	}
	reg, err := agreements.Load(cfg.Registry.Dir)
	if err != nil {
		return err
	}
	engine := agreements.NewEngine(reg)
	conns, err := buildConnectors(ctx, cfg, kinds, logger)
	if err != nil {
		return err
	}
	st.add(conns.Close)

	opts := brokerOptions(cfg)
	opts.NATS, opts.Decider, opts.Parties = nc, engine, broker.PartiesOf(engine)
	opts.Keys, opts.Audit, opts.Connectors, opts.Logger = vault, auditLog, conns, logger
	opts.ReadyChecks = map[string]func(context.Context) error{
		"store": db.PingContext,
		"vault": vault.Ready,
	}
	keysDB, err := subjectKeyStore(ctx, &st, cfg, db, opts.ReadyChecks)
	if err != nil {
		return err
	}
	subjectKeys, err := openSubjectKeys(ctx, &st, keysDB, vault, auditLog, nc, subjectKey, liveTuningOf(cfg), logger)
	if err != nil {
		return err
	}
	opts.Subjects = subjectKeys
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "clearance", Name: "vault_round_trips_total",
			Help: "HTTP requests sent to Vault (logins, renewals, transit operations, retries).",
		}, func() float64 { return float64(vault.RoundTrips()) }))
	opts.Metrics, opts.Registerer, opts.Gatherer = metrics, promReg, promReg
	regionIn := &regionErasures{} // bound to the live registry by startLivePolicy
	if opts.Inbound != nil {
		opts.Erasures = regionIn
	}
	b, err := broker.New(opts)
	if err != nil {
		return err
	}
	authorize, err := serveAuth(cfg, logger)
	if err != nil {
		return err
	}
	cs, err := serveCompliance(cfg, authorize, auditLog, db, engine, subjectKey, vault.KeyRef(), logger)
	if err != nil {
		return err
	}
	logger.Info("clearance serve", "component", "main", "registry_version", reg.Version(),
		"nats", joinURLs(cfg.NATS.URLs), "store", storeKind(cfg.Store), "listen", cfg.HTTP.Listen)
	rights, err := startLivePolicy(ctx, &st, livePolicyParts{tuning: liveTuningOf(cfg), erasures: regionIn, ready: opts.ReadyChecks, authorize: authorize, registerer: promReg, db: db, nc: nc, engine: engine, reg: reg, audit: auditLog,
		keys: vault, conns: conns, subjectKey: subjectKey, shred: subjectKeys, logger: logger, attach: complianceRights(cs, logger)})
	if err != nil {
		return err
	}
	return runBroker(ctx, b, cfg.HTTP.Listen, nil, logger, append(mountsOf(cs), rights)...)
}

// mirrorCheckpoints creates the stream name (audit.checkpoint_stream) and
// returns the publisher of its copies, closed through st, with the
// checkpoints it gave up counted as
// clearance_audit_checkpoints_unmirrored_total and those it will try again
// as clearance_audit_checkpoints_mirror_waiting; nil when the stream is
// off.
func mirrorCheckpoints(ctx context.Context, st *stack, nc *nats.Conn, name string, replicas int, reg prometheus.Registerer, logger *slog.Logger) (*mirror.Publisher, error) {
	if name == "" {
		logger.Warn("audit checkpoints are not mirrored (audit.checkpoint_stream is empty): "+
			"a rewrite of the newest entries whose checkpoint is deleted with it goes unnoticed", "component", "audit")
		return nil, nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("audit.checkpoint_stream: %w", err)
	}
	if err := mirror.EnsureStream(ctx, js, name, replicas); err != nil {
		return nil, fmt.Errorf("audit.checkpoint_stream: %w", err)
	}
	pub := mirror.NewPublisher(js, name, logger)
	st.add(pub.Close)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "clearance", Name: "audit_checkpoints_unmirrored_total",
		Help: "Audit checkpoints not published to audit.checkpoint_stream (refused on every attempt, or dropped).",
	}, func() float64 { return float64(pub.Failed()) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "clearance", Name: "audit_checkpoints_mirror_waiting",
		Help: "Audit checkpoints NATS refused, kept to be published again after the next one it takes.",
	}, func() float64 { return float64(pub.Waiting()) }))
	return pub, nil
}

// subjectKeyStore returns the store of the subject key table: the one of
// subject_keys.store when it is set (opened here, closed through st, and
// added to ready as "subject_keys"), else db, the store section's.
func subjectKeyStore(ctx context.Context, st *stack, cfg *config.Config, db *bun.DB, ready map[string]func(context.Context) error) (*bun.DB, error) {
	if cfg.SubjectKeys.Store == nil {
		return db, nil
	}
	kdb, err := openStore(ctx, st, *cfg.SubjectKeys.Store, "subject_keys.store")
	if err != nil {
		return nil, err
	}
	ready["subject_keys"] = kdb.PingContext
	return kdb, nil
}

// openStore opens the store s, the configuration's section path (store,
// subject_keys.store), with its referenced password, and closes it through
// st.
func openStore(ctx context.Context, st *stack, s config.Store, path string) (*bun.DB, error) {
	dsn, err := storeDSN(s, path)
	if err != nil {
		return nil, err
	}
	db, err := audit.OpenDB(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	st.add(func(context.Context) error { return db.Close() })
	return db, nil
}

// brokerOptions maps the configuration's pipeline settings onto broker
// options; the caller fills in the parts.
func brokerOptions(cfg *config.Config) broker.Options {
	o := broker.Options{
		Stream: broker.StreamOptions{
			Name: cfg.NATS.Stream, Consumer: cfg.NATS.Consumer, Replicas: cfg.NATS.Replicas,
			DuplicateWindow: cfg.NATS.DuplicateWindow, AckWait: cfg.NATS.AckWait, FetchBatch: cfg.NATS.FetchBatch,
		},
		Retry: broker.RetryPolicy{
			MaxDeliver: cfg.NATS.MaxDeliver, BackoffBase: cfg.Pipeline.BackoffBase, BackoffMax: cfg.Pipeline.BackoffMax,
		},
		Concurrency:    cfg.Pipeline.Concurrency,
		ShutdownGrace:  cfg.Pipeline.ShutdownGrace,
		RequestTimeout: cfg.HTTP.RequestTimeout,
		MaxBodyBytes:   cfg.HTTP.MaxBodyBytes,
	}
	if in := cfg.InboundRegion; in != nil {
		o.Inbound = &broker.InboundOptions{Stream: in.Stream, Subject: in.Subject, Consumer: in.Consumer, LocalSubject: in.LocalSubject,
			Recipients: in.Recipients}
	}
	return o
}

func buildConnectors(ctx context.Context, cfg *config.Config, kinds *connectors.Registry, logger *slog.Logger) (broker.ConnectorMap, error) {
	conns := broker.ConnectorMap{}
	for _, name := range cfg.ConnectorNames() {
		c := cfg.Connectors[name]
		node := c.Config
		conn, err := kinds.New(ctx, name, c.Kind, connectors.YAMLNode(&node), connectors.Deps{Logger: logger})
		if err != nil {
			_ = conns.Close(ctx)
			return nil, err
		}
		if c.Kind == webhook.KindName {
			conn = broker.RequiresPartyKey(conn)
		}
		conns[name] = conn
	}
	return conns, nil
}

func natsOptions(c config.NATS, logger *slog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name("clearance"),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is Close's own disconnection, at shutdown.
			if err != nil {
				logger.Warn("nats disconnected", "component", "nats", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("nats reconnected", "component", "nats", "server", nc.ConnectedUrlRedacted())
		}),
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_file: %w", err)
		}
		opts = append(opts, o)
	}
	if c.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLS.CAFile))
	}
	if c.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLS.CertFile, c.TLS.KeyFile))
	}
	return opts, nil
}

func joinURLs(urls []string) string {
	out := ""
	for i, u := range urls {
		if i > 0 {
			out += ","
		}
		out += u
	}
	return out
}

// storeDSN inserts the referenced password into a Postgres DSN; path is
// the store's section in the configuration (store, subject_keys.store),
// which errors name.
func storeDSN(s config.Store, path string) (string, error) {
	if !s.IsPostgres() || s.Password.IsZero() {
		return s.DSN, nil
	}
	pw, err := s.Password.Resolve()
	if err != nil {
		return "", fmt.Errorf("%s.password: %w", path, err)
	}
	u, err := url.Parse(s.DSN)
	if err != nil {
		return "", fmt.Errorf("%s.dsn: not a URL", path)
	}
	user := "postgres"
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, string(pw))
	return u.String(), nil
}

func storeKind(s config.Store) string {
	if s.IsPostgres() {
		return "postgres"
	}
	return "sqlite"
}

// apiWindDown is how long the API's requests have, once the broker has
// stopped, to finish and write their answers before their connections are
// closed. A request still reading a body a client sends slowly would
// otherwise hold the shutdown open for as long as the client likes.
const apiWindDown = 3 * time.Second

// runBroker starts b, serves its API on addr (or on ln when given) until ctx
// ends, then stops both together, so that the whole stop takes at most the
// broker's shutdown grace and apiWindDown:
//
//   - the broker stops pulling at once and lets in-flight messages finish
//     within its grace (Stop), while the listener closes and the requests
//     under way go on, those waiting for receipts getting the receipts of
//     the messages that finish;
//   - once the broker has stopped no receipt reaches this instance, so the
//     requests to its API end there (one waiting for receipts answers 202
//     with status pending, as at its timeout), and every request has
//     apiWindDown more before its connection is closed.
//
// Draining the API before stopping the broker would leave it pulling new
// work for as long as a client kept a request open, work the process's
// termination then cuts short mid-delivery.
func runBroker(ctx context.Context, b *broker.Broker, addr string, ln net.Listener, logger *slog.Logger, mounts ...func(*http.ServeMux)) error {
	if err := b.Start(ctx); err != nil {
		return err
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			_ = b.Stop(context.WithoutCancel(ctx))
			return fmt.Errorf("http: %w", err)
		}
	}
	// Every request's context ends with the wind-down, as its connection is
	// cut; those of the broker's own API end when the broker has stopped.
	requests, endRequests := context.WithCancel(context.Background())
	defer endRequests()
	brokerStopped, endBrokerAPI := context.WithCancel(context.Background())
	defer endBrokerAPI()
	// The broker's routes, then more (the compliance API and console) next
	// to them; what neither serves gets a JSON 404 or 405.
	mux := http.NewServeMux()
	mux.Handle("/", endedWith(brokerStopped, unrouted(mux, b.Handler())))
	for _, mount := range mounts {
		mount(mux)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return requests }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("api listening", "component", "http", "addr", ln.Addr().String())
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	logger.Info("shutting down", "component", "main")
	drainCtx, cutDrain := context.WithCancel(context.Background())
	defer cutDrain()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_ = srv.Shutdown(drainCtx)
	}()
	stopErr := b.Stop(context.WithoutCancel(ctx))
	endBrokerAPI()
	t := time.NewTimer(apiWindDown)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		endRequests()
		_ = srv.Close()
		cutDrain()
		<-drained
	}
	if stopErr != nil {
		return stopErr
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		return nil
	}
	return serveErr
}

// endedWith serves h with each request's context also ended when end ends:
// a request to the broker's API stops waiting for receipts once the broker
// has stopped, since none can reach it after that.
func endedWith(end context.Context, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(end, cancel)
		defer stop()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// connectNATS connects to url with opts and adds the connection's drain to
// st; the drain waits, within the shutdown's time, until the connection has
// flushed what it holds and closed (natsclose).
func connectNATS(st *stack, url string, opts ...nats.Option) (*nats.Conn, error) {
	closed := make(chan struct{})
	nc, err := nats.Connect(url, append(opts, natsclose.Handler(closed))...)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	st.add(func(ctx context.Context) error {
		startErr := natsclose.Start(nc)
		if err := natsclose.Wait(ctx, nc, closed); err != nil {
			return fmt.Errorf("nats: drain: %w", err)
		}
		if startErr != nil {
			return fmt.Errorf("nats: %w", startErr)
		}
		return nil
	})
	return nc, nil
}

// stack closes what was opened, last first.
type stack struct{ closers []func(context.Context) error }

func (s *stack) add(fn func(context.Context) error) { s.closers = append(s.closers, fn) }

func (s *stack) close(logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](ctx); err != nil {
			logger.Warn("close", "component", "main", "err", err)
		}
	}
}

// probeMethods are the methods tried to tell a wrong method (405) from a
// path that is not served (404).
var probeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// unrouted serves a request with inner when one of its routes matches, and
// otherwise answers in JSON as the APIs do: 405 with Allow when outer or
// inner serves the path with other methods, else 404. A client that sends
// POST to a GET-only route reads why, not a bare "404 page not found".
func unrouted(outer *http.ServeMux, inner http.Handler) http.Handler {
	in, _ := inner.(*http.ServeMux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if in == nil {
			inner.ServeHTTP(w, r)
			return
		}
		if h, pattern := in.Handler(r); pattern != "" {
			h.ServeHTTP(w, r)
			return
		}
		var allow []string
		for _, m := range probeMethods {
			probe := r.Clone(r.Context())
			probe.Method = m
			for _, mux := range []*http.ServeMux{outer, in} {
				if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
					allow = append(allow, m)
					break
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			w.WriteHeader(http.StatusMethodNotAllowed)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "method_not_allowed",
				"message": r.Method + " is not served on this path; use " + strings.Join(allow, " or ")})
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "not_found", "message": "no route serves this path"})
	})
}
