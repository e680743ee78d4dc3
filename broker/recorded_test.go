package broker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/clearance-broker/clearance/audit"
)

func TestFinalOutcome(t *testing.T) {
	tests := []struct {
		name      string
		give      audit.Entry
		want      Outcome
		wantFinal bool
	}{
		{"delivered", audit.Entry{Event: audit.EventDelivered, Decision: "allow"}, OutcomeDelivered, true},
		{"rejected", audit.Entry{Event: audit.EventRejected, Decision: "deny"}, OutcomeInvalid, true},
		{"denied", audit.Entry{Event: audit.EventDecided, Decision: "deny"}, OutcomeDenied, true},
		{"allowed is not the end", audit.Entry{Event: audit.EventDecided, Decision: "allow"}, OutcomeDenied, false},
		{"dead-lettered failure", audit.Entry{Event: audit.EventDeliveryFailed, Reasons: []string{"delivery_failed: permanent"}}, OutcomePermanent, true},
		{"exhausted failure", audit.Entry{Event: audit.EventDeliveryFailed, Reasons: []string{"delivery_failed: max_deliver_reached"}}, OutcomePermanent, true},
		{"transient failure is retried", audit.Entry{Event: audit.EventDeliveryFailed, Reasons: []string{"delivery_failed: transient"}}, OutcomePermanent, false},
		{"received", audit.Entry{Event: audit.EventReceived}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, final := finalOutcome(&tt.give)
			if final != tt.wantFinal || (final && got != tt.want) {
				t.Errorf("finalOutcome = %v, %v; want %v, %v", got, final, tt.want, tt.wantFinal)
			}
		})
	}
}

func TestRecordedByOther(t *testing.T) {
	tests := []struct {
		name string
		give error
		want bool
	}{
		{"delivery recorded by another instance", fmt.Errorf("broker: audit delivered: %w",
			&audit.DuplicateOutcomeError{Event: audit.EventDelivered, Recorded: audit.EventDelivered, Sequence: 7}), true},
		{"denial recorded meanwhile", &audit.DuplicateOutcomeError{Event: audit.EventDelivered, Recorded: audit.EventDecided, Sequence: 7}, false},
		{"store error", errors.New("audit: commit batch: connection refused"), false},
		{"no error", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := &result{outcome: OutcomeTransient, err: errors.New("earlier")}
			if got := recordedByOther(res, tt.give); got != tt.want {
				t.Fatalf("recordedByOther = %v, want %v", got, tt.want)
			}
			if tt.want && (res.outcome != OutcomeDelivered || res.seq != 7 || !res.recorded || res.err != nil) {
				t.Errorf("result = %+v, want delivered at entry 7, recorded", res)
			}
		})
	}
}
