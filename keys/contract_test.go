package keys

import "context"

// keyService is the contract the broker and the audit log build on (team
// contract for issue 3); both implementations must satisfy it.
type keyService interface {
	Seal(ctx context.Context, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, sealed []byte) ([]byte, error)
	Sign(ctx context.Context, payloads [][]byte) ([][]byte, error)
	Verify(ctx context.Context, jws []byte) ([]byte, error)
	SealFor(ctx context.Context, recipientJWK []byte, payloads [][]byte) ([][]byte, error)
	JWKS(ctx context.Context) ([]byte, error)
	KeyRef() string
}

var (
	_ keyService = (*Vault)(nil)
	_ keyService = (*DevKeyRing)(nil)
)
