package webhook

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/connectors"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		give   string
		want   time.Duration
		wantOK bool
	}{
		{name: "seconds", give: "120", want: 2 * time.Minute, wantOK: true},
		{name: "zero", give: "0", want: 0, wantOK: true},
		{name: "spaces", give: " 5 ", want: 5 * time.Second, wantOK: true},
		{name: "huge seconds saturate", give: "99999999999999999", want: time.Duration(1<<63-1) / time.Second * time.Second, wantOK: true},
		{name: "seconds beyond int64 saturate", give: "1000000000000000000000000000000", want: time.Duration(1<<63-1) / time.Second * time.Second, wantOK: true},
		{name: "negative beyond int64", give: "-1000000000000000000000000000000", wantOK: false},
		{name: "exponent", give: "1e30", wantOK: false},
		{name: "date centuries ahead saturates", give: "Fri, 31 Dec 9999 23:59:59 GMT", want: time.Duration(1<<63 - 1), wantOK: true},
		{name: "imf date", give: "Sat, 28 Nov 2026 12:01:30 GMT", want: 90 * time.Second, wantOK: true},
		{name: "rfc850 date", give: "Saturday, 28-Nov-26 12:00:10 GMT", want: 10 * time.Second, wantOK: true},
		{name: "asctime date", give: "Sat Nov 28 12:00:05 2026", want: 5 * time.Second, wantOK: true},
		{name: "date in the past", give: "Fri, 27 Nov 2026 12:00:00 GMT", want: 0, wantOK: true},
		{name: "empty", give: "", wantOK: false},
		{name: "negative", give: "-5", wantOK: false},
		{name: "fraction", give: "1.5", wantOK: false},
		{name: "words", give: "soon", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.give, now)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tt.give, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "Sat, 28 Nov 2026 12:01:30 GMT", "", "-1", "99999999999999999999", "-99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d, ok := ParseRetryAfter(v, now); d < 0 || (!ok && d != 0) {
			t.Errorf("ParseRetryAfter(%q) = %s, %v", v, d, ok)
		}
	})
}

func TestClassify(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	type class int
	const (
		delivered class = iota
		transient
		retryAfter
		permanent
	)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		want       class
		wantAfter  time.Duration
	}{
		{name: "200", status: 200, want: delivered},
		{name: "202", status: 202, want: delivered},
		{name: "204", status: 204, want: delivered},
		{name: "301 redirect not followed", status: 301, want: permanent},
		{name: "400", status: 400, want: permanent},
		{name: "401", status: 401, want: permanent},
		{name: "404", status: 404, want: permanent},
		{name: "409", status: 409, want: permanent},
		{name: "413", status: 413, want: permanent},
		{name: "422", status: 422, want: permanent},
		{name: "400 ignores retry-after", status: 400, retryAfter: "5", want: permanent},
		{name: "408", status: 408, want: transient},
		{name: "429", status: 429, want: transient},
		{name: "429 seconds", status: 429, retryAfter: "30", want: retryAfter, wantAfter: 30 * time.Second},
		{name: "500", status: 500, want: transient},
		{name: "502", status: 502, want: transient},
		{name: "503 date", status: 503, retryAfter: "Sat, 28 Nov 2026 12:02:00 GMT", want: retryAfter, wantAfter: 2 * time.Minute},
		{name: "503 malformed retry-after", status: 503, retryAfter: "later", want: transient},
		{name: "503 retry-after of decades", status: 503, retryAfter: "999999999", want: retryAfter, wantAfter: 999999999 * time.Second},
		{name: "503 retry-after beyond int64", status: 503, retryAfter: "1000000000000000000000000000000", want: retryAfter, wantAfter: time.Duration(1<<63-1) / time.Second * time.Second},
		{name: "504", status: 504, want: transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
			if tt.retryAfter != "" {
				resp.Header.Set("Retry-After", tt.retryAfter)
			}
			err := classify(resp, now)
			var ra *connectors.RetryAfterError
			var got class
			switch {
			case err == nil:
				got = delivered
			case connectors.IsPermanent(err):
				got = permanent
			case errors.As(err, &ra):
				got = retryAfter
			default:
				got = transient
			}
			if got != tt.want {
				t.Fatalf("classify(%d) = %v (class %d), want class %d", tt.status, err, got, tt.want)
			}
			if ra != nil && ra.After != tt.wantAfter {
				t.Errorf("After = %s, want %s", ra.After, tt.wantAfter)
			}
			if err != nil && !errors.Is(err, ErrStatus) {
				t.Errorf("error %v does not wrap ErrStatus", err)
			}
		})
	}
}
