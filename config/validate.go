package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/audit/mirror"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/keys"
	"github.com/nats-io/nats-server/v2/server"
)

// Validate reports every problem of the configuration at once (errors.Join
// of *FieldError), each with its dotted path. It checks connector kinds and
// their configs only through ValidateWith.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, c.NATS.validate("nats")...)
	errs = append(errs, c.Store.validate("store")...)
	switch {
	case c.Vault == nil && c.DevKeyring == nil:
		errs = append(errs, fieldErr("vault", "required: configure vault (or dev_keyring for development)"))
	case c.Vault != nil && c.DevKeyring != nil:
		errs = append(errs, fieldErr("dev_keyring", "set vault or dev_keyring, not both"))
	case c.Vault != nil:
		if err := c.Vault.Validate(); err != nil {
			errs = append(errs, err)
		}
	default:
		if c.DevKeyring.Path == "" {
			errs = append(errs, fieldErr("dev_keyring.path", "required"))
		}
	}
	errs = append(errs, c.Audit.validate("audit")...)
	if c.Registry.Dir == "" {
		errs = append(errs, fieldErr("registry.dir", "required"))
	}
	errs = append(errs, c.HTTP.validate("http")...)
	for _, name := range c.ConnectorNames() {
		p := "connectors." + name
		if !validToken(name) {
			errs = append(errs, fieldErr(p, "name must be letters, digits, '-' or '_'"))
		}
		if c.Connectors[name].Kind == "" {
			errs = append(errs, fieldErr(p+".kind", "required"))
		}
	}
	if c.InboundRegion != nil {
		errs = append(errs, c.InboundRegion.validate("inbound_region", c.NATS)...)
	}
	errs = append(errs, c.Pipeline.validate("pipeline")...)
	errs = append(errs, c.Logging.validate("logging")...)
	errs = append(errs, c.LivePolicy.validate("live_policy")...)
	errs = append(errs, c.Erasure.validate("erasure")...)
	errs = append(errs, c.SubjectKeys.validate("subject_keys")...)
	if c.Auth != nil {
		if err := c.Auth.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ValidateWith is Validate plus the connectors: each kind must be registered
// in kinds and each config must decode strictly and validate. Problems are
// reported at once with paths such as "connectors.partner.config.timeout".
func (c *Config) ValidateWith(kinds *connectors.Registry) error {
	errs := []error{c.Validate()}
	for _, name := range c.ConnectorNames() {
		conn := c.Connectors[name]
		if conn.Kind == "" {
			continue
		}
		p := "connectors." + name
		k, ok := kinds.Lookup(conn.Kind)
		if !ok {
			errs = append(errs, fieldErr(p+".kind", fmt.Sprintf("unknown kind %q (have %s)", conn.Kind, strings.Join(kinds.Kinds(), ", "))))
			continue
		}
		node := conn.Config
		if err := CheckKeys(&node, k.NewConfig(), p+".config"); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := kinds.Decode(conn.Kind, connectors.YAMLNode(&node)); err != nil {
			errs = append(errs, fieldErr(p+".config", err.Error()))
		}
	}
	return errors.Join(errs...)
}

// ConnectorNames returns the configured connector names, sorted.
func (c *Config) ConnectorNames() []string {
	names := make([]string, 0, len(c.Connectors))
	for n := range c.Connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (n NATS) validate(p string) []error {
	var errs []error
	if len(n.URLs) == 0 {
		errs = append(errs, fieldErr(p+".urls", "required: at least one server URL"))
	}
	for i, raw := range n.URLs {
		errs = append(errs, checkNATSURL(fmt.Sprintf("%s.urls[%d]", p, i), raw)...)
	}
	if n.CredsFile != "" && n.NKeyFile != "" {
		errs = append(errs, fieldErr(p+".nkey_file", "set creds_file or nkey_file, not both"))
	}
	errs = append(errs, checkFile(p+".creds_file", n.CredsFile)...)
	errs = append(errs, checkFile(p+".nkey_file", n.NKeyFile)...)
	errs = append(errs, n.TLS.validate(p+".tls")...)
	if !validToken(n.Stream) {
		errs = append(errs, fieldErr(p+".stream", "required: a stream name of letters, digits, '-' or '_'"))
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		errs = append(errs, fieldErr(p+".replicas", "must be 1 to 5"))
	}
	if !validToken(n.Consumer) {
		errs = append(errs, fieldErr(p+".consumer", "required: a consumer name of letters, digits, '-' or '_'"))
	}
	if n.DuplicateWindow <= 0 {
		errs = append(errs, fieldErr(p+".duplicate_window", "must be positive"))
	}
	if n.MaxDeliver < 1 {
		errs = append(errs, fieldErr(p+".max_deliver", "must be at least 1"))
	}
	if n.AckWait < 1e9 {
		errs = append(errs, fieldErr(p+".ack_wait", "must be at least 1s"))
	}
	if n.FetchBatch < 1 || n.FetchBatch > 10000 {
		errs = append(errs, fieldErr(p+".fetch_batch", "must be 1 to 10000"))
	}
	return errs
}

func checkNATSURL(p, raw string) []error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return []error{fieldErr(p, "not a URL (want nats://host:port)")}
	}
	var errs []error
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		errs = append(errs, fieldErr(p, fmt.Sprintf("scheme %q: want nats, tls, ws or wss", u.Scheme)))
	}
	if u.User != nil {
		errs = append(errs, fieldErr(p, "credentials in the URL are not allowed; use creds_file or nkey_file"))
	}
	return errs
}

