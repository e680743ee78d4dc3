package erasure_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/erasure"
)

func TestAcknowledgeRefuses(t *testing.T) {
	ring := brokertest.DevKeys(t, filepath.Join(t.TempDir(), "ring.json"))
	other := brokertest.DevKeys(t, filepath.Join(t.TempDir(), "other.json"))
	log, db := brokertest.OpenAudit(t, brokertest.SQLiteDSN(t), ring)
	reg := brokertest.ExampleRegistry(t, nil)
	n, err := erasure.New(t.Context(), erasure.Options{
		DB: db, Audit: log, Keys: ring, Verifier: ring, SubjectKey: brokertest.SubjectKey,
		Connectors: broker.ConnectorMap{}, Parties: func() erasure.Parties { return reg },
	})
	if err != nil {
		t.Fatal(err)
	}
	signed := func(t *testing.T, byOther bool, a erasure.AckPayload) []byte {
		t.Helper()
		b, _ := json.Marshal(a)
		signer := ring
		if byOther {
			signer = other
		}
		out, err := signer.Sign(t.Context(), [][]byte{b})
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	tests := []struct {
		name string
		ack  func(t *testing.T) []byte
	}{
		{"not a JWS", func(*testing.T) []byte { return []byte("not.a.jws") }},
		{"signed by another key", func(t *testing.T) []byte {
			return signed(t, true, erasure.AckPayload{Kind: erasure.AckKind, NoticeID: "erasure-x", Recipient: "dc-tokyo"})
		}},
		{"wrong kind", func(t *testing.T) []byte {
			return signed(t, false, erasure.AckPayload{Kind: erasure.NoticeKind, NoticeID: "erasure-x", Recipient: "dc-tokyo"})
		}},
		{"unknown notice", func(t *testing.T) []byte {
			return signed(t, false, erasure.AckPayload{Kind: erasure.AckKind, NoticeID: "erasure-x", Recipient: "dc-tokyo"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := n.Acknowledge(t.Context(), tt.ack(t)); !errors.Is(err, erasure.ErrBadAck) {
				t.Fatalf("Acknowledge = %v, want ErrBadAck", err)
			}
		})
	}
}
