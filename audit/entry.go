package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clearance-broker/clearance/internal/jsonenc"
)

// Event names what an entry records. The set is open: registry changes and
// later parts of the broker may add their own events; the constants below are
// the ones the broker writes today.
type Event string

// The events the broker records.
const (
	// EventDecided records a decision (allow or deny) for one request.
	EventDecided Event = "decided"
	// EventDelivered records a delivery the recipient accepted.
	EventDelivered Event = "delivered"
	// EventDeliveryFailed records a delivery attempt that failed.
	EventDeliveryFailed Event = "delivery_failed"
	// EventRejected records a request that could not be parsed or was incomplete.
	EventRejected Event = "rejected"
	// EventReceived records a transfer received from another region.
	EventReceived Event = "received"
	// EventErasureNotified records that a recipient was told of an erasure (Art. 19).
	EventErasureNotified Event = "erasure_notified"
	// EventRegistryApplied records a registry version loaded into the store.
	EventRegistryApplied Event = "registry_applied"
	// EventConsentRecorded records a consent granted or withdrawn at run time.
	EventConsentRecorded Event = "consent_recorded"
	// EventErasureRecorded records an erasure request entered at run time.
	EventErasureRecorded Event = "erasure_recorded"
)

// ReasonMayHaveReceived is the reason a delivery_failed entry carries, beside
// the failure's, when the payload went out and no answer came (a timeout,
// a lost acknowledgement): the recipient may hold the transfer.
const ReasonMayHaveReceived = "recipient_may_have_received"

// MayHaveReached reports whether e records a transfer its recipient holds,
// or may hold: a delivery, a receipt from another region, or a failed
// delivery that may have reached the recipient (ReasonMayHaveReceived). A
// recipient of such an entry is one to name to the subject (Art. 15(1)(c))
// and to tell of an erasure (Art. 19).
func (e *Entry) MayHaveReached() bool {
	switch e.Event {
	case EventDelivered, EventReceived:
		return true
	case EventDeliveryFailed:
		return slices.Contains(e.Reasons, ReasonMayHaveReceived)
	}
	return false
}

// legalOrderPrefix marks an AgreementID that names the legal order a
// disclosure to an authority rests on: the order stands where an agreement
// would (DESIGN section 3, rule 4), and the entry names it as it names an
// agreement, with AgreementVersion 0, which no agreement has.
const legalOrderPrefix = "legal-order:"

// LegalOrderAgreement returns the AgreementID of an entry whose transfer
// rests on the legal order id.
func LegalOrderAgreement(id string) string { return legalOrderPrefix + id }

// LegalOrder returns the id of the legal order e's transfer rests on, or ""
// when it rests on an agreement or on neither.
func (e *Entry) LegalOrder() string {
	if id, ok := strings.CutPrefix(e.AgreementID, legalOrderPrefix); ok && e.AgreementVersion == 0 {
		return id
	}
	return ""
}

// genesisHash is the prev_hash of the first entry of a chain.
var genesisHash = strings.Repeat("0", 64)

// Entry is one audit log entry. It carries every field of the design's
// section 5 and nothing personal: the subject appears only as a keyed HMAC
// and no record content is accepted. Sequence, PrevHash and Hash are assigned
// by Append; callers fill in the rest (Time defaults to the append time).
type Entry struct {
	Sequence         int64             `json:"sequence"`
	Time             time.Time         `json:"time"`
	Event            Event             `json:"event"`
	RequestID        string            `json:"request_id"`
	Source           string            `json:"source"`
	Recipient        string            `json:"recipient"`
	RecipientCountry string            `json:"recipient_country"`
	Origin           string            `json:"origin_jurisdiction"`
	Purpose          string            `json:"purpose"`
	Dataset          string            `json:"dataset"`
	Decision         string            `json:"decision"`
	Reasons          []string          `json:"reasons"`
	LegalBasis       string            `json:"legal_basis"`
	AgreementID      string            `json:"agreement_id"`
	AgreementVersion int               `json:"agreement_version"`
	Mechanism        string            `json:"mechanism"`
	CategoriesSent   []string          `json:"categories_sent"`
	FieldsRemoved    map[string]string `json:"fields_removed"`
	KeyRef           string            `json:"key_ref"`
	PayloadDigest    string            `json:"payload_digest"`
	RegistryVersion  string            `json:"registry_version"`
	SubjectHMAC      string            `json:"subject_hmac"`
	PrevHash         string            `json:"prev_hash"`
	Hash             string            `json:"hash"`

	// SubjectID is the subject id in clear, given by the caller of Append,
	// which replaces it with SubjectHMAC. It is never stored, encoded or
	// returned.
	SubjectID string `json:"-"`
}

