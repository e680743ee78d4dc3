package broker

import "testing"

// TestNoticeMsgID: a notice is taken in under the Nats-Msg-Id the sending
// region publishes it under (erasure.Notifier), its notice id or, for one
// awaiting an answer, its notice id and attempt, and under no other.
func TestNoticeMsgID(t *testing.T) {
	tests := []struct {
		name  string
		msgID string
		want  bool
	}{
		{"the notice id", "notice-1", true},
		{"an attempt", "notice-1.a0", true},
		{"a later attempt", "notice-1.a12", true},
		{"none", "", false},
		{"another notice's id", "notice-2", false},
		{"another notice's attempt", "notice-2.a0", false},
		{"a longer id", "notice-10", false},
		{"an attempt without number", "notice-1.a", false},
		{"an attempt not a number", "notice-1.a1x", false},
		{"another suffix", "notice-1.b1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := noticeMsgID(tt.msgID, "notice-1"); got != tt.want {
				t.Errorf("noticeMsgID(%q, notice-1) = %v, want %v", tt.msgID, got, tt.want)
			}
		})
	}
}
