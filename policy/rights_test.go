package policy_test

import (
	"errors"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/policy"
)

func TestParseConsent(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		give string
		want agreements.Change
		err  string
	}{
		{"grant", `{"action":"grant","subject":"cust-7","purpose":"marketing","recipients":["promoreach-nl"],"at":"2026-11-27T09:00:00Z"}`,
			agreements.Change{Consents: []agreements.Consent{{Subject: "cust-7", Purpose: "marketing", Recipients: []string{"promoreach-nl"}, GrantedAt: at}}}, ""},
		{"withdraw now", `{"action":"withdraw","subject":"cust-7","purpose":"marketing"}`,
			agreements.Change{Withdrawals: []agreements.Withdrawal{{Subject: "cust-7", Purpose: "marketing", At: now}}}, ""},
		{"no action", `{"subject":"cust-7","purpose":"marketing"}`, agreements.Change{}, "invalid_request: action: required field is missing"},
		{"unknown field", `{"action":"grant","subject":"cust-7","purpose":"marketing","colour":"red"}`, agreements.Change{}, "invalid_request: colour: unknown field"},
		{"unknown field named with an e-mail address", `{"action":"grant","subject":"cust-7","purpose":"marketing","ada@example.com":"red"}`, agreements.Change{},
			"invalid_request: " + agreements.WithheldName + ": unknown field"},
		{"withdrawal with recipients", `{"action":"withdraw","subject":"cust-7","purpose":"marketing","recipients":["x"]}`, agreements.Change{}, "invalid_request: action: a withdrawal takes only subject, purpose and at"},
		{"no subject", `{"action":"grant","purpose":"marketing"}`, agreements.Change{}, "invalid_request: subject: required field is missing"},
		{"not json", `nope`, agreements.Change{}, "invalid_request: body: not a JSON object"},
		{"wrong type", `{"action":"grant","subject":7,"purpose":"marketing"}`, agreements.Change{}, "invalid_request: subject: wrong type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := policy.ParseConsent([]byte(tt.give), now)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errors.Is(err, policy.ErrInvalidChange) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equalChange(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseErasure(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		give    string
		subject string
		want    string // erased subject
		err     string
	}{
		{"nats body", `{"subject":"cust-13"}`, "", "cust-13", ""},
		{"path, empty body", ``, "cust-13", "cust-13", ""},
		{"path and body differ", `{"subject":"cust-14"}`, "cust-13", "", "invalid_request: subject: does not match the path"},
		{"no subject", `{}`, "", "", "invalid_request: subject: required field is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := policy.ParseErasure([]byte(tt.give), tt.subject, now)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || len(got.Erasures) != 1 || got.Erasures[0].Subject != tt.want || !got.Erasures[0].At.Equal(now) {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func FuzzParseConsent(f *testing.F) {
	f.Add([]byte(`{"action":"grant","subject":"cust-7","purpose":"marketing","recipients":["promoreach-nl"]}`))
	f.Add([]byte(`{"action":"withdraw","subject":"cust-7","purpose":"marketing","at":"2026-11-27T09:00:00Z"}`))
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		ch, err := policy.ParseConsent(data, now)
		if err != nil {
			if !errors.Is(err, policy.ErrInvalidChange) {
				t.Fatalf("error of another class: %v", err)
			}
			return
		}
		if len(ch.Consents)+len(ch.Withdrawals) != 1 {
			t.Fatalf("change of %d entries", len(ch.Consents)+len(ch.Withdrawals))
		}
	})
}

func equalChange(a, b agreements.Change) bool {
	if len(a.Consents) != len(b.Consents) || len(a.Withdrawals) != len(b.Withdrawals) {
		return false
	}
	for i := range a.Consents {
		x, y := a.Consents[i], b.Consents[i]
		if x.Subject != y.Subject || x.Purpose != y.Purpose || !x.GrantedAt.Equal(y.GrantedAt) || len(x.Recipients) != len(y.Recipients) {
			return false
		}
	}
	for i := range a.Withdrawals {
		if a.Withdrawals[i] != b.Withdrawals[i] {
			return false
		}
	}
	return true
}