func (t TLS) validate(p string) []error {
	var errs []error
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, fieldErr(p+".cert_file", "cert_file and key_file: give both or neither"))
	}
	errs = append(errs, checkFile(p+".ca_file", t.CAFile)...)
	errs = append(errs, checkFile(p+".cert_file", t.CertFile)...)
	errs = append(errs, checkFile(p+".key_file", t.KeyFile)...)
	return errs
}

func checkFile(p, path string) []error {
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return []error{fieldErr(p, keys.UnreadableFile("", path, nil))}
	}
	return nil
}

// IsPostgres reports whether the DSN names a Postgres database (otherwise,
// in a configuration that validates, it is a SQLite file path).
func (s Store) IsPostgres() bool {
	return strings.HasPrefix(s.DSN, "postgres://") || strings.HasPrefix(s.DSN, "postgresql://")
}

// validate takes a DSN of one of two forms: a postgres:// (or
// postgresql://) URL without a password, and a SQLite file, as
// sqlite:///abs/path, sqlite:rel/path or a plain path. A plain path that
// reads as a libpq keyword DSN (audit.IsKeywordDSN: "host=pg.internal
// dbname=clearance", a word followed by "=" at its start or after white
// space) is refused: it is Postgres meant, and would otherwise become a
// SQLite file of that name on local disk. A DSN holding "password=" in
// any form is refused, as a URL's user password is.
func (s Store) validate(p string) []error {
	var errs []error
	if s.DSN == "" {
		return []error{fieldErr(p+".dsn", "required: a postgres:// URL or a SQLite file path")}
	}
	literal := strings.Contains(strings.ToLower(s.DSN), "password=")
	switch {
	case s.IsPostgres():
		u, err := url.Parse(s.DSN)
		switch {
		case err != nil:
			errs = append(errs, fieldErr(p+".dsn", "not a URL"))
		case u.Host == "":
			errs = append(errs, fieldErr(p+".dsn", "no host"))
		}
		if err == nil && u.User != nil {
			_, pw := u.User.Password()
			literal = literal || pw
		}
		if err == nil && u.Query().Has("password") {
			literal = true
		}
	case strings.Contains(s.DSN, "://") && !strings.HasPrefix(s.DSN, "sqlite://"):
		errs = append(errs, fieldErr(p+".dsn", "unknown scheme: want postgres://, postgresql:// or sqlite://, or a SQLite file path"))
	case audit.IsKeywordDSN(s.DSN):
		errs = append(errs, fieldErr(p+".dsn", "reads as a libpq keyword DSN (host=... dbname=...), which would be taken for a SQLite file name: "+
			"give Postgres as postgres://user@host:port/db?sslmode=..., its password in "+p+".password "+
			"(a SQLite file whose name holds \"=\" is given as sqlite:NAME)"))
	default:
		if path := strings.TrimPrefix(strings.TrimPrefix(s.DSN, "sqlite:"), "//"); path == "" || path == ":memory:" {
			errs = append(errs, fieldErr(p+".dsn", "a SQLite store needs a file path"))
		}
		if !s.Password.IsZero() {
			errs = append(errs, fieldErr(p+".password", "only a postgres:// store takes a password"))
		}
	}
	if literal {
		errs = append(errs, fieldErr(p+".dsn", "holds a literal password; give it by reference in "+p+".password"))
	}
	errs = append(errs, s.Password.validate(p+".password", false)...)
	return errs
}

