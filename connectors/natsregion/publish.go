package natsregion

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// retryWait is the pause before a publish that no stream answered is sent
// again (jetstream.WithRetryWait's default).
const retryWait = 250 * time.Millisecond

// pubAck is the part of a stream's acknowledgement the connector reads.
type pubAck struct {
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// pubAckResponse is a stream's answer to a publish, read whole.
type pubAckResponse struct {
	Error *jetstream.APIError `json:"error,omitempty"`
	pubAck
}

// publish sends m to the region's stream and waits for its acknowledgement.
// It speaks the protocol of jetstream.PublishMsg with the connector's
// options (the Nats-Expected-Stream header, NoResponderRetries retries
// 250 ms apart on no responders) and returns the same errors for classify:
// jetstream.ErrNoStreamResponse, a *jetstream.APIError, ErrInvalidJSAck or
// the request's error. It differs in cost only: no options are built per
// message, and an acknowledgement of the usual form is read without
// reflection (readPubAck).
//
// m carries its Nats-Expected-Stream header already (Region.message).
func (r *Region) publish(ctx context.Context, m *nats.Msg) (pubAck, error) {
	resp, err := r.nc.RequestMsgWithContext(ctx, m)
	for try := 0; errors.Is(err, nats.ErrNoResponders) && try < r.cfg.NoResponderRetries; try++ {
		// A stream between leaders answers nobody for a moment.
		t := time.NewTimer(retryWait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		resp, err = r.nc.RequestMsgWithContext(ctx, m)
	}
	if errors.Is(err, nats.ErrNoResponders) {
		return pubAck{}, jetstream.ErrNoStreamResponse
	}
	if err != nil {
		return pubAck{}, err
	}
	return readPubAck(resp.Data, r.cfg.Stream)
}

// readPubAck reads a stream's answer to a publish. The answers a server
// writes for a single publish (readUsualPubAck) are read by hand; any
// other (an error, a field a newer server adds, escapes in a name) goes
// through encoding/json, as jetstream.PublishMsg reads them all.
// stream is the name the answer is expected to carry ("" for any); it
// spares a copy of the name when the answer carries it.
func readPubAck(data []byte, stream string) (pubAck, error) {
	if ack, ok := readUsualPubAck(data, stream); ok {
		return ack, nil
	}
	var resp pubAckResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	if resp.Error != nil {
		return pubAck{}, fmt.Errorf("nats: %w", resp.Error)
	}
	if resp.Stream == "" {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	return resp.pubAck, nil
}

var (
	ackStream = []byte(`{"stream":"`)
	ackDomain = []byte(`","domain":"`)
	ackSeq    = []byte(`","seq":`)
	// The server writes a space in this one (nats-server's stream.go).
	ackDuplicate      = []byte(`,"duplicate": true}`)
	ackDuplicateTight = []byte(`,"duplicate":true}`)
)

// readUsualPubAck reads the answers a server writes for a single publish,
// {"stream":"S","seq":N}, with "domain":"D" between the two in a
// JetStream domain, and ,"duplicate": true (or without the space) before
// the brace for a repeat, where S and D are non-empty names of printable
// ASCII without quote or backslash and N a decimal uint64 without leading
// zeros. It says false for anything else.
func readUsualPubAck(data []byte, stream string) (pubAck, bool) {
	rest, ok := bytes.CutPrefix(data, ackStream)
	if !ok {
		return pubAck{}, false
	}
	name, rest, ok := ackName(rest)
	if !ok {
		return pubAck{}, false
	}
	if after, found := bytes.CutPrefix(rest, ackDomain); found {
		if _, rest, ok = ackName(after); !ok {
			return pubAck{}, false
		}
	}
	if rest, ok = bytes.CutPrefix(rest, ackSeq); !ok {
		return pubAck{}, false
	}
	var seq uint64
	digits := 0
	for ; digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9'; digits++ {
		d := uint64(rest[digits] - '0')
		if seq > (math.MaxUint64-d)/10 {
			return pubAck{}, false
		}
		seq = seq*10 + d
	}
	if digits == 0 || (digits > 1 && rest[0] == '0') {
		return pubAck{}, false
	}
	ack := pubAck{Stream: stream, Sequence: seq}
	if string(name) != stream {
		ack.Stream = string(name)
	}
	switch tail := rest[digits:]; {
	case len(tail) == 1 && tail[0] == '}':
	case bytes.Equal(tail, ackDuplicate), bytes.Equal(tail, ackDuplicateTight):
		ack.Duplicate = true
	default:
		return pubAck{}, false
	}
	return ack, true
}

// ackName reads a name up to its closing quote: non-empty, printable ASCII
// without backslash. It returns the name and what follows from the quote
// on.
func ackName(b []byte) (name, rest []byte, ok bool) {
	end := bytes.IndexByte(b, '"')
	if end <= 0 {
		return nil, nil, false
	}
	for _, c := range b[:end] {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return nil, nil, false
		}
	}
	return b[:end], b[end:], true
}
