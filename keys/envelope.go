package keys

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// The sealed format is a compact JWE (RFC 7516) with "alg":"dir" and
// "enc":"A256GCM". The content encryption key is a data key; it travels
// wrapped (encrypted by Vault transit) in the protected header:
//
//	{"alg":"dir","enc":"A256GCM","kref":"transit:clearance-data:v3","wk":"vault:v3:..."}
//
// "kref" names the key that wrapped the data key and its version, "wk" is the
// wrapped data key. The encrypted-key part is empty (alg dir), the IV is a
// fresh random 96-bit nonce per message and the additional authenticated data
// is the encoded protected header, so the header cannot be altered. Any JOSE
// library that is given the data key can open the message. Every segment is
// unpadded base64url, decoded strictly (b64fast.go): a segment with line
// breaks or non-zero trailing bits is malformed, so a message has exactly one
// encoding that opens.

const (
	headerKeyRef  = "kref"
	headerWrapped = "wk"
	nonceSize     = 12
	tagSize       = 16
	dataKeySize   = 32
)

var b64 = base64.RawURLEncoding

// envelopeHeader is the protected header of a sealed message.
type envelopeHeader struct {
	Alg  string `json:"alg"`
	Enc  string `json:"enc"`
	KRef string `json:"kref"`
	WK   string `json:"wk"`
}

// encodeHeader returns the base64url protected-header segment for a data key.
func encodeHeader(kref, wrapped string) (string, error) {
	raw, err := json.Marshal(envelopeHeader{Alg: "dir", Enc: "A256GCM", KRef: kref, WK: wrapped})
	if err != nil {
		return "", fmt.Errorf("keys: encode header: %w", err)
	}
	return b64.EncodeToString(raw), nil
}

// compactParts are the decoded parts of a sealed message. header is the
// encoded protected-header segment (the AAD); ctTag is ciphertext||tag and
// nonce the IV, both in one buffer (ctTag, then nonce).
type compactParts struct {
	header []byte
	nonce  []byte
	ctTag  []byte
}

// parseCompact splits and decodes a compact JWE with an empty encrypted key.
func parseCompact(sealed []byte) (compactParts, error) {
	p, err := splitCompact(sealed)
	if err != nil && bytes.Count(sealed, []byte{'.'}) != 4 {
		return compactParts{}, fmt.Errorf("%w: want 5 dot-separated parts", ErrMalformed)
	}
	return p, err
}

// splitCompact does the work of parseCompact. It finds the first three dots
// from the start and the last from the end, so the ciphertext, most of the
// message, is read only by the decoder: a dot there is not base64url, and
// parseCompact then reports the number of parts.
func splitCompact(sealed []byte) (compactParts, error) {
	var p compactParts
	var segs [5][]byte
	rest := sealed
	for i := 0; i < 3; i++ {
		j := bytes.IndexByte(rest, '.')
		if j < 0 {
			return p, fmt.Errorf("%w: want 5 dot-separated parts", ErrMalformed)
		}
		segs[i], rest = rest[:j], rest[j+1:]
	}
	j := bytes.LastIndexByte(rest, '.')
	if j < 0 {
		return p, fmt.Errorf("%w: want 5 dot-separated parts", ErrMalformed)
	}
	segs[3], segs[4] = rest[:j], rest[j+1:]
	if len(segs[0]) == 0 {
		return p, fmt.Errorf("%w: empty protected header", ErrMalformed)
	}
	if len(segs[1]) != 0 {
		return p, fmt.Errorf("%w: encrypted key must be empty for alg dir", ErrMalformed)
	}
	p.header = segs[0]
	if b64.DecodedLen(len(segs[2])) != nonceSize {
		return p, fmt.Errorf("%w: iv must be 96 bits", ErrMalformed)
	}
	if b64.DecodedLen(len(segs[4])) != tagSize {
		return p, fmt.Errorf("%w: tag must be 128 bits", ErrMalformed)
	}
	// One allocation holds ciphertext||tag (opened in place) and the nonce.
	ctLen := b64.DecodedLen(len(segs[3]))
	buf := make([]byte, ctLen+tagSize+nonceSize)
	p.nonce = buf[ctLen+tagSize:]
	if _, err := decodeB64(p.nonce, segs[2]); err != nil {
		return p, fmt.Errorf("%w: iv: %w", ErrMalformed, err)
	}
	n, err := decodeB64(buf[:ctLen+tagSize], segs[3])
	if err != nil {
		return p, fmt.Errorf("%w: ciphertext: %w", ErrMalformed, err)
	}
	m, err := decodeB64(buf[n:n+tagSize], segs[4]) // not into the nonce
	if err != nil || m != tagSize {
		return p, fmt.Errorf("%w: tag", ErrMalformed)
	}
	p.ctTag = buf[:n+tagSize]
	return p, nil
}

