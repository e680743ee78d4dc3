package compliance_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/compliance"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

var authNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// issuer is an identity provider in a test: an ES256 key with a kid, its
// JWKS served over HTTP, and a count of fetches.
type issuer struct {
	t       *testing.T
	priv    jwk.Key
	set     atomic.Pointer[[]byte]
	fetches atomic.Int32
	srv     *httptest.Server
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	is := &issuer{t: t}
	is.rotate()
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		is.fetches.Add(1)
		_, _ = w.Write(*is.set.Load())
	}))
	t.Cleanup(is.srv.Close)
	return is
}

// rotate makes a new key and publishes only it.
func (is *issuer) rotate() {
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		is.t.Fatal(err)
	}
	k, err := jwk.FromRaw(raw)
	if err != nil {
		is.t.Fatal(err)
	}
	_ = jwk.AssignKeyID(k)
	is.priv = k
	pub, _ := jwk.PublicKeyOf(k)
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	b, _ := json.Marshal(set)
	is.set.Store(&b)
}

type claims struct {
	iss, aud string
	exp      time.Time
	roles    any
	noKid    bool
}

func (is *issuer) token(c claims) string {
	is.t.Helper()
	b := jwt.NewBuilder().Issuer(c.iss).Audience([]string{c.aud}).Subject("acct-1").IssuedAt(authNow.Add(-time.Minute))
	if !c.exp.IsZero() {
		b = b.Expiration(c.exp)
	}
	if c.roles != nil {
		b = b.Claim("realm_access", map[string]any{"roles": c.roles})
	}
	tok, err := b.Build()
	if err != nil {
		is.t.Fatal(err)
	}
	key := is.priv
	if c.noKid {
		key, _ = jwk.FromRaw(mustRaw(is.t, is.priv))
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, key))
	if err != nil {
		is.t.Fatal(err)
	}
	return string(signed)
}

func mustRaw(t *testing.T, k jwk.Key) any {
	t.Helper()
	var raw ecdsa.PrivateKey
	if err := k.Raw(&raw); err != nil {
		t.Fatal(err)
	}
	return &raw
}

func TestAuthenticate(t *testing.T) {
	is := newIssuer(t)
	auth, err := compliance.NewAuthenticator(compliance.AuthConfig{
		Issuer: "https://idp.example", Audience: "clearance", JWKSURL: is.srv.URL,
		RoleClaim: "realm_access.roles", ClockSkew: 30 * time.Second,
	}, compliance.AuthOptions{Now: func() time.Time { return authNow }})
	if err != nil {
		t.Fatal(err)
	}
	ok := claims{iss: "https://idp.example", aud: "clearance", exp: authNow.Add(time.Hour), roles: []any{"viewer", "officer"}}
	tests := []struct {
		name     string
		give     func() claims
		token    string
		wantRole compliance.Role
		wantErr  error
	}{
		{name: "valid, highest role wins", give: func() claims { return ok }, wantRole: compliance.RoleOfficer},
		{name: "expired within skew", give: func() claims { c := ok; c.exp = authNow.Add(-20 * time.Second); return c }, wantRole: compliance.RoleOfficer},
		{name: "expired beyond skew", give: func() claims { c := ok; c.exp = authNow.Add(-time.Minute); return c }, wantErr: compliance.ErrInvalidToken},
		{name: "no expiry", give: func() claims { c := ok; c.exp = time.Time{}; return c }, wantErr: compliance.ErrInvalidToken},
		{name: "wrong issuer", give: func() claims { c := ok; c.iss = "https://evil.example"; return c }, wantErr: compliance.ErrInvalidToken},
		{name: "wrong audience", give: func() claims { c := ok; c.aud = "other"; return c }, wantErr: compliance.ErrInvalidToken},
		{name: "no role", give: func() claims { c := ok; c.roles = []any{"auditor"}; return c }, wantErr: compliance.ErrForbidden},
		{name: "role as a string", give: func() claims { c := ok; c.roles = "admin"; return c }, wantRole: compliance.RoleAdmin},
		{name: "no kid", give: func() claims { c := ok; c.noKid = true; return c }, wantErr: compliance.ErrInvalidToken},
		{name: "garbage", token: "not.a.token", wantErr: compliance.ErrInvalidToken},
		{name: "alg none", token: "eyJhbGciOiJub25lIiwia2lkIjoieCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIn0.", wantErr: compliance.ErrInvalidToken},
		{name: "empty", token: "", wantErr: compliance.ErrNoToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token
			if tt.give != nil {
				tok = is.token(tt.give())
			}
			p, err := auth.Authenticate(context.Background(), tok)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Role != tt.wantRole {
				t.Fatalf("role = %v, want %v", p.Role, tt.wantRole)
			}
		})
	}
}

