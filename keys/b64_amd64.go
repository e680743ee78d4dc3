//go:build !purego

package keys

import "golang.org/x/sys/cpu"

// b64AVX2 selects the AVX2 block loops of b64_amd64.s. It is set once, from
// the CPU's features, before any use.
var b64AVX2 = cpu.X86.HasAVX2

//go:noescape
func b64EncodeAVX2(dst, src *byte, ndst, nsrc int) int

//go:noescape
func b64DecodeAVX2(dst, src *byte, ndst, nsrc int) int

// b64EncodeSIMD encodes whole 24-byte blocks from the start of src into dst
// with AVX2, if the CPU has it, and returns the number of bytes encoded.
func b64EncodeSIMD(dst, src []byte) int {
	if !b64AVX2 || len(src) < 28 || len(dst) < 32 {
		return 0
	}
	return b64EncodeAVX2(&dst[0], &src[0], len(dst), len(src))
}

// b64DecodeSIMD decodes whole 32-character blocks from the start of src
// into dst with AVX2, if the CPU has it, up to the first block holding a
// character outside the alphabet, and returns the number of characters
// decoded (3 bytes written for every 4).
func b64DecodeSIMD(dst, src []byte) int {
	if !b64AVX2 || len(src) < 32 || len(dst) < 32 {
		return 0
	}
	return b64DecodeAVX2(&dst[0], &src[0], len(dst), len(src))
}
