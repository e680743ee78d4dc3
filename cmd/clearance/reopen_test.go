package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/uptrace/bun"
)

// noticeOf is a row of erasure_notices, as the notifier keeps it.
type noticeOf struct {
	bun.BaseModel `bun:"table:erasure_notices"`

	ID          string    `bun:"id,pk"`
	SubjectHMAC string    `bun:"subject_hmac"`
	Recipient   string    `bun:"recipient"`
	RequestIDs  string    `bun:"request_ids"`
	ErasedAt    time.Time `bun:"erased_at"`
	Status      string    `bun:"status"`
	Attempts    int       `bun:"attempts"`
	LastError   string    `bun:"last_error"`
	CreatedAt   time.Time `bun:"created_at"`
	NextAt      time.Time `bun:"next_at"`
	LeaseOwner  string    `bun:"lease_owner"`
	LeaseUntil  time.Time `bun:"lease_until"`
	Officer     string    `bun:"officer"`
	Justify     string    `bun:"justification"`
}

// TestRegistryApplyReopensUndeliverableNotice: an erasure notice marked
// undeliverable for want of its party's public key is tried again when a
// registry apply gives the party one, on the instance serving (the apply's
// OnSwap, reopenNotices), and goes out and is acknowledged; until then it
// is left as it is and nothing is sent.
func TestRegistryApplyReopensUndeliverableNotice(t *testing.T) {
	root, vs, dir, addr, partner := servePartnerTest(t)
	api := "http://" + addr
	regDir := brokertest.RekeyedRegistry(t, root, partner.Key.PublicJWK) // bka-de has no key
	storeDSN := brokertest.SQLiteDSN(t)
	cfgPath := filepath.Join(dir, "clearance.yaml")
	cfg := serveConfig(t, vs, brokertest.StartNATS(t).ClientURL(), dir, storeDSN, brokertest.SQLiteDSN(t), regDir, addr) +
		partnerConnectors(partner.URL) + "logging: {format: json, level: debug}\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr syncBuffer
	code := startServe(t, ctx, cancel, cfgPath, api, &stderr)

	db, err := audit.OpenDB(t.Context(), storeDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC().Truncate(time.Microsecond)
	row := &noticeOf{ID: "erasure-reopen-1", SubjectHMAC: strings.Repeat("ab", 32), Recipient: "bka-de", RequestIDs: `["lo-1"]`,
		ErasedAt: now, Status: string(erasure.StatusUndeliverable), Attempts: 1, LastError: "undeliverable",
		CreatedAt: now, NextAt: now, LeaseUntil: time.Unix(0, 0).UTC()}
	if _, err := db.NewInsert().Model(row).Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	status := func() noticeOf {
		t.Helper()
		var got noticeOf
		if err := db.NewSelect().Model(&got).Where("subject_hmac = ?", row.SubjectHMAC).Scan(t.Context()); err != nil {
			t.Fatal(err)
		}
		return got
	}
	// A few of the notifier's rounds: nothing takes it up.
	time.Sleep(2500 * time.Millisecond)
	if got := status(); got.Status != string(erasure.StatusUndeliverable) || got.Attempts != 1 || len(partner.Received()) != 0 {
		t.Fatalf("before the apply: %+v, %d sent", got, len(partner.Received()))
	}

	// The same registry, where bka-de has a key now.
	keyed := t.TempDir()
	entries, err := os.ReadDir(regDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(regDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "10-parties.yaml" {
			const anchor = "  - id: bka-de\n    name: Bundeskriminalamt\n    role: authority\n    country: DE\n    connector: authority-webhook\n"
			if !strings.Contains(string(b), anchor) {
				t.Fatal("the example registry no longer describes bka-de as expected")
			}
			b = []byte(strings.Replace(string(b), anchor, anchor+"    public_key: "+string(partner.Key.PublicJWK)+"\n", 1))
		}
		if err := os.WriteFile(filepath.Join(keyed, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out syncBuffer
	if c := run(t.Context(), []string{"registry", "apply", "--config", cfgPath, keyed}, &out, &out); c != 0 {
		t.Fatalf("registry apply exited %d: %s", c, out.String())
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := status()
		if got.Status == string(erasure.StatusAcknowledged) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the apply: %+v\n%s", got, stderr.String())
		}
	}
	received := partner.Received()
	if len(received) != 1 {
		t.Fatalf("%d notices received, want 1", len(received))
	}
	var p erasure.NoticePayload
	if err := json.Unmarshal(received[0].Payload, &p); err != nil || p.Recipient != "bka-de" || len(p.RequestIDs) != 1 || p.RequestIDs[0] != "lo-1" {
		t.Fatalf("notice received: %+v, %v", p, err)
	}
	if !strings.Contains(stderr.String(), "undeliverable erasure notices tried again") {
		t.Errorf("the log does not say the notice was tried again:\n%s", stderr.String())
	}
	cancel()
	select {
	case <-code:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}
