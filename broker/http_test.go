package broker

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

func TestSplitTransfers(t *testing.T) {
	tests := []struct {
		name      string
		give      string
		wantN     int
		wantBatch bool
		wantErr   bool
	}{
		{"one object", `{"id":"a"}`, 1, false, false},
		{"array", ` [{"id":"a"},{"id":"b"}]`, 2, true, false},
		{"empty array", `[]`, 0, true, true},
		{"not json", `{"id":`, 0, false, true},
		{"broken array", `[{"id":"a"},`, 0, true, true},
		{"scalar is published and rejected downstream", `42`, 1, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raws, batch, err := splitTransfers([]byte(tt.give))
			if (err != nil) != tt.wantErr || len(raws) != tt.wantN || batch != tt.wantBatch {
				t.Errorf("splitTransfers = %d, %v, %v", len(raws), batch, err)
			}
		})
	}
}

func TestRouteOf(t *testing.T) {
	tests := []struct {
		name       string
		give       string
		wantID     string
		wantSource string
	}{
		{"plain", `{"id":"ord-1","source":"order-service"}`, "ord-1", "order-service"},
		{"source with a dot", `{"id":"ord-1","source":"a.b"}`, "ord-1", "unknown"},
		{"source wildcard", `{"id":"ord-1","source":">"}`, "ord-1", "unknown"},
		{"no id", `{"source":"s"}`, "http-", "s"},
		{"id with a newline", `{"id":"a\r\nNats-Msg-Id: b","source":"s"}`, "http-", "s"},
		{"not an object", `[1]`, "http-", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := routeOf([]byte(tt.give))
			if !strings.HasPrefix(got.ID, tt.wantID) || got.Source != tt.wantSource {
				t.Errorf("routeOf = %+v, want id %q… source %q", got, tt.wantID, tt.wantSource)
			}
		})
	}
}

// FuzzPostBody checks that any body splits into requests whose routes are
// safe to publish: a non-empty id without control characters and a source
// that is one subject token.
func FuzzPostBody(f *testing.F) {
	f.Add([]byte(`{"id":"ord-1","source":"order-service","record":{}}`))
	f.Add([]byte(`[{"id":"a","source":"s"},{"id":"b"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"id":"\u0000","source":"x.y"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		raws, _, err := splitTransfers(body)
		if err != nil {
			return
		}
		for _, raw := range raws {
			if !json.Valid(raw) {
				t.Fatalf("split produced invalid JSON %q", raw)
			}
			env := routeOf(raw)
			if env.ID == "" || strings.ContainsFunc(env.ID, unicode.IsControl) {
				t.Fatalf("unsafe id %q", env.ID)
			}
			if !validToken(env.Source) {
				t.Fatalf("unsafe source %q", env.Source)
			}
		}
	})
}

func TestIDProblem(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantBad bool
	}{
		{"plain", "ord-10023-delivery", false},
		{"inner space", "ord 10023", false},
		{"leading space", " ord-1", true},
		{"trailing space", "ord-1 ", true},
		{"trailing no-break space", "ord-1\u00a0", true},
		{"newline", "ord-1\n", true},
		{"257 bytes", strings.Repeat("a", 257), true},
		{"256 bytes", strings.Repeat("a", 256), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := idProblem(tt.give); (got != "") != tt.wantBad {
				t.Errorf("idProblem(%q) = %q", tt.give, got)
			}
			env := routeOf([]byte(`{"id":` + strconv.Quote(tt.give) + `,"source":"s"}`))
			if env.refused != tt.wantBad || (tt.wantBad && !strings.HasPrefix(env.ID, "http-")) || (!tt.wantBad && env.ID != tt.give) {
				t.Errorf("routeOf = %+v", env)
			}
		})
	}
}
