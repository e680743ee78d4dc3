package compliance_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

// parsed returns the registry of files.
func parsed(t *testing.T, files map[string]string) *agreements.Registry {
	t.Helper()
	var fs []agreements.File
	for name, data := range files {
		fs = append(fs, agreements.File{Name: name, Data: []byte(data)})
	}
	reg, err := agreements.Parse(fs...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestWhatIfCarriesRuntimeRights: a consent withdrawn and an erasure
// recorded at run time hold under a proposal as they do under the registry
// in force, so the what-if of the unchanged registry files reports no
// transfer of those subjects as now allowed: through the API, and as
// `clearance report whatif` runs it (the registry directory and the
// proposal, both with the store's run-time changes). Without the changes
// (the control) those transfers would flip.
func TestWhatIfCarriesRuntimeRights(t *testing.T) {
	ctx := context.Background()
	f := compliancetest.New(t)
	live, store := startLive(t, f, brokertest.Connect(t, brokertest.StartNATS(t)))
	before := compliancetest.Now.AddDate(0, 0, -60)
	if _, err := live.Change(ctx, agreements.Change{
		Withdrawals: []agreements.Withdrawal{{Subject: "cust-7", Purpose: "marketing", At: before}},
		Erasures:    []agreements.Erasure{{Subject: "cust-881", At: before}},
	}); err != nil {
		t.Fatal(err)
	}
	f.Seed(t, 1) // decided by the engine the live registry keeps

	// The log refuses every transfer of the two subjects; affected are
	// those refused for the run-time changes.
	var affected []string
	for _, sub := range []string{"cust-7", "cust-881"} {
		err := f.Log.Scan(ctx, audit.Filter{Event: audit.EventDecided, SubjectHMAC: audit.SubjectHMAC(compliancetest.SubjectKey, sub)},
			func(e *audit.Entry) error {
				if e.Decision != "deny" {
					t.Errorf("%s recorded %s %v, want deny", e.RequestID, e.Decision, e.Reasons)
				}
				if slices.Contains(e.Reasons, agreements.ReasonSubjectErased) || slices.Contains(e.Reasons, agreements.ReasonConsentWithdrawn) {
					affected = append(affected, e.RequestID)
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(affected) < 2 {
		t.Fatalf("transfers of the two subjects: %v", affected)
	}

	files := proposal(t, f, "40-agreements.yaml", "agreements:", "agreements:")
	auth, err := f.Issuer.Authenticator(func() time.Time { return compliancetest.Now })
	if err != nil {
		t.Fatal(err)
	}
	srv, err := compliance.New(compliance.Options{Audit: f.Log, DB: f.DB, Registry: f.Engine, Versions: store, Auth: auth,
		SubjectKey: compliancetest.SubjectKey, Now: func() time.Time { return compliancetest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(srv.Handler())
	t.Cleanup(h.Close)
	q := compliance.WhatIfQuery{From: compliancetest.Now.AddDate(0, 0, -30), To: compliancetest.Now}

	tests := []struct {
		name        string
		via         string
		wantFlipped bool
		wantCarried int
	}{
		{name: "API", via: "api", wantCarried: 1},
		{name: "as the command line runs it", via: "cli", wantCarried: 1},
		{name: "control: without the run-time changes", via: "bare", wantFlipped: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res *compliance.WhatIfResult
			switch tt.via {
			case "api":
				c := client{t: t, base: h.URL, token: f.Token(t, compliance.RoleOfficer)}
				code, _, b := c.do("POST", "/v1/whatif", "application/json", jsonBody(t, map[string]any{"files": files}))
				if code != http.StatusOK || json.Unmarshal(b, &res) != nil {
					t.Fatalf("%d %.300s", code, b)
				}
			case "cli":
				dir, err := agreements.Load(f.Registry)
				if err != nil {
					t.Fatal(err)
				}
				current, _, err := compliance.WithRuntimeChanges(ctx, store, dir)
				if err != nil {
					t.Fatal(err)
				}
				if current.Version() != f.Engine.Registry().Version() {
					t.Fatalf("directory with the run-time changes: version %s, in force %s", current.Version(), f.Engine.Registry().Version())
				}
				if res, err = compliance.WhatIfInForce(ctx, f.Log, store, current, parsed(t, files), compliancetest.SubjectKey, q); err != nil {
					t.Fatal(err)
				}
			case "bare":
				if res, err = compliance.WhatIf(ctx, f.Log, f.Engine.Registry(), parsed(t, files), compliancetest.SubjectKey, q); err != nil {
					t.Fatal(err)
				}
			}
			var flipped []string
			for _, fl := range res.Flips {
				if slices.Contains(affected, fl.RequestID) && fl.Proposed == "allow" && !fl.Uncertain {
					flipped = append(flipped, fl.RequestID)
				}
			}
			if tt.wantFlipped {
				if len(flipped) != len(affected) || res.NowAllowed < len(affected) {
					t.Fatalf("control: now allowed %d, flipped %v of %v", res.NowAllowed, flipped, affected)
				}
				return
			}
			if len(flipped) > 0 || res.NowAllowed != 0 || res.NowRefused != 0 || res.Unchanged != res.Evaluated || res.Evaluated == 0 {
				t.Fatalf("unchanged files flip %v: %+v", flipped, res)
			}
			if res.RuntimeChanges != tt.wantCarried || res.ProposedVersion != f.Engine.Registry().Version() {
				t.Fatalf("carried %d changes, proposed version %s; want %d, %s", res.RuntimeChanges, res.ProposedVersion,
					tt.wantCarried, f.Engine.Registry().Version())
			}
		})
	}
}

// TestWithRuntimeChangesAsApplyDoes: the registry a what-if evaluates is
// the one the live registry puts in force when the proposal is applied:
// the same version and agreements, a suspension carried only while the
// proposal keeps the suspended version.
func TestWithRuntimeChangesAsApplyDoes(t *testing.T) {
	ctx := context.Background()
	f := compliancetest.New(t)
	live, store := startLive(t, f, brokertest.Connect(t, brokertest.StartNATS(t)))
	at := compliancetest.Now.AddDate(0, 0, -2)
	changes := []agreements.Change{
		{Suspend: []string{"dpa-swiftship-de"}},
		{Erasures: []agreements.Erasure{{Subject: "cust-882", At: at}},
			Withdrawals: []agreements.Withdrawal{{Subject: "cust-12", Purpose: "marketing", At: at}}},
		{LegalOrders: []agreements.LegalOrder{{ID: "order-carried", Authority: "bka-de", Subjects: []string{"cust-883"},
			Categories: []string{"identity.name"}, ValidUntil: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)}}},
	}
	for _, ch := range changes {
		if _, err := live.Change(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name          string
		file          string
		old, repl     string
		wantSuspended bool
	}{
		{name: "keeps the suspended version", file: "50-subjects.yaml", old: "risk-notice-v3", repl: "risk-notice-v4", wantSuspended: true},
		{name: "a new version of the suspended agreement", file: "40-agreements.yaml", old: "version: 2", repl: "version: 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prop := parsed(t, proposal(t, f, tt.file, tt.old, tt.repl))
			got, n, err := compliance.WithRuntimeChanges(ctx, store, prop)
			if err != nil || n != len(changes) {
				t.Fatalf("carried %d of %d: %v", n, len(changes), err)
			}
			if _, applied, err := live.Apply(ctx, prop); err != nil || !applied {
				t.Fatalf("apply: %v %v", applied, err)
			}
			inForce := f.Engine.Registry()
			if got.Version() != inForce.Version() {
				t.Fatalf("what-if registry %s, in force after apply %s", got.Version(), inForce.Version())
			}
			a, b := got.Content(), inForce.Content()
			if !slices.EqualFunc(a.Agreements, b.Agreements, func(x, y agreements.Agreement) bool {
				return x.ID == y.ID && x.Version == y.Version && x.Status == y.Status
			}) || len(a.Consents) != len(b.Consents) || len(a.Erasures) != len(b.Erasures) || len(a.LegalOrders) != len(b.LegalOrders) {
				t.Fatalf("what-if content differs from the one in force")
			}
			for _, ag := range a.Agreements {
				if ag.ID == "dpa-swiftship-de" && (ag.Status == agreements.StatusSuspended) != tt.wantSuspended {
					t.Fatalf("dpa-swiftship-de v%d %s, want suspended %v", ag.Version, ag.Status, tt.wantSuspended)
				}
			}
		})
	}
}

// entriesScanner is an audit log of the given entries, for WhatIf.
type entriesScanner []audit.Entry

func (s entriesScanner) Scan(_ context.Context, _ audit.Filter, fn func(*audit.Entry) error) error {
	for i := range s {
		if err := fn(&s[i]); err != nil {
			return err
		}
	}
	return nil
}

// TestWhatIfTakesTheRecordedLegalOrder: a disclosure to an authority is
// re-decided under the legal order its entry names, not one found by
// authority and subject. The registry in force holds two orders for the
// same authority and subject, the other one first; the proposal drops the
// one the disclosure answered, so it flips to refused, where matching by
// authority and subject would have found the other and kept it allowed.
func TestWhatIfTakesTheRecordedLegalOrder(t *testing.T) {
	f := compliancetest.New(t)
	second := "  - id: order-2026-200\n    authority: bka-de\n    subjects: [cust-9]\n" +
		"    categories: [identity.name, contact.address]\n    valid_until: 2026-12-31\n  - id: order-2026-113\n"
	currentFiles := proposal(t, f, "50-subjects.yaml", "  - id: order-2026-113\n", second)
	current := parsed(t, currentFiles)
	proposedFiles := map[string]string{}
	for name, data := range currentFiles {
		proposedFiles[name] = data
	}
	proposedFiles["50-subjects.yaml"] = strings.Replace(currentFiles["50-subjects.yaml"], "  - id: order-2026-113\n", "  - id: order-2026-114\n", 1)
	proposed := parsed(t, proposedFiles)

	req := brokertest.ExampleRequest(t, "15-authority-legal-order.json")
	r, err := agreements.ParseRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	d := agreements.NewEngine(current).Decide(r, compliancetest.Now)
	if !d.Allowed() || d.LegalOrder != "order-2026-113" {
		t.Fatalf("under the registry in force: %s %v, order %q", d.Decision, d.Reasons, d.LegalOrder)
	}
	entries := compliancetest.Entries(r, d, compliancetest.Now)
	log := entriesScanner{}
	for _, e := range entries[:1] { // decided, as WhatIf's filter reads
		e.SubjectHMAC = audit.SubjectHMAC(compliancetest.SubjectKey, r.Subject.ID)
		log = append(log, *e)
	}
	res, err := compliance.WhatIf(context.Background(), log, current, proposed, compliancetest.SubjectKey, compliance.WhatIfQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Evaluated != 1 || res.NowRefused != 1 || len(res.Flips) != 1 ||
		!slices.Contains(res.Flips[0].ProposedReasons, agreements.ReasonLegalOrderRequired) {
		t.Fatalf("what-if: %+v", res)
	}
}

// TestWhatIfSentChanges: widening an agreement keeps its transfers allowed
// and lists what they would now send (a category and the field recorded as
// removed), and nothing else; a change the registry in force does not
// reproduce either is marked uncertain.
func TestWhatIfSentChanges(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	const swiftship = "categories: [order.reference, identity.name, contact.address, contact.phone]\n    valid_from: 2024-01-01"
	wide := proposal(t, f, "40-agreements.yaml", swiftship,
		"categories: [order.reference, identity.name, contact.address, contact.phone, contact.email]\n    valid_from: 2024-01-01")
	q := compliance.WhatIfQuery{From: compliancetest.Now.AddDate(0, 0, -30), To: compliancetest.Now}
	res, err := compliance.WhatIf(t.Context(), f.Log, f.Engine.Registry(), parsed(t, wide), compliancetest.SubjectKey, q)
	if err != nil {
		t.Fatal(err)
	}
	if res.SentChanged == 0 || len(res.SentChanges) != res.SentChanged || len(res.Flips) != 0 {
		t.Fatalf("widened agreement: %+v", res)
	}
	for _, sc := range res.SentChanges {
		if sc.Recipient != "swiftship-de" || !slices.Equal(sc.CategoriesNew, []string{"contact.email"}) ||
			!slices.Equal(sc.FieldsNowSent, []string{"email"}) || len(sc.CategoriesNoLonger)+len(sc.FieldsNowRemoved) != 0 ||
			sc.Uncertain || sc.Why != "now sends contact.email; sends email, recorded as removed; under agreement dpa-swiftship-de v2" {
			t.Fatalf("sent change: %+v", sc)
		}
	}
	// Under a registry in force that already covers e-mail addresses, the
	// recorded transfers are not what it would send either: uncertain.
	res, err = compliance.WhatIf(t.Context(), f.Log, parsed(t, wide), parsed(t, wide), compliancetest.SubjectKey, q)
	if err != nil {
		t.Fatal(err)
	}
	if res.SentChanged == 0 || len(res.SentChanges) == 0 {
		t.Fatalf("widened in force: %+v", res)
	}
	for _, sc := range res.SentChanges {
		if !sc.Uncertain {
			t.Fatalf("sent change not marked uncertain: %+v", sc)
		}
	}
}
