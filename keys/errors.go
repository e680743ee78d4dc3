package keys

import (
	"errors"
	"strings"
)

// ErrUnavailable is the transient error class: the key service (Vault) could
// not give a key because it is sealed, unreachable, overloaded or timed out.
// Nothing was sealed, opened or signed; the caller should retry later (the
// broker naks the message with a delay).
var ErrUnavailable = errors.New("key service unavailable")

// ErrPermissionDenied means Vault refused the operation: the token's
// policies lack the path, which lasts until an operator fixes the policy
// (see deploy/vault/clearance-policy.hcl), or Vault no longer knows the
// token (revoked, its uses spent), which the instance mends by taking a new
// one at once (token file read again, AppRole login), so that a retry
// a few seconds later succeeds.
var ErrPermissionDenied = errors.New("permission denied by the key service")

// ErrKeyRetired means the message was sealed or signed with a key version
// that has been retired (older than the key's min_decryption_version). It is
// permanent: the message can no longer be opened or verified.
var ErrKeyRetired = errors.New("key version retired")

// ErrMalformed means a sealed message or signature is not in the expected
// format (not a compact JWE with alg dir and enc A256GCM carrying a key
// reference and wrapped key, or not a compact JWS). It is permanent.
var ErrMalformed = errors.New("malformed sealed message")

// ErrNotAuthentic means a sealed message failed authentication (it was
// altered or sealed under another key) or a signature did not verify. It is
// permanent.
var ErrNotAuthentic = errors.New("message not authentic")

// ErrUnsupportedKey means a recipient JWK or a Vault key has a type this
// package cannot use (recipients: EC, OKP X25519 or RSA public keys;
// signing keys: ecdsa-p256 or ed25519). It is permanent.
var ErrUnsupportedKey = errors.New("unsupported key")

// ErrUntrustedServer means Vault's TLS certificate did not verify against
// the configured CA (tls.ca_file) or server name. It is a configuration
// problem, not an outage, and is permanent.
var ErrUntrustedServer = errors.New("vault certificate not trusted")

// ErrDevKeyRingNotAllowed is returned by NewDevKeyRing unless the caller
// explicitly allows the development key ring (only `clearance dev` does).
var ErrDevKeyRingNotAllowed = errors.New("development key ring not allowed here")

// keyError carries an operation, an error class (one of the sentinels above,
// or nil) and the cause. Its message never holds payload data.
type keyError struct {
	op    string
	class error
	cause error
}

func (e *keyError) Error() string {
	var b strings.Builder
	b.WriteString("keys: ")
	b.WriteString(e.op)
	if e.class != nil {
		b.WriteString(": ")
		b.WriteString(e.class.Error())
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	return b.String()
}

func (e *keyError) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.class != nil {
		errs = append(errs, e.class)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

func newError(op string, class, cause error) error {
	return &keyError{op: op, class: class, cause: cause}
}
