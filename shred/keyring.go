package shred

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/clearance-broker/clearance/audit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/uptrace/bun"
)

// Errors of the keyring.
var (
	// ErrShredded: the subject's key was destroyed; what was sealed for
	// the subject can never be opened again, and nothing new is sealed.
	ErrShredded = errors.New("shred: the subject's key was destroyed")
	// ErrMalformed: the input is not a subject envelope.
	ErrMalformed = errors.New("shred: not a subject envelope")
	// ErrUnknownKey: the envelope was sealed under a subject key this
	// keyring's store does not hold, neither live nor destroyed: the store
	// is not the one the sealing instance used (each region its own, where
	// regions must share one; see the package documentation), or a replica
	// of it that has not caught up yet. Unlike ErrShredded it says nothing
	// of an erasure, and may pass.
	ErrUnknownKey = errors.New("shred: the subject's key is not in this store")
)

// EventKeyDestroyed is the audit event that proves a shredding: key id,
// time and scope.
const EventKeyDestroyed audit.Event = "subject_key_destroyed"

// invalidateSubject is the NATS subject on which a destroyed key's subject
// HMAC is broadcast, so that every instance forgets it at once.
const invalidateSubject = "clearance.shred.destroyed"

// KeyService seals the subject keys (Vault transit envelope encryption, or
// the development key ring); *keys.Vault and *keys.DevKeyRing satisfy it.
type KeyService interface {
	Seal(ctx context.Context, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, sealed []byte) ([]byte, error)
	KeyRef() string
}

// AuditLog appends entries durably; *audit.Log satisfies it.
type AuditLog interface {
	Append(ctx context.Context, e *audit.Entry) (int64, error)
}

