package shred

import (
	"cmp"
	"context"
	"fmt"

	"github.com/clearance-broker/clearance/keys"

	"github.com/uptrace/bun"
)

// Rewrapper is keys.Rewrapper: *keys.Vault (transit/rewrap).
type Rewrapper = keys.Rewrapper

// RewrapStats counts what RewrapKeys did.
type RewrapStats struct {
	// Live is how many live (not destroyed) subject keys were read.
	Live int `json:"live"`
	// Rewrapped is how many of them were stored again under the latest
	// version of the encryption key.
	Rewrapped int `json:"rewrapped"`
	// Current is how many were already under it.
	Current int `json:"current"`
	// Skipped is how many were destroyed (or rewrapped by another run)
	// while being rewrapped, and left as they were then.
	Skipped int `json:"skipped"`
	// Failed names (by key id, never the subject) the keys the key
	// service would not rewrap, one at a time, while others of their
	// batch were: a wrapped key altered, or under a key the service does
	// not hold. They are left as they are, and the rest goes on.
	Failed []string `json:"failed,omitempty"`
}

// RewrapKeys brings every live subject key stored in db, wrapped by the key
// service, up to the latest version of its encryption key, batch keys per
// request to rw, so that retiring the older versions (Vault's
// min_decryption_version) leaves each subject's key, and so everything
// sealed for the subject, usable. The data keys themselves do not change:
// the instances' caches stay valid, and the command can run while they
// serve. A key destroyed meanwhile is left destroyed. A batch the key
// service refuses for a key's sake (altered, malformed, under a retired
// version) is tried again one key at a time: those it refuses are named
// in Failed, the others rewrapped, and the walk goes on to the end, where
// an error names how many were left. Any other refusal (the service down,
// the token without the right) stops the walk there. progress, when set, is called after each batch. It can be
// run again at any time: keys already current are counted and left as
// they are.
func RewrapKeys(ctx context.Context, db *bun.DB, rw Rewrapper, batch int, progress func(RewrapStats)) (RewrapStats, error) {
	var st RewrapStats
	if batch <= 0 {
		batch = 500
	}
	if err := migrateSchema(ctx, db); err != nil {
		return st, fmt.Errorf("shred: rewrap: %w", err)
	}
	after := ""
	var firstFault error
	for {
		var rows []keyRow
		if err := db.NewSelect().Model(&rows).Column("subject_hmac", "key_id", "wrapped").
			Where("destroyed_at IS NULL").Where("subject_hmac > ?", after).
			Order("subject_hmac").Limit(int64(batch)).Scan(ctx); err != nil {
			return st, fmt.Errorf("shred: rewrap: read subject keys: %w", err)
		}
		if len(rows) == 0 {
			if firstFault != nil {
				return st, fmt.Errorf("shred: rewrap: %d subject keys left as they were (first: %w)", len(st.Failed), firstFault)
			}
			return st, nil
		}
		after = rows[len(rows)-1].SubjectHMAC
		sealed := make([][]byte, len(rows))
		for i := range rows {
			sealed[i] = []byte(rows[i].Wrapped)
		}
		out, fault, err := keys.RewrapEach(ctx, rw, sealed)
		if err != nil {
			return st, fmt.Errorf("shred: rewrap: %w", err)
		}
		firstFault = cmp.Or(firstFault, fault)
		st.Live += len(rows)
		for i, r := range rows {
			if out[i] == nil {
				st.Failed = append(st.Failed, r.KeyID)
				continue
			}
			if string(out[i]) == r.Wrapped {
				st.Current++
				continue
			}
			// Only the key as it was read is replaced: one destroyed
			// in between keeps its destruction.
			res, err := db.NewUpdate().Model((*keyRow)(nil)).Set("wrapped = ?", string(out[i])).
				Where("subject_hmac = ?", r.SubjectHMAC).Where("wrapped = ?", r.Wrapped).Where("destroyed_at IS NULL").Exec(ctx)
			if err != nil {
				return st, fmt.Errorf("shred: rewrap: store subject key: %w", err)
			}
			if n, err := res.RowsAffected(); err == nil && n == 0 {
				st.Skipped++
				continue
			}
			st.Rewrapped++
		}
		if progress != nil {
			progress(st)
		}
	}
}
