package compliance

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// The audit store's entry table, read for aggregates. Every query below
// bounds "at" or selects by an indexed column, so it is an index range scan.
const entriesTable = "audit_entries"

// dayExpr is the SQL expression of an entry's UTC day as YYYY-MM-DD.
func dayExpr(db *bun.DB) string {
	if db.Dialect().Name() == dialect.PG {
		return "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
	}
	return "substr(at, 1, 10)"
}

// DayCount is the number of decisions of one day, destination and outcome.
type DayCount struct {
	Day      string `bun:"day" json:"day"`
	Country  string `bun:"country" json:"country"`
	Decision string `bun:"decision" json:"decision"`
	Count    int64  `bun:"n" json:"count"`
}

// ReasonCount is how often a refusal reason occurred.
type ReasonCount struct {
	Reason string `json:"reason"`
	Text   string `json:"text"`
	Count  int64  `json:"count"`
}

// Overview holds the console's overview figures for a window.
type Overview struct {
	From       time.Time     `json:"from"`
	To         time.Time     `json:"to"`
	Days       []DayCount    `json:"days"`
	TopReasons []ReasonCount `json:"top_reasons"`
	Allowed    int64         `json:"allowed"`
	Refused    int64         `json:"refused"`
}

// overviewTTL is how long an overview is served from memory: its
// aggregates scan a window of the log, and a dashboard reloads often.
const overviewTTL = 30 * time.Second

type overviewCache struct {
	mu      sync.Mutex
	entries map[[2]time.Time]cachedOverview
}

type cachedOverview struct {
	ov *Overview
	at time.Time
}

// overview returns the figures of [from, to), from the cache when they were
// computed less than overviewTTL ago.
func (s *Server) overview(ctx context.Context, from, to time.Time) (*Overview, error) {
	key := [2]time.Time{from, to}
	now := s.opts.Now()
	c := &s.ovCache
	c.mu.Lock()
	if e, ok := c.entries[key]; ok && now.Sub(e.at) < overviewTTL {
		c.mu.Unlock()
		return e.ov, nil
	}
	c.mu.Unlock()
	ov, err := s.computeOverview(ctx, from, to)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) > 64 {
		c.entries = map[[2]time.Time]cachedOverview{}
	}
	c.entries[key] = cachedOverview{ov: ov, at: now}
	return ov, nil
}

func (s *Server) computeOverview(ctx context.Context, from, to time.Time) (*Overview, error) {
	db := s.opts.DB
	ov := &Overview{From: from, To: to, Days: []DayCount{}, TopReasons: []ReasonCount{}}
	err := db.NewSelect().TableExpr(entriesTable).
		ColumnExpr(dayExpr(db)+" AS day").ColumnExpr("recipient_country AS country").
		ColumnExpr("decision").ColumnExpr("count(*) AS n").
		Where("event = ?", "decided").Where("at >= ?", from).Where("at < ?", to).
		GroupExpr("1, 2, 3").OrderExpr("1, 2, 3").Scan(ctx, &ov.Days)
	if err != nil {
		return nil, fmt.Errorf("compliance: overview: %w", err)
	}
	for _, d := range ov.Days {
		if d.Decision == "allow" {
			ov.Allowed += d.Count
		} else {
			ov.Refused += d.Count
		}
	}
	var rows []struct {
		Reasons string `bun:"reasons"`
		N       int64  `bun:"n"`
	}
	err = db.NewSelect().TableExpr(entriesTable).ColumnExpr("reasons").ColumnExpr("count(*) AS n").
		Where("event = ?", "decided").Where("decision = ?", "deny").
		Where("at >= ?", from).Where("at < ?", to).GroupExpr("reasons").Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("compliance: overview reasons: %w", err)
	}
	counts := map[string]int64{}
	for _, r := range rows {
		var list []string
		if json.Unmarshal([]byte(r.Reasons), &list) != nil {
			continue
		}
		for _, reason := range list {
			counts[reason] += r.N
		}
	}
	for reason, n := range counts {
		ov.TopReasons = append(ov.TopReasons, ReasonCount{Reason: reason, Text: ReasonText(reason), Count: n})
	}
	sort.Slice(ov.TopReasons, func(i, j int) bool {
		a, b := ov.TopReasons[i], ov.TopReasons[j]
		return a.Count > b.Count || a.Count == b.Count && a.Reason < b.Reason
	})
	if len(ov.TopReasons) > 10 {
		ov.TopReasons = ov.TopReasons[:10]
	}
	return ov, nil
}