// clone returns a deep copy of e in canonical form: times in UTC truncated to
// microseconds (what both stores keep), nil lists and maps made empty, and
// SubjectID dropped.
func (e *Entry) clone() Entry {
	c := *e
	c.SubjectID = ""
	c.Time = c.Time.UTC().Truncate(time.Microsecond)
	c.Reasons = cloneList(e.Reasons)
	c.CategoriesSent = cloneList(e.CategoriesSent)
	c.FieldsRemoved = maps.Clone(e.FieldsRemoved)
	if c.FieldsRemoved == nil {
		c.FieldsRemoved = map[string]string{}
	}
	return c
}

func cloneList(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// computeHash returns the chain hash of e: the hex SHA-256 of its canonical
// JSON (see appendHashBody) with Hash empty. Sequence and PrevHash are part
// of the input, so the hash binds the entry to its place in the chain.
func computeHash(e *Entry) string {
	b := make([]byte, 0, 1024)
	b = append(b, `{"sequence":`...)
	b = strconv.AppendInt(b, e.Sequence, 10)
	b = append(b, ',')
	b, _, ok := appendHashBody(b, e)
	if !ok {
		// Append refuses such times (validate); the stores cannot hold them.
		panic("audit: encode entry: time outside the years 0 to 9999")
	}
	b = append(b, `"prev_hash":`...)
	b = jsonenc.AppendString(b, e.PrevHash)
	b = append(b, `,"hash":""}`...)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// The canonical JSON of an entry begins with its sequence and ends with its
// prev_hash and hash: hashPrefix and hashSuffix are those parts for an
// entry whose chain fields are zero, and the hash body (appendHashBody) is
// what lies between them.
const (
	hashPrefix = `{"sequence":0,`
	hashSuffix = `"prev_hash":"","hash":""}`
)

// chainHasher computes the chain hashes of a writer's entries from their
// hash bodies, which the appenders encoded, reusing one buffer: the writer,
// which chains a batch while its appenders wait, only hashes.
type chainHasher struct {
	buf []byte
	// head holds the hash a batch is chained after, for the writer.
	head []byte
}

// sum writes to dst the hex computeHash of the entry whose hash body is
// body, at sequence seq after prev (a hex digest, which JSON does not
// escape).
func (c *chainHasher) sum(dst *[2 * sha256.Size]byte, body []byte, seq int64, prev []byte) {
	b := append(c.buf[:0], `{"sequence":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, ',')
	b = append(b, body...)
	b = append(b, `"prev_hash":"`...)
	b = append(b, prev...)
	b = append(b, `","hash":""}`...)
	sum := sha256.Sum256(b)
	hex.Encode(dst[:], sum[:])
	if cap(b) <= maxKeptBuffer {
		c.buf = b[:0]
	} else {
		c.buf = nil
	}
}

// SubjectHMAC returns the keyed HMAC-SHA256 of a subject id, hex encoded, as
// stored in Entry.SubjectHMAC. Query uses it to look a subject up.
func SubjectHMAC(key []byte, subjectID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(subjectID))
	return hex.EncodeToString(m.Sum(nil))
}

// Digest returns the digest of a sealed payload in the form stored in
// Entry.PayloadDigest: "sha256:" and the hex SHA-256.
func Digest(sealed []byte) string {
	sum := sha256.Sum256(sealed)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// MaxRequestID is the longest request id, in bytes, an entry holds: the
// broker refuses a longer one, since the id travels as the Nats-Msg-Id and
// Idempotency-Key headers and keys the log's look-ups.
const MaxRequestID = 256

// IDControl reports whether id holds a control character, which the broker
// refuses in a request id (a NUL the store refuses, a forged line break in
// a header or a log line).
func IDControl(id string) bool { return strings.ContainsFunc(id, unicode.IsControl) }

// RecordableID reports whether id can be the request id of an entry the
// broker wrote: 1 to MaxRequestID bytes of UTF-8 without control
// characters. The broker also refuses an id with white space at either
// end, which entries written before it did may hold.
func RecordableID(id string) bool {
	return id != "" && len(id) <= MaxRequestID && utf8.ValidString(id) && !IDControl(id)
}

// ClaimedID reports whether an id a caller claims (a header's, a rights
// message's) can key an entry as it came: RecordableID, without white space
// at either end, as the broker takes producers' ids.
func ClaimedID(id string) bool { return RecordableID(id) && strings.TrimSpace(id) == id }
