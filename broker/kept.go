package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/shred"
)

// SubjectSealer seals what the broker keeps of a request (its dead letter)
// and what it writes to regional streams under the data subject's own key,
// so that erasing the subject destroys every kept copy (crypto-shredding).
// It returns shred.ErrShredded for a subject whose key was destroyed.
// *shred.Keyring satisfies it.
type SubjectSealer interface {
	Seal(ctx context.Context, subject string, plaintext []byte) ([]byte, error)
}

// SubjectOpener opens a subject envelope another instance sealed (a
// regional delivery); shred.ErrShredded once the subject's key is destroyed,
// shred.ErrUnknownKey when this instance's key store does not hold the key
// it was sealed under. A receiving region's Options.Subjects must also
// satisfy it; *shred.Keyring does.
type SubjectOpener interface {
	Open(ctx context.Context, sealed []byte) ([]byte, error)
}

// SubjectKeyRef is the key reference of payloads sealed under a subject's
// key.
const SubjectKeyRef = "subject-key"

// sealKept seals data for keeping: under the subject's key when
// Options.Subjects is set and the request names a subject, else under the
// broker's keys. For an erased subject nothing is kept (nil data), nor for
// a refused request that names several (res.severalSubjects): under any
// one subject's key it would outlive the others' erasures, and the parser
// refuses it, so that it could not be replayed anyway. The subject is
// res.req's or, for a result without one (a request refused after it
// parsed, an outcome rebuilt from the audit log), res.subject.
func (b *Broker) sealKept(ctx context.Context, data []byte, res *result) ([]byte, string, error) {
	if res.req == nil && res.severalSubjects && b.opts.Subjects != nil {
		return nil, SubjectKeyRef, nil
	}
	data = append(append(make([]byte, 0, len(keptMark)+len(data)), keptMark...), data...)
	defer clear(data)
	subject := res.subject
	if res.req != nil {
		subject = res.req.Subject.ID
	}
	if b.opts.Subjects == nil || subject == "" {
		sealed, err := b.keys.Seal(ctx, data)
		return sealed, b.keys.KeyRef(), err
	}
	sealed, err := b.opts.Subjects.Seal(ctx, subject, data)
	if errors.Is(err, shred.ErrShredded) {
		return nil, SubjectKeyRef, nil
	}
	return sealed, SubjectKeyRef, err
}

// keptMark begins every kept copy's plaintext. A kept copy is a producer's
// bytes as they came, and it is sealed under the keys regional copies are
// sealed under too, so without it a producer could have a request refused
// that is shaped as a regional payload and have its kept copy taken in by
// a receiving region as one, never decided (openInbound refuses it). No
// JSON text begins so.
const keptMark = "clearance-kept/1\n"

// KeptData returns the data a kept copy (a dead letter) holds, given its
// opened plaintext: without keptMark, and a copy kept before it as it is.
func KeptData(plain []byte) []byte {
	return bytes.TrimPrefix(plain, []byte(keptMark))
}

// looseSubject returns the subject id request data names, or "": that of
// a valid request, and that of a request the parser refuses (a key unknown
// or given twice, a field of the wrong type) that still names one, whose
// kept copy is that subject's data as much as a valid request's is, so it
// is sealed under the subject's key and goes with an erasure. That holds
// for a request that is not even JSON (a comma too many, NaN, cut short)
// too: the id is read from as much of it as can be read, up to the first
// syntax error (subjectBefore). The id chooses only the key; it is
// trusted for nothing else. several reports that data names a subject id
// other than the one returned (a subject or an id given twice, in any
// case, or one followed by a subject or id of the wrong type), or may name
// one past its syntax error: the copy is then as much the data of each,
// and no one key fits it.
func looseSubject(data []byte) (id string, several bool) {
	var seen []string
	var unread []byte
	id, unread = subjectBefore(data, func(v string) {
		if v != "" && !slices.Contains(seen, v) {
			seen = append(seen, v)
		}
	})
	var env struct {
		Subject struct {
			ID string `json:"id"`
		} `json:"subject"`
	}
	var syntax *json.SyntaxError
	switch err := json.Unmarshal(data, &env); {
	case err == nil:
		id, unread = env.Subject.ID, nil
	case !errors.As(err, &syntax):
		// Unmarshal checks the whole text before it decodes any of it:
		// a syntax error means nothing was read, any other error a
		// subject or id of the wrong type in valid JSON, which names no
		// subject.
		id, unread = "", nil
	}
	// An id read and then replaced (by another, or by a subject or id of
	// the wrong type) is another subject's data all the same; so may be
	// what follows a syntax error, where it might name one (the word, or
	// an escape that could spell it).
	return id, len(seen) > 1 || len(seen) == 1 && seen[0] != id || mayNameSubject(unread)
}

// mayNameSubject reports whether text, JSON past a syntax error, might
// hold a subject key: the word in any case, or a \u escape.
func mayNameSubject(text []byte) bool {
	return bytes.Contains(bytes.ToLower(text), []byte("subject")) || bytes.Contains(text, []byte(`\u`))
}

// subjectBefore reads the subject id of data, JSON that is not valid, the
// way json.Unmarshal reads that of valid JSON (keys matched without regard
// to case, the last of a key given twice counting, null leaving the id as
// it was, a subject or id of another type naming none for good), in the
// part of it before its first syntax error. seen is given each id read,
// the ones a later key replaces, or that come after a subject or id of the
// wrong type, too. unread is what was not read: the text from about the
// syntax error on (or after the object), all of it when it is no object.
func subjectBefore(data []byte, seen func(string)) (id string, unread []byte) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", data
	}
	wrong := false
	for {
		key, ok, err := nextKey(dec)
		if err == nil && !ok {
			break
		}
		if err == nil && jsonKey(key, "SUBJECT") {
			var w bool
			id, w, err = subjectID(dec, id, seen)
			wrong = wrong || w
		} else if err == nil {
			err = skipValue(dec)
		}
		if err != nil {
			break
		}
	}
	unread = data[min(max(dec.InputOffset(), 0), int64(len(data))):]
	if wrong {
		return "", unread
	}
	return id, unread
}

