package brokertest

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/sqlschema/sqltest"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/samplepartner"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/webhook"
	"github.com/clearance-broker/clearance/internal/syncbuf"
	"github.com/clearance-broker/clearance/keys"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/uptrace/bun"
)

// SubjectKey is the audit HMAC key the helpers use.
var SubjectKey = []byte("brokertest-subject-hmac-key-0001")

// StartNATS starts an embedded NATS server with JetStream on a random port,
// storing under a temporary directory; it is shut down in cleanup.
func StartNATS(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(),
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		tb.Fatalf("nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect connects to s; the connection is closed in cleanup.
func Connect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		tb.Fatalf("nats connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// DevKeys opens (or creates) a development key ring at path.
func DevKeys(tb testing.TB, path string) *keys.DevKeyRing {
	tb.Helper()
	k, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: path, Allow: true})
	if err != nil {
		tb.Fatalf("dev key ring: %v", err)
	}
	return k
}

// SQLiteDSN returns the DSN of a fresh SQLite file in a temporary directory.
func SQLiteDSN(tb testing.TB) string {
	tb.Helper()
	return "sqlite://" + filepath.Join(tb.TempDir(), "audit.db")
}

// PostgresDSN gives the test a schema of its own on the test PostgreSQL
// (sqltest.PostgresDSN) and returns a DSN using it.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	return sqltest.PostgresDSN(tb, "broker")
}

// OpenAudit opens the audit log at dsn, signing checkpoints with signer,
// with its options adjusted by tune. The log and its database are closed in
// cleanup.
func OpenAudit(tb testing.TB, dsn string, signer audit.Signer, tune ...func(*audit.Options)) (*audit.Log, *bun.DB) {
	tb.Helper()
	ctx := context.Background()
	db, err := audit.OpenDB(ctx, dsn)
	if err != nil {
		tb.Fatalf("audit db: %v", err)
	}
	opts := audit.Options{SubjectKey: SubjectKey, Signer: signer}
	for _, f := range tune {
		f(&opts)
	}
	l, err := audit.Open(ctx, db, opts)
	if err != nil {
		_ = db.Close()
		tb.Fatalf("audit log: %v", err)
	}
	tb.Cleanup(func() {
		_ = l.Close(context.Background())
		_ = db.Close()
	})
	return l, db
}

// RepoRoot finds the module root (the directory holding go.mod).
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if b, _ := os.ReadFile(filepath.Join(dir, "go.mod")); bytes.Contains(b, []byte("module github.com/clearance-broker/clearance\n")) {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("module root not found")
		}
		dir = parent
	}
}

// ExampleRegistry loads examples/registry and gives every webhook party the
// public key pub.
func ExampleRegistry(tb testing.TB, pub []byte) *agreements.Registry {
	tb.Helper()
	reg, err := agreements.Load(filepath.Join(RepoRoot(tb), "examples", "registry"))
	if err != nil {
		tb.Fatalf("example registry: %v", err)
	}
	reg, err = samplepartner.WithPartyKey(reg, pub)
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}

// ExampleRequest reads examples/requests/name.
func ExampleRequest(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(RepoRoot(tb), "examples", "requests", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Partner is an httptest partner endpoint holding its private key.
type Partner struct {
	*httptest.Server
	Key     *samplepartner.Key
	handler *samplepartner.Handler

	mu       sync.Mutex
	received []samplepartner.Received
	status   int
	delay    time.Duration
	wire     [][]byte
}

// NewPartner starts a partner that verifies signatures with jwks.
func NewPartner(tb testing.TB, jwks samplepartner.JWKSFunc) *Partner {
	tb.Helper()
	key, err := samplepartner.NewKey("partner-test")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Partner{Key: key}
	p.handler = &samplepartner.Handler{
		Key:  key,
		JWKS: jwks,
		Status: func(*http.Request) int {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.status
		},
		OnReceive: func(r samplepartner.Received) {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.received = append(p.received, r)
		},
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := readAll(r)
		p.mu.Lock()
		p.wire = append(p.wire, body)
		delay := p.delay
		p.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		r.Body = nopCloser{bytes.NewReader(body)}
		p.handler.ServeHTTP(w, r)
	}))
	tb.Cleanup(p.Server.Close)
	return p
}

// SetStatus makes the partner answer every delivery with code (0: normal).
func (p *Partner) SetStatus(code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = code
}

// SetDelay makes the partner take d before answering each delivery.
func (p *Partner) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Received returns the deliveries accepted so far.
func (p *Partner) Received() []samplepartner.Received {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]samplepartner.Received(nil), p.received...)
}

// Wire returns every request body the partner was sent, as it travelled.
func (p *Partner) Wire() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.wire...)
}

// Webhook builds a webhook connector delivering every recipient to url,
// marked as needing the recipients' public keys.
func Webhook(tb testing.TB, url string) connectors.Connector {
	tb.Helper()
	cfg := webhook.DefaultConfig()
	cfg.DefaultURL = url
	cfg.AllowHTTP = true
	cfg.Timeout = connectors.Duration(5 * time.Second)
	c, err := webhook.New("partner-webhook", cfg, connectors.Deps{})
	if err != nil {
		tb.Fatalf("webhook: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close(context.Background()) })
	return broker.RequiresPartyKey(c)
}

// LogCapture is a concurrency-safe buffer for slog output: Write appends,
// String returns everything logged so far.
type LogCapture struct{ syncbuf.Buffer }

// Logger returns a JSON debug logger writing into c.
func (c *LogCapture) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// RekeyedRegistry copies root's examples/registry into a temporary
// directory with every party's public key replaced by jwk, so that a test
// partner holding the matching private key can open what it receives.
func RekeyedRegistry(t testing.TB, root string, jwk []byte) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(root, "examples", "registry")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?s)public_key: \{[^}]*\}`)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b = re.ReplaceAll(b, append([]byte("public_key: "), jwk...))
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
