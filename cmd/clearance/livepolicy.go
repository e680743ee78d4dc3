package main

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/policy"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"
)

// livePolicyParts are what the live registry and erasure notices are built
// from.
type livePolicyParts struct {
	db     *bun.DB
	nc     *nats.Conn
	engine *agreements.Engine
	reg    *agreements.Registry // applied when the store holds none yet
	// applyAlways applies reg at every start (dev: the files are the
	// truth; serve: the store is, and `registry apply` changes it).
	applyAlways bool
	audit       *audit.Log
	keys        erasure.Keys
	conns       erasure.Connectors
	subjectKey  []byte
	shred       *shred.Keyring // destroys an erased subject's key
	// authorize authenticates callers of the rights routes, which admit
	// the officer role and above and are audited as compliance API calls
	// (mountRights); nil: the routes are not served (consents and erasures
	// still arrive on NATS).
	authorize *compliance.Authenticator
	// erasures, when set, is the applier the broker was given for erasure
	// notices from other regions; it is bound to the live registry here.
	erasures *regionErasures
	// ready, when set, is the broker's ReadyChecks, given the live
	// registry's ("registry": its catch-up with the store) before the API
	// serves.
	ready map[string]func(context.Context) error
	// tuning holds the live_policy, erasure and subject_keys keys of the
	// configuration (zero: the packages' defaults).
	tuning liveTuning
	// attach, when set, is given the live registry and the erasure
	// notifier once started (the compliance API records legal orders and
	// shows notice status through them).
	attach     func(*policy.Live, *erasure.Notifier)
	registerer prometheus.Registerer
	logger     *slog.Logger
}

// serveAuth authenticates callers of the compliance API, the console and
// the rights routes of `clearance serve` with the configuration's auth
// section (nil without one): one key set for all three, its failed fetches
// logged to logger.
func serveAuth(cfg *config.Config, logger *slog.Logger) (*compliance.Authenticator, error) {
	if cfg.Auth == nil {
		return nil, nil
	}
	return compliance.NewAuthenticator(*cfg.Auth, compliance.AuthOptions{HTTPClient: &http.Client{Timeout: 10 * time.Second}, Logger: logger})
}

// devRightsAuth authenticates callers of the rights routes of `clearance
// dev` with the development token issuer (`clearance token --role
// officer`).
func devRightsAuth(dir string) (*compliance.Authenticator, error) {
	issuer, err := compliance.LoadOrCreateDevIssuer(filepath.Join(dir, compliance.DevIssuerKeyFile))
	if err != nil {
		return nil, err
	}
	return issuer.Authenticator(nil)
}

// mountRights serves the rights routes of rights (a mux on which the live
// registry and the erasure notifier mounted them without authorization) on
// mux, each behind the compliance API's guard: the bearer token checked
// by auth, the officer role or above, and every call that changes
// something (a consent, an erasure, a justification) audited as
// compliance_api_call with the caller's account as an HMAC under
// subjectKey, the route's pattern (never the subject in the path) and the
// answer's status, as the compliance API's own calls are.
func mountRights(mux *http.ServeMux, rights http.Handler, auth *compliance.Authenticator, auditLog compliance.AuditLog, subjectKey []byte, logger *slog.Logger) {
	opts := compliance.Options{Auth: auth, Audit: auditLog, SubjectKey: subjectKey, Logger: logger}
	for _, route := range compliance.RightsRoutes() {
		method, path, _ := strings.Cut(route, " ")
		mux.Handle(route, compliance.GuardRoute(opts, method, path, compliance.RoleOfficer, rights))
	}
}

// liveTuning is the configuration's live-policy keys: live_policy,
// erasure and subject_keys. Its zero value leaves every package default
// (`clearance dev` runs without a configuration file).
type liveTuning struct {
	syncTimeout   time.Duration
	snapshotEvery int
	escalateAfter time.Duration
	cacheSize     int
	cacheTTL      time.Duration
}

// liveTuningOf returns the live-policy keys of cfg (validated by Load's
// caller).
func liveTuningOf(cfg *config.Config) liveTuning {
	return liveTuning{
		syncTimeout:   cfg.LivePolicy.SyncTimeout,
		snapshotEvery: cfg.LivePolicy.SnapshotEvery,
		escalateAfter: cfg.Erasure.EscalateAfter,
		cacheSize:     cfg.SubjectKeys.CacheSize,
		cacheTTL:      cfg.SubjectKeys.CacheTTL,
	}
}