func (a Audit) validate(p string) []error {
	errs := a.HMACKey.validate(p+".hmac_key", true)
	if a.CheckpointEvery < 1 {
		errs = append(errs, fieldErr(p+".checkpoint_every", "must be at least 1"))
	}
	if a.CheckpointInterval < minCheckpointInterval {
		errs = append(errs, fieldErr(p+".checkpoint_interval", "must be at least "+minCheckpointInterval.String()))
	}
	if a.GatherWindow < 0 || a.GatherWindow > maxGatherWindow {
		errs = append(errs, fieldErr(p+".gather_window", "must be from 0 (never wait) to "+maxGatherWindow.String()))
	}
	if a.Chains < 0 || a.Chains > audit.MaxChains {
		errs = append(errs, fieldErr(p+".chains", fmt.Sprintf("must be 0 (what the database records, else 1) to %d", audit.MaxChains)))
	}
	if a.CheckpointStream != "" && !mirror.ValidStream(a.CheckpointStream) {
		errs = append(errs, fieldErr(p+".checkpoint_stream", "want a stream name of 1 to 64 letters, digits, _ or -, or empty for none"))
	}
	return errs
}

func (h HTTP) validate(p string) []error {
	var errs []error
	if _, port, err := net.SplitHostPort(h.Listen); err != nil || port == "" {
		errs = append(errs, fieldErr(p+".listen", "want host:port, e.g. 127.0.0.1:8080 or :8080"))
	}
	if h.RequestTimeout < minRequestTimeout {
		errs = append(errs, fieldErr(p+".request_timeout", "must be at least "+minRequestTimeout.String()))
	}
	if h.MaxBodyBytes < 1024 {
		errs = append(errs, fieldErr(p+".max_body_bytes", "must be at least 1024"))
	}
	return errs
}

func (r *InboundRegion) validate(p string, n NATS) []error {
	var errs []error
	if !validToken(r.Stream) {
		errs = append(errs, fieldErr(p+".stream", "required: a stream name of letters, digits, '-' or '_'"))
	}
	if r.Stream == n.Stream {
		errs = append(errs, fieldErr(p+".stream", "must differ from nats.stream"))
	}
	subjectOK := validSubject(r.Subject, true)
	if !subjectOK {
		errs = append(errs, fieldErr(p+".subject", "required: a NATS subject such as clearance.region.eu.>"))
	}
	// A filter such as clearance.> or clearance.*.eu takes Clearance's own
	// subjects as surely as clearance.transfers.> does, so the filter is
	// matched as NATS matches it, not by its prefix.
	for _, own := range ownSubjects {
		if subjectOK && server.SubjectsCollide(r.Subject, own) {
			errs = append(errs, fieldErr(p+".subject", fmt.Sprintf("must not overlap %s, which Clearance itself uses", own)))
			break
		}
	}
	if !validToken(r.Consumer) {
		errs = append(errs, fieldErr(p+".consumer", "a consumer name of letters, digits, '-' or '_'"))
	}
	for i, rc := range r.Recipients {
		if rc == "" || strings.ContainsAny(rc, ".*> \t\r\n") {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.recipients[%d]", p, i), "a party id, one NATS subject token (no '.', '*', '>' or space)"))
		}
	}
	// The record is republished on local_subject opened, in plaintext.
	// Under clearance. it would reach Clearance's own streams (the dead
	// letters, the transfers); matched by the inbound filter it would go
	// back into the inbound stream and be dead-lettered there as it is.
	switch {
	case !validSubject(r.LocalSubject, false):
		errs = append(errs, fieldErr(p+".local_subject", "required: a NATS subject without wildcards"))
	case server.SubjectMatchesFilter(r.LocalSubject, "clearance.>"):
		errs = append(errs, fieldErr(p+".local_subject", "must be outside clearance.>, the subjects Clearance itself uses: the opened record would reach them in plaintext"))
	case subjectOK && server.SubjectMatchesFilter(r.LocalSubject, r.Subject):
		errs = append(errs, fieldErr(p+".local_subject", fmt.Sprintf("must not match inbound_region.subject %s: the opened record would go back into the inbound stream in plaintext", r.Subject)))
	}
	return errs
}

