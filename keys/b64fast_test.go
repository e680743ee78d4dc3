package keys

import (
	"bytes"
	"crypto/rand"
	"testing"
)

func TestB64MatchesStdlib(t *testing.T) {
	for n := 0; n <= 70; n++ {
		src := make([]byte, n)
		rand.Read(src)
		want := b64.EncodeToString(src)
		got := appendB64([]byte("x."), src)
		if string(got) != "x."+want {
			t.Fatalf("encode %d bytes: got %q, want %q", n, got[2:], want)
		}
		dec := make([]byte, b64.DecodedLen(len(want)))
		m, err := decodeB64(dec, []byte(want))
		if err != nil || !bytes.Equal(dec[:m], src) {
			t.Fatalf("decode %d bytes: %v", n, err)
		}
	}
}

func FuzzDecodeB64(f *testing.F) {
	for _, s := range []string{"", "QQ", "QUI", "QUJD", "QUJDRA", "QU\nJD", "QUJ=", "QR", "Q", "QUJD+/", "QUJDREVGR0hJSktM", "QUJDRE\nGR0hJSktM", "QUJDREVGR0h=SktM"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		want := make([]byte, b64.DecodedLen(len(src)))
		wn, werr := b64.Decode(want, src)
		got := make([]byte, b64.DecodedLen(len(src)))
		gn, gerr := decodeB64(got, src)
		if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
			t.Fatalf("%q: error %v, want %v", src, gerr, werr)
		}
		if werr == nil && (gn != wn || !bytes.Equal(got[:gn], want[:wn])) {
			t.Fatalf("%q: got %x, want %x", src, got[:gn], want[:wn])
		}
	})
}
