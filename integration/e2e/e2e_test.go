package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/broker/samplepartner"
	"github.com/nats-io/nats.go/jetstream"
)

// canaries are planted personal values; none may appear in clear anywhere
// but the partner's decrypted view of a field it may receive.
var canaries = map[string]string{
	"name":      "Zyxandra Canaryfield",
	"address":   "77 Canary Lane, 99999 Canaryville",
	"phone":     "+00 1234 canary 5555",
	"email":     "zyxandra.canary@example.invalid",
	"gift_note": "canary birthday wishes",
	"subject":   "cust-canary-subject-4242",
}

func canaryRecord(orderID string) map[string]any {
	return map[string]any{
		"order_id": orderID, "name": canaries["name"], "address": canaries["address"],
		"phone": canaries["phone"], "email": canaries["email"], "gift_note": canaries["gift_note"],
	}
}

func canaryRequest(id string) []byte {
	var m map[string]any
	_ = json.Unmarshal(request(id, canaryRecord(id)), &m)
	m["subject"].(map[string]any)["id"] = canaries["subject"]
	b, _ := json.Marshal(m)
	return b
}

func assertNoCanary(t *testing.T, where string, data string) {
	t.Helper()
	for field, v := range canaries {
		if strings.Contains(data, v) {
			t.Errorf("%s holds the planted %s in clear", where, field)
		}
	}
}

// keyService is a key service the broker and the audit log can run on.
type keyService interface {
	broker.Keys
	Sign(ctx context.Context, payloads [][]byte) ([][]byte, error)
	Verify(ctx context.Context, jws []byte) ([]byte, error)
}

