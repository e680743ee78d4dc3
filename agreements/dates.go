package agreements

import "time"

// WarnWithinDays is how many days ahead an agreement's end or its
// assessment's review is warned of (Agreement.Warnings).
const WarnWithinDays = 30

// The warnings of Agreement.Warnings.
const (
	WarnExpired       = "expired"
	WarnExpiresSoon   = "expires_within_30_days"
	WarnNotYetValid   = "not_yet_valid"
	WarnInactive      = "not_active"
	WarnTIAOverdue    = "tia_overdue"
	WarnTIAReviewSoon = "tia_review_within_30_days"
)

// Day returns the UTC day of t, the unit every registry date is counted in.
func Day(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// DaysFrom returns the whole days from day to date: 0 when date is that
// day, negative when it is past.
func DaysFrom(day, date time.Time) int { return int(date.Sub(Day(day)).Hours() / 24) }

// HoldsOn reports whether a can carry a transfer on day's UTC day, its
// dates and status considered (not its parties, purposes or categories):
// active, between its first and last valid day, and its transfer impact
// assessment, if any, not past its review day.
func (a *Agreement) HoldsOn(day time.Time) bool {
	d := Day(day)
	return a.Status == StatusActive && !d.Before(a.ValidFrom) && !d.After(a.ValidUntil) &&
		(a.TIA == nil || !d.After(a.TIA.ReviewBy))
}

// Warnings returns what needs attention about a on day's UTC day, in this
// order: expired or expiring within WarnWithinDays, not yet valid, not
// active, its assessment overdue or due within WarnWithinDays. Never nil.
func (a *Agreement) Warnings(day time.Time) []string {
	d := Day(day)
	soon := d.AddDate(0, 0, WarnWithinDays)
	out := []string{}
	switch {
	case a.ValidUntil.Before(d):
		out = append(out, WarnExpired)
	case a.ValidUntil.Before(soon):
		out = append(out, WarnExpiresSoon)
	}
	if a.ValidFrom.After(d) {
		out = append(out, WarnNotYetValid)
	}
	if a.Status != StatusActive {
		out = append(out, WarnInactive)
	}
	if a.TIA != nil {
		switch {
		case a.TIA.ReviewBy.Before(d):
			out = append(out, WarnTIAOverdue)
		case a.TIA.ReviewBy.Before(soon):
			out = append(out, WarnTIAReviewSoon)
		}
	}
	return out
}