// subjectID reads the value of a request's subject from dec, whole: the id
// it names, or id as it was if it names none, and whether it, or an id in
// it, is of the wrong type; at a syntax error, what was read before it and
// the error.
func subjectID(dec *json.Decoder, id string, seen func(string)) (string, bool, error) {
	tok, err := dec.Token()
	if err != nil || tok == nil {
		return id, false, err
	}
	if tok != json.Delim('{') {
		return id, true, skipFrom(dec, tok)
	}
	wrong := false
	for {
		key, ok, err := nextKey(dec)
		if err != nil || !ok {
			return id, wrong, err
		}
		if !jsonKey(key, "ID") {
			if err := skipValue(dec); err != nil {
				return id, wrong, err
			}
			continue
		}
		tok, err := dec.Token()
		if err != nil {
			return id, wrong, err
		}
		switch v := tok.(type) {
		case nil:
		case string:
			id = v
			seen(v)
		default:
			wrong = true
			if err := skipFrom(dec, tok); err != nil {
				return id, wrong, err
			}
		}
	}
}

// nextKey reads the next key of the object dec is in; false at its end.
func nextKey(dec *json.Decoder) (string, bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", false, err
	}
	key, ok := tok.(string)
	return key, ok, nil
}

// jsonKey reports whether key matches the field name upper (in upper
// case) as json.Unmarshal matches them.
func jsonKey(key, upper string) bool {
	if len(key) < len(upper) || len(key) > utf8.UTFMax*len(upper) {
		return false
	}
	i := 0
	for _, r := range key {
		if i == len(upper) || unicode.ToUpper(r) != rune(upper[i]) {
			return false
		}
		i++
	}
	return i == len(upper)
}

// skipValue reads the next value from dec, however deep.
func skipValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	return skipFrom(dec, tok)
}

// skipFrom reads from dec the rest of the value whose first token, tok,
// was read.
func skipFrom(dec *json.Decoder, tok json.Token) error {
	depth := 0
	for {
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
		var err error
		if tok, err = dec.Token(); err != nil {
			return err
		}
	}
}

// sealShared seals a payload for a recipient without a key of its own: a
// regional stream (natsregion) that another region's Clearance opens. It
// is sealed under the subject's key when Options.Subjects is set and the
// request names a subject, so that an erasure shreds the stream's copy
// too; otherwise, and for other connectors, under the broker's shared keys.
// An erased subject's payload is refused permanently. Under the shared keys
// the envelope is appended to dst.
func (b *Broker) sealShared(ctx context.Context, conn connectors.Connector, subject string, dst, payload []byte) ([]byte, string, error) {
	if _, region := conn.(*natsregion.Region); !region || b.opts.Subjects == nil || subject == "" {
		var sealed []byte
		var err error
		if a, ok := b.keys.(SealAppender); ok {
			sealed, err = a.SealAppend(ctx, dst, payload)
		} else {
			sealed, err = b.keys.Seal(ctx, payload)
		}
		return sealed, b.keys.KeyRef(), err
	}
	sealed, err := b.opts.Subjects.Seal(ctx, subject, payload)
	if errors.Is(err, shred.ErrShredded) {
		err = fmt.Errorf("broker: %w: %w", err, errPermanent)
	}
	return sealed, SubjectKeyRef, err
}

// openInbound opens a regional envelope: a subject envelope with
// Options.Subjects (which must satisfy SubjectOpener), anything else with
// the shared keys. A subject envelope whose subject was erased, or that is
// not one, is permanent. One sealed under a key this region's key store
// does not hold is retried, since a replicated key table may not have
// caught up yet, and once max_deliver is reached dead-lettered as
// subject_key_unknown: the usual cause is a key store of the region's own
// where the regions must share one (subject_keys.store).
func (b *Broker) openInbound(ctx context.Context, data []byte) ([]byte, error) {
	plain, err := b.openSealed(ctx, data)
	if err == nil && bytes.HasPrefix(plain, []byte(keptMark)) {
		clear(plain)
		return nil, fmt.Errorf("broker: a kept copy, not a regional one: %w: %w", errNotOpenable, errPermanent)
	}
	return plain, err
}

// openSealed is openInbound without the check that what it opened is no
// kept copy.
func (b *Broker) openSealed(ctx context.Context, data []byte) ([]byte, error) {
	if !shred.IsEnvelope(data) {
		return b.keys.Open(ctx, data)
	}
	o, ok := b.opts.Subjects.(SubjectOpener)
	if !ok {
		return nil, fmt.Errorf("broker: subject envelope and no subject keys here: %w: %w", errNotOpenable, errPermanent)
	}
	plain, err := o.Open(ctx, data)
	switch {
	case errors.Is(err, shred.ErrShredded) || errors.Is(err, shred.ErrMalformed):
		err = fmt.Errorf("broker: %w: %w", err, errPermanent)
	case errors.Is(err, shred.ErrUnknownKey):
		err = fmt.Errorf("broker: %w (the sending region's subject keys must be readable here: subject_keys.store)", err)
	}
	return plain, err
}

var (
	_ SubjectSealer = (*shred.Keyring)(nil)
	_ SubjectOpener = (*shred.Keyring)(nil)
)
