package hostile

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/broker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// validRequest is an allowed transfer of order.delivery to swiftship-de.
func validRequest(id string) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": id, "source": "order-service", "recipient": "swiftship-de", "purpose": "delivery",
		"dataset": "order.delivery", "subject": map[string]any{"id": "cust-" + id, "jurisdiction": "DE", "minor": false},
		"record": map[string]any{"order_id": "1", "name": "Hostile Canary", "address": "1 Hostile Road, Berlin"},
	})
	return b
}

// generatedHTTP: inputs too large to commit, or needing headers.
func (in *instance) generatedHTTP(t *testing.T, got map[string]answer) {
	t.Run("10MB body", func(t *testing.T) {
		body := append([]byte(`{"id":"hostile-10mb","record":{"blob":"`), bytes.Repeat([]byte("A"), 10<<20)...)
		body = append(body, `"}}`...)
		code, rs := post(t, in.api.URL, body, nil)
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("answered %d, want 413", code)
		}
		got["gen-10mb-body"] = in.judge(t, code, rs)
	})
	t.Run("2MB JSON request", func(t *testing.T) {
		// Below the API's body limit but above the stream's message limit.
		var req map[string]any
		_ = json.Unmarshal(validRequest("hostile-2mb"), &req)
		req["record"].(map[string]any)["gift_note"] = strings.Repeat("x", 2<<20)
		body, _ := json.Marshal(req)
		code, rs := post(t, in.api.URL, body, nil)
		got["gen-2mb-request"] = in.judge(t, code, rs)
	})
	t.Run("oversized headers", func(t *testing.T) {
		h := http.Header{"X-Padding": {strings.Repeat("h", 2<<20)}}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, in.api.URL+"/v1/transfers", bytes.NewReader(validRequest("hostile-headers")))
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// The HTTP server refuses before the handler: nothing to audit,
		// nothing published.
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("answered %d, want 431", resp.StatusCode)
		}
		if ev := in.events(t, "hostile-headers"); len(ev) != 0 {
			t.Errorf("audit holds %v for a request the server refused", ev)
		}
		got["gen-oversized-headers"] = answer{HTTPStatus: resp.StatusCode, Status: []string{}, Reasons: []string{}, Audited: []string{}}
	})
	t.Run("replayed request", func(t *testing.T) {
		// A denied request (Brazil has no transfer mechanism) sent twice:
		// the second is recognised by its id and not decided again.
		body := bytes.Replace(validRequest("hostile-replay"), []byte("swiftship-de"), []byte("rapido-br"), 1)
		code1, rs1 := post(t, in.api.URL, body, nil)
		first := in.judge(t, code1, rs1)
		code2, rs2 := post(t, in.api.URL, body, nil)
		if len(rs2) != 1 || rs2[0].Status != broker.StatusDuplicate {
			t.Errorf("replay answered %d %+v, want duplicate", code2, rs2)
		}
		if ev := in.events(t, "hostile-replay"); len(ev) != 1 {
			t.Errorf("replay audited %v, want one decision", ev)
		}
		got["gen-replay"] = answer{HTTPStatus: code2, Status: append(first.Status, rs2[0].Status), Reasons: first.Reasons, Audited: first.Audited}
	})
}

// generatedNATS: a forged Nats-Msg-Id, a replay under the same and under
// another Nats-Msg-Id, and a message above the server's payload limit.
func (in *instance) generatedNATS(t *testing.T, js jetstream.JetStream, receipts chan *nats.Msg, got map[string]answer) {
	msg := func(id, body string) *nats.Msg {
		m := nats.NewMsg(broker.TransfersSubject + ".order-service")
		m.Data = []byte(body)
		if id != "" {
			m.Header.Set(jetstream.MsgIDHeader, id)
		}
		return m
	}
	denied := string(bytes.Replace(validRequest("hostile-nats-replay"), []byte("swiftship-de"), []byte("rapido-br"), 1))
	t.Run("forged Nats-Msg-Id", func(t *testing.T) {
		a := in.publish(t, js, msg("someone-elses-id", string(validRequest("hostile-forged"))), receipts, "hostile-forged")
		if !strings.Contains(strings.Join(a.Reasons, ","), "Nats-Msg-Id") {
			t.Errorf("reasons %v do not name the Nats-Msg-Id", a.Reasons)
		}
		got["gen-forged-msg-id"] = a
	})
	t.Run("replay with the same Nats-Msg-Id", func(t *testing.T) {
		first := in.publish(t, js, msg("hostile-nats-replay", denied), receipts, "hostile-nats-replay")
		second := in.publish(t, js, msg("hostile-nats-replay", denied), receipts, "hostile-nats-replay")
		if len(second.Status) != 1 || second.Status[0] != "duplicate" {
			t.Errorf("replay answered %+v, want a duplicate", second)
		}
		got["gen-replay-same-id"] = answer{Status: append(first.Status, second.Status...), Reasons: first.Reasons, Audited: first.Audited}
	})
	t.Run("replay under a new Nats-Msg-Id", func(t *testing.T) {
		got["gen-replay-new-id"] = in.publish(t, js, msg("hostile-nats-replay-2", denied), receipts, "hostile-nats-replay")
	})
	t.Run("above the payload limit", func(t *testing.T) {
		big := msg("hostile-nats-big", `{"id":"hostile-nats-big","x":"`+strings.Repeat("A", 10<<20)+`"}`)
		_, err := js.PublishMsg(t.Context(), big)
		if err == nil || !strings.Contains(err.Error(), "maximum payload") {
			t.Errorf("publishing 10 MB: %v, want the client's maximum payload error", err)
		}
		got["gen-10mb-publish"] = answer{Status: []string{"refused by the NATS client"}, Reasons: []string{}, Audited: []string{}}
	})
}