// TestTransferLifecycle runs one broker on embedded NATS and Postgres
// against an httptest partner that decrypts with its private key and
// verifies with the JWK set the broker serves, once on the real Vault dev
// server and once on the development key ring.
func TestTransferLifecycle(t *testing.T) {
	tests := []struct {
		name string
		keys func(t *testing.T) keyService
	}{
		{"vault", func(t *testing.T) keyService { return vaultKeys(t) }},
		{"dev key ring", func(t *testing.T) keyService {
			return brokertest.DevKeys(t, filepath.Join(t.TempDir(), "keyring.json"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { lifecycle(t, tt.keys(t)) })
	}
}

func lifecycle(t *testing.T, vault keyService) {
	srv := brokertest.StartNATS(t)
	var jwksURL string
	partner := brokertest.NewPartner(t, func(ctx context.Context) ([]byte, error) {
		return samplepartner.FromURL(http.DefaultClient, jwksURL)(ctx)
	})
	in := start(t, setup{
		natsURL: srv.ClientURL(), dsn: brokertest.PostgresDSN(t), keys: vault, signer: vault,
		registry:   brokertest.ExampleRegistry(t, partner.Key.PublicJWK),
		connectors: broker.ConnectorMap{"partner-webhook": brokertest.Webhook(t, partner.URL)},
		maxDeliver: 50,
	})
	jwksURL = in.api.URL + "/.well-known/jwks.json"

	t.Run("allowed transfer is delivered, minimised, and readable by the partner", func(t *testing.T) {
		var r broker.Receipt
		if code := in.post(t, canaryRequest("e2e-allow-1"), &r); code != http.StatusOK || r.Status != broker.StatusDelivered {
			t.Fatalf("receipt %d %+v", code, r)
		}
		got := partner.Received()
		if len(got) != 1 {
			t.Fatalf("partner received %d deliveries", len(got))
		}
		var p broker.Payload
		if err := json.Unmarshal(got[0].Payload, &p); err != nil {
			t.Fatal(err)
		}
		fields := slices.Sorted(maps.Keys(p.Record))
		if strings.Join(fields, ",") != "address,name,order_id,phone" {
			t.Errorf("partner got fields %v, want address,name,order_id,phone", fields)
		}
		if p.Record["name"] != canaries["name"] || p.Agreement == nil || p.Agreement.ID != "dpa-swiftship-de" {
			t.Errorf("payload = %+v", p)
		}
		if ev := in.events(t, "e2e-allow-1"); strings.Join(ev, ",") != "decided,delivered" {
			t.Errorf("audit = %v", ev)
		}
	})

	t.Run("denied transfer never reaches the partner and the receipt says why", func(t *testing.T) {
		before := len(partner.Wire())
		var r broker.Receipt
		in.post(t, brokertest.ExampleRequest(t, "06-delivery-brazil-no-mechanism.json"), &r)
		if r.Status != broker.StatusDenied || r.Decision != "deny" || !slices.Contains(r.Reasons, "no_transfer_mechanism") {
			t.Fatalf("receipt %+v", r)
		}
		if n := len(partner.Wire()) - before; n != 0 {
			t.Errorf("partner was sent %d requests", n)
		}
	})

	t.Run("partner down with 503 gets the transfer once it recovers", func(t *testing.T) {
		partner.SetStatus(http.StatusServiceUnavailable)
		time.AfterFunc(time.Second, func() { partner.SetStatus(0) })
		var r broker.Receipt
		if code := in.post(t, canaryRequest("e2e-outage-1"), &r); code != http.StatusOK || r.Status != broker.StatusDelivered {
			t.Fatalf("receipt %d %+v", code, r)
		}
		n := 0
		for _, g := range partner.Received() {
			if g.IdempotencyKey == "e2e-outage-1" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("partner accepted %d copies, want 1", n)
		}
		ev := in.events(t, "e2e-outage-1")
		if len(ev) < 4 || ev[1] != "delivery_failed" || ev[len(ev)-1] != "delivered" {
			t.Errorf("audit = %v", ev)
		}
	})

	t.Run("partner answering 400 gets it dead-lettered", func(t *testing.T) {
		partner.SetStatus(http.StatusBadRequest)
		defer partner.SetStatus(0)
		var r broker.Receipt
		in.post(t, canaryRequest("e2e-reject-1"), &r)
		if r.Status != broker.StatusDeadLettered || r.Reasons[0] != "delivery_failed: permanent" {
			t.Fatalf("receipt %+v", r)
		}
		if ev := in.events(t, "e2e-reject-1"); strings.Join(ev, ",") != "decided,delivery_failed" {
			t.Errorf("audit = %v", ev)
		}
	})

	t.Run("invalid request is rejected, audited and dead-lettered", func(t *testing.T) {
		bad := strings.Replace(string(canaryRequest("e2e-invalid-1")), `"purpose":"delivery",`, "", 1)
		var r broker.Receipt
		in.post(t, []byte(bad), &r)
		if r.Status != broker.StatusRejected || !slices.Contains(r.Reasons, "invalid_request: purpose: required field is missing") {
			t.Fatalf("receipt %+v", r)
		}
	})

	t.Run("no planted value in clear in logs, dead letters, audit rows or on the wire", func(t *testing.T) {
		assertNoCanary(t, "the broker's log", in.logs.String())
		assertNoCanary(t, "the audit log", auditRows(t, in.db))
		for _, w := range partner.Wire() {
			assertNoCanary(t, "a request to the partner", string(w))
		}
		js, _ := jetstream.New(in.nc)
		dl := deadLetters(t, js)
		if len(dl) != 2 {
			t.Errorf("dead letters = %d, want 2 (the 400 and the invalid request)", len(dl))
		}
		for _, m := range dl {
			assertNoCanary(t, "a dead letter", string(m.Data))
			plain, err := vault.Open(t.Context(), m.Data)
			if err != nil || !strings.Contains(string(plain), canaries["name"]) {
				t.Errorf("dead letter does not open to the request with Vault: %v", err)
			}
		}
	})

	t.Run("the audit chain verifies", func(t *testing.T) {
		rep, err := in.audit.Verify(t.Context(), vault)
		if err != nil {
			t.Fatalf("verify: %v (%+v)", err, rep)
		}
	})
}

func deadLetters(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), broker.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err == nil {
			out = append(out, m)
		}
	}
	return out
}
