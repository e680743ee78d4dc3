package broker_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats.go"
)

// whiteSpaceReason is the reason a request id with white space at either
// end is refused with.
const whiteSpaceReason = "invalid_request: id: the request id begins or ends with white space; send it without (it is not trimmed)"

// withID returns the example delivery request under request id id.
func withID(t *testing.T, id string) []byte {
	t.Helper()
	quoted, _ := json.Marshal(id)
	return bytes.Replace(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"), []byte(`"ord-10023-delivery"`), quoted, 1)
}

// TestRequestIDWithWhiteSpaceOverHTTP posts requests whose id begins or
// ends with white space: each is refused at once with 400, its receipt and
// audit entry under one generated id and a reason naming the id; nothing
// is recorded under the id as sent or trimmed.
func TestRequestIDWithWhiteSpaceOverHTTP(t *testing.T) {
	e := newEnv(t, 5)
	tests := []struct {
		name string
		id   string
	}{
		{"leading space", " ord-ws-1"},
		{"trailing space", "ord-ws-2 "},
		{"both", " ord-ws-3 "},
		{"no-break space", "ord-ws-4\u00a0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, body := e.post(t, withID(t, tt.id))
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("answered after %s", took)
			}
			var r broker.Receipt
			if err := json.Unmarshal(body, &r); err != nil || code != http.StatusBadRequest {
				t.Fatalf("POST = %d %s", code, body)
			}
			if r.Status != broker.StatusRejected || len(r.Reasons) != 1 || r.Reasons[0] != whiteSpaceReason || !strings.HasPrefix(r.RequestID, "http-") {
				t.Fatalf("receipt %+v", r)
			}
			es := e.entries(t, r.RequestID)
			if events(es) != "rejected" || len(es[0].Reasons) != 1 || es[0].Reasons[0] != whiteSpaceReason {
				t.Fatalf("audit of %s: %+v", r.RequestID, es)
			}
			for _, id := range []string{tt.id, strings.TrimSpace(tt.id)} {
				if es := e.entries(t, id); len(es) != 0 {
					t.Errorf("audit entries under %q: %s", id, events(es))
				}
			}
		})
	}
	t.Run("with other problems", func(t *testing.T) {
		code, body := e.post(t, []byte(`{"id":" ord-ws-7 ","source":"order-service"}`))
		var r broker.Receipt
		if err := json.Unmarshal(body, &r); err != nil || code != http.StatusBadRequest || r.Status != broker.StatusRejected {
			t.Fatalf("POST = %d %s", code, body)
		}
		if !slices.Contains(r.Reasons, whiteSpaceReason) || len(r.Reasons) < 2 {
			t.Errorf("reasons %q lack the id's", r.Reasons)
		}
	})
	t.Run("in a batch", func(t *testing.T) {
		batch := append(append([]byte("["), withID(t, "ord-ws-5")...), ',')
		batch = append(append(batch, withID(t, "ord-ws-6 ")...), ']')
		code, body := e.post(t, batch)
		var rs []broker.Receipt
		if err := json.Unmarshal(body, &rs); err != nil || code != http.StatusOK || len(rs) != 2 {
			t.Fatalf("POST = %d %s", code, body)
		}
		if rs[0].RequestID != "ord-ws-5" || rs[0].Status != broker.StatusDelivered {
			t.Errorf("good request: %+v", rs[0])
		}
		if rs[1].Status != broker.StatusRejected || len(rs[1].Reasons) != 1 || rs[1].Reasons[0] != whiteSpaceReason {
			t.Errorf("request with white space: %+v", rs[1])
		}
	})
}

// TestRequestIDWithWhiteSpaceOverNATS publishes requests whose id begins or
// ends with white space: each is rejected for that, not accepted under it
// nor refused for differing from its (trimmed) Nats-Msg-Id header.
func TestRequestIDWithWhiteSpaceOverNATS(t *testing.T) {
	e := newEnv(t, 5)
	receipts := make(chan *nats.Msg, 4)
	sub, err := e.nc.ChanSubscribe("clearance.receipts.order-service", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	tests := []struct {
		name, id, header string
	}{
		{"header and body", " ord-ws-n1", " ord-ws-n1"},
		{"header trimmed", "ord-ws-n2 ", "ord-ws-n2"},
		{"no header", "ord-ws-n3 ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.publishAwait(t, receipts, withID(t, tt.id), tt.header)
			if r.Status != broker.StatusRejected || len(r.Reasons) != 1 || r.Reasons[0] != whiteSpaceReason {
				t.Fatalf("receipt %+v", r)
			}
			if es := e.entries(t, r.RequestID); events(es) != "rejected" {
				t.Errorf("audit of %q: %s", r.RequestID, events(es))
			}
			if len(e.partner.Received()) != 0 {
				t.Error("the partner received a request refused for its id")
			}
		})
	}
}

// TestRequestIDInboundPrefixReserved: a producer may not send a request id
// under a prefix others' refusals are audited under: a receiving region's
// (broker.InboundRejectionPrefix) or the rights intake's
// (policy.RejectionPrefix), which would take such a refusal's final
// outcome from it.
func TestRequestIDInboundPrefixReserved(t *testing.T) {
	e := newEnv(t, 5)
	tests := []struct {
		name, id string
	}{
		{"inbound region", broker.InboundRejectionPrefix + "ord-1"},
		{"rights intake", policy.RejectionPrefix + "ord-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.post(t, withID(t, tt.id))
			var r broker.Receipt
			if err := json.Unmarshal(body, &r); err != nil || code != http.StatusBadRequest || r.Status != broker.StatusRejected {
				t.Fatalf("POST = %d %s", code, body)
			}
			if len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "reserved") {
				t.Errorf("reasons %q", r.Reasons)
			}
			if es := e.entries(t, tt.id); len(es) != 0 {
				t.Errorf("audit entries under %q: %s", tt.id, events(es))
			}
		})
	}
}
