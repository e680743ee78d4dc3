package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/connectors"
)

// ErrStatus is wrapped by every error for a non-2xx answer; the message
// carries the status code only, never the response body.
var ErrStatus = errors.New("unexpected status")

// classify maps a partner's answer to the connectors error classes.
func classify(resp *http.Response, now time.Time) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	base := fmt.Errorf("%w %d", ErrStatus, code)
	if !transient(code) {
		return fmt.Errorf("%w: %w", base, connectors.ErrPermanent)
	}
	if after, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
		return &connectors.RetryAfterError{After: after, Err: base}
	}
	return base
}

// transient reports whether a non-2xx status may succeed later.
func transient(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// ParseRetryAfter parses a Retry-After header value, either delay-seconds or
// an HTTP date, into the wait from now. A date in the past gives zero; a
// wait longer than a time.Duration holds, in seconds of any length or a date
// centuries ahead, gives the longest Duration rather than wrapping round to
// a short or negative one. The value is what the partner asked for: the
// broker honours it only up to its backoff_max. It reports false for an
// empty or malformed value.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	// Delay-seconds has no upper bound, so digits beyond int64 are a long
	// wait, not a malformed one; ParseInt then gives the int64 bound.
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if secs < 0 {
			return 0, false
		}
		const maxSecs = int64((1<<63 - 1) / int64(time.Second))
		return time.Duration(min(secs, maxSecs)) * time.Second, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := at.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}
