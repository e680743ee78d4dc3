package broker

import (
	"context"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/connectors"
)

// Decider decides one parsed request at an instant. It must be safe for
// concurrent use and must not block; *agreements.Engine satisfies it.
type Decider interface {
	Decide(req *agreements.Request, at time.Time) *agreements.Decision
}

// DeciderInto is a Decider that can also write a decision into a Decision
// the caller reuses (*agreements.Engine does): the broker then keeps one
// Decision per message in work, from a pool, and deciding allocates nothing.
type DeciderInto interface {
	DecideInto(d *agreements.Decision, req *agreements.Request, at time.Time)
}

// Parties looks up a recipient party; it returns agreements.ErrUnknownParty
// for an id the registry does not define. It must be safe for concurrent
// use. PartiesOf adapts an *agreements.Engine.
type Parties interface {
	Party(id string) (agreements.Party, error)
}

// Sealer seals payloads. Seal produces an envelope that this broker's key
// service (and those sharing its keys, such as another region's Vault) can
// open; SealFor signs each payload and encrypts it to a party's public JWK.
// Errors wrapping keys.ErrUnavailable are transient; other key errors are
// permanent. Implementations are safe for concurrent use.
type Sealer interface {
	Seal(ctx context.Context, plaintext []byte) ([]byte, error)
	SealFor(ctx context.Context, recipientJWK []byte, payloads [][]byte) ([][]byte, error)
	KeyRef() string
}

// SealAppender is a Sealer that can append its envelope to a buffer the
// broker gives it, so that the broker can reuse its buffers; *keys.Vault and
// *keys.DevKeyRing are.
type SealAppender interface {
	SealAppend(ctx context.Context, dst, plaintext []byte) ([]byte, error)
}

// Opener opens envelopes sealed by Seal with shared keys.
type Opener interface {
	Open(ctx context.Context, sealed []byte) ([]byte, error)
}

// KeySet publishes the broker's live verification keys as a JSON JWK set.
type KeySet interface {
	JWKS(ctx context.Context) ([]byte, error)
}

// Keys is everything the broker asks of the key service; *keys.Vault and
// *keys.DevKeyRing satisfy it.
type Keys interface {
	Sealer
	Opener
	KeySet
}

// AuditLog appends entries. Append returns only once the entry is durable
// and is safe for concurrent use; *audit.Log satisfies it. Append keeps
// nothing of e, its lists or its map once it has returned: the broker reuses
// them.
type AuditLog interface {
	Append(ctx context.Context, e *audit.Entry) (int64, error)
}

// ConnectorSet finds the connector configured under a name (the name a party
// gives in the registry). It must be safe for concurrent use.
type ConnectorSet interface {
	Connector(name string) (connectors.Connector, bool)
}

// ConnectorMap is a fixed ConnectorSet.
type ConnectorMap map[string]connectors.Connector

// Connector implements ConnectorSet.
func (m ConnectorMap) Connector(name string) (connectors.Connector, bool) {
	c, ok := m[name]
	return c, ok
}

// Close closes every connector, returning every error.
func (m ConnectorMap) Close(ctx context.Context) error {
	var errs []error
	for _, c := range m {
		if err := c.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return joinErrs(errs)
}

// RequiresPartyKey marks c as a connector whose recipients can only read
// payloads encrypted to their own public key (webhook partners): the broker
// then refuses, permanently, a recipient without a public key instead of
// sending it an envelope it cannot open. Main wraps connectors by kind.
func RequiresPartyKey(c connectors.Connector) connectors.Connector { return partyKeyed{c} }

type partyKeyed struct{ connectors.Connector }

// NeedsPartyKey reports whether c was wrapped by RequiresPartyKey.
func NeedsPartyKey(c connectors.Connector) bool {
	_, ok := c.(partyKeyed)
	return ok
}

// PartiesOf returns the Parties of the engine's current registry, so that a
// registry update reaches party lookups too.
func PartiesOf(e *agreements.Engine) Parties { return engineParties{e} }

type engineParties struct{ e *agreements.Engine }

func (p engineParties) Party(id string) (agreements.Party, error) { return p.e.Registry().Party(id) }

var (
	_ Decider              = (*agreements.Engine)(nil)
	_ AuditLog             = (*audit.Log)(nil)
	_ ConnectorSet         = ConnectorMap(nil)
	_ Parties              = engineParties{}
	_ connectors.Connector = partyKeyed{}
)
