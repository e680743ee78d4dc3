package compliance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
	"github.com/clearance-broker/clearance/keys"
)

// TestOverviewRollup checks the overview, which counts whole hours from a
// rollup kept up to date by sequence, against the figures counted here from
// every entry of the log, on both stores: after the log grows (entries out
// of time order, some in hours the rollup already counts), for a window
// reaching back before anything the rollup holds, for windows shorter than
// an hour or cut mid-hour, after an archive removed what it counted, and
// with a bound on its size that starts it again on every refresh.
func TestOverviewRollup(t *testing.T) {
	forRollupStores(t, 5, func(t *testing.T, f *compliancetest.Fixture, log *audit.Log, c client) {
		now := compliancetest.Now
		added := appender(t, f, log, nil)
		// Each check asks for a window of its own: the overview's cache
		// (30 s on a clock that stands still here) never answers.
		check := func(step string, from, to time.Time) {
			t.Helper()
			q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
			code, b := c.get("/v1/reports/overview?" + q.Encode())
			var got compliance.Overview
			if code != 200 || json.Unmarshal(b, &got) != nil {
				t.Fatalf("%s: %d %.300s", step, code, b)
			}
			want, reasons := countOverview(t, f.Log, from, to)
			top := got.TopReasons
			got.From, got.To, got.TopReasons = time.Time{}, time.Time{}, nil
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s [%s, %s):\n got %+v\nwant %+v", step, from, to, got, want)
			}
			// The top ten reasons (or all), most frequent first.
			if len(top) != min(10, len(reasons)) {
				t.Fatalf("%s: %d top reasons of %d: %+v", step, len(top), len(reasons), top)
			}
			for i, r := range top {
				if r.Count != reasons[r.Reason] || i > 0 && r.Count > top[i-1].Count {
					t.Fatalf("%s: top reasons %+v, counted %v", step, top, reasons)
				}
			}
		}
		check("seeded", now.Add(-30*24*time.Hour+17*time.Minute), now.Add(time.Minute))
		check("mid-hour ends", now.Add(-10*24*time.Hour+5*time.Minute+30*time.Second), now.Add(-2*24*time.Hour+7*time.Minute))
		check("under an hour", now.Add(-3*24*time.Hour+10*time.Minute), now.Add(-3*24*time.Hour+50*time.Minute))

		// New entries at random times of the last 40 days, in hours the
		// rollup counted and before what it holds, and on the edges: the
		// hour before the rollup's first, and the first hour of a day.
		rng := rand.New(rand.NewPCG(8, 69))
		first := now.Add(-30*24*time.Hour + 17*time.Minute).Truncate(time.Hour).Add(time.Hour)
		edges := []time.Time{first.Add(-30 * time.Minute), first.Add(-time.Nanosecond * 1000), first,
			now.Add(-5 * 24 * time.Hour).Truncate(24 * time.Hour)}
		added(len(edges), func() time.Time { e := edges[0]; edges = edges[1:]; return e })
		added(40, func() time.Time { return now.Add(-time.Duration(rng.Int64N(int64(40 * 24 * time.Hour)))) })
		check("grown", now.Add(-30*24*time.Hour+18*time.Minute), now.Add(time.Minute))
		check("further back", now.Add(-40*24*time.Hour), now.Add(2*time.Minute))
		check("whole hours", now.Add(-20*24*time.Hour).Truncate(time.Hour), now.Truncate(time.Hour))
		added(15, func() time.Time { return now.Add(-time.Duration(rng.Int64N(int64(45 * 24 * time.Hour)))) })
		check("grown again", now.Add(-45*24*time.Hour+time.Second), now.Add(3*time.Minute))

		// An archive removes every entry so far.
		if _, err := f.Log.Checkpoint(context.Background()); err != nil { // archive takes what checkpoints seal
			t.Fatal(err)
		}
		if _, _, err := f.Log.Archive(context.Background(), nil, now.Add(time.Hour), io.Discard); err != nil {
			t.Fatal(err)
		}
		check("archived", now.Add(-45*24*time.Hour+2*time.Second), now.Add(4*time.Minute))
		added(20, func() time.Time { return now.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour)))) })
		check("after the archive", now.Add(-45*24*time.Hour+3*time.Second), now.Add(5*time.Minute))
	})
}

