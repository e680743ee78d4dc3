package compliance_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
)

// BenchmarkSearchPage measures one page of an audit search through the API
// (token check, parameter parsing, JSON over HTTP) against the baseline of
// the same page read straight from the audit log, on 100,000 entries.
// Compare the two ns/op: the API's overhead is their ratio.
func BenchmarkSearchPage(b *testing.B) {
	f := compliancetest.New(b)
	bulkLoad(b, f.DB, pagingEntries)
	token := f.Token(b, compliance.RoleViewer)
	ctx := context.Background()
	for _, after := range []int64{0, 90_000} {
		b.Run(fmt.Sprintf("baseline=audit.Query/after=%d", after), func(b *testing.B) {
			for b.Loop() {
				es, err := f.Log.Query(ctx, audit.Filter{Country: "JP", AfterSequence: after, Limit: 100})
				if err != nil || len(es) == 0 {
					b.Fatal(err, len(es))
				}
			}
		})
		b.Run(fmt.Sprintf("api/after=%d", after), func(b *testing.B) {
			url := fmt.Sprintf("%s/v1/audit/entries?country=JP&limit=100&after=%d", f.HTTP.URL, after)
			for b.Loop() {
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkOverview measures a refresh of the console's overview over 30
// days of 100,000 entries, as the API computes it (the whole hours from the
// rollup, the rest from the log), against the baseline of the same figures
// counted from the log alone. Each call asks for a window of its own, so
// that no cache answers. Compare the two ns/op (a refresh) and the two
// first-ms (the first call, which builds the rollup).
func BenchmarkOverview(b *testing.B) {
	for _, store := range []string{"sqlite", "postgres"} {
		b.Run(store, func(b *testing.B) {
			dsn := ""
			if store == "postgres" {
				dsn = compliancetest.PostgresDSN(b)
			}
			f := compliancetest.NewOn(b, dsn)
			bulkLoad(b, f.DB, pagingEntries)
			benchmarkOverview(b, f)
			benchmarkVersions(b, f)
			benchmarkROPA(b, f)
		})
	}
}

// benchmarkROPA measures the records of processing over 365 days as the
// API builds them (the whole days from the rollup; ns/op: a call after the
// first, first-ms: the first) against the baseline of BuildROPA, which
// counts the window from the log, as the command line does.
func benchmarkROPA(b *testing.B, f *compliancetest.Fixture) {
	ctx := context.Background()
	reg, err := agreements.Load(f.Registry)
	if err != nil {
		b.Fatal(err)
	}
	from := compliancetest.Now.Add(-365 * 24 * time.Hour)
	for _, bb := range []struct {
		name string
		fn   func(context.Context, time.Time, time.Time) (*compliance.ROPA, error)
	}{
		{"ropa/baseline=log", func(ctx context.Context, from, to time.Time) (*compliance.ROPA, error) {
			return compliance.BuildROPA(ctx, f.DB, reg, nil, from, to, compliancetest.Now)
		}},
		{"ropa/rollup", f.Server.BuildROPA},
		{"ropa/rollup/again", func(ctx context.Context, from, to time.Time) (*compliance.ROPA, error) {
			return again(b, f).BuildROPA(ctx, from, to)
		}},
		// The command line's, from the rollup the console saved.
		{"ropa/saved", func(ctx context.Context, from, to time.Time) (*compliance.ROPA, error) {
			rp, seq, err := compliance.BuildROPAFromSaved(ctx, f.DB, f.Log, reg, nil, from, to, compliancetest.Now)
			if err == nil && seq == 0 {
				err = errors.New("not from the saved rollup")
			}
			return rp, err
		}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			firstThenLoop(b, func(i int) error {
				rp, err := bb.fn(ctx, from, compliancetest.Now.Add(time.Duration(i)*time.Second))
				if err == nil && len(rp.Purposes) == 0 {
					err = errors.New("no purposes")
				}
				return err
			})
		})
	}
}

// benchmarkVersions measures the registry versions the agreements page
// shows, from the rollup (ns/op: a call after the first, which builds it;
// first-ms: the first) against the baseline of counting the whole log.
func benchmarkVersions(b *testing.B, f *compliancetest.Fixture) {
	ctx := context.Background()
	for _, bb := range []struct {
		name string
		fn   func(context.Context) ([]compliance.VersionSeen, error)
	}{
		{"versions/baseline=log", f.Server.RegistryVersionsFromLog},
		{"versions/rollup", f.Server.RegistryVersions},
		{"versions/rollup/again", func(ctx context.Context) ([]compliance.VersionSeen, error) {
			return again(b, f).RegistryVersions(ctx)
		}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			firstThenLoop(b, func(int) error {
				vs, err := bb.fn(ctx)
				if err == nil && len(vs) == 0 {
					err = errors.New("no versions")
				}
				return err
			})
		})
	}
}

func benchmarkOverview(b *testing.B, f *compliancetest.Fixture) {
	ctx := context.Background()
	from := compliancetest.Now.Add(-30 * 24 * time.Hour)
	for _, bb := range []struct {
		name string
		fn   func(context.Context, time.Time, time.Time) (*compliance.Overview, error)
	}{
		{"baseline=log", f.Server.OverviewFromLog},
		{"rollup", f.Server.OverviewFromRollup},
		{"rollup/again", func(ctx context.Context, from, to time.Time) (*compliance.Overview, error) {
			return again(b, f).OverviewFromRollup(ctx, from, to)
		}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			firstThenLoop(b, func(i int) error {
				ov, err := bb.fn(ctx, from, compliancetest.Now.Add(time.Duration(i)*time.Second))
				if err == nil && ov.Allowed+ov.Refused == 0 {
					err = errors.New("no decisions")
				}
				return err
			})
		})
	}
}

// again returns a new server on f's store, as a console process started
// again: it finds the rollups f's server saved. Its start is not timed.
func again(b *testing.B, f *compliancetest.Fixture) *compliance.Server {
	b.StopTimer()
	defer b.StartTimer()
	s, err := f.Server.Again()
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// firstThenLoop times call(0), the first, which builds a rollup, and
// reports it as first-ms; then it calls call(1), call(2), ... in b.Loop,
// which ns/op measures, each with a window of its own so that no cache
// answers.
func firstThenLoop(b *testing.B, call func(i int) error) {
	start := time.Now()
	if err := call(0); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	i := 0
	for b.Loop() {
		i++
		if err := call(i); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(first.Microseconds())/1000, "first-ms")
}

// BenchmarkWhatIf evaluates a proposed registry (the one in force: nothing
// flips, so every entry is decided twice and compared) over 20,000 recorded
// decisions; ns/op is one whole what-if, ns/entry the cost per entry read.
func BenchmarkWhatIf(b *testing.B) {
	f := compliancetest.New(b)
	const n = 20_000
	bulkLoad(b, f.DB, n)
	reg, err := agreements.Load(f.Registry)
	if err != nil {
		b.Fatal(err)
	}
	q := compliance.WhatIfQuery{From: compliancetest.Now.Add(-31 * 24 * time.Hour), To: compliancetest.Now.Add(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		res, err := compliance.WhatIf(context.Background(), f.Log, reg, reg, compliancetest.SubjectKey, q)
		if err != nil || res.Evaluated != n {
			b.Fatal(err, res)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
}
