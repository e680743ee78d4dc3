//go:build !purego

#include "textflag.h"

// AVX2 base64url (RFC 4648 §5) encoding and decoding of whole blocks, after
// W. Muła and D. Lemire, "Faster Base64 Encoding and Decoding Using AVX2
// Instructions" (ACM TWEB 2018), with the URL-safe alphabet. The Go code in
// b64fast.go does everything else: the tail, and error reporting.

// func b64EncodeAVX2(dst, src *byte, ndst, nsrc int) int
// Encodes 24-byte blocks of src into 32 characters each while at least 28
// bytes remain in src (the second 16-byte load reads bytes 12 to 27) and 32
// in dst, and returns the number of bytes of src encoded.
TEXT ·b64EncodeAVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ndst+16(FP), DX
	MOVQ nsrc+24(FP), CX
	XORQ AX, AX
	VBROADCASTI128 b64EncShuf<>(SB), Y8
	VBROADCASTI128 b64EncMask1<>(SB), Y9
	VBROADCASTI128 b64EncMul1<>(SB), Y10
	VBROADCASTI128 b64EncMask2<>(SB), Y11
	VBROADCASTI128 b64EncMul2<>(SB), Y12
	VBROADCASTI128 b64Enc51<>(SB), Y13
	VBROADCASTI128 b64Enc26<>(SB), Y14
	VBROADCASTI128 b64Enc13<>(SB), Y15
	VBROADCASTI128 b64EncLUT<>(SB), Y7

encloop:
	CMPQ CX, $28
	JLT  encdone
	CMPQ DX, $32
	JLT  encdone
	// Bytes 0-11 in the low lane, 12-23 in the high lane; each group of
	// 3 bytes b0 b1 b2 becomes the 4 bytes b1 b0 b2 b1.
	VMOVDQU     (SI), X0
	VINSERTI128 $1, 12(SI), Y0, Y0
	VPSHUFB     Y8, Y0, Y0
	// Split each 24 bits into four 6-bit values, one per byte.
	VPAND       Y9, Y0, Y1
	VPMULHUW    Y10, Y1, Y1
	VPAND       Y11, Y0, Y2
	VPMULLW     Y12, Y2, Y2
	VPOR        Y1, Y2, Y0
	// Map each value to its character by adding an offset chosen by its
	// range: 0-25 'A', 26-51 'a'-26, 52-61 '0'-52, 62 '-', 63 '_'.
	VPSUBUSB    Y13, Y0, Y1
	VPCMPGTB    Y0, Y14, Y2
	VPAND       Y15, Y2, Y2
	VPOR        Y2, Y1, Y1
	VPSHUFB     Y1, Y7, Y1
	VPADDB      Y0, Y1, Y1
	VMOVDQU     Y1, (DI)
	ADDQ        $24, SI
	ADDQ        $32, DI
	SUBQ        $24, CX
	SUBQ        $32, DX
	ADDQ        $24, AX
	JMP         encloop

encdone:
	VZEROUPPER
	MOVQ AX, ret+32(FP)
	RET

// func b64DecodeAVX2(dst, src *byte, ndst, nsrc int) int
// Decodes 32-character blocks of src into 24 bytes each (written as 32, so
// 32 bytes of room are needed) until fewer than 32 characters remain or a
// block holds a character outside the alphabet, and returns the number of
// characters of src decoded.
TEXT ·b64DecodeAVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ndst+16(FP), DX
	MOVQ nsrc+24(FP), CX
	XORQ AX, AX
	VBROADCASTI128 b64DecLUTLo<>(SB), Y8
	VBROADCASTI128 b64DecLUTHi<>(SB), Y9
	VBROADCASTI128 b64DecUnderscore<>(SB), Y10
	VBROADCASTI128 b64Dec33<>(SB), Y11
	VBROADCASTI128 b64DecRoll<>(SB), Y12
	VBROADCASTI128 b64DecMadd1<>(SB), Y13
	VBROADCASTI128 b64DecMadd2<>(SB), Y14
	VBROADCASTI128 b64Nibble<>(SB), Y15
	VBROADCASTI128 b64DecPack<>(SB), Y7
	VMOVDQU        b64DecPerm<>(SB), Y6

decloop:
	CMPQ CX, $32
	JLT  decdone
	CMPQ DX, $32
	JLT  decdone
	VMOVDQU    (SI), Y0
	// Validate: a character is in the alphabet iff the class bits of its
	// high nibble and of its low nibble are disjoint.
	VPSRLD     $4, Y0, Y1
	VPAND      Y15, Y1, Y1
	VPAND      Y15, Y0, Y2
	VPSHUFB    Y2, Y8, Y3
	VPSHUFB    Y1, Y9, Y4
	VPTEST     Y3, Y4
	JNE        decdone
	// Translate to 6-bit values by an offset chosen by the high nibble,
	// corrected for '_' (which shares its nibble with 'P'-'Z').
	VPCMPEQB   Y10, Y0, Y5
	VPAND      Y11, Y5, Y5
	VPSHUFB    Y1, Y12, Y2
	VPADDB     Y5, Y2, Y2
	VPADDB     Y2, Y0, Y0
	// Pack four 6-bit values into 24 bits per 32-bit lane, then the
	// lanes' 3-byte groups into 24 contiguous bytes.
	VPMADDUBSW Y13, Y0, Y0
	VPMADDWD   Y14, Y0, Y0
	VPSHUFB    Y7, Y0, Y0
	VPERMD     Y0, Y6, Y0
	VMOVDQU    Y0, (DI)
	ADDQ       $32, SI
	ADDQ       $24, DI
	SUBQ       $32, CX
	SUBQ       $24, DX
	ADDQ       $32, AX
	JMP        decloop

