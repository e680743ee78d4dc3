package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestUnroutedAnswersJSON(t *testing.T) {
	inner := http.NewServeMux()
	inner.HandleFunc("POST /v1/transfers", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	outer := http.NewServeMux()
	outer.Handle("/", unrouted(outer, inner))
	outer.HandleFunc("GET /v1/audit", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	tests := []struct {
		method, path string
		want         int
		allow, code  string
	}{
		{"POST", "/v1/transfers", http.StatusAccepted, "", ""},
		{"GET", "/v1/audit", http.StatusOK, "", ""},
		{"GET", "/v1/transfers", http.StatusMethodNotAllowed, "POST", "method_not_allowed"},
		{"POST", "/v1/audit", http.StatusMethodNotAllowed, "GET", "method_not_allowed"},
		{"GET", "/v1/nothing/cust-9", http.StatusNotFound, "", "not_found"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		outer.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.want || rec.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d Allow %q, want %d Allow %q", tt.method, tt.path, rec.Code, rec.Header().Get("Allow"), tt.want, tt.allow)
		}
		if tt.code == "" {
			continue
		}
		var body struct{ Error, Message string }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != tt.code || body.Message == "" {
			t.Errorf("%s %s: body %q (%v), want JSON error %q with a message", tt.method, tt.path, rec.Body, err, tt.code)
		}
		if strings.Contains(rec.Body.String(), "cust-9") {
			t.Errorf("%s %s: the answer echoes the path: %s", tt.method, tt.path, rec.Body)
		}
		if rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tt.method, tt.path, rec.Header().Get("Content-Type"))
		}
	}
}
