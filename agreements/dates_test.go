package agreements

import (
	"slices"
	"testing"
	"time"
)

func TestAgreementDates(t *testing.T) {
	day := func(s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := Agreement{ID: "scc-x", Version: 1, Status: StatusActive, ValidFrom: day("2026-01-01"), ValidUntil: day("2026-12-31"),
		TIA: &TIA{Reference: "TIA-1", ReviewBy: day("2026-06-30")}}
	for _, tt := range []struct {
		at    string
		holds bool
		want  []string
	}{
		{"2025-12-31T23:59:59Z", false, []string{WarnNotYetValid}},
		{"2026-01-01T00:00:00Z", true, []string{}},
		{"2026-05-31T12:00:00Z", true, []string{}},
		{"2026-06-01T00:00:00Z", true, []string{WarnTIAReviewSoon}},
		{"2026-06-30T23:59:59Z", true, []string{WarnTIAReviewSoon}}, // the review day still holds
		{"2026-07-01T00:00:00Z", false, []string{WarnTIAOverdue}},
		{"2026-12-31T12:00:00+09:00", false, []string{WarnExpiresSoon, WarnTIAOverdue}}, // counted in UTC days
		{"2027-01-01T00:00:00Z", false, []string{WarnExpired, WarnTIAOverdue}},
	} {
		at, err := time.Parse(time.RFC3339, tt.at)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.HoldsOn(at); got != tt.holds {
			t.Errorf("HoldsOn(%s) = %v, want %v", tt.at, got, tt.holds)
		}
		if got := a.Warnings(at); !slices.Equal(got, tt.want) {
			t.Errorf("Warnings(%s) = %v, want %v", tt.at, got, tt.want)
		}
	}
	suspended := a
	suspended.Status = StatusSuspended
	if at := day("2026-03-01"); suspended.HoldsOn(at) || !slices.Equal(suspended.Warnings(at), []string{WarnInactive}) {
		t.Errorf("suspended: holds %v, warnings %v", suspended.HoldsOn(at), suspended.Warnings(at))
	}
	if n := DaysFrom(day("2026-12-30").Add(23*time.Hour), day("2026-12-31")); n != 1 {
		t.Errorf("DaysFrom the day before = %d, want 1", n)
	}
}