// forRollupStores runs fn on a fixture of rollupFixture for each store,
// first with the product's bound on a rollup's cells, then with a bound of
// cells, which starts a rollup again on nearly every call.
func forRollupStores(t *testing.T, cells int, fn func(t *testing.T, f *compliancetest.Fixture, log *audit.Log, c client)) {
	for _, tt := range []struct {
		store string
		cells int // 0: the product's
	}{{"sqlite", 0}, {"postgres", 0}, {"sqlite", cells}, {"postgres", cells}} {
		t.Run(fmt.Sprintf("%s/cells=%d", tt.store, tt.cells), func(t *testing.T) {
			if tt.cells > 0 {
				compliance.SetRollupCells(t, tt.cells)
			}
			f, log := rollupFixture(t, tt.store)
			fn(t, f, log, client{t: t, base: f.HTTP.URL, token: f.Token(t, compliance.RoleViewer)})
		})
	}
}

// rollupFixture returns a fixture on store seeded with a round of the
// example requests, and the log to append to: on PostgreSQL a second writer
// with two chains, so that the chain that lags holds the stable sequence
// back and entries above it are read from the log, not a rollup.
func rollupFixture(t *testing.T, store string) (*compliancetest.Fixture, *audit.Log) {
	t.Helper()
	dsn := ""
	if store == "postgres" {
		dsn = compliancetest.PostgresDSN(t)
	}
	f := compliancetest.NewOn(t, dsn)
	f.Seed(t, 1)
	if store != "postgres" {
		return f, f.Log
	}
	ring, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: filepath.Join(f.Dir, "ring.json"), Allow: true})
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(context.Background(), f.DB, audit.Options{SubjectKey: compliancetest.SubjectKey,
		Signer: ring, Chains: 2, Now: func() time.Time { return compliancetest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	return f, log
}

// appender returns a function that appends to log the entries of n more
// decisions of the example requests, each at a time at() gives and changed
// by mutate, when set.
func appender(t *testing.T, f *compliancetest.Fixture, log *audit.Log, mutate func(*audit.Entry)) func(n int, at func() time.Time) {
	reqs := compliancetest.Requests(t)
	next := 0
	return func(n int, at func() time.Time) {
		t.Helper()
		for range n {
			r := *reqs[next%len(reqs)]
			r.ID = fmt.Sprintf("rollup-%d", next)
			next++
			when := at()
			for _, e := range compliancetest.Entries(&r, f.Engine.Decide(&r, when), when) {
				if mutate != nil {
					mutate(e)
				}
				if _, err := log.Append(context.Background(), e); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// countOverview counts the overview of [from, to) from every entry of log:
// the figures without the top reasons, and how often each reason refused a
// transfer.
func countOverview(t *testing.T, log *audit.Log, from, to time.Time) (compliance.Overview, map[string]int64) {
	t.Helper()
	days := map[compliance.DayCount]int64{}
	reasons := map[string]int64{}
	ov := compliance.Overview{Days: []compliance.DayCount{}}
	err := log.Scan(context.Background(), audit.Filter{}, func(e *audit.Entry) error {
		if e.Event != audit.EventDecided || e.Time.Before(from) || !e.Time.Before(to) {
			return nil
		}
		days[compliance.DayCount{Day: e.Time.UTC().Format("2006-01-02"), Country: e.RecipientCountry, Decision: e.Decision}]++
		if e.Decision == "allow" {
			ov.Allowed++
		} else {
			ov.Refused++
		}
		if e.Decision == "deny" {
			for _, r := range e.Reasons {
				reasons[r]++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for d, n := range days {
		d.Count = n
		ov.Days = append(ov.Days, d)
	}
	sort.Slice(ov.Days, func(i, j int) bool {
		a, b := ov.Days[i], ov.Days[j]
		return a.Day < b.Day || a.Day == b.Day && (a.Country < b.Country || a.Country == b.Country && a.Decision < b.Decision)
	})
	return ov, reasons
}

// TestVersionsRollup checks the registry versions and the agreement
// histories, which a rollup kept up to date by sequence answers, against
// the figures counted here from every entry of the log, on both stores:
// after the log grows with decisions out of time order under new registry
// and agreement versions, after an archive, and with a bound on the
// rollup's size that starts it again on every call.
func TestVersionsRollup(t *testing.T) {
	forRollupStores(t, 2, func(t *testing.T, f *compliancetest.Fixture, log *audit.Log, c client) {
		now := compliancetest.Now
		rng := rand.New(rand.NewPCG(3, 11))
		// Each decision under one of four registry versions and, with
		// an agreement, one of three of its versions.
		added := appender(t, f, log, func(e *audit.Entry) {
			e.RegistryVersion = fmt.Sprintf("rv-%d", rng.IntN(4))
			if e.AgreementID != "" {
				e.AgreementVersion = 1 + rng.IntN(3)
			}
		})
		at := func() time.Time { return now.Add(-time.Duration(rng.Int64N(int64(60 * 24 * time.Hour)))) }
		check := func(step string) {
			t.Helper()
			want := countVersions(t, f.Log)
			got := map[string][]string{}
			var vs struct {
				Versions []compliance.VersionSeen `json:"versions"`
			}
			if code, b := c.get("/v1/registry/versions"); code != 200 || json.Unmarshal(b, &vs) != nil {
				t.Fatalf("%s: versions: %d %.300s", step, code, b)
			}
			got[""] = seenLines(vs.Versions)
			for id := range want {
				if id == "" {
					continue
				}
				var h compliance.AgreementHistory
				if code, b := c.get("/v1/registry/agreements/" + id + "/history"); code != 200 || json.Unmarshal(b, &h) != nil {
					t.Fatalf("%s: history of %s: %d %.300s", step, id, code, b)
				}
				got[id] = seenLines(h.Versions)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s:\n got %v\nwant %v", step, got, want)
			}
		}
		check("seeded")
		added(30, at)
		check("grown")
		added(30, at)
		check("grown again")
		if _, err := f.Log.Checkpoint(context.Background()); err != nil { // archive takes what checkpoints seal
			t.Fatal(err)
		}
		if _, _, err := f.Log.Archive(context.Background(), nil, now.Add(time.Hour), io.Discard); err != nil {
			t.Fatal(err)
		}
		added(20, at)
		check("after an archive")
	})
}

// seenLines writes vs one line each, in their order.
func seenLines(vs []compliance.VersionSeen) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s v%d %s %s..%s %d", v.AgreementID, v.AgreementVersion, v.RegistryVersion,
			v.First.UTC().Format(time.RFC3339Nano), v.Last.UTC().Format(time.RFC3339Nano), v.Decisions))
	}
	return out
}

// countVersions counts, from every decision of log, the registry versions
// (key "") and each agreement's versions per registry version (its id), as
// seenLines writes them, oldest first.
func countVersions(t *testing.T, log *audit.Log) map[string][]string {
	t.Helper()
	type key struct {
		agreement string
		version   int
		registry  string
	}
	cells := map[string]map[key]*compliance.VersionSeen{}
	add := func(group string, k key, at time.Time) {
		if cells[group] == nil {
			cells[group] = map[key]*compliance.VersionSeen{}
		}
		v := cells[group][k]
		if v == nil {
			v = &compliance.VersionSeen{AgreementID: k.agreement, AgreementVersion: k.version, RegistryVersion: k.registry, First: at, Last: at}
			cells[group][k] = v
		}
		if at.Before(v.First) {
			v.First = at
		}
		if at.After(v.Last) {
			v.Last = at
		}
		v.Decisions++
	}
	err := log.Scan(context.Background(), audit.Filter{}, func(e *audit.Entry) error {
		if e.Event != audit.EventDecided {
			return nil
		}
		if e.RegistryVersion != "" {
			add("", key{registry: e.RegistryVersion}, e.Time)
		}
		if e.AgreementID != "" {
			add(e.AgreementID, key{e.AgreementID, e.AgreementVersion, e.RegistryVersion}, e.Time)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{"": {}}
	for group, m := range cells {
		var vs []compliance.VersionSeen
		for _, v := range m {
			vs = append(vs, *v)
		}
		sort.Slice(vs, func(i, j int) bool {
			a, b := vs[i], vs[j]
			if !a.First.Equal(b.First) {
				return a.First.Before(b.First)
			}
			return a.RegistryVersion < b.RegistryVersion || a.RegistryVersion == b.RegistryVersion && a.AgreementVersion < b.AgreementVersion
		})
		out[group] = seenLines(vs)
	}
	return out
}

// TestRollupOutlivesItsCaller asks for the overview and the registry
// versions with a context already cancelled: the answers fail, and the
// rollups are built all the same, for the next call.
func TestRollupOutlivesItsCaller(t *testing.T) {
	f := compliancetest.New(t)
	f.Seed(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	now := compliancetest.Now
	if _, err := f.Server.OverviewFromRollup(ctx, now.Add(-30*24*time.Hour), now); err == nil {
		t.Fatal("an overview for a caller gone")
	}
	if _, err := f.Server.RegistryVersions(ctx); err == nil {
		t.Fatal("versions for a caller gone")
	}
	if ov, vs := f.Server.RollupsBuilt(); !ov || !vs {
		t.Fatalf("rollups built: overview %v, versions %v", ov, vs)
	}
}

// TestROPARollup checks the records of processing the API builds, whose
// whole days come from a rollup kept up to date by sequence, against those
// built from the log alone (compliance.BuildROPA, as the command line
// does), on both stores: after the log grows out of time order, for windows
// cut mid-day and under a day, reaching back before the rollup, after an
// archive, and with a bound that starts the rollup again on every call.
func TestROPARollup(t *testing.T) {
	forRollupStores(t, 3, func(t *testing.T, f *compliancetest.Fixture, log *audit.Log, c client) {
		now := compliancetest.Now
		ring, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: filepath.Join(f.Dir, "ring.json"), Allow: true})
		if err != nil {
			t.Fatal(err)
		}
		reg, err := agreements.Load(f.Registry)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(5, 30))
		added := appender(t, f, log, nil)
		at := func() time.Time { return now.Add(-time.Duration(rng.Int64N(int64(400 * 24 * time.Hour)))) }
		// Each check asks for a window of its own.
		check := func(step string, from, to time.Time) {
			t.Helper()
			q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
			code, got := c.get("/v1/reports/ropa?" + q.Encode())
			if code != 200 {
				t.Fatalf("%s: %d %.300s", step, code, got)
			}
			rp, err := compliance.BuildROPA(context.Background(), f.DB, reg, []string{ring.KeyRef()}, from, to, now)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(rp)
			var g, w any
			if json.Unmarshal(got, &g) != nil || json.Unmarshal(want, &w) != nil || !reflect.DeepEqual(g, w) {
				t.Fatalf("%s [%s, %s):\n got %s\nwant %s", step, from, to, got, want)
			}
		}
		check("seeded", now.Add(-365*24*time.Hour+13*time.Minute), now.Add(time.Minute))
		check("mid-day ends", now.Add(-20*24*time.Hour+5*time.Hour), now.Add(-3*24*time.Hour+7*time.Hour))
		check("under a day", now.Add(-5*24*time.Hour+time.Hour), now.Add(-5*24*time.Hour+20*time.Hour))
		added(40, at)
		check("grown", now.Add(-365*24*time.Hour+14*time.Minute), now.Add(2*time.Minute))
		check("further back", now.Add(-400*24*time.Hour), now.Add(3*time.Minute))
		if _, err := f.Log.Checkpoint(context.Background()); err != nil { // archive takes what checkpoints seal
			t.Fatal(err)
		}
		if _, _, err := f.Log.Archive(context.Background(), nil, now.Add(time.Hour), io.Discard); err != nil {
			t.Fatal(err)
		}
		added(20, at)
		check("after an archive", now.Add(-400*24*time.Hour+time.Second), now.Add(4*time.Minute))
	})
}
