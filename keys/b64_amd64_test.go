//go:build !purego

package keys

import "testing"

// TestB64VectorPathUsed makes sure that the vector loops run where the CPU
// has AVX2, so that the tests of encodeB64 and decodeB64 cover them.
func TestB64VectorPathUsed(t *testing.T) {
	if !b64AVX2 {
		t.Skip("CPU without AVX2: the table loops do all the work")
	}
	src := randomBytes(100)
	enc := make([]byte, b64.EncodedLen(len(src)))
	if n := b64EncodeSIMD(enc, src); n != 96 {
		t.Fatalf("vector encode of 100 bytes took %d, want 96", n)
	}
	encodeB64(enc, src)
	if n := b64DecodeSIMD(make([]byte, len(src)), enc); n != 96 {
		t.Fatalf("vector decode of %d characters took %d, want 96", len(enc), n)
	}
}
