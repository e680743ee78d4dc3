package shred

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// An envelope is a compact JWE (RFC 7516): five dot-separated base64url
// parts, the protected header, an empty encrypted key ("alg":"dir": the
// subject's key is the content encryption key), the 96-bit IV, the
// ciphertext and the 128-bit GCM tag. The protected header is
//
//	{"alg":"dir","enc":"A256GCM","skid":"sk-...","sh":"<subject HMAC>"}
//
// "skid" names the subject key, "sh" is the subject's keyed HMAC (never the
// id) by which the key is found. The additional authenticated data is the
// encoded protected header, as RFC 7516 section 5.1 specifies, so a header
// cannot be swapped onto another subject's ciphertext. Any JOSE library
// given the subject's key can open it.
const (
	algDir      = "dir"
	encA256GCM  = "A256GCM"
	gcmTagSize  = 16
	gcmIVSize   = 12
	headerSKID  = "skid"
	headerSubjH = "sh"
)

type header struct {
	Alg  string `json:"alg"`
	Enc  string `json:"enc"`
	SKID string `json:"skid"`
	SH   string `json:"sh"`
}

var b64 = base64.RawURLEncoding

// envelope is a parsed subject envelope; protected is the encoded header
// segment (the AAD) and ctTag the ciphertext followed by the tag.
type envelope struct {
	h         header
	protected []byte
	iv        []byte
	ctTag     []byte
}

func seal(k *subjectKey, sh string, plaintext []byte) ([]byte, error) {
	hj, _ := json.Marshal(header{Alg: algDir, Enc: encA256GCM, SKID: k.kid, SH: sh}) // strings only
	protected := b64.AppendEncode(nil, hj)
	iv := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("shred: nonce: %w", err)
	}
	sealed := k.aead.Seal(nil, iv, plaintext, protected)
	ct, tag := sealed[:len(sealed)-gcmTagSize], sealed[len(sealed)-gcmTagSize:]
	out := make([]byte, 0, len(protected)+4+b64.EncodedLen(len(iv))+b64.EncodedLen(len(ct))+b64.EncodedLen(len(tag)))
	out = append(out, protected...)
	out = append(out, '.', '.') // empty encrypted key
	out = b64.AppendEncode(out, iv)
	out = append(out, '.')
	out = b64.AppendEncode(out, ct)
	out = append(out, '.')
	out = b64.AppendEncode(out, tag)
	return out, nil
}

// parseHeader decodes a protected-header segment and checks that it is a
// subject envelope's: alg dir, enc A256GCM, a subject key id and a subject
// HMAC, and no other member (anything else, such as "zip" or "crit", would
// change how the message must be processed).
func parseHeader(seg []byte) (header, bool) {
	var h header
	raw, err := b64.AppendDecode(nil, seg)
	if err != nil {
		return h, false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return h, false
	}
	for name := range fields {
		switch name {
		case "alg", "enc", headerSKID, headerSubjH:
		default:
			return h, false
		}
	}
	if json.Unmarshal(raw, &h) != nil || h.Alg != algDir || h.Enc != encA256GCM || h.SKID == "" || h.SH == "" {
		return h, false
	}
	return h, true
}

func parse(sealed []byte) (envelope, error) {
	parts := bytes.Split(sealed, []byte("."))
	if len(parts) != 5 || len(parts[1]) != 0 {
		return envelope{}, ErrMalformed
	}
	h, ok := parseHeader(parts[0])
	iv, err1 := b64.AppendDecode(nil, parts[2])
	ct, err2 := b64.AppendDecode(nil, parts[3])
	tag, err3 := b64.AppendDecode(nil, parts[4])
	if !ok || err1 != nil || err2 != nil || err3 != nil || len(iv) != gcmIVSize || len(tag) != gcmTagSize {
		return envelope{}, ErrMalformed
	}
	return envelope{h: h, protected: parts[0], iv: iv, ctTag: append(ct, tag...)}, nil
}

func open(k *subjectKey, env envelope) ([]byte, error) {
	plain, err := k.aead.Open(nil, env.iv, env.ctTag, env.protected)
	if err != nil {
		return nil, ErrMalformed
	}
	return plain, nil
}

// IsEnvelope reports whether data has the form of a subject envelope (as
// Seal makes it): a compact JWE whose protected header names a subject key,
// so that a receiver knows to open it with Open rather than with the shared
// data key (whose envelopes are compact JWE too, without a subject key). It
// does not check that the envelope opens.
func IsEnvelope(data []byte) bool {
	i := bytes.IndexByte(data, '.')
	if i < 0 || bytes.Count(data, []byte(".")) != 4 {
		return false
	}
	_, ok := parseHeader(data[:i])
	return ok
}
