package compliance

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// SubjectTokenTTL is how long a console subject token stays usable.
const SubjectTokenTTL = 12 * time.Hour

// tokenKeyLabel is the HKDF salt of the subject tokens' key. Tokens sealed
// under the first key (before 2026-12-03) no longer open: the console asks
// for the subject again.
const tokenKeyLabel = "clearance console subject token v2"

// errBadSubjectToken is a subject token that is malformed, forged,
// expired or sealed for another account.
var errBadSubjectToken = errors.New("compliance: subject token invalid, expired or another account's")

// subjectTokens seal a subject id into an opaque, expiring URL token, so
// that a subject typed into the console never lands in the address bar
// (browser history, proxies' logs). A token is bound to the account that
// searched: any other principal, whatever its role, is refused it. The key derives from the subject HMAC
// key (tokens work on every instance sharing it) or, without one, is random
// per process.
//
// It derives by HKDF (tokenKeyLabel), never as an HMAC under the subject
// key of some label: the API answers the HMAC of any string a viewer names
// as a subject (GET /v1/subjects/{subject}/recipients), so a key made that
// way (as the first tokens' was, HMAC of "clearance console subject token
// v1") was one request away from every viewer, who could then open any
// token seen in a log or a browser's history. HKDF keys its extraction by
// its salt, not by the subject key, so no answer of the API is its key.
type subjectTokens struct {
	aead cipher.AEAD
	now  func() time.Time
}

func newSubjectTokens(subjectKey []byte, now func() time.Time) (*subjectTokens, error) {
	key := make([]byte, 32)
	if len(subjectKey) > 0 {
		var err error
		if key, err = hkdf.Key(sha256.New, subjectKey, []byte(tokenKeyLabel), "aes-256-gcm", 32); err != nil {
			return nil, err
		}
	} else if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &subjectTokens{aead: aead, now: now}, nil
}

// seal returns the token of subject for account (the signed-in
// principal's "sub"). The account is the AEAD's associated data: the token
// opens for that account only, so an address copied to (or read from the
// history or logs by) anyone else gives them nothing.
func (t *subjectTokens) seal(subject, account string) string {
	nonce := make([]byte, t.aead.NonceSize())
	_, _ = rand.Read(nonce)
	plain := binary.BigEndian.AppendUint64(nil, uint64(t.now().Add(SubjectTokenTTL).Unix()))
	plain = append(plain, subject...)
	return base64.RawURLEncoding.EncodeToString(t.aead.Seal(nonce, nonce, plain, tokenAccount(account)))
}

// open returns the subject of a token sealed for account.
func (t *subjectTokens) open(token, account string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	ns := t.aead.NonceSize()
	if err != nil || len(raw) < ns+t.aead.Overhead()+8 {
		return "", errBadSubjectToken
	}
	plain, err := t.aead.Open(nil, raw[:ns], raw[ns:], tokenAccount(account))
	if err != nil || len(plain) < 9 {
		return "", errBadSubjectToken
	}
	if exp := int64(binary.BigEndian.Uint64(plain[:8])); t.now().Unix() > exp {
		return "", errBadSubjectToken
	}
	return string(plain[8:]), nil
}

// tokenAccount is the associated data binding a token to account.
func tokenAccount(account string) []byte {
	return append([]byte("account\x00"), account...)
}

// accountOf returns the "sub" of the principal wrap authenticated for r
// ("" for none: a token sealed for nobody opens for nobody else).
func accountOf(r *http.Request) string {
	if p := principalOf(r.Context()); p != nil {
		return p.Subject
	}
	return ""
}

// subjectSearch takes the subject page's form (POST) and redirects to the
// page by token.
func (c *console) subjectSearch(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		c.errorPage(w, r, http.StatusBadRequest, "parameter subject: unreadable form")
		return
	}
	subject := strings.TrimSpace(r.PostForm.Get("subject"))
	if subject == "" || len(subject) > 256 || strings.ContainsFunc(subject, isControl) {
		c.errorPage(w, r, http.StatusBadRequest, "parameter subject: want a subject id of 1 to 256 printable characters")
		return
	}
	http.Redirect(w, r, "/console/subject?s="+c.s.tokens.seal(subject, accountOf(r)), http.StatusSeeOther)
}

// auditSearch takes the audit explorer's filter form (POST) and redirects
// to the explorer with the subject replaced by its HMAC (as the audit log
// keeps it), or, without the HMAC key, by a token.
func (c *console) auditSearch(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		c.errorPage(w, r, http.StatusBadRequest, "parameter body: unreadable form")
		return
	}
	q := url.Values{}
	for k, v := range r.PostForm {
		if len(v) > 0 && strings.TrimSpace(v[len(v)-1]) != "" {
			q.Set(k, strings.TrimSpace(v[len(v)-1]))
		}
	}
	if subject := q.Get("subject"); subject != "" {
		q.Del("subject")
		q.Del("subject_hmac")
		q.Del("s")
		for k, v := range c.subjectAuditQuery(r, subject) {
			q[k] = v
		}
	}
	target := "/console/audit"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// subjectFromToken replaces the token parameter s of q by the subject it
// seals (for the filters); a bad token, or one sealed for another account
// than r's, is a parameter error that names neither.
func (c *console) subjectFromToken(r *http.Request, q url.Values) (url.Values, error) {
	tok := q.Get("s")
	if tok == "" {
		return q, nil
	}
	subject, err := c.s.tokens.open(tok, accountOf(r))
	if err != nil {
		return nil, badParam("s", "subject token invalid, expired or made for another account; search again")
	}
	out := cloneValues(q)
	out.Del("s")
	out.Set("subject", subject)
	return out, nil
}

// subjectAuditQuery returns the audit explorer's query selecting subject
// for r's account: its HMAC, or without the HMAC key a token, never the id.
func (c *console) subjectAuditQuery(r *http.Request, subject string) url.Values {
	if h := c.s.subjectHMAC(subject); h != "" {
		return url.Values{"subject_hmac": {h}}
	}
	return url.Values{"s": {c.s.tokens.seal(subject, accountOf(r))}}
}
