package keys

import (
	"encoding/base64"
	"encoding/binary"
	"sync"
)

// Sealed messages are base64url (RFC 4648 §5, unpadded), and the ciphertext
// segment is most of their bytes: its encoding and decoding cost about as
// much as AES-GCM itself. encodeB64 and decodeB64 do whole blocks with AVX2
// where the CPU has it (b64_amd64.s), and the rest with table look-ups that
// handle two characters each.
//
// Decoding is strict, as RFC 7515 §2 defines base64url for JOSE: only the 64
// characters of the URL-safe alphabet, no padding, no line breaks or spaces,
// and the unused low bits of a final partial quantum must be zero, so that
// every byte string has exactly one encoding that opens. (encoding/base64's
// RawURLEncoding would ignore CR and LF and accept non-zero trailing bits.)

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// b64Bad marks a character pair outside the alphabet in b64Tables.dec; a
// valid pair decodes to 12 bits, so any of the top four bits means invalid.
const b64Bad = 0xf000

// b64Tables are the look-up tables of the codec, built once on first use.
type b64Tables struct {
	// enc maps 12 bits to the two characters encoding them, the first in
	// the low byte (memory order on a little-endian store).
	enc [1 << 12]uint16
	// dec maps two characters, the first in the low byte, to the 12 bits
	// they encode, or to b64Bad if either is outside the alphabet.
	dec [1 << 16]uint16
	// val maps one character to its 6-bit value, or 0xff.
	val [256]byte
}

var (
	b64Once sync.Once
	b64Tab  *b64Tables
)

func b64Load() *b64Tables {
	b64Once.Do(func() {
		t := new(b64Tables)
		for v := range t.enc {
			t.enc[v] = uint16(b64Alphabet[v>>6]) | uint16(b64Alphabet[v&0x3f])<<8
		}
		for c := range t.val {
			t.val[c] = 0xff
		}
		for v := 0; v < len(b64Alphabet); v++ {
			t.val[b64Alphabet[v]] = byte(v)
		}
		for i := range t.dec {
			hi, lo := t.val[i&0xff], t.val[i>>8]
			if hi == 0xff || lo == 0xff {
				t.dec[i] = b64Bad
				continue
			}
			t.dec[i] = uint16(hi)<<6 | uint16(lo)
		}
		b64Tab = t
	})
	return b64Tab
}

// b64Strict is encoding/base64's decoder with the trailing-bit check; it
// gives the error for a bad length or non-zero trailing bits.
var b64Strict = base64.RawURLEncoding.Strict()

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
	n := b64EncodeSIMD(dst, src)
	encodeB64Tables(dst[n/3*4:], src[n:])
}

// encodeB64Tables is encodeB64 without vector instructions.
func encodeB64Tables(dst, src []byte) {
	t := &b64Load().enc
	n := b64EncodeBlocks(t, dst, src)
	src, dst = src[n:], dst[n/3*4:]
	// 3 bytes to 4 characters.
	for len(src) >= 3 && len(dst) >= 4 {
		v := uint(src[0])<<16 | uint(src[1])<<8 | uint(src[2])
		binary.LittleEndian.PutUint32(dst, uint32(t[v>>12])|uint32(t[v&0xfff])<<16)
		src, dst = src[3:], dst[4:]
	}
	switch {
	case len(src) == 2 && len(dst) >= 3:
		v := uint(src[0])<<16 | uint(src[1])<<8
		binary.LittleEndian.PutUint16(dst, t[v>>12])
		dst[2] = byte(t[v&0xfff])
	case len(src) == 1 && len(dst) >= 2:
		binary.LittleEndian.PutUint16(dst, t[uint(src[0])<<4])
	}
}

// b64EncodeBlocks encodes src in blocks of 24 bytes (read as four
// overlapping 8-byte words, so it stops 2 bytes early) to 32 characters and
// returns the number of bytes encoded. It is its own function so that the
// compiler keeps the loop in registers.
func b64EncodeBlocks(t *[1 << 12]uint16, dst, src []byte) int {
	n := len(src)
	for len(src) >= 26 && len(dst) >= 32 {
		v := binary.BigEndian.Uint64(src[0:])
		binary.LittleEndian.PutUint16(dst[0:], t[v>>52])
		binary.LittleEndian.PutUint16(dst[2:], t[v>>40&0xfff])
		binary.LittleEndian.PutUint16(dst[4:], t[v>>28&0xfff])
		binary.LittleEndian.PutUint16(dst[6:], t[v>>16&0xfff])
		v = binary.BigEndian.Uint64(src[6:])
		binary.LittleEndian.PutUint16(dst[8:], t[v>>52])
		binary.LittleEndian.PutUint16(dst[10:], t[v>>40&0xfff])
		binary.LittleEndian.PutUint16(dst[12:], t[v>>28&0xfff])
		binary.LittleEndian.PutUint16(dst[14:], t[v>>16&0xfff])
		v = binary.BigEndian.Uint64(src[12:])
		binary.LittleEndian.PutUint16(dst[16:], t[v>>52])
		binary.LittleEndian.PutUint16(dst[18:], t[v>>40&0xfff])
		binary.LittleEndian.PutUint16(dst[20:], t[v>>28&0xfff])
		binary.LittleEndian.PutUint16(dst[22:], t[v>>16&0xfff])
		v = binary.BigEndian.Uint64(src[18:])
		binary.LittleEndian.PutUint16(dst[24:], t[v>>52])
		binary.LittleEndian.PutUint16(dst[26:], t[v>>40&0xfff])
		binary.LittleEndian.PutUint16(dst[28:], t[v>>28&0xfff])
		binary.LittleEndian.PutUint16(dst[30:], t[v>>16&0xfff])
		src, dst = src[24:], dst[32:]
	}
	return n - len(src)
}

