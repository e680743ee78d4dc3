package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMountAuthStatus(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantCode   string
	}{
		{"no token", ErrUnauthenticated, http.StatusUnauthorized, "unauthorized"},
		{"invalid token", fmt.Errorf("%w: expired", ErrUnauthenticated), http.StatusUnauthorized, "unauthorized"},
		{"unclassified", errors.New("something else"), http.StatusUnauthorized, "unauthorized"},
		{"role too low", fmt.Errorf("%w: needs officer", ErrForbidden), http.StatusForbidden, "forbidden"},
		{"issuer keys", fmt.Errorf("%w: issuer keys", ErrAuthUnavailable), http.StatusServiceUnavailable, "issuer_keys_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			// The authorizer refuses before the Live registry is reached.
			(&Live{}).Mount(mux, func(*http.Request) error { return tt.err })
			for _, path := range []string{"/v1/consents", "/v1/subjects/cust-1/erasure"} {
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{}`)))
				if rec.Code != tt.wantStatus {
					t.Fatalf("%s: status %d, want %d", path, rec.Code, tt.wantStatus)
				}
				var body struct{ Error, Message string }
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != tt.wantCode || body.Message == "" {
					t.Fatalf("%s: body %s, want error %q and a message", path, rec.Body, tt.wantCode)
				}
				if got := rec.Header().Get("WWW-Authenticate") != ""; got != (tt.wantStatus == http.StatusUnauthorized) {
					t.Fatalf("%s: WWW-Authenticate present %v", path, got)
				}
			}
		})
	}
}