// Options configures a Keyring. DB, Keys, Audit and SubjectKey are
// required.
type Options struct {
	DB    *bun.DB
	Keys  KeyService
	Audit AuditLog
	// SubjectKey is the audit log's subject HMAC key.
	SubjectKey []byte
	// NATS, when set, carries destroyed keys to every instance's cache.
	NATS *nats.Conn
	// CacheSize bounds the cached subject keys (default 100000).
	CacheSize int
	// CacheTTL bounds how long a key is used from the cache, and so how
	// long an instance that missed a destruction broadcast can go on
	// sealing or opening with it (default 5m).
	CacheTTL time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// Keyring seals and opens payloads under per-subject keys. It is safe for
// concurrent use, also by instances sharing one database.
type Keyring struct {
	opts   Options
	log    *slog.Logger
	cache  *cache
	flight flight
	sub    *nats.Subscription

	hits, misses atomic.Uint64
}

// keyRow is one subject's key: sealed by the key service while it lives,
// empty once destroyed.
type keyRow struct {
	bun.BaseModel `bun:"table:shred_subject_keys"`

	SubjectHMAC string    `bun:"subject_hmac,pk"`
	KeyID       string    `bun:"key_id,notnull"`
	Wrapped     string    `bun:"wrapped,notnull"`
	KeyRef      string    `bun:"key_ref,notnull"`
	CreatedAt   time.Time `bun:"created_at,notnull"`
	DestroyedAt time.Time `bun:"destroyed_at,nullzero"`
	Scope       string    `bun:"scope,notnull"`
}

// Open migrates the subject key table and returns a Keyring; Close
// releases it.
func Open(ctx context.Context, opts Options) (*Keyring, error) {
	var errs []error
	for name, missing := range map[string]bool{
		"DB": opts.DB == nil, "Keys": opts.Keys == nil, "Audit": opts.Audit == nil, "SubjectKey": len(opts.SubjectKey) == 0,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("shred: options: %s is required", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 100000
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := migrateSchema(ctx, opts.DB); err != nil {
		return nil, err
	}
	k := &Keyring{opts: opts, log: opts.Logger.With("component", "shred"), cache: newCache(opts.CacheSize, opts.CacheTTL)}
	if opts.NATS != nil {
		sub, err := opts.NATS.Subscribe(invalidateSubject, k.heardDestroyed)
		if err != nil {
			return nil, fmt.Errorf("shred: subscribe to destructions: %w", err)
		}
		k.sub = sub
	}
	return k, nil
}

// heardDestroyed forgets the key another instance destroyed, whose subject
// HMAC m carries, including the key a load running here may have read
// before the destruction.
func (k *Keyring) heardDestroyed(m *nats.Msg) { k.cache.forget(string(m.Data)) }

// Close stops listening for destructions.
func (k *Keyring) Close() {
	if k.sub != nil {
		_ = k.sub.Unsubscribe()
	}
}

// CacheStats returns how many key lookups the cache answered and how many
// went to the store and the key service.
func (k *Keyring) CacheStats() (hits, misses uint64) { return k.hits.Load(), k.misses.Load() }

// Seal encrypts plaintext under subject's key, creating the key on first
// use. A subject whose key was destroyed gets ErrShredded.
func (k *Keyring) Seal(ctx context.Context, subject string, plaintext []byte) ([]byte, error) {
	sh := audit.SubjectHMAC(k.opts.SubjectKey, subject)
	key, err := k.key(ctx, sh, true)
	if err != nil {
		return nil, err
	}
	if key.destroyed {
		return nil, ErrShredded
	}
	return seal(key, sh, plaintext)
}

// Open decrypts an envelope sealed by Seal on any instance that shares
// this keyring's store; ErrShredded when the subject's key was destroyed,
// ErrUnknownKey when the store holds no key of that id for the subject,
// ErrMalformed for anything else that does not open.
func (k *Keyring) Open(ctx context.Context, sealed []byte) ([]byte, error) {
	env, err := parse(sealed)
	if err != nil {
		return nil, err
	}
	key, err := k.key(ctx, env.h.SH, false)
	if err != nil {
		return nil, err
	}
	switch {
	case key.destroyed:
		return nil, ErrShredded
	case key.kid != env.h.SKID:
		// A subject has one key in a store from its first seal on (a
		// destruction keeps its id), so another live key means another
		// store.
		return nil, ErrUnknownKey
	}
	return open(key, env)
}

// key returns subject sh's key from the cache or the store, creating it
// when create is set and there is none.
func (k *Keyring) key(ctx context.Context, sh string, create bool) (*subjectKey, error) {
	if key := k.cache.get(sh, k.opts.Now()); key != nil {
		k.hits.Add(1)
		return key, nil
	}
	k.misses.Add(1)
	return k.flight.do(ctx, flightKey{sh: sh, create: create}, func(ctx context.Context) (*subjectKey, error) {
		for {
			gen := k.cache.begin(sh)
			key, err := k.load(ctx, sh, create)
			if key = k.cache.finish(sh, gen, key, k.opts.Now()); key != nil || err != nil {
				return key, err
			}
			// The subject was erased while its key was loaded (here or
			// on another instance): the live key read may be from before
			// the erasure, so it is read again, after it.
		}
	})
}

// load reads subject sh's key from the store and unwraps it, creating it
// first when create is set and there is none.
func (k *Keyring) load(ctx context.Context, sh string, create bool) (*subjectKey, error) {
	var row keyRow
	err := k.opts.DB.NewSelect().Model(&row).Where("subject_hmac = ?", sh).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		if !create {
			return nil, ErrUnknownKey
		}
		if err = k.create(ctx, sh); err == nil {
			err = k.opts.DB.NewSelect().Model(&row).Where("subject_hmac = ?", sh).Scan(ctx)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("shred: read subject key: %w", err)
	}
	if !row.DestroyedAt.IsZero() || row.Wrapped == "" {
		return &subjectKey{kid: row.KeyID, destroyed: true}, nil
	}
	dek, err := k.opts.Keys.Open(ctx, []byte(row.Wrapped))
	if err != nil {
		return nil, fmt.Errorf("shred: unwrap subject key: %w", err)
	}
	defer clear(dek)
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	return &subjectKey{kid: row.KeyID, aead: aead}, nil
}

// create stores a new key for sh unless another instance just did.
func (k *Keyring) create(ctx context.Context, sh string) error {
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return fmt.Errorf("shred: new subject key: %w", err)
	}
	defer clear(dek)
	wrapped, err := k.opts.Keys.Seal(ctx, dek)
	if err != nil {
		return fmt.Errorf("shred: wrap subject key: %w", err)
	}
	row := &keyRow{SubjectHMAC: sh, KeyID: "sk-" + nuid.Next(), Wrapped: string(wrapped), KeyRef: k.opts.Keys.KeyRef(),
		CreatedAt: k.opts.Now().UTC()}
	if _, err := k.opts.DB.NewInsert().Model(row).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
		return fmt.Errorf("shred: store subject key: %w", err)
	}
	return nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("shred: cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("shred: cipher: %w", err)
	}
	return aead, nil
}
