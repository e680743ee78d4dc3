package policy

import (
	"errors"
	"net/http"
	"strings"
)

// Errors an authorize function given to Mount wraps so that its refusal is
// answered with the right status. An error wrapping none of them answers
// 401.
var (
	// ErrUnauthenticated: the caller carried no token or an invalid one
	// (401).
	ErrUnauthenticated = errors.New("policy: not authenticated")
	// ErrForbidden: the token is valid but its role is too low (403).
	ErrForbidden = errors.New("policy: role not permitted")
	// ErrAuthUnavailable: the token could not be checked, for instance the
	// issuer's keys cannot be read (503).
	ErrAuthUnavailable = errors.New("policy: authentication unavailable")
)

// authErrorBody is the JSON body of a refused call, the same shape as the
// compliance API's error answers.
type authErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// WriteAuthError answers the error of an authorize function the way the
// compliance API does: 401 with a WWW-Authenticate challenge when the
// caller is not authenticated, 403 when err wraps ErrForbidden and 503 when
// it wraps ErrAuthUnavailable. The body is {"error":
// "unauthorized"|"forbidden"|"issuer_keys_unavailable", "message": "…"},
// the message being err's text without its package prefix; it must not hold
// the token.
func WriteAuthError(w http.ResponseWriter, err error) {
	status, code := http.StatusUnauthorized, "unauthorized"
	switch {
	case errors.Is(err, ErrForbidden):
		status, code = http.StatusForbidden, "forbidden"
	case errors.Is(err, ErrAuthUnavailable):
		status, code = http.StatusServiceUnavailable, "issuer_keys_unavailable"
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="clearance"`)
	}
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, ": "); ok && !strings.Contains(msg[:len(msg)-len(rest)-2], " ") {
		msg = rest
	}
	writeJSON(w, status, authErrorBody{Error: code, Message: msg})
}
