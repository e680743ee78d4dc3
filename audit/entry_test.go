package audit

import (
	"strings"
	"testing"
	"time"
)

// TestChainHash checks that the writer's hash from a body the appender
// encoded (appendHashBody, chainHasher) is the canonical computeHash that
// Verify checks.
func TestChainHash(t *testing.T) {
	awkward := decidedEntry(3)
	awkward.Recipient, awkward.Reasons = `"quoted" \ <tag> & 東京`+"\n", []string{"\u2028", `\u0000`}
	awkward.FieldsRemoved = map[string]string{"b": "2", "a": "1", `"k"`: "<v>"}
	sparse := &Entry{Event: EventRegistryApplied, Time: time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.FixedZone("x", 3600))}
	tests := []struct {
		name string
		give *Entry
		seq  int64
		prev string
	}{
		{"decided", decidedEntry(1), 1, genesisHash},
		{"awkward text", awkward, 1234567890123, strings.Repeat("ab", 32)},
		{"nil lists, zone, nanoseconds", sparse, 7, strings.Repeat("0f", 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.give.clone()
			body, _, ok := appendHashBody(nil, &e)
			if !ok {
				t.Fatal("appendHashBody: not encodable")
			}
			e.Sequence, e.PrevHash = tt.seq, tt.prev
			var h chainHasher
			var got [64]byte
			h.sum(&got, body, tt.seq, []byte(tt.prev))
			if want := computeHash(&e); string(got[:]) != want {
				t.Errorf("chainHasher = %s, computeHash = %s", got, want)
			}
		})
	}
}

// TestEntryLegalOrder reads the legal order an entry names in place of an
// agreement, and nothing from an agreement, even one named like an order.
func TestEntryLegalOrder(t *testing.T) {
	tests := []struct {
		id      string
		version int
		want    string
	}{
		{LegalOrderAgreement("order-2026-113"), 0, "order-2026-113"},
		{"dpa-swiftship-de", 2, ""},
		{"legal-order:order-2026-113", 1, ""}, // an agreement: it has a version
		{"", 0, ""},
	}
	for _, tt := range tests {
		e := Entry{AgreementID: tt.id, AgreementVersion: tt.version}
		if got := e.LegalOrder(); got != tt.want {
			t.Errorf("LegalOrder() of %q v%d = %q, want %q", tt.id, tt.version, got, tt.want)
		}
	}
}

func TestRecordableID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want bool
	}{
		{"ord-10023-delivery", true},
		{" padded ", true}, // refused by the broker now, held by older logs
		{strings.Repeat("x", MaxRequestID), true},
		{"", false},
		{strings.Repeat("x", MaxRequestID+1), false},
		{"a\nb", false},
		{"a\x00b", false},
		{"\xff", false},
	} {
		if got := RecordableID(tt.id); got != tt.want {
			t.Errorf("RecordableID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
