package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/keys"
	"github.com/clearance-broker/clearance/shred"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers a dead letter brought up to a new key version carries (on top of
// its own): when it was first dead-lettered (its stream time is the
// rewrap's), and the sequence it replaced.
const (
	DeadLetteredAtHeader = "Clearance-Dead-Lettered-At"
	RewrappedFromHeader  = "Clearance-Rewrapped-From"
)

// DeadLetterRewrapStats counts what RewrapDeadLetters did.
type DeadLetterRewrapStats struct {
	// Read is how many dead letters were looked at.
	Read int `json:"read"`
	// Rewrapped is how many were published again under the latest
	// version of the encryption key, and their old copy deleted (or only
	// deleted, when an earlier run had published its copy).
	Rewrapped int `json:"rewrapped"`
	// Current is how many were under it already.
	Current int `json:"current"`
	// SubjectKeyed is how many are sealed under a subject's key: that
	// key, not the dead letter, is brought up (shred.RewrapKeys).
	SubjectKeyed int `json:"subject_keyed"`
	// Empty is how many hold nothing (their subject was erased, or the
	// request named several).
	Empty int `json:"empty"`
	// Gone is how many were deleted by someone else while being
	// rewrapped; their new copy is deleted too.
	Gone int `json:"gone,omitempty"`
	// Failed names, by stream sequence, the dead letters the key service
	// would not rewrap for their own sake (altered, sealed under another
	// key, under a version retired already); they are left as they are.
	Failed []uint64 `json:"failed,omitempty"`
}

// RewrapDeadLetters brings the dead letters sealed under the broker's own
// data keys (those of requests naming no subject, or of a broker without
// subject keys, and regional copies received under the shared key) up to
// the latest version of the encryption key, batch at a time, so that
// retiring the older versions (Vault's min_decryption_version) does not
// make them unreadable. A stream message cannot be changed: each is
// published again on its subject, with its headers and DeadLetteredAtHeader
// and RewrappedFromHeader, and its old copy is deleted, so its sequence
// changes. The content is re-sealed inside this process under its same data
// key (keys.Vault.Rewrap): nothing is printed or kept.
//
// It walks the stream as it stands when it starts. An instance seals with
// a data key it took before a rotation for up to its data_key_max_age, so
// run it once that has passed since the rotation, or again before the
// version is retired. It can be run again at any time: a dead letter whose
// copy an earlier run published (found by RewrappedFromHeader) is only
// deleted, so that a run stopped between a publication and its deletion
// leaves one copy in the end. One deleted by someone else while it is
// rewrapped is not brought back: its copy is deleted too (Gone). Like
// shred.RewrapKeys it goes on past the dead letters refused for their own
// sake (named in Failed, and an error at the end that keys.KeyFault
// matches), and stops at any other refusal. Without a dead-letter stream
// there is nothing to do.
func RewrapDeadLetters(ctx context.Context, js jetstream.JetStream, rw keys.Rewrapper, batch int, progress func(DeadLetterRewrapStats)) (DeadLetterRewrapStats, error) {
	var st DeadLetterRewrapStats
	if batch <= 0 {
		batch = 100
	}
	s, err := js.Stream(ctx, DeadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("broker: rewrap dead letters: stream %s: %w", DeadLetterStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("broker: rewrap dead letters: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	// The dead letters an earlier run published a copy of, by the copy's
	// subject and request id, which the old one's must match.
	copied := map[uint64]string{}
	err = eachDeadLetter(ctx, s, first, last, func(m *jetstream.RawStreamMsg) error {
		if from, err := strconv.ParseUint(m.Header.Get(RewrappedFromHeader), 10, 64); err == nil {
			copied[from] = copyKey(m)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	var firstFault error
	var msgs []*jetstream.RawStreamMsg
	var sealed [][]byte
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		defer func() { msgs, sealed = msgs[:0], sealed[:0] }()
		out, fault, err := keys.RewrapEach(ctx, rw, sealed)
		if err != nil {
			return fmt.Errorf("broker: rewrap dead letters: %w", err)
		}
		firstFault = cmp.Or(firstFault, fault)
		for i, m := range msgs {
			switch {
			case out[i] == nil:
				st.Failed = append(st.Failed, m.Sequence)
			case string(out[i]) == string(m.Data):
				st.Current++
			default:
				gone, err := replaceDeadLetter(ctx, js, s, m, out[i])
				if err != nil {
					return err
				}
				if gone {
					st.Gone++
				} else {
					st.Rewrapped++
				}
			}
		}
		if progress != nil {
			progress(st)
		}
		return nil
	}
	err = eachDeadLetter(ctx, s, first, last, func(m *jetstream.RawStreamMsg) error {
		st.Read++
		switch {
		case copied[m.Sequence] != "" && copied[m.Sequence] == copyKey(m):
			// Published again by a run that stopped before it deleted it.
			if err := s.DeleteMsg(ctx, m.Sequence); err != nil && !notFound(err) {
				return fmt.Errorf("broker: rewrap dead letter %d: delete the old copy: %w", m.Sequence, err)
			}
			st.Rewrapped++
		case len(m.Data) == 0:
			st.Empty++
		case shred.IsEnvelope(m.Data):
			st.SubjectKeyed++
		default:
			msgs, sealed = append(msgs, m), append(sealed, m.Data)
			if len(msgs) == batch {
				return flush()
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return st, err
	}
	if progress != nil {
		progress(st)
	}
	if firstFault != nil {
		return st, fmt.Errorf("broker: rewrap dead letters: %d left as they were (first: %w)", len(st.Failed), firstFault)
	}
	return st, nil
}

// copyKey is what a dead letter and its copy have in common: the subject
// and the request id.
func copyKey(m *jetstream.RawStreamMsg) string {
	return m.Subject + " " + m.Header.Get("Clearance-Request-Id")
}

// eachDeadLetter calls fn with each message of s from first to last.
func eachDeadLetter(ctx context.Context, s jetstream.Stream, first, last uint64, fn func(*jetstream.RawStreamMsg) error) error {
	for seq := max(first, 1); seq <= last; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("broker: rewrap dead letters: read %d: %w", seq, err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// replaceDeadLetter publishes m again with data and deletes m. Its message
// id names the sequence it replaces, in a form no dead letter the broker
// writes takes ("dl-<stream>-<seq>": stream names hold no dot), so that
// one published again within the duplicate window is the earlier run's
// copy, which is checked. It reports gone when m was deleted meanwhile by
// someone else: its copy is deleted too, rather than bring it back.
func replaceDeadLetter(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, m *jetstream.RawStreamMsg, data []byte) (gone bool, err error) {
	from := strconv.FormatUint(m.Sequence, 10)
	out := nats.NewMsg(m.Subject)
	out.Data = data
	for k, v := range m.Header {
		out.Header[k] = append([]string(nil), v...)
	}
	if out.Header.Get(DeadLetteredAtHeader) == "" {
		out.Header.Set(DeadLetteredAtHeader, m.Time.UTC().Format(time.RFC3339Nano))
	}
	out.Header.Set(RewrappedFromHeader, from)
	out.Header.Set(jetstream.MsgIDHeader, "dl.rewrap."+from)
	ack, err := js.PublishMsg(ctx, out, jetstream.WithExpectStream(DeadLetterStream))
	if err != nil {
		return false, fmt.Errorf("broker: rewrap dead letter %d: publish: %w", m.Sequence, err)
	}
	if ack.Duplicate {
		c, err := s.GetMsg(ctx, ack.Sequence)
		if err != nil || c.Header.Get(RewrappedFromHeader) != from {
			return false, fmt.Errorf("broker: rewrap dead letter %d: its message id is taken by %d, no copy of it: left as it was", m.Sequence, ack.Sequence)
		}
	}
	switch err := s.DeleteMsg(ctx, m.Sequence); {
	case notFound(err):
		if err := s.DeleteMsg(ctx, ack.Sequence); err != nil && !notFound(err) {
			return false, fmt.Errorf("broker: rewrap dead letter %d, deleted meanwhile: delete its copy %d: %w", m.Sequence, ack.Sequence, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("broker: rewrap dead letter %d: delete the old copy (its copy is %d; a run again deletes it): %w", m.Sequence, ack.Sequence, err)
	}
	return false, nil
}

// notFound reports whether err says the message is not in the stream: a
// read answers ErrMsgNotFound, a deletion ErrMsgDeleteUnsuccessful with
// the server's "sequence not found" (10043) in its text only.
func notFound(err error) bool {
	return errors.Is(err, jetstream.ErrMsgNotFound) ||
		errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && strings.Contains(err.Error(), "err_code=10043")
}

// DeadLetteredAt is when m was dead-lettered: DeadLetteredAtHeader once it
// was rewrapped, else its stream time.
func DeadLetteredAt(m *jetstream.RawStreamMsg) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, m.Header.Get(DeadLetteredAtHeader)); err == nil {
		return t
	}
	return m.Time
}
