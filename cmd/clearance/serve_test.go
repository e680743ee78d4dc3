package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/broker/samplepartner"
	"github.com/clearance-broker/clearance/integration/vaulttest"
)

// startServe runs `clearance serve --config cfgPath` until ctx ends and
// waits until api's /readyz answers 200; it returns the exit code's channel.
// The log goes to stderr.
func startServe(t *testing.T, ctx context.Context, cancel context.CancelFunc, cfgPath, api string, stderr *syncBuffer) <-chan int {
	t.Helper()
	var stdout syncBuffer
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"serve", "--config", cfgPath}, &stdout, stderr) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return code
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("never ready:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serveConfig creates the two transit keys on vs, writes its token and a
// subject HMAC key to files in dir, and returns the head of a serve
// configuration: the NATS server, the store and subject key store
// DSNs, Vault, the audit key, the registry directory and the API's listen
// address. Tests append their own sections.
func serveConfig(t *testing.T, vs *vaulttest.Server, natsURL, dir, storeDSN, keysDSN, registry, addr string) string {
	t.Helper()
	vs.Write("transit/keys/clearance-data", map[string]any{"type": "aes256-gcm96"})
	vs.Write("transit/keys/clearance-signing", map[string]any{"type": "ecdsa-p256"})
	tokenFile, hmacFile := filepath.Join(dir, "vault-token"), filepath.Join(dir, "hmac")
	for path, v := range map[string]string{tokenFile: vs.Token, hmacFile: "serve-test-subject-hmac-key-0001"} {
		if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf(`
nats: {urls: [%q], replicas: 1, ack_wait: 5s}
store: {dsn: %q}
subject_keys: {store: {dsn: %q}}
vault: {address: %q, auth: {token_file: %q}}
audit: {hmac_key: {file: %q}}
registry: {dir: %q}
http: {listen: %q}`, natsURL, storeDSN, keysDSN, vs.Addr, tokenFile, hmacFile, registry, addr)
}

// servePartnerTest sets up what a test of `clearance serve` delivering to
// a webhook partner needs: the collector percentage serve sets put back
// afterwards, the project's root, the Vault dev server, a directory, the
// API's free address, and a partner that verifies against that API's
// JWKS.
func servePartnerTest(t *testing.T) (root string, vs *vaulttest.Server, dir, addr string, partner *brokertest.Partner) {
	t.Helper()
	// serve sets the process's collector percentage (pipeline.gc_percent).
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	root, _ = filepath.Abs(filepath.Join("..", ".."))
	vs, dir, addr = vaulttest.Start(t), t.TempDir(), freeAddr(t)
	partner = brokertest.NewPartner(t, samplepartner.FromURL(http.DefaultClient, "http://"+addr+"/.well-known/jwks.json"))
	return root, vs, dir, addr, partner
}

// partnerConnectors is the connectors section that sends the example
// registry's partners and authorities to url.
func partnerConnectors(url string) string {
	return fmt.Sprintf(`
connectors:
  partner-webhook: {kind: webhook, config: {default_url: %q, allow_http: true}}
  authority-webhook: {kind: webhook, config: {default_url: %q, allow_http: true}}
`, url, url)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServe runs `clearance serve --config` against embedded NATS, Postgres
// and the real Vault dev server.
func TestServe(t *testing.T) {
	root, vs, dir, addr, partner := servePartnerTest(t)
	api := "http://" + addr
	cfgPath := filepath.Join(dir, "clearance.yaml")
	storeDSN, keysDSN := brokertest.PostgresDSN(t), brokertest.SQLiteDSN(t)
	cfg := serveConfig(t, vs, brokertest.StartNATS(t).ClientURL(), dir, storeDSN, keysDSN, brokertest.RekeyedRegistry(t, root, partner.Key.PublicJWK), addr) +
		partnerConnectors(partner.URL) + `
pipeline: {backoff_base: 100ms, backoff_max: 1s}
logging: {format: json, level: debug}
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	var out syncBuffer
	if c := run(t.Context(), []string{"serve", "--config", cfgPath, "--check-config"}, &out, &out); c != 0 {
		t.Fatalf("--check-config exited %d: %s", c, out.String())
	}

	ctx, cancel := context.WithCancel(t.Context())
	var stderr syncBuffer
	code := startServe(t, ctx, cancel, cfgPath, api, &stderr)
	// subject_keys.store holds the subject key table, the store section's
	// store does not, and /readyz checks both.
	resp, err := http.Get(api + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(ready), `"subject_keys": "ok"`) || !strings.Contains(string(ready), `"store": "ok"`) {
		t.Errorf("/readyz: %s", ready)
	}
	for dsn, want := range map[string]bool{keysDSN: true, storeDSN: false} {
		db, err := audit.OpenDB(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = db.NewSelect().TableExpr("shred_subject_keys").ColumnExpr("count(*)").Scan(t.Context(), &n)
		db.Close()
		if (err == nil) != want {
			t.Errorf("%s: shred_subject_keys readable: %v, want %v", dsn, err == nil, want)
		}
	}
	body, _ := os.ReadFile(filepath.Join(root, "examples", "requests", "01-delivery-eea-allow.json"))
	resp, err = http.Post(api+"/v1/transfers", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	receipt, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(receipt), `"status": "delivered"`) {
		t.Fatalf("receipt: %s\n%s", receipt, stderr.String())
	}
	if got := partner.Received(); len(got) != 1 || !bytes.Contains(got[0].Payload, []byte("Ada Lovelace")) {
		t.Errorf("partner received %d deliveries", len(got))
	}
	resp, err = http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := []string{"clearance_vault_round_trips_total", "clearance_audit_batch_size_count", "clearance_audit_commit_duration_seconds_count", `clearance_decisions_total{outcome="allow",reason=""} 1`,
		"clearance_audit_checkpoints_unmirrored_total 0", "clearance_audit_checkpoints_mirror_waiting 0",
		`clearance_agreement_in_force{agreement="dpa-swiftship-de",version="2"} 1`, "clearance_registry_event_sequence"}
	if _, set := os.LookupEnv("GOGC"); !set {
		// serve applied pipeline.gc_percent's default to the process.
		want = append(want, "go_gc_gogc_percent 400")
	}
	for _, m := range want {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	// The registry names connectors this configuration leaves out, and its
	// authorities have no public key for the webhook that encrypts to it:
	// the instance says so at start, and again for a registry applied while
	// it runs (here dc-tokyo moves to a connector of its own).
	warned := func(msg, connector, version string) int {
		n := 0
		for _, line := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(line, `"msg":"`+msg+`"`) &&
				strings.Contains(line, `"connector":"`+connector+`"`) && strings.Contains(line, version) {
				n++
			}
		}
		return n
	}
	unconfigured := func(connector, version string) int {
		return warned("connector not configured: transfers to its parties are dead-lettered", connector, version)
	}
	const keylessMsg = "parties without a public key on a connector that encrypts to it: transfers to them are dead-lettered"
	first := regex(t, `"registry_version":"(sha256:[0-9a-f]+)"`, stderr.String())
	for _, c := range []string{"region-jp", "region-sg"} {
		if unconfigured(c, first) != 1 {
			t.Errorf("no warning at start that connector %s is not configured:\n%s", c, stderr.String())
		}
	}
	if unconfigured("partner-webhook", "") != 0 || unconfigured("authority-webhook", "") != 0 {
		t.Error("a configured connector reported as not configured")
	}
	if warned(keylessMsg, "authority-webhook", first) != 1 || !strings.Contains(stderr.String(), `"parties":"bka-de,cbp-us"`) {
		t.Errorf("no warning at start that the authorities have no public key:\n%s", stderr.String())
	}
	if warned(keylessMsg, "partner-webhook", "") != 0 {
		t.Error("parties with a public key reported as without one")
	}
	regDir := brokertest.RekeyedRegistry(t, root, partner.Key.PublicJWK)
	parties := filepath.Join(regDir, "10-parties.yaml")
	b, err := os.ReadFile(parties)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(parties, bytes.Replace(b, []byte("connector: region-jp"), []byte("connector: region-jp-2"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	var applyOut syncBuffer
	if c := run(t.Context(), []string{"registry", "apply", "--config", cfgPath, regDir}, &applyOut, &applyOut); c != 0 {
		t.Fatalf("registry apply exited %d: %s", c, applyOut.String())
	}
	second := regex(t, `registry version (sha256:[0-9a-f]+)`, applyOut.String())
	for deadline := time.Now().Add(10 * time.Second); unconfigured("region-jp-2", second) != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("no warning for the applied registry %s:\n%s", second, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if unconfigured("region-jp", second) != 0 || unconfigured("region-sg", second) != 1 || warned(keylessMsg, "authority-webhook", second) != 1 {
		t.Errorf("the applied registry's warnings:\n%s", stderr.String())
	}
	deadLetterReplay(t, root, api, cfgPath)
	resp, err = http.Get(api + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("serve exited %d:\n%s", c, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	for _, v := range []string{"Ada Lovelace", "Munich", "cust-881", vs.Token} {
		if strings.Contains(stderr.String(), v) {
			t.Errorf("the log holds %q", v)
		}
	}
	if strings.Contains(stderr.String(), "nats disconnected") {
		t.Errorf("a clean shutdown logged a disconnection:\n%s", stderr.String())
	}
	verifyMirrored(t, cfgPath, jwksFile, storeDSN)
}

// verifyMirrored verifies the log serve wrote against the copies of its
// checkpoints in NATS (audit.checkpoint_stream, on by default), then
// deletes the row of its last checkpoint, which the log alone cannot tell
// and the copies can.
func verifyMirrored(t *testing.T, cfgPath, jwksFile, storeDSN string) {
	t.Helper()
	verify := func(args ...string) (int, string) {
		var out syncBuffer
		code := run(t.Context(), append([]string{"audit", "verify", "--config", cfgPath, "--db", storeDSN, "--jwks", jwksFile}, args...), &out, &out)
		return code, out.String()
	}
	code, out := verify()
	n, _ := strconv.Atoi(regex(t, `mirrored copies: +(\d+) checked \(stream CLEARANCE_AUDIT_CHECKPOINTS\)`, out))
	if code != 0 || n < 1 {
		t.Fatalf("verify against the copies: exit %d\n%s", code, out)
	}
	db, err := audit.OpenDB(t.Context(), storeDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), "DELETE FROM audit_checkpoints WHERE seq = (SELECT MAX(seq) FROM audit_checkpoints)"); err != nil {
		t.Fatal(err)
	}
	if code, out := verify("--checkpoint-stream", ""); code != 0 || !strings.Contains(out, "mirrored copies:     not checked (no stream of copies") {
		t.Fatalf("the log alone: exit %d\n%s", code, out)
	}
	if code, out := verify(); code != 1 || !strings.Contains(out, "TAMPERED") || !strings.Contains(out, "removed") ||
		!strings.Contains(out, "checkpoints kept outside the database are missing from the log") {
		t.Fatalf("with the copies: exit %d\n%s", code, out)
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	bad := "nats: {urls: [nats://u:pw@x:4222]}\nstore: {dsn: \"postgres://u:hunter2@db/x\"}\ndev_keyring: {path: /tmp/k}\nlogging: {levl: x}\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	if c := run(t.Context(), []string{"serve", "--config", path}, &out, &out); c != 2 {
		t.Errorf("exit %d, want 2", c)
	}
	if !strings.Contains(out.String(), "logging.levl (line 4): unknown key") {
		t.Errorf("output:\n%s", out.String())
	}
	two := "nats: {urls: [nats://x:4222], stream: S}\nconnectors:\n  a: {kind: webhook, default_url: x}\n  b: {kind: webhook, urlz: y}\n"
	if err := os.WriteFile(path, []byte(two), 0o600); err != nil {
		t.Fatal(err)
	}
	out = syncBuffer{}
	if c := run(t.Context(), []string{"serve", "--config", path, "--check-config"}, &out, &out); c != 2 {
		t.Errorf("exit %d, want 2", c)
	}
	for _, want := range []string{"  - " + path + ": connectors.a.default_url (line 3): unknown key\n",
		"  - " + path + ": connectors.b.urlz (line 4): unknown key\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q, one problem a line:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Error("the output echoes a password")
	}
	good := "nats: {urls: [nats://x:4222]}\nstore: {dsn: /tmp/a.db}\ndev_keyring: {path: /tmp/k}\naudit: {hmac_key: {env: X}}\nregistry: {dir: /tmp}\n"
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	out = syncBuffer{}
	if c := run(t.Context(), []string{"serve", "--config", path}, &out, &out); c != 2 {
		t.Errorf("exit %d, want 2", c)
	}
	for _, want := range []string{"dev_keyring: the development key ring is for `clearance dev` only",
		"audit.hmac_key: environment variable X is unset or empty"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// --check-config reads the secrets: a short HMAC key and a missing
	// Vault token file are named, and no secret's value is shown.
	t.Setenv("CLEARANCE_TEST_SHORT_KEY", "hunter2-short")
	secrets := "nats: {urls: [nats://x:4222]}\nstore: {dsn: /tmp/a.db}\nvault: {address: \"http://127.0.0.1:1\", auth: {token_file: /nonexistent/token}}\naudit: {hmac_key: {env: CLEARANCE_TEST_SHORT_KEY}}\nregistry: {dir: /tmp}\n"
	if err := os.WriteFile(path, []byte(secrets), 0o600); err != nil {
		t.Fatal(err)
	}
	out = syncBuffer{}
	if c := run(t.Context(), []string{"serve", "--config", path, "--check-config"}, &out, &out); c != 2 {
		t.Errorf("exit %d, want 2", c)
	}
	for _, want := range []string{"audit.hmac_key: 13 bytes, at least 32 needed", "vault.auth.token_file"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Errorf("the output shows a secret:\n%s", out.String())
	}
}

// regex returns the first submatch of expr in s, failing the test without one.
func regex(t *testing.T, expr, s string) string {
	t.Helper()
	m := regexp.MustCompile(expr).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %s in:\n%s", expr, s)
	}
	return m[1]
}

// deadLetterReplay sends the legal order to an authority without a public
// key, which is dead-lettered sealed under the subject's key (in
// subject_keys.store), and replays it with clearance deadletter: list
// shows its headers and nothing of the record, replay publishes it again
// under a new id, which the broker decides afresh and audits (and, the
// authority still without a key, dead-letters again).
func deadLetterReplay(t *testing.T, root, api, cfgPath string) {
	t.Helper()
	body, _ := os.ReadFile(filepath.Join(root, "examples", "requests", "15-authority-legal-order.json"))
	resp, err := http.Post(api+"/v1/transfers", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	receipt, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := regex(t, `"request_id": "([^"]+)"`, string(receipt))
	if !strings.Contains(string(receipt), `"status": "dead_lettered"`) {
		t.Fatalf("legal order to a keyless authority: %s", receipt)
	}
	var list syncBuffer
	if c := run(t.Context(), []string{"deadletter", "list", "--config", cfgPath}, &list, &list); c != 0 {
		t.Fatalf("deadletter list exited %d: %s", c, list.String())
	}
	seq := regex(t, `(?m)^(\d+) .* `+regexp.QuoteMeta(id)+` +permanent `, list.String())
	personal := []string{"Ada Lovelace", "Munich", "ada@example.invalid", "+49 89"}
	for _, v := range personal {
		if strings.Contains(list.String(), v) {
			t.Errorf("deadletter list shows %q:\n%s", v, list.String())
		}
	}
	var out syncBuffer
	if c := run(t.Context(), []string{"deadletter", "replay", "--config", cfgPath, "--seq", seq}, &out, &out); c != 0 {
		t.Fatalf("deadletter replay exited %d: %s", c, out.String())
	}
	if !strings.Contains(out.String(), `"request_id":"`+id+`-replay-1"`) || !strings.Contains(out.String(), `"status":"dead_lettered"`) {
		t.Errorf("deadletter replay: %s", out.String())
	}
	for _, v := range personal {
		if strings.Contains(out.String(), v) {
			t.Errorf("deadletter replay shows %q:\n%s", v, out.String())
		}
	}
	out = syncBuffer{}
	if c := run(t.Context(), []string{"deadletter", "replay", "--config", cfgPath, "--seq", seq}, &out, &out); c != 1 ||
		!strings.Contains(out.String(), "choose another --id-suffix") {
		t.Errorf("the same replay again exited %d: %s", c, out.String())
	}
}
