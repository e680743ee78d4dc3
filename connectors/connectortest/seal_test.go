package connectortest

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// TestFormsCatchEncodings checks that the wire check would see a canary
// carried unencrypted, at any offset, in clear or base64 (an unsigned or
// merely signed payload).
func TestFormsCatchEncodings(t *testing.T) {
	c := NewCanaries()
	tests := []struct {
		name   string
		encode func([]byte) string
	}{
		{name: "clear", encode: func(b []byte) string { return string(b) }},
		{name: "base64url", encode: base64.RawURLEncoding.EncodeToString},
		{name: "base64", encode: base64.StdEncoding.EncodeToString},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for prefix := range 3 {
				rec := c.Record("o-1")
				rec["pad"] = strings.Repeat("p", prefix)
				plain, err := json.Marshal(rec)
				if err != nil {
					t.Fatal(err)
				}
				wire := "header." + tt.encode(plain) + ".sig"
				for _, v := range c.Values() {
					if !containsAny(wire, Forms(v)) {
						t.Errorf("prefix %d: value not detected", prefix)
					}
				}
			}
		})
	}
}

func TestSealedHidesCanaries(t *testing.T) {
	s := NewSealer(t)
	c := NewCanaries()
	sealed := s.Seal(t, c.Record("o-1"))
	for _, v := range c.Values() {
		if containsAny(string(sealed), Forms(v)) {
			t.Errorf("sealed payload shows a canary")
		}
	}
	plain, err := s.Open(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plain), c.Email) {
		t.Error("opened payload lacks the canary")
	}
}

func containsAny(s string, forms []string) bool {
	for _, f := range forms {
		if strings.Contains(s, f) {
			return true
		}
	}
	return false
}
