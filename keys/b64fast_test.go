package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// b64Codecs are the codec with vector instructions where the CPU has them
// (the one in use) and the codec with table look-ups only, which does the
// tails and, on other CPUs, everything.
var b64Codecs = []struct {
	name   string
	encode func(dst, src []byte)
	decode func(dst, src []byte) (int, error)
}{
	{"vector", encodeB64, decodeB64},
	{"tables", encodeB64Tables, func(dst, src []byte) (int, error) {
		if n, ok := decodeB64Tables(dst, src); ok {
			return n, nil
		}
		return 0, b64Error(src)
	}},
}

func TestB64MatchesStdlib(t *testing.T) {
	for _, c := range b64Codecs {
		for n := 0; n <= 300; n++ {
			for _, src := range [][]byte{randomBytes(n), bytes.Repeat([]byte{0}, n), bytes.Repeat([]byte{0xff}, n)} {
				want := b64.EncodeToString(src)
				got := make([]byte, len(want))
				c.encode(got, src)
				if string(got) != want {
					t.Fatalf("%s: encode %x: got %q, want %q", c.name, src, got, want)
				}
				dec := make([]byte, b64.DecodedLen(len(want)))
				m, err := c.decode(dec, []byte(want))
				if err != nil || !bytes.Equal(dec[:m], src) {
					t.Fatalf("%s: decode %q: got %x, %v; want %x", c.name, want, dec[:m], err, src)
				}
			}
		}
	}
	if got := appendB64([]byte("x."), []byte("abc")); string(got) != "x.YWJj" {
		t.Fatalf("appendB64 = %q", got)
	}
}

// TestB64EveryValue encodes and decodes every 6-bit value at every position
// of a vector block.
func TestB64EveryValue(t *testing.T) {
	enc := make([]byte, 64*4)
	for i := range enc {
		enc[i] = b64Alphabet[(i*7+i/64)%64]
	}
	for _, c := range b64Codecs {
		dec := make([]byte, b64.DecodedLen(len(enc)))
		n, err := c.decode(dec, enc)
		want, werr := b64.DecodeString(string(enc))
		if err != nil || werr != nil || !bytes.Equal(dec[:n], want) {
			t.Fatalf("%s: decode: %v, %v", c.name, err, werr)
		}
		back := make([]byte, len(enc))
		c.encode(back, dec[:n])
		if !bytes.Equal(back, enc) {
			t.Fatalf("%s: encode: got %q, want %q", c.name, back, enc)
		}
	}
}

// TestDecodeB64RejectsEveryInvalidCharacter puts each byte value that is not
// in the base64url alphabet at each position of encodings long enough to
// reach every part of the decoder (blocks, quanta, final partial quantum).
func TestDecodeB64RejectsEveryInvalidCharacter(t *testing.T) {
	for _, codec := range b64Codecs {
		for _, n := range []int{1, 2, 3, 25, 26, 27, 48, 49, 50, 72} {
			valid := b64.EncodeToString(randomBytes(n))
			for pos := range len(valid) {
				for c := range 256 {
					if strings.IndexByte(b64Alphabet, byte(c)) >= 0 {
						continue
					}
					src := []byte(valid)
					src[pos] = byte(c)
					_, err := codec.decode(make([]byte, b64.DecodedLen(len(src))), src)
					var corrupt base64.CorruptInputError
					if !errors.As(err, &corrupt) || int(corrupt) != pos {
						t.Fatalf("%s: %q: err = %v, want illegal data at input byte %d", codec.name, src, err, pos)
					}
				}
			}
		}
	}
}

// TestDecodeB64RejectsNonCanonical: of the encodings that decode to the same
// bytes under a lenient decoder, only the one with zero trailing bits opens.
func TestDecodeB64RejectsNonCanonical(t *testing.T) {
	for _, n := range []int{1, 2, 4, 5, 31, 32, 100, 101} {
		src := randomBytes(n)
		valid := b64.EncodeToString(src)
		last := strings.IndexByte(b64Alphabet, valid[len(valid)-1])
		unused := 0x0f // one byte in the final quantum: 4 unused bits
		if n%3 == 2 {
			unused = 0x03 // two bytes: 2 unused bits
		}
		for v := range 64 {
			if v&^unused != last {
				continue
			}
			enc := valid[:len(valid)-1] + b64Alphabet[v:v+1]
			dec := make([]byte, b64.DecodedLen(len(enc)))
			m, err := decodeB64(dec, []byte(enc))
			if v == last {
				if err != nil || !bytes.Equal(dec[:m], src) {
					t.Fatalf("canonical %q: %v", enc, err)
				}
				continue
			}
			if err == nil {
				t.Fatalf("non-canonical %q decoded", enc)
			}
			if lenient, _ := b64.DecodeString(enc); !bytes.Equal(lenient, src) {
				t.Fatalf("test broken: %q is not a variant of %q", enc, valid)
			}
		}
	}
}

