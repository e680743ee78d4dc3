package e2e

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	regionStream = "CLEARANCE_REGION_INBOUND"
	regionLocal  = "regional.transfers"
)

func regionConnector(t *testing.T, name, url string) connectors.Connector {
	t.Helper()
	cfg := natsregion.DefaultConfig()
	cfg.URLs, cfg.SubjectPrefix, cfg.Stream = []string{url}, "clearance.region", regionStream
	c, err := natsregion.New(t.Context(), name, cfg, connectors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(t.Context()) })
	return c
}

// TestCrossRegionDelivery sends from an EU broker over NATS to two regional
// data centres, each on its own NATS server with its own key service.
// Tokyo's holds the same data-key wrapping key as the EU's (imported into its
// Vault, as an operator would, or a copy of the key ring), so it opens,
// audits and republishes the transfer; Singapore's does not, so it cannot
// open the envelope and dead-letters it. It runs on three Vault dev servers
// and on three development key rings.
func TestCrossRegionDelivery(t *testing.T) {
	tests := []struct {
		name string
		keys func(t *testing.T) (eu, jp, sg keyService)
	}{
		{"vault", func(t *testing.T) (eu, jp, sg keyService) {
			shared := make([]byte, 32)
			if _, err := rand.Read(shared); err != nil {
				t.Fatal(err)
			}
			return regionVault(t, shared), regionVault(t, shared), regionVault(t, nil)
		}},
		{"dev key rings", func(t *testing.T) (eu, jp, sg keyService) {
			dir := t.TempDir()
			euRing := filepath.Join(dir, "eu-keyring.json")
			euKeys := brokertest.DevKeys(t, euRing)
			shared, err := os.ReadFile(euRing)
			if err != nil {
				t.Fatal(err)
			}
			jpRing := filepath.Join(dir, "jp-keyring.json")
			if err := os.WriteFile(jpRing, shared, 0o600); err != nil {
				t.Fatal(err)
			}
			return euKeys, brokertest.DevKeys(t, jpRing), brokertest.DevKeys(t, filepath.Join(dir, "sg-keyring.json"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eu, jp, sg := tt.keys(t)
			crossRegion(t, eu, jp, sg)
		})
	}
}

func crossRegion(t *testing.T, euKeys, jpKeys, sgKeys keyService) {
	eu, jp, sg := brokertest.StartNATS(t), brokertest.StartNATS(t), brokertest.StartNATS(t)
	partner := brokertest.NewPartner(t, euKeys.JWKS)
	reg := brokertest.ExampleRegistry(t, partner.Key.PublicJWK)
	inbound := &broker.InboundOptions{Stream: regionStream, Subject: "clearance.region.>", LocalSubject: regionLocal}

	jpIn := start(t, setup{natsURL: jp.ClientURL(), dsn: brokertest.SQLiteDSN(t), keys: jpKeys, signer: jpKeys,
		registry: reg, connectors: broker.ConnectorMap{}, inbound: inbound})
	sgIn := start(t, setup{natsURL: sg.ClientURL(), dsn: brokertest.SQLiteDSN(t), keys: sgKeys, signer: sgKeys,
		registry: reg, connectors: broker.ConnectorMap{}, inbound: inbound, maxDeliver: 3})
	euIn := start(t, setup{natsURL: eu.ClientURL(), dsn: brokertest.SQLiteDSN(t), keys: euKeys, signer: euKeys, registry: reg,
		connectors: broker.ConnectorMap{
			"region-jp": regionConnector(t, "region-jp", jp.ClientURL()),
			"region-sg": regionConnector(t, "region-sg", sg.ClientURL()),
		}})

	local := make(chan *nats.Msg, 4)
	sub, err := jpIn.nc.ChanSubscribe(regionLocal, local)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	t.Run("tokyo opens, audits and republishes", func(t *testing.T) {
		var r broker.Receipt
		if euIn.post(t, brokertest.ExampleRequest(t, "08-hosting-tokyo-adequacy.json"), &r); r.Status != broker.StatusDelivered {
			t.Fatalf("receipt %+v", r)
		}
		var m *nats.Msg
		select {
		case m = <-local:
		case <-time.After(10 * time.Second):
			t.Fatal("nothing republished in Tokyo")
		}
		var p broker.Payload
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatal(err)
		}
		if p.RequestID != "dev-551-hosting" || p.Recipient != "dc-tokyo" || p.Record == nil {
			t.Errorf("republished payload = %+v", p)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != "dev-551-hosting" {
			t.Errorf("republished without Nats-Msg-Id: %v", m.Header)
		}
		if ev := strings.Join(jpIn.events(t, "dev-551-hosting"), ","); ev != "received" {
			t.Errorf("tokyo audit = %s, want received", ev)
		}
		if ev := strings.Join(euIn.events(t, "dev-551-hosting"), ","); ev != "decided,delivered" {
			t.Errorf("eu audit = %s, want decided,delivered", ev)
		}
	})

	t.Run("the stream in tokyo holds only sealed data", func(t *testing.T) {
		js, _ := jetstream.New(jpIn.nc)
		s, err := js.Stream(t.Context(), regionStream)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetLastMsgForSubject(t.Context(), "clearance.region.dc-tokyo")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m.Data), "350000000000000") || strings.Contains(string(m.Data), "48.13,11.57") {
			t.Error("regional envelope holds the record in clear")
		}
	})

	t.Run("singapore without the shared key dead-letters the envelope", func(t *testing.T) {
		var r broker.Receipt
		if euIn.post(t, brokertest.ExampleRequest(t, "09-hosting-singapore-bcr.json"), &r); r.Status != broker.StatusDelivered {
			t.Fatalf("receipt %+v", r)
		}
		js, _ := jetstream.New(sgIn.nc)
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, err := js.Stream(t.Context(), broker.DeadLetterStream)
			if err == nil {
				if _, err := s.GetLastMsgForSubject(t.Context(), "clearance.deadletter.inbound"); err == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("no dead letter in Singapore")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if ev := strings.Join(sgIn.events(t, broker.InboundRejectionPrefix+r.RequestID), ","); ev != "rejected" {
			t.Errorf("singapore audit = %s, want rejected\n%s", ev, sgIn.logs.String())
		}
	})
}