// TestKeyRotation checks that a token signed with a key published after the
// last fetch is accepted after one refetch, and that unknown key ids do not
// make the Authenticator hammer the issuer.
func TestKeyRotation(t *testing.T) {
	is := newIssuer(t)
	now := authNow
	auth, err := compliance.NewAuthenticator(compliance.AuthConfig{
		Issuer: "https://idp.example", Audience: "clearance", JWKSURL: is.srv.URL, MinRefetch: 10 * time.Second,
	}, compliance.AuthOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	c := claims{iss: "https://idp.example", aud: "clearance", exp: authNow.Add(time.Hour)}
	c.roles = nil
	viewer := func() string {
		tok, _ := jwt.NewBuilder().Issuer(c.iss).Audience([]string{c.aud}).Expiration(c.exp).Claim("roles", "viewer").Build()
		s, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, is.priv))
		if err != nil {
			t.Fatal(err)
		}
		return string(s)
	}
	ctx := context.Background()
	if _, err := auth.Authenticate(ctx, viewer()); err != nil {
		t.Fatal(err)
	}
	is.rotate()
	now = now.Add(11 * time.Second)
	if _, err := auth.Authenticate(ctx, viewer()); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := is.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	// A forged kid right after: no refetch within MinRefetch.
	is.rotate()
	if _, err := auth.Authenticate(ctx, viewer()); !errors.Is(err, compliance.ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
	if n := is.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want still 2", n)
	}
}

func TestAuthConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		give compliance.AuthConfig
		want int // problems
	}{
		{"ok", compliance.AuthConfig{Issuer: "i", Audience: "a", JWKSURL: "https://idp/jwks"}, 0},
		{"empty", compliance.AuthConfig{}, 3},
		{"both sources", compliance.AuthConfig{Issuer: "i", Audience: "a", JWKSURL: "https://x", JWKSFile: "f"}, 1},
		{"plain http", compliance.AuthConfig{Issuer: "i", Audience: "a", JWKSURL: "http://idp.example/jwks"}, 1},
		{"skew", compliance.AuthConfig{Issuer: "i", Audience: "a", JWKSFile: "f", ClockSkew: time.Hour}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			n := 0
			if err != nil {
				n = len(err.(interface{ Unwrap() []error }).Unwrap())
			}
			if n != tt.want {
				t.Fatalf("problems = %d (%v), want %d", n, err, tt.want)
			}
		})
	}
}

func TestDevIssuerRoundTrip(t *testing.T) {
	path := t.TempDir() + "/issuer.json"
	a, err := compliance.LoadOrCreateDevIssuer(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := compliance.LoadOrCreateDevIssuer(path) // the token command, later
	if err != nil {
		t.Fatal(err)
	}
	tok, err := b.Mint("dev-user", compliance.RoleAdmin, time.Hour, authNow)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := a.Authenticator(func() time.Time { return authNow })
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.Authenticate(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Role != compliance.RoleAdmin || p.Subject != "dev-user" {
		t.Fatalf("principal = %+v", p)
	}
	other, _ := compliance.LoadOrCreateDevIssuer(t.TempDir() + "/other.json")
	forged, _ := other.Mint("dev-user", compliance.RoleAdmin, time.Hour, authNow)
	if _, err := auth.Authenticate(context.Background(), forged); !errors.Is(err, compliance.ErrInvalidToken) {
		t.Fatalf("token of another issuer key: err = %v", err)
	}
}

// TestAuthenticateConcurrently verifies tokens from many goroutines while
// the issuer rotates its key (run with -race).
func TestAuthenticateConcurrently(t *testing.T) {
	is := newIssuer(t)
	auth, err := compliance.NewAuthenticator(compliance.AuthConfig{
		Issuer: "https://idp.example", Audience: "clearance", JWKSURL: is.srv.URL, MinRefetch: time.Nanosecond,
		RoleClaim: "realm_access.roles",
	}, compliance.AuthOptions{Now: func() time.Time { return authNow }})
	if err != nil {
		t.Fatal(err)
	}
	ok := claims{iss: "https://idp.example", aud: "clearance", exp: authNow.Add(time.Hour), roles: []any{"viewer"}}
	tokens := []string{is.token(ok)}
	is.rotate()
	tokens = append(tokens, is.token(ok))
	errs := make(chan error, 16)
	for g := range 8 {
		go func() {
			var err error
			for range 20 {
				if _, e := auth.Authenticate(context.Background(), tokens[g%2]); e != nil && g%2 == 1 {
					err = e // only the current key's tokens must pass
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
