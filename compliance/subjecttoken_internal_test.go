package compliance

import (
	"testing"
	"time"
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
	tok := a.seal("cust-7")
	tests := []struct {
		name   string
		tokens *subjectTokens
		token  string
		at     time.Time
		want   string
	}{
		{"same instance", a, tok, now, "cust-7"},
		{"another instance, same key", b, tok, now.Add(SubjectTokenTTL), "cust-7"},
		{"expired", a, tok, now.Add(SubjectTokenTTL + time.Second), ""},
		{"other key", other, tok, now, ""},
		{"not base64", a, "!!", now, ""},
		{"too short", a, "AAAA", now, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			tc.tokens.now = func() time.Time { return at }
			got, err := tc.tokens.open(tc.token)
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
