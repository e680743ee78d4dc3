package broker

import (
	"context"
	"errors"

	"github.com/clearance-broker/clearance/shred"
)

// SubjectSealer seals what the broker keeps of a request (its dead letter)
// under the data subject's own key, so that erasing the subject destroys
// every kept copy (crypto-shredding). It returns shred.ErrShredded for a
// subject whose key was destroyed. *shred.Keyring satisfies it.
type SubjectSealer interface {
	Seal(ctx context.Context, subject string, plaintext []byte) ([]byte, error)
}

// SubjectKeyRef is the key reference of payloads sealed under a subject's
// key.
const SubjectKeyRef = "subject-key"

// sealKept seals data for keeping: under the subject's key when
// Options.Subjects is set and the request names a subject, else under the
// broker's keys. For an erased subject nothing is kept (nil data).
func (b *Broker) sealKept(ctx context.Context, data []byte, res *result) ([]byte, string, error) {
	if b.opts.Subjects == nil || res.req == nil || res.req.Subject.ID == "" {
		sealed, err := b.keys.Seal(ctx, data)
		return sealed, b.keys.KeyRef(), err
	}
	sealed, err := b.opts.Subjects.Seal(ctx, res.req.Subject.ID, data)
	if errors.Is(err, shred.ErrShredded) {
		return nil, SubjectKeyRef, nil
	}
	return sealed, SubjectKeyRef, err
}

var _ SubjectSealer = (*shred.Keyring)(nil)
