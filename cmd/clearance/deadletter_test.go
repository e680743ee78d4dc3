package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/integration/vaulttest"
	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestDeadLetterReplayInbound: a receiving region dead-lettered a regional
// copy it had no subject key for (subject_key_unknown, as when each region
// kept its own key store). Once subject_keys.store names the sending
// region's key store, clearance deadletter replay puts the copy back on the
// inbound subject as it came, and the instance opens, audits and hands it
// on.
func TestDeadLetterReplayInbound(t *testing.T) {
	// serve sets the process's collector percentage (pipeline.gc_percent).
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	vs, dir := vaulttest.Start(t), t.TempDir()
	ns := brokertest.StartNATS(t)
	addr := freeAddr(t)
	keysDSN := brokertest.SQLiteDSN(t) // the sending region's subject key store
	cfgPath := filepath.Join(dir, "clearance.yaml")
	cfg := serveConfig(t, vs, ns.ClientURL(), dir, brokertest.PostgresDSN(t), keysDSN, filepath.Join(root, "examples", "registry"), addr) + `
inbound_region: {stream: REPLAY_IN, subject: clearance.region.t.>, local_subject: regional.t}
logging: {format: json}
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	// The regional copy, sealed under cust-77's key in the sending region's
	// store, as its broker seals a natsregion delivery.
	parsed, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	vault, err := keys.NewVault(t.Context(), *parsed.Vault, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer vault.Close(context.Background())
	kdb, err := audit.OpenDB(t.Context(), keysDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer kdb.Close()
	eu, err := shred.Open(t.Context(), shred.Options{DB: kdb, Keys: vault, Audit: noAudit{}, SubjectKey: []byte("the sending region's hmac key")})
	if err != nil {
		t.Fatal(err)
	}
	defer eu.Close()
	payload, _ := json.Marshal(broker.Payload{RequestID: "host-77", Source: "device-fleet", Recipient: "dc-tokyo",
		Purpose: "regional_hosting", Dataset: "device.service", Mechanism: "adequacy:eu-adequacy",
		Record: map[string]any{"device": map[string]any{"model": "P40", "imei": "350000000000077"}}})
	envelope, err := eu.Seal(t.Context(), "cust-77", payload)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr syncBuffer
	code := startServe(t, ctx, cancel, cfgPath, "http://"+addr, &stderr)
	nc := brokertest.Connect(t, ns)
	local, err := nc.SubscribeSync("regional.t")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	dl := nats.NewMsg(broker.DeadLetterSubject + ".inbound")
	dl.Data = envelope
	dl.Header.Set("Clearance-Request-Id", "host-77")
	dl.Header.Set("Clearance-Outcome", "transient")
	dl.Header.Add("Clearance-Reason", "receive_failed: subject_key_unknown")
	ack, err := js.PublishMsg(t.Context(), dl)
	if err != nil {
		t.Fatal(err)
	}

	var out syncBuffer
	if c := run(t.Context(), []string{"deadletter", "replay", "--config", cfgPath, "--seq", fmt.Sprint(ack.Sequence)}, &out, &out); c != 0 {
		t.Fatalf("deadletter replay exited %d: %s", c, out.String())
	}
	if !strings.Contains(out.String(), "put back on clearance.region.t.dc-tokyo") || strings.Contains(out.String(), "350000000000077") {
		t.Errorf("deadletter replay: %s", out.String())
	}
	m, err := local.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("the replayed copy was not handed on: %v\n%s", err, stderr.String())
	}
	var got broker.Payload
	if err := json.Unmarshal(m.Data, &got); err != nil || got.RequestID != "host-77" {
		t.Errorf("handed on %+v, %v", got, err)
	}
	cancel()
	select {
	case <-code:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// TestDeadLetterReplayRefusesWhatTheParserRefuses: a kept request the
// broker refused as ambiguous (a subject given twice, one of them an erased
// subject's) is not published again, where replay's rewrite of the id would
// have kept one copy and had it decided and delivered.
func TestDeadLetterReplayRefusesWhatTheParserRefuses(t *testing.T) {
	good := brokertest.ExampleRequest(t, "01-delivery-eea-allow.json")
	if err := replayable(good); err != nil {
		t.Fatalf("a valid request: %v", err)
	}
	twice := bytes.Replace(good, []byte(`"subject":`), []byte(`"subject": {"id": "cust-13", "jurisdiction": "DE", "minor": false}, "subject":`), 1)
	if bytes.Equal(twice, good) {
		t.Fatal("the example request has no subject to repeat")
	}
	err := replayable(twice)
	if err == nil || !strings.Contains(err.Error(), "subject: field given twice") || strings.Contains(err.Error(), "cust-13") {
		t.Fatalf("a request with its subject given twice: %v", err)
	}
}
