package keys

import (
	"context"
	"errors"
	"net/url"
	"syscall"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name    string
		give    error
		want    error
		notWant []error
	}{
		{"sealed", &vault.ResponseError{StatusCode: 503, Errors: []string{"Vault is sealed"}}, ErrUnavailable, []error{ErrPermissionDenied}},
		{"standby or overloaded", &vault.ResponseError{StatusCode: 429}, ErrUnavailable, nil},
		{"connection refused", &url.Error{Op: "Put", URL: "http://127.0.0.1:1", Err: syscall.ECONNREFUSED}, ErrUnavailable, nil},
		{"timeout", context.DeadlineExceeded, ErrUnavailable, nil},
		{"permission denied", &vault.ResponseError{StatusCode: 403, Errors: []string{"permission denied"}}, ErrPermissionDenied, []error{ErrUnavailable}},
		{"retired version", &vault.ResponseError{StatusCode: 400, Errors: []string{"ciphertext or signature version is disallowed by policy (too old)"}}, ErrKeyRetired, []error{ErrUnavailable}},
		{"retired in a batch item", &vaultItemError{msg: "ciphertext or signature version is disallowed by policy (too old)"}, ErrKeyRetired, []error{ErrUnavailable}},
		{"altered ciphertext", &vault.ResponseError{StatusCode: 400, Errors: []string{"cipher: message authentication failed"}}, ErrNotAuthentic, []error{ErrUnavailable, ErrKeyRetired}},
		{"unparsable ciphertext", &vault.ResponseError{StatusCode: 400, Errors: []string{"invalid ciphertext: could not decode base64"}}, ErrNotAuthentic, []error{ErrUnavailable}},
		{"short ciphertext", &vault.ResponseError{StatusCode: 400, Errors: []string{"invalid ciphertext length"}}, ErrNotAuthentic, []error{ErrUnavailable}},
		{"altered ciphertext in a batch item", &vaultItemError{msg: "cipher: message authentication failed"}, ErrNotAuthentic, []error{ErrUnavailable}},
		{"version not yet known to this node", &vault.ResponseError{StatusCode: 400, Errors: []string{"invalid ciphertext: version is too new"}}, nil, []error{ErrNotAuthentic, ErrKeyRetired}},
		{"encryption key not found", &vault.ResponseError{StatusCode: 400, Errors: []string{"encryption key not found"}}, nil, []error{ErrNotAuthentic, ErrUnavailable}},
		{"bad request", &vault.ResponseError{StatusCode: 400, Errors: []string{"missing ciphertext to decrypt"}}, nil, []error{ErrNotAuthentic, ErrUnavailable, ErrPermissionDenied, ErrKeyRetired}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify("transit decrypt", tt.give)
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("%v: not %v", err, tt.want)
			}
			for _, nw := range tt.notWant {
				if errors.Is(err, nw) {
					t.Errorf("%v: unexpectedly %v", err, nw)
				}
			}
			if !errors.Is(err, tt.give) {
				t.Errorf("cause not kept: %v", err)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	err := newError("transit datakey", ErrUnavailable, errors.New("connection refused"))
	if got, want := err.Error(), "keys: transit datakey: key service unavailable: connection refused"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}
