package keys

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOpenRejects(t *testing.T) {
	src := newMemSource()
	e := newEnvelope(src, 10, time.Hour, 16, time.Hour)
	good, err := e.seal(t.Context(), []byte("some record"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(good), ".")
	header := func(json string) string { return b64.EncodeToString([]byte(json)) }
	join := func(p ...string) []byte { return []byte(strings.Join(p, ".")) }
	flip := func(s string) string {
		b := []byte(s)
		if b[0] == 'A' {
			b[0] = 'B'
		} else {
			b[0] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name string
		give []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"four parts", join(parts[0], "", parts[2], parts[3]), ErrMalformed},
		{"six parts", join(append(parts, "x")...), ErrMalformed},
		{"six parts, the extra dot in the ciphertext", join(parts[0], "", parts[2], parts[3][:8], parts[3][8:], parts[4]), ErrMalformed},
		{"ciphertext with a line feed", join(parts[0], "", parts[2], parts[3][:8]+"\n"+parts[3][8:], parts[4]), ErrMalformed},
		{"ciphertext with non-zero trailing bits", join(parts[0], "", parts[2], parts[3][:len(parts[3])-1]+"B", parts[4]), ErrMalformed},
		{"encrypted key present", join(parts[0], "AAAA", parts[2], parts[3], parts[4]), ErrMalformed},
		{"short iv", join(parts[0], "", "AAAA", parts[3], parts[4]), ErrMalformed},
		{"short tag", join(parts[0], "", parts[2], parts[3], "AAAA"), ErrMalformed},
		{"bad base64", join(parts[0], "", parts[2], "!!!!", parts[4]), ErrMalformed},
		{"header not json", join(header("nope"), "", parts[2], parts[3], parts[4]), ErrMalformed},
		{"wrong alg", join(header(`{"alg":"A256KW","enc":"A256GCM","kref":"transit:test-data:v1","wk":"vault:v1:key-1"}`), "", parts[2], parts[3], parts[4]), ErrMalformed},
		{"wrong enc", join(header(`{"alg":"dir","enc":"A128GCM","kref":"transit:test-data:v1","wk":"vault:v1:key-1"}`), "", parts[2], parts[3], parts[4]), ErrMalformed},
		{"zip refused", join(header(`{"alg":"dir","enc":"A256GCM","zip":"DEF","kref":"transit:test-data:v1","wk":"vault:v1:key-1"}`), "", parts[2], parts[3], parts[4]), ErrMalformed},
		{"missing wk", join(header(`{"alg":"dir","enc":"A256GCM","kref":"transit:test-data:v1"}`), "", parts[2], parts[3], parts[4]), ErrMalformed},
		{"other key ring", join(header(`{"alg":"dir","enc":"A256GCM","kref":"transit:other:v1","wk":"vault:v1:key-1"}`), "", parts[2], parts[3], parts[4]), ErrMalformed},
		{"kref and wk versions differ", join(header(`{"alg":"dir","enc":"A256GCM","kref":"transit:test-data:v2","wk":"vault:v1:key-1"}`), "", parts[2], parts[3], parts[4]), ErrMalformed},
		{"header altered", join(header(`{"alg":"dir","enc":"A256GCM","wk":"vault:v1:key-1","kref":"transit:test-data:v1"}`), "", parts[2], parts[3], parts[4]), ErrNotAuthentic},
		{"ciphertext altered", join(parts[0], "", parts[2], flip(parts[3]), parts[4]), ErrNotAuthentic},
		{"iv altered", join(parts[0], "", flip(parts[2]), parts[3], parts[4]), ErrNotAuthentic},
		{"tag altered", join(parts[0], "", parts[2], parts[3], flip(parts[4])), ErrNotAuthentic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opener := newEnvelope(src, 10, time.Hour, 16, time.Hour)
			got, err := opener.open(t.Context(), tt.give)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Fatal("plaintext returned with an error")
			}
			if err != nil && strings.Contains(err.Error(), "some record") {
				t.Fatal("error message holds plaintext")
			}
		})
	}
}

// FuzzOpen feeds arbitrary input to the sealed-envelope opener: header
// parsing must never panic, and nothing but a message sealed under a known
// data key may open.
func FuzzOpen(f *testing.F) {
	src := newMemSource()
	e := newEnvelope(src, 1000, time.Hour, 16, time.Hour)
	good, err := e.seal(f.Context(), []byte("fuzz seed"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("...."))
	f.Add([]byte("eyJhbGciOiJkaXIifQ...."))
	f.Add([]byte(b64.EncodeToString([]byte(`{"alg":"dir","enc":"A256GCM","kref":"transit:test-data:v1","wk":"vault:v1:key-1","crit":["x"]}`)) + "..AAAAAAAAAAAAAAAA..AAAAAAAAAAAAAAAAAAAAAA"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if p, err := parseCompact(in); err == nil {
			if len(p.ctTag) < tagSize {
				t.Fatalf("parsed ciphertext shorter than a tag: %d", len(p.ctTag))
			}
			if h, err := parseHeader(p.header); err == nil && (h.Alg != "dir" || h.Enc != "A256GCM" || h.KRef == "" || h.WK == "") {
				t.Fatalf("accepted header %+v", h)
			}
		}
		pt, err := e.open(t.Context(), in)
		if err == nil && !bytes.Equal(in, good) && !bytes.Equal(pt, []byte("fuzz seed")) {
			t.Fatalf("opened an unknown message")
		}
	})
}
