package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/audit/mirror"
	"github.com/clearance-broker/clearance/integration/vaulttest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/uptrace/bun"
)

// Stream names and subjects the harness uses.
const (
	ingestStream   = "CLEARANCE_TRANSFERS"
	regionStream   = "CLEARANCE_REGION_INBOUND"
	regionPrefix   = "clearance.region"
	baselineTarget = regionPrefix + ".baseline"
)

// env is everything a run needs besides the brokers: NATS servers, Vault,
// the Postgres schema, the HTTPS partner and the registry. close undoes it.
type env struct {
	cfg     Config
	dir     string
	servers []*server.Server
	ingest  string // NATS URL of the ingest stream
	region  string // NATS URL of the region stream
	nc      *nats.Conn
	js      jetstream.JetStream
	rnc     *nats.Conn
	rjs     jetstream.JetStream
	// pubErrs counts asynchronous publishes the ingest stream refused.
	pubErrs atomic.Int64

	vault     *vaulttest.Process
	tokenFile string

	admin  *bun.DB
	schema string
	dsn    string
	db     *bun.DB // the schema, for counting audit entries

	partner   *httptest.Server
	partnerCA string
	onPartner atomic.Pointer[func(id string)]

	registry *agreements.Registry
	// registryDir is the directory registry was loaded from.
	registryDir string
}

func newEnv(ctx context.Context, cfg Config) (e *env, err error) {
	e = &env{cfg: cfg}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.dir, err = os.MkdirTemp("", "clearance-loadharness-"); err != nil {
		return e, fmt.Errorf("harness: temp dir: %w", err)
	}
	if cfg.NATSURL != "" {
		e.ingest, e.region = cfg.NATSURL, cfg.NATSURL
	} else {
		for _, name := range []string{"ingest", "region"} {
			s, err := startNATS(filepath.Join(e.dir, name))
			if err != nil {
				return e, err
			}
			e.servers = append(e.servers, s)
		}
		e.ingest, e.region = e.servers[0].ClientURL(), e.servers[1].ClientURL()
	}
	if e.nc, e.js, err = connect(e.ingest, "loadharness", jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) {
		e.pubErrs.Add(1)
	})); err != nil {
		return e, err
	}
	if e.rnc, e.rjs, err = connect(e.region, "loadharness-region"); err != nil {
		return e, err
	}
	if err := e.streams(ctx); err != nil {
		return e, err
	}
	if e.vault, err = startVault(ctx); err != nil {
		return e, err
	}
	e.tokenFile = filepath.Join(e.dir, "vault-token")
	if err := os.WriteFile(e.tokenFile, []byte(e.vault.Token+"\n"), 0o600); err != nil {
		return e, fmt.Errorf("harness: token file: %w", err)
	}
	if err := e.postgres(ctx); err != nil {
		return e, err
	}
	if err := e.startPartner(); err != nil {
		return e, err
	}
	if e.registry, e.registryDir, err = loadRegistry(cfg.RegistryDir, cfg.RegistryParties, e.dir); err != nil {
		return e, err
	}
	return e, nil
}

func startNATS(dir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("harness: nats server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("harness: nats server not ready")
	}
	return s, nil
}

func connect(url, name string, opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, fmt.Errorf("harness: nats connect: %w", err)
	}
	js, err := jetstream.New(nc, append([]jetstream.JetStreamOpt{jetstream.WithPublishAsyncMaxPending(4096)}, opts...)...)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("harness: jetstream: %w", err)
	}
	return nc, js, nil
}

// streams creates the ingest stream exactly as the broker does (file
// storage, work queue retention, 2m de-duplication) and the region stream
// as the natsregion connector's StreamConfig does.
func (e *env) streams(ctx context.Context) error {
	if _, err := e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: ingestStream, Description: "Clearance transfer requests",
		Subjects: []string{"clearance.transfers.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: 1, Duplicates: 2 * time.Minute,
	}); err != nil {
		return fmt.Errorf("harness: stream %s: %w", ingestStream, err)
	}
	// The copies of the audit checkpoints, as clearance serve keeps them.
	if err := mirror.EnsureStream(ctx, e.js, mirror.DefaultStream, 1); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	if _, err := e.rjs.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: regionStream, Subjects: []string{regionPrefix + ".>"},
		Storage: jetstream.FileStorage, Replicas: 1, Duplicates: 2 * time.Minute,
	}); err != nil {
		return fmt.Errorf("harness: stream %s: %w", regionStream, err)
	}
	return nil
}

// reset empties the streams and removes the consumers between
// measurements, so that each starts from the same state.
func (e *env) reset(ctx context.Context) error {
	for _, name := range []string{"clearance", "baseline"} {
		if err := e.js.DeleteConsumer(ctx, ingestStream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("harness: delete consumer %s: %w", name, err)
		}
	}
	for _, p := range []struct {
		js   jetstream.JetStream
		name string
	}{{e.js, ingestStream}, {e.rjs, regionStream}} {
		s, err := p.js.Stream(ctx, p.name)
		if err != nil {
			return fmt.Errorf("harness: stream %s: %w", p.name, err)
		}
		if err := s.Purge(ctx); err != nil {
			return fmt.Errorf("harness: purge %s: %w", p.name, err)
		}
	}
	return nil
}

