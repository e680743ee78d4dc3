package faults

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/integration/vaulttest"
	"github.com/clearance-broker/clearance/keys"
	"github.com/uptrace/bun"
)

var long = flag.Bool("long", false, "run the long fault-injection suite (20,000 requests, three rounds of faults); also CLEARANCE_LONG=1")

// scale is the size of one run.
type scale struct {
	requests int
	rounds   int           // rounds of the four faults
	pace     time.Duration // producer's time for all requests
	settle   time.Duration // how long outcomes may take after the last fault
}

func runScale() scale {
	if *long || os.Getenv("CLEARANCE_LONG") == "1" {
		return scale{requests: 20000, rounds: 3, pace: 240 * time.Second, settle: 5 * time.Minute}
	}
	return scale{requests: 2000, rounds: 1, pace: 30 * time.Second, settle: 150 * time.Second}
}

// world is everything one run starts.
type world struct {
	root      string
	bin       string
	vault     *vaulttest.Server
	vaultNet  *proxy // between the brokers and Vault
	nats      *restartableNATS
	natsNet   *proxy // between the brokers and NATS, capturing what they send
	region    string // URL of the regional data centre's NATS
	pg        *privatePostgres
	partner   *countingPartner
	brokers   []*child
	dir       string
	tokenFile string
	hmacFile  string
	jwksFile  string
	cfgPath   string
	secrets   []string
}

// vaultKeysDirect connects to Vault without the outage proxy, for the
// partner's JWK set.
func vaultJWKS(t *testing.T, s *vaulttest.Server, tokenFile string) []byte {
	t.Helper()
	v, err := keys.NewVault(t.Context(), keys.VaultConfig{
		Address: s.Addr, Auth: keys.VaultAuth{TokenFile: tokenFile}, Timeout: 5 * time.Second,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("vault: %v", err)
	}
	defer v.Close(context.Background())
	set, err := v.JWKS(t.Context())
	if err != nil {
		t.Fatalf("vault jwks: %v", err)
	}
	return set
}

func startWorld(t *testing.T, instances int, extraConfig string) *world {
	t.Helper()
	w := &world{root: brokertest.RepoRoot(t), dir: t.TempDir()}
	built := make(chan string, 1)
	go func() {
		// Build while the services start; a failure is reported below.
		bin := filepath.Join(w.dir, "clearance")
		if err := goBuild(w.root, bin); err != nil {
			built <- "error: " + err.Error()
			return
		}
		built <- bin
	}()
	w.vault = vaulttest.Start(t)
	w.vault.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	w.vault.Write("transit/keys/clearance-signing", map[string]any{"type": "ecdsa-p256"})
	w.tokenFile = filepath.Join(w.dir, "vault-token")
	w.hmacFile = filepath.Join(w.dir, "hmac")
	hmacKey := "faults-subject-hmac-key-" + fmt.Sprint(time.Now().UnixNano())
	for path, v := range map[string]string{w.tokenFile: w.vault.Token, w.hmacFile: hmacKey} {
		if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w.secrets = []string{w.vault.Token, hmacKey}
	jwks := vaultJWKS(t, w.vault, w.tokenFile)
	w.jwksFile = filepath.Join(w.dir, "jwks.json")
	if err := os.WriteFile(w.jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	w.vaultNet = newProxy(t, hostPort(w.vault.Addr), false)
	w.nats = startNATS(t)
	w.natsNet = newProxy(t, w.nats.Addr(), true)
	w.region = brokertest.StartNATS(t).ClientURL()
	w.pg = startPostgres(t)
	w.partner = newPartner(t, jwks)

	registry := brokertest.RekeyedRegistry(t, w.root, w.partner.key.PublicJWK)
	w.cfgPath = filepath.Join(w.dir, "clearance.yaml")
	cfg := fmt.Sprintf(`
nats: {urls: [%q], replicas: 1, ack_wait: 5s, max_deliver: 1000, duplicate_window: 30m}
store: {dsn: %q}
vault: {address: %q, auth: {token_file: %q}, timeout: 3s}
audit: {hmac_key: {file: %q}, checkpoint_every: 500}
registry: {dir: %q}
http: {listen: "127.0.0.1:0"}
connectors:
  partner-webhook: {kind: webhook, config: {default_url: %q, allow_http: true}}
  region-jp: {kind: natsregion, config: {urls: [%q], stream: %s, ensure_stream: true, duplicate_window: 30m}}
pipeline: {concurrency: 16, backoff_base: 100ms, backoff_max: 2s, shutdown_grace: 5s}
logging: {format: json, level: debug}
%s`, "nats://"+w.natsNet.Addr(), w.pg.DSN(), "http://"+w.vaultNet.Addr(), w.tokenFile, w.hmacFile,
		registry, w.partner.URL, w.region, regionStream, extraConfig)
	if err := os.WriteFile(w.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	w.bin = <-built
	if len(w.bin) > 7 && w.bin[:7] == "error: " {
		t.Fatalf("faults: %s", w.bin)
	}
	for range instances {
		w.brokers = append(w.brokers, newChild(t, w.bin, w.cfgPath, freeAddr(t), nil))
	}
	return w
}

// regionStream is the regional data centre's inbound stream.
const regionStream = "CLEARANCE_REGION_INBOUND"

// openAuditDB opens the private Postgres for reading the audit log.
func openAuditDB(t *testing.T, dsn string) *bun.DB {
	t.Helper()
	db, err := audit.OpenDB(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func hostPort(url string) string {
	for _, p := range []string{"http://", "https://"} {
		if len(url) > len(p) && url[:len(p)] == p {
			return url[len(p):]
		}
	}
	return url
}