// decodeB64 decodes src into dst, which must hold b64.DecodedLen(len(src))
// bytes, and returns the number of bytes written. Decoding is strict (see
// above); an error is a base64.CorruptInputError at the first character
// outside the alphabet or, if there is none, the error of base64's strict
// RawURLEncoding for the length or the trailing bits. On error, dst holds
// garbage.
func decodeB64(dst, src []byte) (int, error) {
	if len(dst) < b64.DecodedLen(len(src)) {
		panic("keys: base64 decode buffer too small")
	}
	m := b64DecodeSIMD(dst, src)
	n, ok := decodeB64Tables(dst[m/4*3:], src[m:])
	if !ok {
		return 0, b64Error(src)
	}
	return m/4*3 + n, nil
}

// decodeB64Tables is decodeB64 without vector instructions and without the
// error: it reports only whether src is valid.
func decodeB64Tables(dst, src []byte) (int, bool) {
	tab := b64Load()
	t := &tab.dec
	n, bad := b64DecodeBlocks(t, dst, src)
	rest, out := src[n/3*4:], dst[n:]
	// 4 characters to 3 bytes.
	for len(rest) >= 4 && len(out) >= 3 {
		a, b := t[binary.LittleEndian.Uint16(rest[0:])], t[binary.LittleEndian.Uint16(rest[2:])]
		bad |= a | b
		v := uint32(a)<<12 | uint32(b)
		out[0], out[1], out[2] = byte(v>>16), byte(v>>8), byte(v)
		rest, out, n = rest[4:], out[3:], n+3
	}
	// A final partial quantum: 2 or 3 characters with zero trailing bits.
	switch {
	case len(rest) == 0:
	case len(rest) == 2 && len(out) >= 1:
		a := t[binary.LittleEndian.Uint16(rest)]
		bad |= a | (a&0xf)<<12
		out[0] = byte(a >> 4)
		n++
	case len(rest) == 3 && len(out) >= 2:
		a, c := t[binary.LittleEndian.Uint16(rest)], tab.val[rest[2]]
		bad |= a | uint16(c&0xc0)<<8 | uint16(c&3)<<12
		out[0], out[1] = byte(a>>4), byte(a<<4)|c>>2
		n += 2
	default:
		bad = b64Bad
	}
	return n, bad&b64Bad == 0
}

// b64DecodeBlocks decodes src in blocks of 32 characters to 24 bytes
// (written as four overlapping 8-byte words, so it stops while 2 bytes of
// room remain) and returns the number of bytes written and the OR of the
// table entries it used: b64Bad is set if a character was outside the
// alphabet. It is its own function so that the compiler keeps the loop in
// registers.
func b64DecodeBlocks(t *[1 << 16]uint16, dst, src []byte) (int, uint16) {
	n := len(dst)
	var bad uint16
	for len(src) >= 32 && len(dst) >= 26 {
		a, b, c, d := t[binary.LittleEndian.Uint16(src[0:])], t[binary.LittleEndian.Uint16(src[2:])], t[binary.LittleEndian.Uint16(src[4:])], t[binary.LittleEndian.Uint16(src[6:])]
		bad |= a | b | c | d
		binary.BigEndian.PutUint64(dst[0:], uint64(a)<<52|uint64(b)<<40|uint64(c)<<28|uint64(d)<<16)
		a, b, c, d = t[binary.LittleEndian.Uint16(src[8:])], t[binary.LittleEndian.Uint16(src[10:])], t[binary.LittleEndian.Uint16(src[12:])], t[binary.LittleEndian.Uint16(src[14:])]
		bad |= a | b | c | d
		binary.BigEndian.PutUint64(dst[6:], uint64(a)<<52|uint64(b)<<40|uint64(c)<<28|uint64(d)<<16)
		a, b, c, d = t[binary.LittleEndian.Uint16(src[16:])], t[binary.LittleEndian.Uint16(src[18:])], t[binary.LittleEndian.Uint16(src[20:])], t[binary.LittleEndian.Uint16(src[22:])]
		bad |= a | b | c | d
		binary.BigEndian.PutUint64(dst[12:], uint64(a)<<52|uint64(b)<<40|uint64(c)<<28|uint64(d)<<16)
		a, b, c, d = t[binary.LittleEndian.Uint16(src[24:])], t[binary.LittleEndian.Uint16(src[26:])], t[binary.LittleEndian.Uint16(src[28:])], t[binary.LittleEndian.Uint16(src[30:])]
		bad |= a | b | c | d
		binary.BigEndian.PutUint64(dst[18:], uint64(a)<<52|uint64(b)<<40|uint64(c)<<28|uint64(d)<<16)
		src, dst = src[32:], dst[24:]
	}
	return n - len(dst), bad
}

// b64Error returns the error for src, which the fast path rejected.
func b64Error(src []byte) error {
	val := &b64Load().val
	for i, c := range src {
		if val[c] == 0xff {
			return base64.CorruptInputError(i)
		}
	}
	// Only alphabet characters: a bad length or non-zero trailing bits.
	if _, err := b64Strict.Decode(make([]byte, b64.DecodedLen(len(src))), src); err != nil {
		return err
	}
	return base64.CorruptInputError(len(src)) // unreachable: never report success
}
