package compliance

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/audit"
)

func TestSubjectTokens(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a, err := newSubjectTokens([]byte("key-one"), clock)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newSubjectTokens([]byte("key-one"), clock)
	other, _ := newSubjectTokens([]byte("key-two"), clock)
	tok := a.seal("cust-7", "officer-1")
	tests := []struct {
		name    string
		tokens  *subjectTokens
		token   string
		account string
		at      time.Time
		want    string
	}{
		{"same instance", a, tok, "officer-1", now, "cust-7"},
		{"another instance, same key", b, tok, "officer-1", now.Add(SubjectTokenTTL), "cust-7"},
		{"another account", a, tok, "viewer-2", now, ""},
		{"no account", a, tok, "", now, ""},
		{"account with a prefix of it", a, tok, "officer-", now, ""},
		{"expired", a, tok, "officer-1", now.Add(SubjectTokenTTL + time.Second), ""},
		{"other key", other, tok, "officer-1", now, ""},
		{"not base64", a, "!!", "officer-1", now, ""},
		{"too short", a, "AAAA", "officer-1", now, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			tc.tokens.now = func() time.Time { return at }
			got, err := tc.tokens.open(tc.token, tc.account)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("opened %q", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

// TestSubjectTokenKeyIsNoSubjectHMAC: the API answers the subject HMAC of
// any string a viewer names (GET /v1/subjects/{subject}/recipients), so
// the tokens' key must not be the HMAC of any label under the subject key:
// a viewer would ask for it and open every token (the subject in clear).
func TestSubjectTokenKeyIsNoSubjectHMAC(t *testing.T) {
	subjectKey := []byte("shared-subject-key")
	tokens, err := newSubjectTokens(subjectKey, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(tokens.seal("alice@example.com", "officer-1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{"clearance console subject token v1", tokenKeyLabel, "aes-256-gcm", ""} {
		key, _ := hex.DecodeString(audit.SubjectHMAC(subjectKey, label))
		block, _ := aes.NewCipher(key)
		aead, _ := cipher.NewGCM(block)
		ns := aead.NonceSize()
		if plain, err := aead.Open(nil, raw[:ns], raw[ns:], tokenAccount("officer-1")); err == nil {
			t.Fatalf("the subject HMAC of %q opens a token: %q", label, plain[8:])
		}
	}
}