// openSubjectKeys opens the per-subject key ring the broker seals dead
// letters with (crypto-shredding), its cache sized by tuning; it is closed
// through st.
func openSubjectKeys(ctx context.Context, st *stack, db *bun.DB, ks shred.KeyService, auditLog *audit.Log, nc *nats.Conn,
	subjectKey []byte, tuning liveTuning, logger *slog.Logger) (*shred.Keyring, error) {
	k, err := shred.Open(ctx, shred.Options{DB: db, Keys: ks, Audit: auditLog, SubjectKey: subjectKey, NATS: nc, Logger: logger,
		CacheSize: tuning.cacheSize, CacheTTL: tuning.cacheTTL})
	if err != nil {
		return nil, err
	}
	st.add(func(context.Context) error { k.Close(); return nil })
	return k, nil
}

// startLivePolicy keeps the engine on the registry in force across
// instances: it opens the registry store, applies p.reg when the store holds
// none yet (later versions come from `clearance registry apply`), follows
// the registry bucket on NATS, records the consents and erasures arriving
// on NATS, and on an erasure destroys the subject's key (p.shred) and tells
// every recipient of the subject. It returns the
// mount of the rights routes (POST /v1/consents, POST and GET
// /v1/subjects/{id}/erasure, POST …/erasure/{recipient}/justification);
// what it started is stopped through st.
func startLivePolicy(ctx context.Context, st *stack, p livePolicyParts) (func(*http.ServeMux), error) {
	store, err := policy.OpenStore(ctx, p.db)
	if err != nil {
		return nil, err
	}
	verifier, _ := p.keys.(erasure.Verifier) // *keys.Vault and *keys.DevKeyRing verify
	notifier, err := erasure.New(ctx, erasure.Options{
		Verifier: verifier,
		DB:       p.db, Audit: p.audit, Keys: p.keys, Connectors: p.conns, SubjectKey: p.subjectKey, Logger: p.logger,
		EscalateAfter: p.tuning.escalateAfter,
		ErasedSubject: erasure.ErasedSubjects(p.engine.Registry, p.subjectKey),
		Parties:       func() erasure.Parties { return p.engine.Registry() },
		// As the broker: a party without a public key on a webhook
		// cannot open a notice, which is then undeliverable.
		NeedsPartyKey: broker.NeedsPartyKey,
		// The rights routes are served behind compliance.GuardRoute
		// (mountRights): a justification is the authenticated caller's.
		Caller: compliance.CallerAccount,
	})
	if err != nil {
		return nil, err
	}
	if err := listenErasureAcks(st, notifier, p.nc, p.conns); err != nil {
		return nil, err
	}
	// A registry applied while the instance runs is checked against the
	// connectors it configures; the registries replayed at start are not,
	// only the one in force once started.
	var started atomic.Bool
	live, err := policy.Start(ctx, policy.Options{
		Store: store, Engine: p.engine, NATS: p.nc, Audit: p.audit, Logger: p.logger, Registerer: p.registerer,
		SyncTimeout: p.tuning.syncTimeout, SnapshotEvery: p.tuning.snapshotEvery,
		OnSwap: func(ev policy.Event) {
			if ev.Kind == policy.KindApply && started.Load() {
				warnUndeliverableParties(p.engine.Registry(), p.conns, p.logger)
				// The registry lock is held here: the notices are put
				// back in work beside it.
				go reopenNotices(notifier, p.logger)
			}
		},
		OnErasure: func(ctx context.Context, subject string, at time.Time) error {
			if p.shred != nil {
				if _, err := p.shred.Destroy(ctx, subject, shredScope); err != nil {
					return err
				}
			}
			_, err := notifier.Begin(ctx, subject, at)
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	st.add(func(context.Context) error { live.Stop(); return nil })
	if p.ready != nil {
		p.ready["registry"] = live.Ready
	}
	if p.erasures != nil {
		p.erasures.bind(live)
	}
	if p.attach != nil {
		p.attach(live, notifier)
	}
	if live.Seq() == 0 || p.applyAlways {
		if _, _, err := live.Apply(ctx, p.reg); err != nil {
			return nil, err
		}
	}
	// Notices go out once the registry in force is the store's (or the
	// files', applied): before, the engine holds the files', which may
	// lack a party a later apply added, and a notice to it would be
	// marked undeliverable for good.
	// This start's configuration may define a connector, or its registry
	// give a key, that an undeliverable notice lacked.
	reopenNotices(notifier, p.logger)
	notifier.Start()
	st.add(func(context.Context) error { notifier.Stop(); return nil })
	in, err := live.StartIntake(ctx)
	if err != nil {
		return nil, err
	}
	st.add(func(context.Context) error { in.Stop(); return nil })
	p.logger.Info("live registry", "component", "policy", "event", live.Seq(), "registry_version", p.engine.Registry().Version())
	warnUndeliverableParties(p.engine.Registry(), p.conns, p.logger)
	started.Store(true)
	if p.authorize == nil {
		p.logger.Warn("consent and erasure API disabled: no auth section in the configuration (NATS intake runs)", "component", "policy")
		return func(*http.ServeMux) {}, nil
	}
	rights := http.NewServeMux()
	live.Mount(rights, nil)
	notifier.Mount(rights, nil)
	return func(mux *http.ServeMux) {
		mountRights(mux, rights, p.authorize, p.audit, p.subjectKey, p.logger)
	}, nil
}

// reopenNotices puts the erasure notices marked undeliverable back in work
// (erasure.Notifier.Reopen), after a registry apply or at start, and logs
// how many.
func reopenNotices(n *erasure.Notifier, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := n.Reopen(ctx)
	switch {
	case err != nil:
		logger.Warn("reopen undeliverable erasure notices", "component", "erasure", "err", err)
	case k > 0:
		logger.Info("undeliverable erasure notices tried again", "component", "erasure", "notices", k)
	}
}

// warnUndeliverableParties warns of every party of reg this instance
// cannot deliver to: of every connector a party names that the instance
// does not configure, and of every party without a public key whose
// connector encrypts to the party's own key (a webhook). Transfers to those
// parties are dead-lettered as permanent failures, and erasure notices to
// them are marked undeliverable (an officer's justification closes them),
// until the configuration defines the connector or the registry gives the
// party its key: each apply and each start tries them again
// (reopenNotices).
func warnUndeliverableParties(reg *agreements.Registry, conns erasure.Connectors, logger *slog.Logger) {
	missing, keyless := map[string][]string{}, map[string][]string{}
	for _, party := range reg.Content().Parties {
		if party.Connector == "" {
			continue
		}
		c, ok := conns.Connector(party.Connector)
		switch {
		case !ok:
			missing[party.Connector] = append(missing[party.Connector], party.ID)
		case len(party.PublicKey) == 0 && broker.NeedsPartyKey(c):
			keyless[party.Connector] = append(keyless[party.Connector], party.ID)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(missing)) {
		logger.Warn("connector not configured: transfers to its parties are dead-lettered", "component", "policy",
			"connector", name, "parties", strings.Join(missing[name], ","), "registry_version", reg.Version())
	}
	for _, name := range slices.Sorted(maps.Keys(keyless)) {
		logger.Warn("parties without a public key on a connector that encrypts to it: transfers to them are dead-lettered", "component", "policy",
			"connector", name, "parties", strings.Join(keyless[name], ","), "registry_version", reg.Version())
	}
}

// listenErasureAcks consumes the answers regions give erasure notices: on
// this instance's NATS (regions sharing a NATS system) and on the
// connection of every natsregion connector (a region on a NATS system of
// its own answers there).
func listenErasureAcks(st *stack, n *erasure.Notifier, nc *nats.Conn, conns erasure.Connectors) error {
	ncs := []*nats.Conn{nc}
	if m, ok := conns.(broker.ConnectorMap); ok {
		for _, c := range m {
			if r, ok := c.(*natsregion.Region); ok && r.Conn() != nil {
				ncs = append(ncs, r.Conn())
			}
		}
	}
	for _, c := range ncs {
		if c == nil {
			continue
		}
		stop, err := n.ListenAcks(c)
		if err != nil {
			return err
		}
		st.add(func(context.Context) error { stop(); return nil })
	}
	return nil
}

// regionErasures applies the erasure notices other regions send this one
// (broker.Options.Erasures): it records the erasure in the live registry,
// whose OnErasure destroys the subject's key here and notifies this
// region's own recipients. For a subject erased here already the live
// registry runs OnErasure again, which is safe to repeat, so a notice
// whose first application failed midway is applied whole when it comes
// again. Until the live registry is bound, notices wait (a transient
// error: JetStream redelivers).
type regionErasures struct {
	live atomic.Pointer[policy.Live]
}

var errRegistryStarting = errors.New("clearance: live registry not started yet")

// shredScope is what a destroyed subject key made unreadable: every copy
// the instances seal under it.
const shredScope = "dead letters, retry copies, regional streams"

func (r *regionErasures) bind(live *policy.Live) {
	r.live.Store(live)
}

// ApplyErasure records subject's erasure in this region.
func (r *regionErasures) ApplyErasure(ctx context.Context, subject string, at time.Time) error {
	live := r.live.Load()
	if live == nil {
		return errRegistryStarting
	}
	_, err := live.Change(ctx, agreements.Change{Erasures: []agreements.Erasure{{Subject: subject, At: at}}})
	if errors.Is(err, policy.ErrAlreadyErased) {
		return nil
	}
	return err
}

var _ broker.ErasureApplier = (*regionErasures)(nil)
