package broker

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/clearance-broker/clearance/agreements"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The receipt and the payload a recipient decrypts are formats producers and
// partners build against; they change only on purpose (-update).
func TestWireFormatsGolden(t *testing.T) {
	tests := []struct {
		name string
		give any
	}{
		{"receipt-delivered", Receipt{RequestID: "ord-10023-delivery", Decision: "allow", Reasons: []string{}, AuditSequence: 42, Status: StatusDelivered}},
		{"receipt-denied", Receipt{RequestID: "ord-10027-delivery", Decision: "deny", Reasons: []string{"no_transfer_mechanism"}, AuditSequence: 43, Status: StatusDenied}},
		{"receipt-rejected", Receipt{RequestID: "bad-1", Decision: "deny", Reasons: []string{"invalid_request: subject: required field is missing"}, AuditSequence: 44, Status: StatusRejected}},
		{"payload", Payload{
			RequestID: "ord-10023-delivery", Source: "order-service", Recipient: "swiftship-de", Purpose: "delivery",
			Dataset: "order.delivery", Agreement: &agreements.AgreementRef{ID: "dpa-swiftship-de", Version: 2},
			Mechanism: "domestic", RetentionDays: 90,
			Record: map[string]any{"order_id": "10023", "name": "Ada Lovelace", "address": "12 Example Street", "phone": "+49 89 0000000"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.MarshalIndent(tt.give, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", tt.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s changed:\n%s\nwant:\n%s", tt.name, got, want)
			}
		})
	}
}
