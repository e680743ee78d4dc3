package samplepartner_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/clearance-broker/clearance/broker/samplepartner"
	"github.com/clearance-broker/clearance/keys"
)

func TestHandlerOpensWhatIsSealedForIt(t *testing.T) {
	ring, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: filepath.Join(t.TempDir(), "ring.json"), Allow: true})
	if err != nil {
		t.Fatal(err)
	}
	key, err := samplepartner.NewKey("p")
	if err != nil {
		t.Fatal(err)
	}
	other, err := samplepartner.NewKey("other")
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"request_id":"r-1"}`)
	sealed, err := ring.SealFor(t.Context(), key.PublicJWK, [][]byte{payload})
	if err != nil {
		t.Fatal(err)
	}
	forOther, err := ring.SealFor(t.Context(), other.PublicJWK, [][]byte{payload})
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(sealed[0])
	tampered[len(tampered)-5] ^= 1

	var got []samplepartner.Received
	h := &samplepartner.Handler{Key: key, JWKS: ring.JWKS, OnReceive: func(r samplepartner.Received) { got = append(got, r) }}
	tests := []struct {
		name string
		body []byte
		want int
	}{
		{"sealed for the partner", sealed[0], http.StatusOK},
		{"the same again is acknowledged once", sealed[0], http.StatusOK},
		{"sealed for someone else", forOther[0], http.StatusBadRequest},
		{"tampered", tampered, http.StatusBadRequest},
		{"plaintext", payload, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(tt.body))
			req.Header.Set("Idempotency-Key", "r-1")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("status %d, want %d", rec.Code, tt.want)
			}
		})
	}
	if len(got) != 1 || !bytes.Equal(got[0].Payload, payload) {
		t.Errorf("received %d payloads, want the one payload once", len(got))
	}
}

func TestLoadOrCreateKeyKeepsTheKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "partner.json")
	a, err := samplepartner.LoadOrCreateKey(path, "p")
	if err != nil {
		t.Fatal(err)
	}
	b, err := samplepartner.LoadOrCreateKey(path, "p")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.PublicJWK, b.PublicJWK) {
		t.Error("a second load made another key")
	}
	if bytes.Contains(a.PublicJWK, []byte(`"d"`)) {
		t.Error("the public JWK holds the private part")
	}
}
