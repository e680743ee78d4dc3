package compliance_test

import (
	"context"
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
	// Every iteration a new window, so that the overview's cache never
	// answers: the cost of its SQL aggregates over 30 days.
	b.Run("overview/30-days-uncached", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			to := compliancetest.Now.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
			req, _ := http.NewRequest("GET", f.HTTP.URL+"/v1/reports/overview?from=2026-10-29&to="+to, nil)
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
