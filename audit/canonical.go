package audit

import (
	"strconv"
	"time"

	"github.com/clearance-broker/clearance/internal/jsonenc"
)

// The canonical JSON of an entry is what the chain hash covers. It is the
// form encoding/json gave it when the log was first written (field order of
// Entry, HTML characters and U+2028/U+2029 escaped, map keys sorted, times
// in RFC 3339 with up to microseconds), and every hash already stored
// depends on it byte for byte; the encoder below writes it by hand, without
// reflection, and TestCanonicalMatchesEncodingJSON holds it to
// encoding/json's output.

// span is where a part of an encoded body lies: body[start:end].
type span struct{ start, end int32 }

// bodyLists are the spans of an entry's lists in its hash body, which are
// also the JSON stored in the columns reasons, categories_sent and
// fields_removed, and what the body's strings held (jsonenc.Seen).
type bodyLists struct {
	reasons, categories, fieldsRemoved span
	// text is what the strings stored in text columns of their own held
	// (the lists are stored as their JSON, which escapes control bytes);
	// all, what every string of the body held.
	text, all jsonenc.Seen
}

// appendHashBody appends e's canonical JSON between its sequence and its
// prev_hash (see hashPrefix) to b: the fields from "time" to "subject_hmac"
// with their trailing comma. e is taken in canonical form whatever it holds:
// its time in UTC truncated to microseconds, nil lists and maps as empty
// ones. The spans of the lists are relative to the start of the body. It
// reports false, with b unchanged, for a time whose year has not 4 digits,
// which RFC 3339 (and so encoding/json) cannot write.
func appendHashBody(b []byte, e *Entry) ([]byte, bodyLists, bool) {
	var ls bodyLists
	t := e.Time.UTC().Truncate(time.Microsecond)
	if y := t.Year(); y < 0 || y > 9999 {
		return b, ls, false
	}
	var text, lists, sn jsonenc.Seen
	str := func(b []byte, s string) []byte {
		b, sn = jsonenc.AppendStringSeen(b, s)
		text |= sn
		return b
	}
	n := len(b)
	b = append(b, `"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","event":`...)
	b = str(b, string(e.Event))
	b = append(b, `,"request_id":`...)
	b = str(b, e.RequestID)
	b = append(b, `,"source":`...)
	b = str(b, e.Source)
	b = append(b, `,"recipient":`...)
	b = str(b, e.Recipient)
	b = append(b, `,"recipient_country":`...)
	b = str(b, e.RecipientCountry)
	b = append(b, `,"origin_jurisdiction":`...)
	b = str(b, e.Origin)
	b = append(b, `,"purpose":`...)
	b = str(b, e.Purpose)
	b = append(b, `,"dataset":`...)
	b = str(b, e.Dataset)
	b = append(b, `,"decision":`...)
	b = str(b, e.Decision)
	b = append(b, `,"reasons":`...)
	ls.reasons.start = int32(len(b) - n)
	b, sn = jsonenc.AppendStringsSeen(b, e.Reasons)
	lists |= sn
	ls.reasons.end = int32(len(b) - n)
	b = append(b, `,"legal_basis":`...)
	b = str(b, e.LegalBasis)
	b = append(b, `,"agreement_id":`...)
	b = str(b, e.AgreementID)
	b = append(b, `,"agreement_version":`...)
	b = strconv.AppendInt(b, int64(e.AgreementVersion), 10)
	b = append(b, `,"mechanism":`...)
	b = str(b, e.Mechanism)
	b = append(b, `,"categories_sent":`...)
	ls.categories.start = int32(len(b) - n)
	b, sn = jsonenc.AppendStringsSeen(b, e.CategoriesSent)
	lists |= sn
	ls.categories.end = int32(len(b) - n)
	b = append(b, `,"fields_removed":`...)
	ls.fieldsRemoved.start = int32(len(b) - n)
	b, sn = jsonenc.AppendStringMapSeen(b, e.FieldsRemoved)
	lists |= sn
	ls.fieldsRemoved.end = int32(len(b) - n)
	b = append(b, `,"key_ref":`...)
	b = str(b, e.KeyRef)
	b = append(b, `,"payload_digest":`...)
	b = str(b, e.PayloadDigest)
	b = append(b, `,"registry_version":`...)
	b = str(b, e.RegistryVersion)
	b = append(b, `,"subject_hmac":`...)
	b = str(b, e.SubjectHMAC)
	b = append(b, ',')
	ls.text, ls.all = text, text|lists
	return b, ls, true
}
