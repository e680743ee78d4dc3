package keys

import (
	"encoding/binary"
	"sync"
)

// The ciphertext segment of a sealed message is most of its bytes, so its
// base64url encoding and decoding cost about as much as AES-GCM itself.
// encodeB64 and decodeB64 produce exactly what b64 (base64.RawURLEncoding)
// produces, several characters per table look-up; anything the fast path
// does not handle is left to b64.

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// b64Invalid marks a character outside the alphabet in the decode tables.
const b64Invalid = 0xff000000

var (
	b64Once sync.Once
	// b64Pairs maps 12 bits to the two alphabet characters encoding them,
	// in memory order.
	b64Pairs [1 << 12]uint16
	// b64Dec[i][c] is the 6-bit value of character c shifted into place for
	// position i of a 4-character quantum, or b64Invalid.
	b64Dec [4][256]uint32
)

func initB64() {
	for v := range b64Pairs {
		b64Pairs[v] = uint16(b64Alphabet[v>>6]) | uint16(b64Alphabet[v&0x3f])<<8
	}
	for i := range b64Dec {
		for c := range b64Dec[i] {
			b64Dec[i][c] = b64Invalid
		}
	}
	for v := 0; v < len(b64Alphabet); v++ {
		c := b64Alphabet[v]
		for i := range b64Dec {
			b64Dec[i][c] = uint32(v) << (18 - 6*i)
		}
	}
}

// appendB64 appends the base64url (unpadded) encoding of src to dst.
func appendB64(dst, src []byte) []byte {
	n := b64.EncodedLen(len(src))
	start := len(dst)
	if cap(dst)-start < n {
		grown := make([]byte, start, start+n)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+n]
	encodeB64(dst[start:], src)
	return dst
}

// encodeB64 writes the encoding of src into dst, which must hold
// b64.EncodedLen(len(src)) bytes.
func encodeB64(dst, src []byte) {
	b64Once.Do(initB64)
	di, si := 0, 0
	// Six input bytes (read as eight) give eight output characters.
	for ; len(src)-si >= 8; si, di = si+6, di+8 {
		v := binary.BigEndian.Uint64(src[si:])
		binary.LittleEndian.PutUint64(dst[di:],
			uint64(b64Pairs[v>>52])|
				uint64(b64Pairs[v>>40&0xfff])<<16|
				uint64(b64Pairs[v>>28&0xfff])<<32|
				uint64(b64Pairs[v>>16&0xfff])<<48)
	}
	for ; len(src)-si >= 3; si, di = si+3, di+4 {
		v := uint(src[si])<<16 | uint(src[si+1])<<8 | uint(src[si+2])
		binary.LittleEndian.PutUint16(dst[di:], b64Pairs[v>>12])
		binary.LittleEndian.PutUint16(dst[di+2:], b64Pairs[v&0xfff])
	}
	if si < len(src) {
		b64.Encode(dst[di:], src[si:])
	}
}

// decodeB64 decodes src into dst, which must hold b64.DecodedLen(len(src))
// bytes, and returns the number of bytes written. Results and errors are
// those of b64.Decode.
func decodeB64(dst, src []byte) (int, error) {
	b64Once.Do(initB64)
	di, si := 0, 0
	d0, d1, d2, d3 := &b64Dec[0], &b64Dec[1], &b64Dec[2], &b64Dec[3]
	// Eight characters give six bytes (written as eight).
	for ; len(src)-si >= 8 && len(dst)-di >= 8; si, di = si+8, di+6 {
		s := src[si : si+8 : si+8]
		v := d0[s[0]] | d1[s[1]] | d2[s[2]] | d3[s[3]]
		w := d0[s[4]] | d1[s[5]] | d2[s[6]] | d3[s[7]]
		if (v|w)&b64Invalid != 0 {
			return b64.Decode(dst, src) // newlines, or an error to report
		}
		binary.BigEndian.PutUint64(dst[di:], uint64(v)<<40|uint64(w)<<16)
	}
	for ; len(src)-si >= 4 && len(dst)-di >= 4; si, di = si+4, di+3 {
		s := src[si : si+4 : si+4]
		v := d0[s[0]] | d1[s[1]] | d2[s[2]] | d3[s[3]]
		if v&b64Invalid != 0 {
			return b64.Decode(dst, src) // newlines, or an error to report
		}
		binary.BigEndian.PutUint32(dst[di:], v<<8)
	}
	if si == len(src) {
		return di, nil
	}
	n, err := b64.Decode(dst[di:], src[si:])
	if err != nil {
		return b64.Decode(dst, src) // the error with its offset in src
	}
	return di + n, nil
}
