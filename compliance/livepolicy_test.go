package compliance_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats.go"
)

// TestLegalOrderThroughLiveRegistry records a legal order through the live
// registry (store, audit, NATS bucket) as clearance dev and serve wire it,
// and checks a second instance on the same store takes it in force.
func TestLegalOrderThroughLiveRegistry(t *testing.T) {
	ctx := context.Background()
	f := compliancetest.New(t)
	nc := brokertest.Connect(t, brokertest.StartNATS(t))
	live, store := startLive(t, f, nc)
	other := agreements.NewEngine(f.Engine.Registry())
	live2, err := policy.Start(ctx, policy.Options{Store: store, Engine: other, NATS: nc, Audit: f.Log, Now: func() time.Time { return compliancetest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(live2.Stop)
	f.Server.UseRights(compliance.ChangeFunc(func(ctx context.Context, ch agreements.Change) (compliance.ChangeResult, error) {
		ev, err := live.Change(ctx, ch)
		if errors.Is(err, policy.ErrInvalidChange) {
			err = errors.Join(compliance.ErrChangeRefused, err)
		}
		return compliance.ChangeResult{Event: ev.Seq, Version: ev.Version}, err
	}), nil)

	c := client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleOfficer)}
	code, _, b := c.do("POST", "/v1/legal-orders", "application/json", strings.NewReader(
		`{"id": "order-live-1", "authority": "bka-de", "subjects": ["cust-51"], "categories": ["identity.name"], "valid_until": "2026-12-31"}`))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, b)
	}
	var created struct {
		Event           int64  `json:"event"`
		RegistryVersion string `json:"registry_version"`
	}
	if err := json.Unmarshal(b, &created); err != nil || created.Event != 2 || created.RegistryVersion != f.Engine.Registry().Version() {
		t.Fatalf("created: %s", b)
	}
	if seq, version, err := store.Head(ctx); err != nil || seq != 2 || version != created.RegistryVersion {
		t.Fatalf("store head: %d %s %v", seq, version, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for other.Registry().Version() != created.RegistryVersion {
		if time.Now().After(deadline) {
			t.Fatal("the second instance did not take the order in force")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var recorded []*audit.Entry
	err = f.Log.Scan(ctx, audit.Filter{Event: policy.EventLegalOrderRecorded}, func(e *audit.Entry) error {
		recorded = append(recorded, e)
		return nil
	})
	if err != nil || len(recorded) != 1 || recorded[0].SubjectHMAC != audit.SubjectHMAC(compliancetest.SubjectKey, "cust-51") {
		t.Fatalf("audit: %v %+v", err, recorded)
	}
	if code, b = c.get("/v1/legal-orders/order-live-1"); code != http.StatusOK {
		t.Fatalf("read: %d %s", code, b)
	}
}

// startLive starts a live registry on the fixture's store, engine and audit
// log, as clearance dev and serve wire it, and applies the registry in
// force as its first version.
func startLive(t *testing.T, f *compliancetest.Fixture, nc *nats.Conn) (*policy.Live, *policy.Store) {
	t.Helper()
	store, err := policy.OpenStore(t.Context(), f.DB)
	if err != nil {
		t.Fatal(err)
	}
	live, err := policy.Start(t.Context(), policy.Options{Store: store, Engine: f.Engine, NATS: nc, Audit: f.Log, Now: func() time.Time { return compliancetest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(live.Stop)
	if _, _, err := live.Apply(t.Context(), f.Engine.Registry()); err != nil {
		t.Fatal(err)
	}
	return live, store
}
