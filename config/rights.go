package config

import "time"

// LivePolicy tunes the live registry: how registry changes reach every
// instance.
type LivePolicy struct {
	// SyncTimeout bounds how long a registry change (apply, consent, legal
	// order, erasure, suspension) waits for every running instance to
	// confirm it is in force before it is answered; instances that do not
	// confirm in time catch up through the registry bucket's watch.
	SyncTimeout time.Duration `yaml:"sync_timeout"`
	// SnapshotEvery is how many registry events after its last snapshot an
	// instance stores the registry in force as a new one, so that an
	// instance starting later replays only the events after it: 0 (the
	// default) is 10,000 or a tenth of the registry's consents and
	// erasures, whichever is more; -1 never stores one.
	SnapshotEvery int `yaml:"snapshot_every"`
}

// Erasure tunes the erasure notices sent to recipients (GDPR Art. 19).
type Erasure struct {
	// EscalateAfter is how long a notice may stay unacknowledged before it
	// is escalated (audited and logged for an officer); it is still retried.
	EscalateAfter time.Duration `yaml:"escalate_after"`
}

// SubjectKeys tunes the cache of per-subject data keys (crypto-shredding).
type SubjectKeys struct {
	// CacheSize bounds how many unwrapped subject keys one instance keeps.
	CacheSize int `yaml:"cache_size"`
	// CacheTTL bounds how long a key is used from the cache, and so how long
	// an instance that missed a destruction broadcast can go on sealing or
	// opening with a destroyed key.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// Store, when set, holds the subject key table in place of the store
	// section's: regions that send each other transfers must read one key
	// table, while each keeps its own audit log and registry.
	Store *Store `yaml:"store"`
}

// The bounds Validate enforces on the live-policy keys.
const (
	minSyncTimeout   = 10 * time.Millisecond
	maxSyncTimeout   = time.Minute
	maxSnapshotEvery = 100_000_000
	minEscalateAfter = time.Minute
	// maxEscalateAfter: Art. 12(3) gives a controller one month to act on
	// an erasure request.
	maxEscalateAfter = 31 * 24 * time.Hour
	maxCacheSize     = 10_000_000
	minCacheTTL      = time.Second
	maxCacheTTL      = 24 * time.Hour
)

func (l LivePolicy) validate(p string) []error {
	var errs []error
	if l.SyncTimeout < minSyncTimeout || l.SyncTimeout > maxSyncTimeout {
		errs = append(errs, fieldErr(p+".sync_timeout", "must be 10ms to 1m"))
	}
	if l.SnapshotEvery < -1 || l.SnapshotEvery > maxSnapshotEvery {
		errs = append(errs, fieldErr(p+".snapshot_every", "must be -1 (never), 0 (the default) or up to 100000000 events"))
	}
	return errs
}

func (e Erasure) validate(p string) []error {
	if e.EscalateAfter < minEscalateAfter || e.EscalateAfter > maxEscalateAfter {
		return []error{fieldErr(p+".escalate_after", "must be 1m to 744h (one month)")}
	}
	return nil
}

func (s SubjectKeys) validate(p string) []error {
	var errs []error
	if s.CacheSize < 1 || s.CacheSize > maxCacheSize {
		errs = append(errs, fieldErr(p+".cache_size", "must be 1 to 10000000"))
	}
	if s.CacheTTL < minCacheTTL || s.CacheTTL > maxCacheTTL {
		errs = append(errs, fieldErr(p+".cache_ttl", "must be 1s to 24h"))
	}
	if s.Store != nil {
		errs = append(errs, s.Store.validate(p+".store")...)
	}
	return errs
}
