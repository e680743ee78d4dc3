package natsregion

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// pubAckInputs are answers a stream gives or could give to a publish, and
// malformed ones; hand says whether readUsualPubAck reads it.
var pubAckInputs = []struct {
	in   string
	hand bool
}{
	{`{"stream":"REGION","seq":1}`, true},
	{`{"stream":"REGION","seq":0}`, true},
	{`{"stream":"REGION","seq":18446744073709551615}`, true},
	{`{"stream":"REGION","seq":42,"duplicate": true}`, true},
	{`{"stream":"REGION","seq":42,"duplicate":true}`, true},
	{`{"stream":"REGION","domain":"hub","seq":42}`, true},
	{`{"stream":"REGION","domain":"hub","seq":42,"duplicate": true}`, true},
	{`{"stream":"OTHER","seq":9}`, true},
	{`{"stream":"REGION","seq":18446744073709551616}`, false},
	{`{"stream":"REGION","seq":42,"duplicate":false}`, false},
	{`{"stream":"REGION","seq":42,"domain":"hub"}`, false},
	{`{"stream":"REGION","domain":"","seq":42}`, false},
	{`{"stream":"REGION","domain":"h\"ub","seq":42}`, false},
	{`{"stream":"RE\u0047ION","seq":7}`, false},
	{`{"stream":"RÉGION","seq":7}`, false},
	{`{"stream":"","seq":7}`, false},
	{`{"stream":"REGION","seq":007}`, false},
	{`{"stream":"REGION","seq":-1}`, false},
	{`{"stream":"REGION","seq":1.5}`, false},
	{`{"stream":"REGION","seq":1}x`, false},
	{`{"stream":"REGION","seq":1} `, false},
	{`{"stream":"REGION"}`, false},
	{`{"seq":3}`, false},
	{`{"error":{"code":503,"err_code":10077,"description":"resource limits exceeded for account"}}`, false},
	{`{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":"REGION","seq":1}`, false},
	{`{"stream":"REGION","seq":`, false},
	{`{"stream":"REGION`, false},
	{`null`, false},
	{``, false},
	{`[]`, false},
}

// TestReadPubAck: every answer is read as encoding/json reads it whole
// (what jetstream.PublishMsg does), whether or not it is read by hand.
func TestReadPubAck(t *testing.T) {
	for _, tt := range pubAckInputs {
		got, err := readPubAck([]byte(tt.in), "REGION")
		want, wantErr := decodeWhole([]byte(tt.in))
		if got != want || !sameErr(err, wantErr) {
			t.Errorf("readPubAck(%s) = %+v, %v; encoding/json: %+v, %v", tt.in, got, err, want, wantErr)
		}
		if _, hand := readUsualPubAck([]byte(tt.in), "REGION"); hand != tt.hand {
			t.Errorf("%s read by hand: %v, want %v", tt.in, hand, tt.hand)
		}
	}

	_, err := readPubAck([]byte(`{"error":{"code":503,"err_code":10077,"description":"resource limits exceeded for account"}}`), "REGION")
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10077 || apiErr.Code != 503 {
		t.Errorf("error answer read as %v, want the stream's API error", err)
	}
	usual := []byte(pubAckInputs[0].in)
	if n := testing.AllocsPerRun(100, func() { _, _ = readPubAck(usual, "REGION") }); n != 0 {
		t.Errorf("the usual answer costs %v allocations, want 0", n)
	}
}

// FuzzReadPubAck: what the hand reader accepts, encoding/json reads alike.
func FuzzReadPubAck(f *testing.F) {
	for _, tt := range pubAckInputs {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := readUsualPubAck(data, "REGION")
		if !ok {
			return
		}
		want, err := decodeWhole(data)
		if err != nil || got != want {
			t.Fatalf("read by hand as %+v; encoding/json: %+v, %v", got, want, err)
		}
	})
}

// decodeWhole reads an answer as jetstream.PublishMsg does.
func decodeWhole(data []byte) (pubAck, error) {
	var resp pubAckResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	if resp.Error != nil {
		return pubAck{}, resp.Error
	}
	if resp.Stream == "" {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	return resp.pubAck, nil
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	var x, y *jetstream.APIError
	if errors.As(a, &x) && errors.As(b, &y) {
		return *x == *y
	}
	return errors.Is(a, b)
}
