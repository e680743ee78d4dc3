package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats.go"
	"github.com/uptrace/bun"
)

// startLivePolicy keeps engine on the registry in force across instances:
// it opens the registry store in db, applies reg when the store holds none
// yet (later versions come from `clearance registry apply`), follows the
// registry bucket on NATS and records the consents and erasures arriving on
// NATS. It returns the mount of the rights routes (POST /v1/consents, POST
// /v1/subjects/{id}/erasure); what it started is stopped through st.
func startLivePolicy(ctx context.Context, st *stack, db *bun.DB, nc *nats.Conn, engine *agreements.Engine,
	reg *agreements.Registry, auditLog policy.AuditLog, logger *slog.Logger) (func(*http.ServeMux), error) {
	store, err := policy.OpenStore(ctx, db)
	if err != nil {
		return nil, err
	}
	live, err := policy.Start(ctx, policy.Options{Store: store, Engine: engine, NATS: nc, Audit: auditLog, Logger: logger})
	if err != nil {
		return nil, err
	}
	st.add(func(context.Context) error { live.Stop(); return nil })
	if live.Seq() == 0 {
		if _, _, err := live.Apply(ctx, reg); err != nil {
			return nil, err
		}
	}
	in, err := live.StartIntake(ctx)
	if err != nil {
		return nil, err
	}
	st.add(func(context.Context) error { in.Stop(); return nil })
	logger.Info("live registry", "component", "policy", "event", live.Seq(), "registry_version", engine.Registry().Version())
	return func(mux *http.ServeMux) { live.Mount(mux, nil) }, nil
}
