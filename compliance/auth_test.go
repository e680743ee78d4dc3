package compliance_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
	"github.com/clearance-broker/clearance/internal/syncbuf"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

var authNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// issuer is an identity provider in a test: an ES256 key with a kid, its
// JWKS served over HTTP, and a count of fetches. A black-holed issuer
// (down) answers nothing: a fetch waits until its client gives up.
type issuer struct {
	t       *testing.T
	priv    jwk.Key
	set     atomic.Pointer[[]byte]
	fetches atomic.Int32
	down    atomic.Bool
	release chan struct{} // closed at the test's end: black-holed fetches return
	srv     *httptest.Server
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	is := &issuer{t: t, release: make(chan struct{})}
	is.rotate()
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		if is.down.Load() {
			select {
			case <-is.release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = w.Write(*is.set.Load())
	}))
	t.Cleanup(is.srv.Close)
	t.Cleanup(func() { close(is.release) }) // before Close, which waits for handlers
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
		{"plain http on this host", compliance.AuthConfig{Issuer: "i", Audience: "a", JWKSURL: "http://127.0.0.1:8080/jwks"}, 0},
		{"plain http on localhost", compliance.AuthConfig{Issuer: "i", Audience: "a", JWKSURL: "http://localhost:8080/jwks"}, 0},
		{"plain http on a host named like localhost", compliance.AuthConfig{Issuer: "i", Audience: "a", JWKSURL: "http://localhost.idp.example/jwks"}, 1},
		{"plain http on a host named like a loopback address", compliance.AuthConfig{Issuer: "i", Audience: "a", JWKSURL: "http://127.0.0.1.idp.example/jwks"}, 1},
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

// clock is a test's clock, safe to read from the Authenticator's fetches
// while the test moves it.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// concurrently runs n calls of f at once and returns their errors and how
// long they took together.
func concurrently(n int, f func() error) ([]error, time.Duration) {
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f()
		}()
	}
	wg.Wait()
	return errs, time.Since(start)
}