// parseHeader decodes and checks a protected-header segment.
func parseHeader(seg []byte) (envelopeHeader, error) {
	var h envelopeHeader
	raw := make([]byte, b64.DecodedLen(len(seg)))
	n, err := decodeB64(raw, seg)
	if err != nil {
		return h, fmt.Errorf("%w: header encoding: %w", ErrMalformed, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw[:n], &fields); err != nil {
		return h, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	for name := range fields {
		switch name {
		case "alg", "enc", headerKeyRef, headerWrapped, "kid", "typ", "cty":
		default:
			// "zip", "crit" and anything else would change how the message
			// must be processed; refuse rather than ignore.
			return h, fmt.Errorf("%w: unsupported header %q", ErrMalformed, name)
		}
	}
	if err := json.Unmarshal(raw[:n], &h); err != nil {
		return h, fmt.Errorf("%w: header fields must be strings", ErrMalformed)
	}
	switch {
	case h.Alg != "dir":
		return h, fmt.Errorf("%w: alg must be dir", ErrMalformed)
	case h.Enc != "A256GCM":
		return h, fmt.Errorf("%w: enc must be A256GCM", ErrMalformed)
	case h.KRef == "":
		return h, fmt.Errorf("%w: missing kref header", ErrMalformed)
	case h.WK == "":
		return h, fmt.Errorf("%w: missing wk header", ErrMalformed)
	}
	return h, nil
}

// scratch holds ciphertext between encryption and encoding.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// sealWith encrypts plaintext under aead with a fresh random nonce and
// returns the compact serialization with the given encoded header and no
// encrypted key (alg "dir").
func sealWith(aead cipher.AEAD, header []byte, plaintext []byte) ([]byte, error) {
	return sealWithKey(nil, aead, header, nil, plaintext)
}

// sealWithKey is sealWith with an encrypted key, written base64url-encoded
// in its segment, appending the message to dst.
func sealWithKey(dst []byte, aead cipher.AEAD, header, encryptedKey []byte, plaintext []byte) ([]byte, error) {
	// The scratch buffer holds the nonce, then ciphertext||tag.
	bp := scratch.Get().(*[]byte)
	if need := nonceSize + len(plaintext) + tagSize; cap(*bp) < need {
		*bp = make([]byte, 0, need)
	}
	defer func() {
		if cap(*bp) <= 1<<16 {
			scratch.Put(bp)
		}
	}()
	nonce := (*bp)[:nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keys: nonce: %w", err)
	}
	ct := aead.Seal(nonce[nonceSize:], nonce, plaintext, header)
	body, tag := ct[:len(plaintext)], ct[len(plaintext):]
	out := slices.Grow(dst, len(header)+4+b64.EncodedLen(len(encryptedKey))+b64.EncodedLen(nonceSize)+b64.EncodedLen(len(body))+b64.EncodedLen(tagSize))
	out = append(out, header...)
	out = append(out, '.')
	out = appendB64(out, encryptedKey)
	out = append(out, '.')
	out = appendB64(out, nonce)
	out = append(out, '.')
	out = appendB64(out, body)
	out = append(out, '.')
	out = appendB64(out, tag)
	return out, nil
}

// openWith decrypts parsed parts under aead.
func openWith(aead cipher.AEAD, p compactParts) ([]byte, error) {
	pt, err := aead.Open(p.ctTag[:0], p.nonce, p.ctTag, p.header)
	if err != nil {
		return nil, newError("open", ErrNotAuthentic, errors.New("authentication failed"))
	}
	return pt, nil
}
