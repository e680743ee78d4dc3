package shred

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// An envelope is four dot-separated parts: the version "SH1", the base64url
// JSON header {"kid": key id, "sh": subject HMAC}, the nonce and the
// AES-256-GCM ciphertext; the first two parts are the additional data, so a
// header cannot be swapped onto another subject's ciphertext.
const version = "SH1"

type header struct {
	KID string `json:"kid"`
	SH  string `json:"sh"`
}

var b64 = base64.RawURLEncoding

func seal(k *subjectKey, sh string, plaintext []byte) ([]byte, error) {
	hj, _ := json.Marshal(header{KID: k.kid, SH: sh}) // two strings
	aad := []byte(version + "." + b64.EncodeToString(hj))
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("shred: nonce: %w", err)
	}
	ct := k.aead.Seal(nil, nonce, plaintext, aad)
	out := make([]byte, 0, len(aad)+2+b64.EncodedLen(len(nonce))+b64.EncodedLen(len(ct)))
	out = append(out, aad...)
	out = append(out, '.')
	out = b64.AppendEncode(out, nonce)
	out = append(out, '.')
	out = b64.AppendEncode(out, ct)
	return out, nil
}

func parse(sealed []byte) (h header, nonce, ct []byte, err error) {
	parts := bytes.Split(sealed, []byte("."))
	if len(parts) != 4 || string(parts[0]) != version {
		return header{}, nil, nil, ErrMalformed
	}
	hj, err1 := b64.DecodeString(string(parts[1]))
	nonce, err2 := b64.DecodeString(string(parts[2]))
	ct, err3 := b64.DecodeString(string(parts[3]))
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hj, &h) != nil || h.KID == "" || h.SH == "" {
		return header{}, nil, nil, ErrMalformed
	}
	return h, nonce, ct, nil
}

func open(k *subjectKey, sealed, nonce, ct []byte) ([]byte, error) {
	if len(nonce) != k.aead.NonceSize() {
		return nil, ErrMalformed
	}
	i := bytes.LastIndexByte(sealed, '.')
	j := bytes.LastIndexByte(sealed[:i], '.')
	plain, err := k.aead.Open(nil, nonce, ct, sealed[:j])
	if err != nil {
		return nil, ErrMalformed
	}
	return plain, nil
}

// IsEnvelope reports whether data has the form of a subject envelope (as
// Seal makes it), so that a receiver knows to open it with Open rather than
// with the shared data key. It does not check that the envelope opens.
func IsEnvelope(data []byte) bool {
	return bytes.HasPrefix(data, []byte(version+".")) && bytes.Count(data, []byte(".")) == 3
}