// postgres creates a unique schema for the audit log.
func (e *env) postgres(ctx context.Context) error {
	admin := e.cfg.PostgresDSN
	if admin == "" {
		admin = os.Getenv("CLEARANCE_TEST_POSTGRES")
	}
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	// The admin connection asks for checkpoints (checkpoint), which on a
	// busy shared server can take longer than the driver's default read
	// timeout of 10 s.
	db, err := audit.OpenDB(ctx, withReadTimeout(admin, "120"))
	if err != nil {
		return fmt.Errorf("harness: postgres: %w", err)
	}
	e.admin = db
	findPostmaster(ctx, db)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "loadharness_" + hex.EncodeToString(rnd[:])
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		return fmt.Errorf("harness: postgres: create schema: %w", err)
	}
	e.schema = schema
	sep := "?"
	if strings.Contains(admin, "?") {
		sep = "&"
	}
	e.dsn = admin + sep + "search_path=" + schema
	if e.db, err = audit.OpenDB(ctx, e.dsn); err != nil {
		return fmt.Errorf("harness: postgres: %w", err)
	}
	return nil
}

// emptySchema drops the harness's Postgres schema with everything in it
// (audit log, policy store) and creates it again empty; the next broker
// instances migrate it afresh.
func (e *env) emptySchema(ctx context.Context) error {
	if _, err := e.admin.ExecContext(ctx, "DROP SCHEMA "+e.schema+" CASCADE"); err != nil {
		return fmt.Errorf("harness: postgres: drop schema: %w", err)
	}
	if _, err := e.admin.ExecContext(ctx, "CREATE SCHEMA "+e.schema); err != nil {
		return fmt.Errorf("harness: postgres: create schema: %w", err)
	}
	return nil
}

// auditEntries counts the audit log's entries (0 before it exists: the
// table is looked for first, so that counting before the broker made it,
// as around each baseline, does not leave an error in the server's log).
func (e *env) auditEntries(ctx context.Context) int64 {
	var exists bool
	if err := e.db.QueryRowContext(ctx, "SELECT to_regclass('audit_entries') IS NOT NULL").Scan(&exists); err != nil || !exists {
		return 0
	}
	var n int64
	if err := e.db.QueryRowContext(ctx, "SELECT count(*) FROM audit_entries").Scan(&n); err != nil {
		return 0
	}
	return n
}

// startPartner starts the HTTPS partner: it reads each delivery, reports
// its Idempotency-Key and answers 200. It does not decrypt (that is the
// partner's cost, not the broker's).
func (e *env) startPartner() error {
	e.partner = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if f := e.onPartner.Load(); f != nil {
			(*f)(r.Header.Get("Idempotency-Key"))
		}
		w.WriteHeader(http.StatusOK)
	}))
	// Connections of finished rounds are reset; that is not news.
	e.partner.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.partner.StartTLS()
	e.partnerCA = filepath.Join(e.dir, "partner-ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.partner.Certificate().Raw})
	if err := os.WriteFile(e.partnerCA, cert, 0o600); err != nil {
		return fmt.Errorf("harness: partner ca: %w", err)
	}
	return nil
}

func (e *env) close() {
	ctx := context.Background()
	if e.partner != nil {
		e.partner.Close()
	}
	if e.db != nil {
		_ = e.db.Close()
	}
	if e.admin != nil {
		if e.schema != "" {
			_, _ = e.admin.ExecContext(ctx, "DROP SCHEMA "+e.schema+" CASCADE")
		}
		_ = e.admin.Close()
	}
	if e.vault != nil {
		e.vault.Stop()
	}
	if e.cfg.NATSURL != "" && e.js != nil {
		_ = e.js.DeleteStream(ctx, ingestStream)
		_ = e.js.DeleteStream(ctx, mirror.DefaultStream)
		_ = e.rjs.DeleteStream(ctx, regionStream)
	}
	for _, c := range []*nats.Conn{e.nc, e.rnc} {
		if c != nil {
			c.Close()
		}
	}
	for _, s := range e.servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// pgCheckpoints are the Postgres server's checkpoint counters: how many it
// began and the time the finished ones spent in their final fsync of the
// data files, during which commits wait on a slow disk (finding 53 of
// BENCHMARKS.md).
type pgCheckpoints struct {
	began  int64
	syncMS float64
	// wal is the server's WAL insert position in bytes.
	wal int64
}

// checkpoints reads the server's checkpoint counters: pg_stat_checkpointer
// from PostgreSQL 17, pg_stat_bgwriter before.
func (e *env) checkpoints(ctx context.Context) (pgCheckpoints, error) {
	var c pgCheckpoints
	var version int
	if err := e.admin.QueryRowContext(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return c, fmt.Errorf("harness: postgres checkpoints: %w", err)
	}
	q := "SELECT checkpoints_timed + checkpoints_req, checkpoint_sync_time FROM pg_stat_bgwriter"
	if version >= 170000 {
		q = "SELECT num_timed + num_requested, sync_time FROM pg_stat_checkpointer"
	}
	if err := e.admin.QueryRowContext(ctx, q).Scan(&c.began, &c.syncMS); err != nil {
		return c, fmt.Errorf("harness: postgres checkpoints: %w", err)
	}
	if err := e.admin.QueryRowContext(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint").Scan(&c.wal); err != nil {
		return c, fmt.Errorf("harness: postgres wal position: %w", err)
	}
	return c, nil
}

// checkpoint asks the server for a checkpoint and waits for it to end: ms
// is how long that took; refused is the server's refusal (a role without
// the right to CHECKPOINT), which is not an error of the run.
func (e *env) checkpoint(ctx context.Context) (ms float64, refused error) {
	start := time.Now()
	if _, err := e.admin.ExecContext(ctx, "CHECKPOINT"); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("harness: postgres checkpoint: %w", err)
	}
	return float64(time.Since(start).Microseconds()) / 1000, nil
}

// withReadTimeout returns the Postgres URL dsn with the driver's read
// timeout set to seconds, unless dsn sets one.
func withReadTimeout(dsn, seconds string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Query().Has("read_timeout") {
		return dsn
	}
	q := u.Query()
	q.Set("read_timeout", seconds)
	u.RawQuery = q.Encode()
	return u.String()
}
