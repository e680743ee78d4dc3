package broker_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
)

// TestUnknownIDsWithheldInAudit sends requests naming a recipient, purpose
// or dataset no registry knows: the denial's audit entry records such a
// value only when it is a plain identifier, and agreements.WithheldName
// for anything else a producer may have put there.
func TestUnknownIDsWithheldInAudit(t *testing.T) {
	e := newEnv(t, 5)
	tests := []struct {
		name                       string
		id, field, value           string
		wantRecipient, wantPurpose string
		wantDataset                string
	}{
		{"recipient as an e-mail address", "ord-wh-1", "recipient", "ada@example.com", agreements.WithheldName, "delivery", "order.delivery"},
		{"purpose as a name", "ord-wh-2", "purpose", "Ada Lovelace", "swiftship-de", agreements.WithheldName, "order.delivery"},
		{"dataset as a telephone number", "ord-wh-3", "dataset", "+49 89 0000000", "swiftship-de", "delivery", agreements.WithheldName},
		{"unknown plain recipient", "ord-wh-4", "recipient", "swiftship-fr", "swiftship-fr", "delivery", "order.delivery"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req map[string]any
			if err := json.Unmarshal(brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"), &req); err != nil {
				t.Fatal(err)
			}
			req["id"], req[tt.field] = tt.id, tt.value
			body, _ := json.Marshal(req)
			code, out := e.post(t, body)
			var r broker.Receipt
			if err := json.Unmarshal(out, &r); err != nil || code != http.StatusOK || r.Status != broker.StatusDenied {
				t.Fatalf("POST = %d %s", code, out)
			}
			es := e.entries(t, tt.id)
			if events(es) != "decided" {
				t.Fatalf("audit events %s", events(es))
			}
			got := es[0]
			if got.Recipient != tt.wantRecipient || got.Purpose != tt.wantPurpose || got.Dataset != tt.wantDataset {
				t.Errorf("audit recipient %q purpose %q dataset %q, want %q %q %q", got.Recipient, got.Purpose, got.Dataset,
					tt.wantRecipient, tt.wantPurpose, tt.wantDataset)
			}
			if tt.wantRecipient == tt.value {
				return
			}
			entry, _ := json.Marshal(got)
			if bytes.Contains(entry, []byte(tt.value)) || strings.Contains(e.logs.String(), tt.value) {
				t.Errorf("%q recorded in clear: %s", tt.value, entry)
			}
		})
	}
}
