package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
	// version of the encryption key, and their old copy deleted.
	Rewrapped int `json:"rewrapped"`
	// Current is how many were under it already.
	Current int `json:"current"`
	// SubjectKeyed is how many are sealed under a subject's key: that
	// key, not the dead letter, is brought up (shred.RewrapKeys).
	SubjectKeyed int `json:"subject_keyed"`
	// Empty is how many hold nothing (their subject was erased).
	Empty int `json:"empty"`
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
// key (keys.Vault.Rewrap): nothing is printed or kept. Dead letters added
// during the walk are left (they are sealed under the latest version). A
// run stopped between a publication and its deletion is made good by the
// next within the stream's duplicate window; after it, both copies stay
// and the older no longer opens once its version is retired. Like
// shred.RewrapKeys it can be run again at any time, goes on past the dead
// letters refused for their own sake (named in Failed, and an error at the
// end), and stops at any other refusal. Without a dead-letter stream there
// is nothing to do.
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
	var firstFault error
	for seq, last := info.State.FirstSeq, info.State.LastSeq; seq <= last && seq > 0; {
		var msgs []*jetstream.RawStreamMsg
		var sealed [][]byte
		for ; seq <= last && len(msgs) < batch; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return st, fmt.Errorf("broker: rewrap dead letters: read %d: %w", seq, err)
			}
			st.Read++
			switch {
			case len(m.Data) == 0:
				st.Empty++
			case shred.IsEnvelope(m.Data):
				st.SubjectKeyed++
			default:
				msgs, sealed = append(msgs, m), append(sealed, m.Data)
			}
		}
		if len(msgs) > 0 {
			out, fault, err := keys.RewrapEach(ctx, rw, sealed)
			if err != nil {
				return st, fmt.Errorf("broker: rewrap dead letters: %w", err)
			}
			if fault != nil && firstFault == nil {
				firstFault = fault
			}
			for i, m := range msgs {
				switch {
				case out[i] == nil:
					st.Failed = append(st.Failed, m.Sequence)
				case string(out[i]) == string(m.Data):
					st.Current++
				default:
					if err := replaceDeadLetter(ctx, js, s, m, out[i]); err != nil {
						return st, err
					}
					st.Rewrapped++
				}
			}
		}
		if progress != nil {
			progress(st)
		}
	}
	if firstFault != nil {
		return st, fmt.Errorf("broker: rewrap dead letters: %d left as they were (first: %w)", len(st.Failed), firstFault)
	}
	return st, nil
}

// replaceDeadLetter publishes m again with data and deletes m. Its message
// id is the sequence it replaces: a run again within the duplicate window,
// after one that published but did not delete, finds it published and
// deletes m.
func replaceDeadLetter(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, m *jetstream.RawStreamMsg, data []byte) error {
	out := nats.NewMsg(m.Subject)
	out.Data = data
	for k, v := range m.Header {
		out.Header[k] = append([]string(nil), v...)
	}
	if out.Header.Get(DeadLetteredAtHeader) == "" {
		out.Header.Set(DeadLetteredAtHeader, m.Time.UTC().Format(time.RFC3339Nano))
	}
	out.Header.Set(RewrappedFromHeader, strconv.FormatUint(m.Sequence, 10))
	out.Header.Set(jetstream.MsgIDHeader, "dl-rewrap-"+strconv.FormatUint(m.Sequence, 10))
	if _, err := js.PublishMsg(ctx, out, jetstream.WithExpectStream(DeadLetterStream)); err != nil {
		return fmt.Errorf("broker: rewrap dead letter %d: publish: %w", m.Sequence, err)
	}
	if err := s.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("broker: rewrap dead letter %d: delete the old copy: %w", m.Sequence, err)
	}
	return nil
}

// DeadLetteredAt is when m was dead-lettered: DeadLetteredAtHeader once it
// was rewrapped, else its stream time.
func DeadLetteredAt(m *jetstream.RawStreamMsg) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, m.Header.Get(DeadLetteredAtHeader)); err == nil {
		return t
	}
	return m.Time
}
