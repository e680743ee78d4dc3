package compliance_test

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
	"github.com/clearance-broker/clearance/keys"
	"github.com/uptrace/bun"
)

// TestSavedRollups checks that a console process started again goes on
// from the rollups a process saved instead of counting the log again, with
// answers equal to the figures counted from the log, on both stores; and
// that a saved rollup is not taken when it no longer describes the log:
// another log's (another hash at its sequence), cells that cannot be read,
// a sequence above the log's stable one, and an archive since that left
// the entry it ends on; and that a process that sees an archive goes on
// from the rollups another process saved after it. A process never
// replaces a saved rollup that holds more entries than its own.
func TestSavedRollups(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			compliance.SaveRollupsAlways(t)
			f, log := rollupFixture(t, store)
			ctx := context.Background()
			now := compliancetest.Now
			reg, err := agreements.Load(f.Registry)
			if err != nil {
				t.Fatal(err)
			}
			ring, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: filepath.Join(f.Dir, "ring.json"), Allow: true})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 17))
			added := appender(t, f, log, nil)
			at := func() time.Time { return now.Add(-time.Duration(rng.Int64N(int64(40 * 24 * time.Hour)))) }
			calls := 0
			check := func(step string, s *compliance.Server, builds [3]int) {
				t.Helper()
				calls++
				from, to := now.Add(-30*24*time.Hour+17*time.Minute), now.Add(time.Duration(calls)*time.Minute)
				got, err := s.OverviewFromRollup(ctx, from, to)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := countOverview(t, f.Log, from, to)
				got.From, got.To, got.TopReasons = time.Time{}, time.Time{}, nil
				if !reflect.DeepEqual(*got, want) {
					t.Fatalf("%s: overview\n got %+v\nwant %+v", step, *got, want)
				}
				sameJSON(t, step+": records of processing",
					func() (any, error) { return s.BuildROPA(ctx, now.Add(-365*24*time.Hour), to) },
					func() (any, error) {
						return compliance.BuildROPA(ctx, f.DB, reg, []string{ring.KeyRef()}, now.Add(-365*24*time.Hour), to, now)
					})
				sameJSON(t, step+": registry versions",
					func() (any, error) { return s.RegistryVersions(ctx) },
					func() (any, error) { return s.RegistryVersionsFromLog(ctx) })
				if n := s.RollupBuilds(); n != builds {
					t.Fatalf("%s: counted from the log (overview, records of processing, versions) %v times, want %v", step, n, builds)
				}
			}
			savedHi := func(name string) int64 {
				t.Helper()
				var hi int64
				if err := f.DB.NewSelect().Table("compliance_rollups").Column("hi").Where("name = ?", name).Scan(ctx, &hi); err != nil {
					t.Fatal(err)
				}
				return hi
			}
			spoil := func(name, col string, value any) {
				t.Helper()
				if _, err := f.DB.NewUpdate().Table("compliance_rollups").Set("? = ?", bun.Ident(col), value).
					Where("name = ?", name).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}

			a := f.Server
			check("first process", a, [3]int{1, 1, 1})
			// The command line's records of processing take the saved
			// rollup's whole days, and write nothing.
			fromSaved := func(step string, wantSaved bool) {
				t.Helper()
				from, to := now.Add(-300*24*time.Hour+5*time.Hour), now.Add(time.Duration(calls)*time.Minute)
				var seq int64
				sameJSON(t, step+": records of processing from the saved rollup",
					func() (any, error) {
						rp, s, err := compliance.BuildROPAFromSaved(ctx, f.DB, f.Log, reg, nil, from, to, now)
						seq = s
						return rp, err
					},
					func() (any, error) { return compliance.BuildROPA(ctx, f.DB, reg, nil, from, to, now) })
				if (seq > 0) != wantSaved {
					t.Fatalf("%s: whole days from a saved rollup up to %d, want saved %v", step, seq, wantSaved)
				}
			}
			fromSaved("first process", true)
			before := savedHi("overview/1")
			added(30, at)
			ropaHi := savedHi("ropa/2")
			fromSaved("grown", true)
			if hi := savedHi("ropa/2"); hi != ropaHi {
				t.Fatalf("the command line's records of processing saved a rollup at %d over %d", hi, ropaHi)
			}
			b, err := a.Again()
			if err != nil {
				t.Fatal(err)
			}
			check("started again after the log grew", b, [3]int{})
			if after := savedHi("overview/1"); after <= before {
				t.Fatalf("saved rollup at sequence %d after growing, %d before", after, before)
			}

			spoil("overview/1", "hi_hash", "another log's")
			spoil("ropa/2", "cells", "{")
			c, err := a.Again()
			if err != nil {
				t.Fatal(err)
			}
			fromSaved("unreadable records of processing", false)
			check("another log's overview, unreadable records of processing", c, [3]int{1, 1, 0})
			fromSaved("saved again", true)

			// A saved rollup further on than the log (no entry there, so
			// no hash): not taken, and not replaced by one holding less.
			spoil("versions/1", "hi", int64(1)<<40)
			spoil("versions/1", "hi_hash", "")
			// An entry of the last hour, which the archive below keeps,
			// with everything after it; a checkpoint seals those before
			// it, which archive takes.
			if _, err := f.Log.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			added(1, func() time.Time { return now })
			added(5, at)
			d, err := a.Again()
			if err != nil {
				t.Fatal(err)
			}
			check("saved past the log", d, [3]int{0, 0, 1})
			if hi := savedHi("versions/1"); hi != int64(1)<<40 {
				t.Fatalf("a saved rollup at %d replaced by one at %d", int64(1)<<40, hi)
			}

			// An archive of the entries before the last hour's: the
			// entries the saved rollups end on are still in the log, with
			// their hashes, but the rollups count entries it no longer
			// holds.
			if _, _, err := f.Log.Archive(ctx, nil, now.Add(-time.Hour), io.Discard); err != nil {
				t.Fatal(err)
			}
			added(10, at)
			e, err := a.Again()
			if err != nil {
				t.Fatal(err)
			}
			check("after an archive", e, [3]int{1, 1, 1})
			if hi := savedHi("versions/1"); hi >= int64(1)<<40 {
				t.Fatalf("the rollup saved before the archive, at %d, was kept", hi)
			}
			// A process that counted before the archive goes on from the
			// rollups counted after it, and saved, by another.
			added(3, at)
			check("a process from before the archive", d, [3]int{0, 0, 1})
		})
	}
}

// sameJSON fails the test unless got and want return values that encode to
// the same JSON.
func sameJSON(t *testing.T, step string, got, want func() (any, error)) {
	t.Helper()
	var enc [2]any
	for i, fn := range []func() (any, error){got, want} {
		v, err := fn()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		b, _ := json.Marshal(v)
		if err := json.Unmarshal(b, &enc[i]); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(enc[0], enc[1]) {
		t.Fatalf("%s:\n got %v\nwant %v", step, enc[0], enc[1])
	}
}
