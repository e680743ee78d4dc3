package broker

import (
	"context"
	"strings"

	"github.com/uptrace/bun"
)

// AuditBatchHook returns a bun query hook that observes how many entries
// each audit log group commit writes (the rows of one INSERT into
// audit_entries) into m's audit batch size histogram. Add it to the audit
// store's *bun.DB with AddQueryHook before the DB is shared (before
// audit.Open): bun's hook list is not safe to change while queries run.
func AuditBatchHook(m *Metrics) bun.QueryHook { return auditBatchHook{m} }

type auditBatchHook struct{ m *Metrics }

func (h auditBatchHook) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	return ctx
}

func (h auditBatchHook) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	if e.Err != nil || e.Result == nil || e.Operation() != "INSERT" || !strings.Contains(e.Query, "audit_entries") {
		return
	}
	if n, err := e.Result.RowsAffected(); err == nil && n > 0 {
		h.m.ObserveAuditBatch(int(n))
	}
}

var _ bun.QueryHook = auditBatchHook{}
