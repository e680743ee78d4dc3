package natsregion

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// pubAckInputs are answers a stream gives or could give to a publish, and
// malformed ones.
var pubAckInputs = []string{
	`{"stream":"REGION","seq":1}`,
	`{"stream":"REGION","seq":18446744073709551615}`,
	`{"stream":"REGION","seq":18446744073709551616}`,
	`{"stream":"REGION","seq":42,"duplicate":true}`,
	`{"stream":"REGION","seq":42,"duplicate":false}`,
	`{"stream":"REGION","seq":42,"domain":"hub"}`,
	`{"stream":"REGION","domain":"hub","seq":42}`,
	`{"stream":"RE\u0047ION","seq":7}`,
	`{"stream":"RÉGION","seq":7}`,
	`{"stream":"","seq":7}`,
	`{"stream":"REGION","seq":007}`,
	`{"stream":"REGION","seq":0}`,
	`{"stream":"REGION","seq":-1}`,
	`{"stream":"REGION","seq":1.5}`,
	`{"stream":"REGION","seq":1}x`,
	`{"stream":"REGION","seq":1} `,
	`{"stream":"REGION"}`,
	`{"seq":3}`,
	`{"error":{"code":503,"err_code":10077,"description":"resource limits exceeded for account"}}`,
	`{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":"REGION","seq":1}`,
	`{"stream":"REGION","seq":`,
	`{"stream":"REGION`,
	`null`,
	``,
	`[]`,
}

// TestReadPubAck: every answer is read as encoding/json reads it whole
// (what jetstream.PublishMsg does), whether or not the usual form is read
// by hand.
func TestReadPubAck(t *testing.T) {
	handRead := 0
	for _, in := range pubAckInputs {
		got, err := readPubAck([]byte(in), "REGION")
		want, wantErr := decodeWhole([]byte(in))
		if got != want || !sameErr(err, wantErr) {
			t.Errorf("readPubAck(%s) = %+v, %v; encoding/json: %+v, %v", in, got, err, want, wantErr)
		}
		if _, ok := readUsualPubAck([]byte(in), "REGION"); ok {
			handRead++
		}
	}
	if handRead != 4 {
		t.Errorf("%d answers read by hand, want the 4 of the usual form", handRead)
	}

	_, err := readPubAck([]byte(pubAckInputs[18]), "REGION")
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != 10077 || apiErr.Code != 503 {
		t.Errorf("error answer read as %v, want the stream's API error", err)
	}
	if ack, _ := readPubAck([]byte(`{"stream":"OTHER","seq":9}`), "REGION"); ack.Stream != "OTHER" {
		t.Errorf("answer naming another stream read as %+v", ack)
	}
	usual := []byte(pubAckInputs[0])
	if n := testing.AllocsPerRun(100, func() { _, _ = readPubAck(usual, "REGION") }); n != 0 {
		t.Errorf("the usual answer costs %v allocations, want 0", n)
	}
}

// FuzzReadPubAck: what the hand reader accepts, encoding/json reads alike.
func FuzzReadPubAck(f *testing.F) {
	for _, in := range pubAckInputs {
		f.Add([]byte(in))
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
