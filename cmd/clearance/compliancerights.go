package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/erasure"
	"github.com/clearance-broker/clearance/policy"
)

// complianceRights gives the compliance API the live registry's change API
// (legal orders) and the erasure notices' status (the subject page). The
// compliance package cannot name the policy and erasure types (they depend
// on it), so the binary adapts them here. cs may be nil (no auth section).
func complianceRights(cs *compliance.Server, logger *slog.Logger) func(*policy.Live, *erasure.Notifier) {
	return func(live *policy.Live, notifier *erasure.Notifier) {
		if cs == nil {
			return
		}
		change := compliance.ChangeFunc(func(ctx context.Context, ch agreements.Change) (compliance.ChangeResult, error) {
			ev, err := live.Change(ctx, ch)
			switch {
			case errors.Is(err, policy.ErrInvalidChange):
				err = errors.Join(compliance.ErrChangeRefused, err)
			case errors.Is(err, policy.ErrAuditPending) && ev.Seq > 0:
				// Stored and in force; its audit entries are written
				// later. An error would have the officer record it
				// again (a second order, under a new id).
				logger.Warn("legal order recorded; its audit entries are written later", "component", "policy", "event", ev.Seq, "err", err)
				err = nil
			}
			return compliance.ChangeResult{Event: ev.Seq, Version: ev.Version}, err
		})
		status := compliance.ErasureStatusFunc(func(ctx context.Context, subject string) ([]compliance.NoticeStatus, error) {
			ns, err := notifier.Status(ctx, subject)
			if err != nil {
				return nil, err
			}
			out := make([]compliance.NoticeStatus, len(ns))
			for i, n := range ns {
				out[i] = compliance.NoticeStatus{Recipient: n.Recipient, Status: string(n.Status), Attempts: n.Attempts,
					LastError: n.LastError, ErasedAt: n.ErasedAt, NextAttemptAt: n.NextAttemptAt,
					AcknowledgedAt: n.AcknowledgedAt, EscalatedAt: n.EscalatedAt, Justified: n.Justified}
			}
			return out, nil
		})
		cs.UseRights(change, status)
	}
}