// ownSubjects are the subjects Clearance publishes and consumes on itself:
// transfers, receipts, instance replies and dead letters (broker), consents
// and erasures (policy), erasure acknowledgements (erasure), destroyed
// subject keys (shred), applied registry events (policy) and audit
// checkpoints (audit/mirror). An inbound stream whose filter overlaps one of
// them would capture its messages.
var ownSubjects = []string{
	"clearance.transfers.>", "clearance.receipts.>", "clearance.replies.>", "clearance.deadletter.>",
	"clearance.consents.>", "clearance.erasures.>", "clearance.erasure.acks.>",
	"clearance.shred.destroyed", "clearance.registry.applied", "clearance.audit.checkpoints.>",
}

func (pl Pipeline) validate(p string) []error {
	var errs []error
	if pl.Concurrency < 1 || pl.Concurrency > 4096 {
		errs = append(errs, fieldErr(p+".concurrency", "must be 1 to 4096"))
	}
	if pl.BackoffBase < minBackoffBase {
		errs = append(errs, fieldErr(p+".backoff_base", "must be at least "+minBackoffBase.String()))
	}
	if pl.BackoffMax < pl.BackoffBase {
		errs = append(errs, fieldErr(p+".backoff_max", "must be at least backoff_base"))
	}
	if pl.ShutdownGrace < minShutdownGrace {
		errs = append(errs, fieldErr(p+".shutdown_grace", "must be at least "+minShutdownGrace.String()))
	}
	if pl.GCPercent != 0 && (pl.GCPercent < 25 || pl.GCPercent > 1000) {
		errs = append(errs, fieldErr(p+".gc_percent", "must be 0 (the Go runtime's own) or 25 to 1000"))
	}
	if pl.MemoryLimitBytes != 0 && pl.MemoryLimitBytes < minMemoryLimit {
		errs = append(errs, fieldErr(p+".memory_limit_bytes", fmt.Sprintf("must be 0 (the container's limit, if any) or at least %d (64 MiB)", minMemoryLimit)))
	}
	return errs
}

func (l Logging) validate(p string) []error {
	var errs []error
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fieldErr(p+".level", fmt.Sprintf("%q: want debug, info, warn or error", l.Level)))
	}
	switch l.Format {
	case "json", "text":
	default:
		errs = append(errs, fieldErr(p+".format", fmt.Sprintf("%q: want json or text", l.Format)))
	}
	return errs
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

func validSubject(s string, wildcards bool) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return false
		case t == "*" || (t == ">" && i == len(toks)-1):
			if !wildcards {
				return false
			}
		case strings.ContainsAny(t, "*>"):
			return false
		}
	}
	return true
}

// maxGatherWindow bounds audit.gather_window: every append may wait that
// long, so a window in the wrong unit ("200ms" for "200us") is caught at
// start.
const maxGatherWindow = 10 * time.Millisecond

// The least durations Validate takes. A duration in the wrong unit ("1ms"
// for "1m") or a test's value left in place is caught at start rather
// than turned into load:
//
//   - audit.checkpoint_interval: every tick reads the heads of the log's
//     chains and, where entries were written since the last checkpoint,
//     signs one (a Vault round trip); 1ms ran some 2,500 queries a second
//     on an idle log.
//   - http.request_timeout: below it a POST /v1/transfers answers 202
//     pending before a receipt can come back.
//   - pipeline.backoff_base: the retries of a transient failure would go
//     out all but at once, at a partner or Vault that is already failing.
//   - pipeline.shutdown_grace: below it no message in flight finishes on
//     SIGTERM; every one is handed back and done again.
const (
	minCheckpointInterval = time.Second
	minRequestTimeout     = 100 * time.Millisecond
	minBackoffBase        = 100 * time.Millisecond
	minShutdownGrace      = 100 * time.Millisecond
)

// minMemoryLimit is the least pipeline.memory_limit_bytes: an instance
// under load keeps about 16 MB live, and a limit near the live heap makes
// the collector run all the time.
const minMemoryLimit = 64 << 20
