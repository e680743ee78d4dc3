package jsonenc

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestStringMatchesEncodingJSON compares AppendString with
// encoding/json for every single byte, every rune up to U+FFFF and beyond,
// and random byte strings.
func TestStringMatchesEncodingJSON(t *testing.T) {
	check := func(s string) {
		t.Helper()
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: %s, want %s", s, got, want)
		}
		var wantSeen Seen
		for i := range len(s) {
			if s[i] < 0x20 {
				wantSeen |= 1 << s[i]
			}
		}
		if !utf8.ValidString(s) {
			wantSeen |= SeenInvalidUTF8
		}
		got, seen := AppendStringSeen(nil, s)
		if !bytes.Equal(got, want) || seen != wantSeen {
			t.Fatalf("%q: %s, seen %#x; want %s, seen %#x", s, got, seen, want, wantSeen)
		}
		if _, seen := AppendStringsSeen(nil, []string{"x", s}); seen != wantSeen {
			t.Fatalf("%q in a list: seen %#x, want %#x", s, seen, wantSeen)
		}
		if _, seen := AppendStringMapSeen(nil, map[string]string{s: "x", "k": s}); seen != wantSeen {
			t.Fatalf("%q in a map: seen %#x, want %#x", s, seen, wantSeen)
		}
	}
	for c := range 256 {
		check(string([]byte{byte(c)}))
		check("a" + string([]byte{byte(c)}) + "b")
	}
	for c := rune(0); c <= 0x10ffff; c++ {
		if c <= 0xffff || c%97 == 0 {
			check(string(c) + "x")
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		b := make([]byte, r.IntN(24))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		check(string(b))
	}
}

// checkValue compares AppendValue with json.Marshal for v, errors included.
func checkValue(t testing.TB, v any) {
	t.Helper()
	want, werr := json.Marshal(v)
	got, gerr := AppendValue([]byte("prefix"), v)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("%#v: error %v, json.Marshal %v", v, gerr, werr)
	}
	if werr == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("%#v:\n got %s\nwant prefix%s", v, got, want)
	}
}

// randValue is a random value of the kinds a decoder with UseNumber makes,
// nested up to depth.
func randValue(r *rand.Rand, depth int) any {
	str := func() string {
		b := make([]byte, r.IntN(8))
		for i := range b {
			const alphabet = "ab<>&\"\\\x00\x1f\xff\xe2\x80\xa8é"
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	k := r.IntN(7)
	if depth <= 0 {
		k = r.IntN(4)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return json.Number([]string{"0", "-1", "12.5", "1e10", "-0.25E-3", "123456789012345678901234567890"}[r.IntN(6)])
	case 3:
		return str()
	case 4:
		m := map[string]any{}
		for range r.IntN(20) {
			m[str()] = randValue(r, depth-1)
		}
		return m
	case 5:
		s := make([]any, r.IntN(5))
		for i := range s {
			s[i] = randValue(r, depth-1)
		}
		return s
	}
	return map[string]any(nil)
}

func TestValueMatchesEncodingJSON(t *testing.T) {
	fixed := []any{
		nil, true, false, "", "x<y>&\u2028", json.Number(""), json.Number("-0.5e+7"),
		map[string]any(nil), []any(nil), map[string]any{}, []any{},
		map[string]any{"b": 1, "a": []any{json.Number("2"), "3", nil}, "B": map[string]any{"z": false, "": ""}},
		float64(1.5), 42, []string{"a"}, map[string]string{"k": "v"}, // through json.Marshal
	}
	for _, v := range fixed {
		checkValue(t, v)
	}
	for _, n := range []string{"01", "1.", ".5", "-", "1e", "1e+", "+1", "0x10", "1.5.5", "NaN", " 1"} {
		checkValue(t, json.Number(n)) // each an error, as json.Marshal's
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		checkValue(t, randValue(r, 4))
	}
}

func FuzzValue(f *testing.F) {
	f.Add([]byte(`{"a":[1,"x",null,true,{"b":-2.5e3}],"<":"\u2028"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		checkValue(t, v)
	})
}

func TestNumberSyntax(t *testing.T) {
	for _, n := range strings.Fields("0 -0 1 -12 0.5 10.25 1e5 1E+5 1e-05 -0.0e0") {
		if !validNumber(n) {
			t.Errorf("%s refused", n)
		}
	}
	for _, n := range strings.Fields("- 01 1. .1 1e 1e- +1 0x1 1_0 ∞") {
		if validNumber(n) {
			t.Errorf("%s accepted", n)
		}
	}
}
