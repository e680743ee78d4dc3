// Package compliancetest builds a compliance server on real parts for tests:
// an SQLite audit log in a temporary directory signed by the development key
// ring, the example registry, the built-in dev issuer, and audit entries
// made by deciding the example requests with the engine, as the broker
// records them.
package compliancetest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/keys"
	"github.com/uptrace/bun"
)

// Now is the fixed clock of a fixture: the seeded transfers lie in the 30
// days before it.
var Now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// SubjectKey is the audit HMAC key of a fixture.
var SubjectKey = []byte("compliancetest-subject-hmac-key-32")

// Fixture is a running compliance server and its parts.
type Fixture struct {
	Server   *compliance.Server
	HTTP     *httptest.Server
	Log      *audit.Log
	DB       *bun.DB
	Engine   *agreements.Engine
	Issuer   *compliance.DevIssuer
	Registry string // the registry directory
	Dir      string
	// Seeded counts the entries appended by Seed.
	Seeded int
}

// Root finds the module root (the directory holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("compliancetest: go.mod not found")
		}
		dir = parent
	}
}

// New starts a fixture with an empty audit log in SQLite.
func New(t testing.TB) *Fixture {
	t.Helper()
	return NewOn(t, "")
}

// NewOn starts a fixture with an empty audit log in the store of dsn
// (SQLite in the fixture's directory when dsn is empty).
func NewOn(t testing.TB, dsn string) *Fixture {
	t.Helper()
	return NewChained(t, dsn, 0)
}

// NewChained starts a fixture as NewOn does, its audit log written as
// chains hash chains (audit.Options.Chains: 0 takes what the store
// records; more than 1 needs PostgreSQL).
func NewChained(t testing.TB, dsn string, chains int) *Fixture {
	t.Helper()
	ctx := context.Background()
	f := &Fixture{Dir: t.TempDir(), Registry: filepath.Join(Root(t), "examples", "registry")}
	if dsn == "" {
		dsn = "sqlite://" + filepath.Join(f.Dir, "audit.db")
	}
	reg, err := agreements.Load(f.Registry)
	if err != nil {
		t.Fatal(err)
	}
	f.Engine = agreements.NewEngine(reg)
	ring, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: filepath.Join(f.Dir, "ring.json"), Allow: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.DB, err = audit.OpenDB(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.DB.Close() })
	f.Log, err = audit.Open(ctx, f.DB, audit.Options{SubjectKey: SubjectKey, Signer: ring, Chains: chains, Now: func() time.Time { return Now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Log.Close(context.Background()) })
	if f.Issuer, err = compliance.LoadOrCreateDevIssuer(filepath.Join(f.Dir, compliance.DevIssuerKeyFile)); err != nil {
		t.Fatal(err)
	}
	auth, err := f.Issuer.Authenticator(func() time.Time { return Now })
	if err != nil {
		t.Fatal(err)
	}
	f.Server, err = compliance.New(compliance.Options{
		Audit: f.Log, DB: f.DB, Registry: f.Engine, Auth: auth, DevIssuer: f.Issuer,
		SubjectKey: SubjectKey, KeyRefs: []string{ring.KeyRef()}, Now: func() time.Time { return Now },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.HTTP = httptest.NewServer(f.Server.Handler())
	t.Cleanup(f.HTTP.Close)
	return f
}

// Token mints a token for role, valid for an hour from Now.
func (f *Fixture) Token(t testing.TB, role compliance.Role) string {
	t.Helper()
	tok, err := f.Issuer.Mint("tester-"+role.String(), role, time.Hour, Now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Seed decides every example request (examples/requests, one a day going
// back from Now, rounds times over) and appends the entries the broker
// would: "decided" for each, "delivered" for each allowed one.
func (f *Fixture) Seed(t testing.TB, rounds int) {
	t.Helper()
	ctx := context.Background()
	reqs := Requests(t)
	i := 0
	seen := map[string]bool{}
	for round := range rounds {
		for _, req := range reqs {
			at := Now.Add(-time.Duration(i%29+1) * 24 * time.Hour).Add(time.Duration(i) * time.Minute)
			i++
			r := *req
			if round > 0 {
				r.ID = fmt.Sprintf("%s-r%d", req.ID, round)
			}
			// The examples send some requests twice (a batch repeats single
			// files); the log holds one final outcome per request id, so a
			// repeat is seeded as a request of its own.
			for n, base := 2, r.ID; seen[r.ID]; n++ {
				r.ID = fmt.Sprintf("%s-%d", base, n)
			}
			seen[r.ID] = true
			d := f.Engine.Decide(&r, at)
			for _, e := range Entries(&r, d, at) {
				if _, err := f.Log.Append(ctx, e); err != nil {
					t.Fatal(err)
				}
				f.Seeded++
			}
		}
	}
}

// Requests returns the example requests (examples/requests), in the order
// of their files.
func Requests(t testing.TB) []*agreements.Request {
	t.Helper()
	dir := filepath.Join(Root(t), "examples", "requests")
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var reqs []*agreements.Request
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := agreements.ParseRequests(data)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		reqs = append(reqs, rs...)
	}
	return reqs
}

// Entries returns the entries the broker writes for a decision: decided,
// and delivered when allowed.
func Entries(req *agreements.Request, d *agreements.Decision, at time.Time) []*audit.Entry {
	e := &audit.Entry{
		Time: at, Event: audit.EventDecided, RequestID: req.ID, Source: req.Source,
		Recipient: req.Recipient, Purpose: req.Purpose, Dataset: req.Dataset,
		Origin: req.Subject.Jurisdiction, SubjectID: req.Subject.ID,
		Decision: string(d.Decision), Reasons: slices.Clone(d.Reasons),
		RecipientCountry: d.RecipientCountry, LegalBasis: string(d.LegalBasis),
		Mechanism: d.Mechanism, RegistryVersion: d.RegistryVersion,
	}
	if d.Agreement != nil {
		e.AgreementID, e.AgreementVersion = d.Agreement.ID, d.Agreement.Version
	} else if d.LegalOrder != "" {
		e.AgreementID = audit.LegalOrderAgreement(d.LegalOrder)
	}
	if d.Allowed() {
		e.CategoriesSent = slices.Clone(d.Categories)
	}
	if len(d.Fields.Removed) > 0 {
		e.FieldsRemoved = map[string]string{}
		for _, rf := range d.Fields.Removed {
			e.FieldsRemoved[rf.Path] = rf.Reason
		}
	}
	if !d.Allowed() {
		return []*audit.Entry{e}
	}
	del := *e
	del.Event = audit.EventDelivered
	del.Time = at.Add(time.Second)
	del.KeyRef = "dev:clearance-data"
	del.PayloadDigest = audit.Digest([]byte(req.ID))
	return []*audit.Entry{e, &del}
}