func TestDecodeB64Rejects(t *testing.T) {
	tests := []struct {
		name string
		give string
		want error
	}{
		{"one character", "Q", base64.CorruptInputError(0)},
		{"one character after a quantum", "QUJDR", base64.CorruptInputError(4)},
		{"one character after blocks", strings.Repeat("QUJD", 9) + "R", base64.CorruptInputError(36)},
		{"padding", "QQ==", base64.CorruptInputError(2)},
		{"padding after blocks", strings.Repeat("QUJD", 9) + "QQ==", base64.CorruptInputError(38)},
		{"standard alphabet plus", "QUJD+AAA", base64.CorruptInputError(4)},
		{"standard alphabet slash", "QUJDAAA/", base64.CorruptInputError(7)},
		{"line feed", "QUJD\nQUJD", base64.CorruptInputError(4)},
		{"carriage return in a block", strings.Repeat("QUJD", 4) + "\r" + strings.Repeat("QUJD", 4), base64.CorruptInputError(16)},
		{"space", "QUJD QUJD", base64.CorruptInputError(4)},
		{"dot", "QUJD.QUJD", base64.CorruptInputError(4)},
		{"NUL", "QU\x00D", base64.CorruptInputError(2)},
		{"high byte", "QUJ\xc3", base64.CorruptInputError(3)},
		{"trailing bits of one byte", "QR", base64.CorruptInputError(0)},
		{"trailing bits of two bytes", "QUK", base64.CorruptInputError(2)},
		{"trailing bits after blocks", strings.Repeat("QUJD", 8) + "QUK", base64.CorruptInputError(34)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := decodeB64(make([]byte, b64.DecodedLen(len(tt.give))), []byte(tt.give))
			if err != tt.want || n != 0 {
				t.Fatalf("decodeB64(%q) = %d, %v; want %v", tt.give, n, err, tt.want)
			}
		})
	}
}

func FuzzEncodeB64(f *testing.F) {
	for _, s := range []string{"", "a", "ab", "abc", strings.Repeat("x", 26), strings.Repeat("\xff", 50)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		want := b64.EncodeToString(src)
		for _, c := range b64Codecs {
			got := make([]byte, len(want))
			c.encode(got, src)
			if string(got) != want {
				t.Fatalf("%s: %x: got %q, want %q", c.name, src, got, want)
			}
		}
	})
}

// FuzzDecodeB64 checks decodeB64 against encoding/base64's strict
// RawURLEncoding, which differs only in ignoring CR and LF.
func FuzzDecodeB64(f *testing.F) {
	for _, s := range []string{"", "QQ", "QUI", "QUJD", "QUJDRA", "QU\nJD", "QUJ=", "QR", "Q", "QUJD+/", "QUJDREVGR0hJSktM", "QUJDRE\nGR0hJSktM", "QUJDREVGR0h=SktM", strings.Repeat("QUJD", 9) + "QUK", b64Alphabet + b64Alphabet + "QQ", b64Alphabet[:40] + "\n" + b64Alphabet} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		for _, c := range b64Codecs {
			got := make([]byte, b64.DecodedLen(len(src)))
			gn, gerr := c.decode(got, src)
			if i := bytes.IndexAny(src, "\r\n"); i >= 0 {
				// The first character outside the alphabet is at i or before.
				var corrupt base64.CorruptInputError
				if !errors.As(gerr, &corrupt) || int(corrupt) > i || strings.IndexByte(b64Alphabet, src[corrupt]) >= 0 {
					t.Fatalf("%s: %q: error %v, want illegal data at or before byte %d", c.name, src, gerr, i)
				}
				continue
			}
			want := make([]byte, b64.DecodedLen(len(src)))
			wn, werr := b64Strict.Decode(want, src)
			if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
				t.Fatalf("%s: %q: error %v, want %v", c.name, src, gerr, werr)
			}
			if werr == nil && (gn != wn || !bytes.Equal(got[:gn], want[:wn])) {
				t.Fatalf("%s: %q: got %x, want %x", c.name, src, got[:gn], want[:wn])
			}
		}
	})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