// TestKeysIssuerDown checks that a black-holed issuer neither serialises
// authentication behind its fetches nor is asked more than once per
// MinRefetch: concurrent callers share one fetch, callers holding keys go
// on with them, and a failed fetch backs off as a good one does.
func TestKeysIssuerDown(t *testing.T) {
	const n, timeout = 16, 300 * time.Millisecond
	ok := claims{iss: "https://idp.example", aud: "clearance", exp: authNow.Add(time.Hour), roles: []any{"viewer"}}
	newAuth := func(t *testing.T, is *issuer, clk *clock) *compliance.Authenticator {
		auth, err := compliance.NewAuthenticator(compliance.AuthConfig{
			Issuer: "https://idp.example", Audience: "clearance", JWKSURL: is.srv.URL, RoleClaim: "realm_access.roles",
			RefreshInterval: 15 * time.Minute, MinRefetch: 10 * time.Second,
		}, compliance.AuthOptions{HTTPClient: &http.Client{Timeout: timeout}, Now: clk.now,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return auth
	}

	t.Run("no keys held", func(t *testing.T) {
		is := newIssuer(t)
		is.down.Store(true)
		clk := newClock(authNow)
		auth := newAuth(t, is, clk)
		tok := is.token(ok)
		errs, took := concurrently(n, func() error { _, err := auth.Authenticate(context.Background(), tok); return err })
		for _, err := range errs {
			if !errors.Is(err, compliance.ErrKeysUnavailable) {
				t.Fatalf("err = %v, want ErrKeysUnavailable", err)
			}
		}
		if f := is.fetches.Load(); f != 1 {
			t.Errorf("%d fetches for %d concurrent calls, want 1", f, n)
		}
		if took > n/2*timeout {
			t.Errorf("%d calls took %v together: serialised behind fetches of up to %v", n, took, timeout)
		}
		// Within MinRefetch of the failure: no fetch, an answer at once.
		clk.advance(5 * time.Second)
		if _, err := auth.Authenticate(context.Background(), tok); !errors.Is(err, compliance.ErrKeysUnavailable) {
			t.Fatalf("err = %v, want ErrKeysUnavailable", err)
		}
		if f := is.fetches.Load(); f != 1 {
			t.Errorf("%d fetches within MinRefetch of a failed one, want 1", f)
		}
		// After it, the issuer back: one fetch, and the keys are used.
		is.down.Store(false)
		clk.advance(5 * time.Second)
		if _, err := auth.Authenticate(context.Background(), tok); err != nil {
			t.Fatalf("issuer back: %v", err)
		}
		if f := is.fetches.Load(); f != 2 {
			t.Errorf("%d fetches, want 2", f)
		}
	})

	t.Run("keys held", func(t *testing.T) {
		is := newIssuer(t)
		clk := newClock(authNow)
		auth := newAuth(t, is, clk)
		tok := is.token(ok)
		if _, err := auth.Authenticate(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		is.down.Store(true)
		clk.advance(16 * time.Minute) // past RefreshInterval
		errs, took := concurrently(n, func() error { _, err := auth.Authenticate(context.Background(), tok); return err })
		for _, err := range errs {
			if err != nil {
				t.Fatalf("with keys held: %v", err)
			}
		}
		if took > n/2*timeout {
			t.Errorf("%d calls took %v together: they waited for the issuer", n, took)
		}
		// The refresh runs behind the callers: wait for it to reach the
		// issuer.
		deadline := time.Now().Add(10 * timeout)
		for is.fetches.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if f := is.fetches.Load(); f != 2 {
			t.Fatalf("%d fetches, want 2 (one refresh for %d calls)", f, n)
		}
		// Tokens of an unknown key id within MinRefetch of the refresh
		// (they wait for it to fail): no other fetch, as min_refetch holds
		// for failed fetches too.
		is.rotate()
		unknown := is.token(ok)
		clk.advance(time.Second)
		errs, _ = concurrently(n, func() error { _, err := auth.Authenticate(context.Background(), unknown); return err })
		for _, err := range errs {
			if !errors.Is(err, compliance.ErrInvalidToken) {
				t.Fatalf("unknown key id: err = %v, want ErrInvalidToken", err)
			}
		}
		if f := is.fetches.Load(); f != 2 {
			t.Errorf("%d fetches after unknown key ids within MinRefetch, want 2", f)
		}
		// Past MinRefetch with the issuer back: one refetch finds the key.
		is.down.Store(false)
		clk.advance(10 * time.Second)
		errs, _ = concurrently(n, func() error { _, err := auth.Authenticate(context.Background(), unknown); return err })
		for _, err := range errs {
			if err != nil {
				t.Fatalf("after rotation: %v", err)
			}
		}
		if f := is.fetches.Load(); f != 3 {
			t.Errorf("%d fetches, want 3", f)
		}
	})
}

// TestKeysUnavailableAnswer checks that the answer to a caller when the
// issuer's keys cannot be read (API, console page, sign-in) is fixed, and
// that the cause, which names the issuer's URL or the key file, goes to
// the log only.
func TestKeysUnavailableAnswer(t *testing.T) {
	f := compliancetest.New(t)
	tok := f.Token(t, compliance.RoleViewer)
	for _, src := range []struct {
		name, secret string
		cfg          compliance.AuthConfig
	}{
		{"jwks_url", "/internal/realms/staff/certs", compliance.AuthConfig{JWKSURL: "http://127.0.0.1:1/internal/realms/staff/certs"}},
		{"jwks_file", "/etc/internal-idp/jwks.json", compliance.AuthConfig{JWKSFile: "/etc/internal-idp/jwks.json"}},
	} {
		t.Run(src.name, func(t *testing.T) {
			var logged syncbuf.Buffer
			cfg := src.cfg
			cfg.Issuer, cfg.Audience = compliance.DevIssuerName, compliance.DevAudience
			auth, err := compliance.NewAuthenticator(cfg, compliance.AuthOptions{
				Now: func() time.Time { return compliancetest.Now }, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
			if err != nil {
				t.Fatal(err)
			}
			srv, err := compliance.New(compliance.Options{Audit: f.Log, DB: f.DB, Registry: f.Engine, Auth: auth,
				SubjectKey: compliancetest.SubjectKey, Now: func() time.Time { return compliancetest.Now }})
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(srv.Handler())
			t.Cleanup(hs.Close)

			code, b := client{t, hs.URL, tok}.get("/v1/audit/entries")
			var body struct{ Error, Message string }
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("%d %s", code, b)
			}
			if code != http.StatusServiceUnavailable || body.Error != "issuer_keys_unavailable" ||
				body.Message != "issuer keys unavailable; try again later" {
				t.Errorf("API: %d %s", code, b)
			}
			pcode, _, page := consoleGet(t, hs.URL, "/console/", tok)
			resp, err := http.PostForm(hs.URL+"/console/signin", url.Values{"token": {tok}})
			if err != nil {
				t.Fatal(err)
			}
			signin, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for name, got := range map[string]struct {
				code int
				body string
			}{"API": {code, string(b)}, "console": {pcode, page}, "sign-in": {resp.StatusCode, string(signin)}} {
				if got.code != http.StatusServiceUnavailable {
					t.Errorf("%s: status %d, want 503", name, got.code)
				}
				if !strings.Contains(got.body, "issuer keys unavailable") {
					t.Errorf("%s: no fixed message: %.300s", name, got.body)
				}
				for _, leak := range []string{src.secret, "127.0.0.1:1", "dial tcp", "no such file"} {
					if strings.Contains(got.body, leak) {
						t.Errorf("%s: the answer shows %q: %.300s", name, leak, got.body)
					}
				}
			}
			// The cause is logged once its fetch has ended, after the
			// callers waiting on it were let go.
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logged.String(), src.secret); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the log lacks the cause: %s", logged.String())
				}
			}
		})
	}
}

// roundTripFunc is an http.RoundTripper of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestKeysRedirectToPlainHTTPRefused: the issuer's https URL redirected to
// plain http is not followed: whoever sat on that path would hand out the
// keys that sign every token.
func TestKeysRedirectToPlainHTTPRefused(t *testing.T) {
	is := newIssuer(t)
	var plain atomic.Int32
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Scheme == "https" {
			h := http.Header{"Location": {"http://idp.example/jwks"}}
			return &http.Response{StatusCode: http.StatusFound, Header: h, Body: http.NoBody, Request: r}, nil
		}
		plain.Add(1)
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(bytes.NewReader(*is.set.Load())), Request: r}, nil
	})}
	var logs syncbuf.Buffer
	auth, err := compliance.NewAuthenticator(compliance.AuthConfig{
		Issuer: "https://idp.example", Audience: "clearance", JWKSURL: "https://idp.example/jwks",
	}, compliance.AuthOptions{HTTPClient: client, Now: func() time.Time { return authNow },
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tok := is.token(claims{iss: "https://idp.example", aud: "clearance", exp: authNow.Add(time.Hour), roles: []any{"viewer"}})
	if _, err := auth.Authenticate(t.Context(), tok); !errors.Is(err, compliance.ErrKeysUnavailable) {
		t.Fatalf("Authenticate after a redirect to http: %v, want ErrKeysUnavailable", err)
	}
	if plain.Load() != 0 {
		t.Fatal("the redirect to plain http was followed")
	}
	// The cause is logged once the fetch has ended.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "redirect to http://idp.example refused"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("log does not say why: %s", logs.String())
		}
	}
}