// VersionSeen is a registry or agreement version as the audit log saw it:
// the first and last decision that rested on it, and how many.
type VersionSeen struct {
	AgreementID      string    `bun:"agreement_id" json:"agreement_id,omitempty"`
	AgreementVersion int       `bun:"agreement_version" json:"agreement_version,omitempty"`
	RegistryVersion  string    `bun:"registry_version" json:"registry_version"`
	First            time.Time `bun:"first_at" json:"first"`
	Last             time.Time `bun:"last_at" json:"last"`
	Decisions        int64     `bun:"n" json:"decisions"`
}

// registryVersions lists every registry version decisions were made with.
func (s *Server) registryVersions(ctx context.Context) ([]VersionSeen, error) {
	out := []VersionSeen{}
	err := s.opts.DB.NewSelect().TableExpr(entriesTable).
		ColumnExpr("registry_version").ColumnExpr("min(at) AS first_at").ColumnExpr("max(at) AS last_at").
		ColumnExpr("count(*) AS n").Where("event = ?", "decided").Where("registry_version <> ''").
		GroupExpr("registry_version").OrderExpr("first_at").Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("compliance: registry versions: %w", err)
	}
	return out, nil
}

// agreementVersions lists the versions of one agreement decisions rested
// on, per registry version, oldest first.
func (s *Server) agreementVersions(ctx context.Context, id string) ([]VersionSeen, error) {
	out := []VersionSeen{}
	err := s.opts.DB.NewSelect().TableExpr(entriesTable).
		ColumnExpr("agreement_id, agreement_version, registry_version").
		ColumnExpr("min(at) AS first_at").ColumnExpr("max(at) AS last_at").ColumnExpr("count(*) AS n").
		Where("agreement_id = ?", id).Where("event = ?", "decided").
		GroupExpr("agreement_id, agreement_version, registry_version").OrderExpr("first_at").Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("compliance: agreement history: %w", err)
	}
	return out, nil
}

// flowRow is one distinct flow of allowed transfers for the records of
// processing.
type flowRow struct {
	Purpose    string `bun:"purpose"`
	LegalBasis string `bun:"legal_basis"`
	Dataset    string `bun:"dataset"`
	Recipient  string `bun:"recipient"`
	Country    string `bun:"recipient_country"`
	Origin     string `bun:"origin"`
	Mechanism  string `bun:"mechanism"`
	Categories string `bun:"categories_sent"`
	Agreement  string `bun:"agreement_id"`
	N          int64  `bun:"n"`
}

func flows(ctx context.Context, db *bun.DB, from, to time.Time) ([]flowRow, []string, error) {
	var rows []flowRow
	cols := "purpose, legal_basis, dataset, recipient, recipient_country, origin, mechanism, categories_sent, agreement_id"
	err := db.NewSelect().TableExpr(entriesTable).ColumnExpr(cols).ColumnExpr("count(*) AS n").
		Where("event = ?", "decided").Where("decision = ?", "allow").
		Where("at >= ?", from).Where("at < ?", to).GroupExpr(cols).Scan(ctx, &rows)
	if err != nil {
		return nil, nil, fmt.Errorf("compliance: records of processing: %w", err)
	}
	var keyRefs []string
	err = db.NewSelect().TableExpr(entriesTable).ColumnExpr("DISTINCT key_ref").
		Where("key_ref <> ''").Where("at >= ?", from).Where("at < ?", to).Scan(ctx, &keyRefs)
	if err != nil {
		return nil, nil, fmt.Errorf("compliance: records of processing keys: %w", err)
	}
	return rows, keyRefs, nil
}
