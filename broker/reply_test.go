package broker

import "testing"

func TestReplyToNamesInstanceSubjectsOnly(t *testing.T) {
	tests := []struct {
		header, want string
	}{
		{"clearance.replies.Kx9fQ2b7", "clearance.replies.Kx9fQ2b7"},
		{"clearance.replies.a-b_c", "clearance.replies.a-b_c"},
		{"", ""},
		{"clearance.replies.", ""},
		{"clearance.replies.>", ""},
		{"clearance.replies.*", ""},
		{"clearance.replies.a.b", ""},
		{"clearance.receipts.order-service", ""},
		{"clearance.transfers.order-service", ""},
		{"$JS.API.STREAM.DELETE.CLEARANCE_TRANSFERS", ""},
		{"clearance.replies.a b", ""},
	}
	for _, tt := range tests {
		h := map[string]string{ReplyHeader: tt.header}
		if got := replyTo(headerMap(h)); got != tt.want {
			t.Errorf("replyTo(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

type headerMap map[string]string

func (h headerMap) Get(k string) string { return h[k] }
