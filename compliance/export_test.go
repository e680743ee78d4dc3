package compliance

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

// OverviewFromLog is the overview of [from, to) counted from the log alone,
// the baseline of the rollup's benchmark.
func (s *Server) OverviewFromLog(ctx context.Context, from, to time.Time) (*Overview, error) {
	db := s.opts.DB
	t := newTally()
	err := t.count(ctx, db, bucketExpr(db, false), true, func(q *bun.SelectQuery) *bun.SelectQuery {
		return q.Where("at >= ?", from).Where("at < ?", to)
	})
	if err != nil {
		return nil, err
	}
	return t.overview(from, to), nil
}

// OverviewFromRollup is the overview of [from, to) as the API computes it,
// without the API's cache.
func (s *Server) OverviewFromRollup(ctx context.Context, from, to time.Time) (*Overview, error) {
	return s.rollupOverview(ctx, from, to)
}

// SetRollupCells sets the rollup's bound on its cells until the test ends.
func SetRollupCells(t testing.TB, n int) {
	old := maxRollupCells
	maxRollupCells = n
	t.Cleanup(func() { maxRollupCells = old })
}

// RegistryVersionsFromLog lists the registry versions counted from the whole
// log, without the rollup: the baseline of its benchmark.
func (s *Server) RegistryVersionsFromLog(ctx context.Context) ([]VersionSeen, error) {
	cells := map[versionKey]VersionSeen{}
	err := addVersions(ctx, s.opts.DB, cells, func(q *bun.SelectQuery) *bun.SelectQuery {
		return q.Where("registry_version <> ''")
	})
	return byRegistryVersion(cells), err
}

// RegistryVersions lists the registry versions as the API does.
func (s *Server) RegistryVersions(ctx context.Context) ([]VersionSeen, error) {
	return s.registryVersions(ctx)
}

// RollupsBuilt says whether the overview's and the versions' rollups are
// built.
func (s *Server) RollupsBuilt() (overview, versions bool) {
	s.rollup.mu.Lock()
	overview = s.rollup.built
	s.rollup.mu.Unlock()
	s.versions.mu.Lock()
	defer s.versions.mu.Unlock()
	return overview, s.versions.built
}

// Again returns a new server on s's options: what a console process
// started again, or another one, finds.
func (s *Server) Again() (*Server, error) { return New(s.opts) }

// RollupBuilds says how many times the overview's, the records of
// processing's and the versions' rollups counted their whole range from
// the log.
func (s *Server) RollupBuilds() [3]int {
	var n [3]int
	for i, r := range []*rollup{&s.rollup, &s.flowRollup, &s.versions} {
		r.mu.Lock()
		n[i] = r.builds
		r.mu.Unlock()
	}
	return n
}

// SaveRollupsAlways saves a rollup on every call that advances it until
// the test ends.
func SaveRollupsAlways(t testing.TB) {
	old := saveRollupEvery
	saveRollupEvery = 0
	t.Cleanup(func() { saveRollupEvery = old })
}

// MaxChartRows bounds the rows of a console chart.
const MaxChartRows = maxChartRows