decdone:
	VZEROUPPER
	MOVQ AX, ret+32(FP)
	RET

DATA b64EncShuf<>+0x0(SB)/8, $0x0405030401020001
DATA b64EncShuf<>+0x8(SB)/8, $0x0a0b090a07080607
GLOBL b64EncShuf<>(SB), RODATA|NOPTR, $16

DATA b64EncMask1<>+0x0(SB)/8, $0x0fc0fc000fc0fc00
DATA b64EncMask1<>+0x8(SB)/8, $0x0fc0fc000fc0fc00
GLOBL b64EncMask1<>(SB), RODATA|NOPTR, $16

DATA b64EncMul1<>+0x0(SB)/8, $0x0400004004000040
DATA b64EncMul1<>+0x8(SB)/8, $0x0400004004000040
GLOBL b64EncMul1<>(SB), RODATA|NOPTR, $16

DATA b64EncMask2<>+0x0(SB)/8, $0x003f03f0003f03f0
DATA b64EncMask2<>+0x8(SB)/8, $0x003f03f0003f03f0
GLOBL b64EncMask2<>(SB), RODATA|NOPTR, $16

DATA b64EncMul2<>+0x0(SB)/8, $0x0100001001000010
DATA b64EncMul2<>+0x8(SB)/8, $0x0100001001000010
GLOBL b64EncMul2<>(SB), RODATA|NOPTR, $16

DATA b64Enc51<>+0x0(SB)/8, $0x3333333333333333
DATA b64Enc51<>+0x8(SB)/8, $0x3333333333333333
GLOBL b64Enc51<>(SB), RODATA|NOPTR, $16

DATA b64Enc26<>+0x0(SB)/8, $0x1a1a1a1a1a1a1a1a
DATA b64Enc26<>+0x8(SB)/8, $0x1a1a1a1a1a1a1a1a
GLOBL b64Enc26<>(SB), RODATA|NOPTR, $16

DATA b64Enc13<>+0x0(SB)/8, $0x0d0d0d0d0d0d0d0d
DATA b64Enc13<>+0x8(SB)/8, $0x0d0d0d0d0d0d0d0d
GLOBL b64Enc13<>(SB), RODATA|NOPTR, $16

DATA b64EncLUT<>+0x0(SB)/8, $0xfcfcfcfcfcfcfc47
DATA b64EncLUT<>+0x8(SB)/8, $0x00004120effcfcfc
GLOBL b64EncLUT<>(SB), RODATA|NOPTR, $16

DATA b64DecLUTLo<>+0x0(SB)/8, $0x2121212121212125
DATA b64DecLUTLo<>+0x8(SB)/8, $0x333b3a3b3b232121
GLOBL b64DecLUTLo<>(SB), RODATA|NOPTR, $16

DATA b64DecLUTHi<>+0x0(SB)/8, $0x1004080402012020
DATA b64DecLUTHi<>+0x8(SB)/8, $0x2020202020202020
GLOBL b64DecLUTHi<>(SB), RODATA|NOPTR, $16

DATA b64DecUnderscore<>+0x0(SB)/8, $0x5f5f5f5f5f5f5f5f
DATA b64DecUnderscore<>+0x8(SB)/8, $0x5f5f5f5f5f5f5f5f
GLOBL b64DecUnderscore<>(SB), RODATA|NOPTR, $16

DATA b64Dec33<>+0x0(SB)/8, $0x2121212121212121
DATA b64Dec33<>+0x8(SB)/8, $0x2121212121212121
GLOBL b64Dec33<>(SB), RODATA|NOPTR, $16

DATA b64DecRoll<>+0x0(SB)/8, $0xb9b9bfbf04110000
DATA b64DecRoll<>+0x8(SB)/8, $0x0000000000000000
GLOBL b64DecRoll<>(SB), RODATA|NOPTR, $16

DATA b64DecMadd1<>+0x0(SB)/8, $0x0140014001400140
DATA b64DecMadd1<>+0x8(SB)/8, $0x0140014001400140
GLOBL b64DecMadd1<>(SB), RODATA|NOPTR, $16

DATA b64DecMadd2<>+0x0(SB)/8, $0x0001100000011000
DATA b64DecMadd2<>+0x8(SB)/8, $0x0001100000011000
GLOBL b64DecMadd2<>(SB), RODATA|NOPTR, $16

DATA b64DecPack<>+0x0(SB)/8, $0x090a040506000102
DATA b64DecPack<>+0x8(SB)/8, $0x808080800c0d0e08
GLOBL b64DecPack<>(SB), RODATA|NOPTR, $16

DATA b64Nibble<>+0x0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA b64Nibble<>+0x8(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL b64Nibble<>(SB), RODATA|NOPTR, $16

DATA b64DecPerm<>+0x0(SB)/8, $0x0000000100000000
DATA b64DecPerm<>+0x8(SB)/8, $0x0000000400000002
DATA b64DecPerm<>+0x10(SB)/8, $0x0000000600000005
DATA b64DecPerm<>+0x18(SB)/8, $0x0000000700000003
GLOBL b64DecPerm<>(SB), RODATA|NOPTR, $32
