package compliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// Role is what a caller may do. Roles are ordered: each includes the ones
// below it.
type Role int

// The roles, lowest first.
const (
	// RoleNone is no role: the token carries none of the known role names.
	RoleNone Role = iota
	// RoleViewer reads the audit log and the reports.
	RoleViewer
	// RoleOfficer also records consents, legal orders and erasures and runs
	// what-ifs.
	RoleOfficer
	// RoleAdmin also applies registries.
	RoleAdmin
)

var roleNames = map[Role]string{RoleViewer: "viewer", RoleOfficer: "officer", RoleAdmin: "admin"}

// String returns the role's name ("viewer", "officer", "admin" or "none").
func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return "none"
}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if n == s {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("%w: %q (want viewer, officer or admin)", ErrUnknownRole, s)
}

// Errors of authentication. ErrNoToken and ErrInvalidToken answer 401,
// ErrForbidden 403.
var (
	// ErrNoToken means the request carried no bearer token.
	ErrNoToken = errors.New("compliance: no bearer token")
	// ErrInvalidToken means the token is malformed, badly signed, expired,
	// for another issuer or audience, or signed by an unknown key.
	ErrInvalidToken = errors.New("compliance: invalid token")
	// ErrForbidden means the token is valid but its role is too low.
	ErrForbidden = errors.New("compliance: role not permitted")
	// ErrUnknownRole names a role that does not exist.
	ErrUnknownRole = errors.New("compliance: unknown role")
	// ErrKeysUnavailable means the issuer's JWKS could not be read. It
	// carries no detail (the issuer's URL, a file path): the Authenticator
	// logs the cause.
	ErrKeysUnavailable = errors.New("compliance: issuer keys unavailable")
)

// AuthConfig configures token verification (the `auth` section of the
// broker configuration). Exactly one of JWKSURL and JWKSFile is set.
type AuthConfig struct {
	// Issuer is the required "iss" claim.
	Issuer string `yaml:"issuer"`
	// Audience is the required "aud" claim.
	Audience string `yaml:"audience"`
	// JWKSURL is the issuer's JWK set, fetched over HTTPS.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSFile is the issuer's JWK set in a local file.
	JWKSFile string `yaml:"jwks_file"`
	// RoleClaim is the claim holding the role names, a string or a list of
	// strings; a dotted path reaches into objects ("realm_access.roles").
	// Default "roles".
	RoleClaim string `yaml:"role_claim"`
	// ClockSkew is the tolerance on exp, nbf and iat (default 60s).
	ClockSkew time.Duration `yaml:"clock_skew"`
	// RefreshInterval is how long a fetched key set is used before it is
	// fetched again (default 15 minutes). A token signed with an unknown key
	// id makes an earlier refetch, at most one per MinRefetch.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// MinRefetch spaces fetches (default 10s): none starts sooner than this
	// after the last one ended, good or failed, whether a token names an
	// unknown key id or the issuer is down.
	MinRefetch time.Duration `yaml:"min_refetch"`
}

// Validate reports every problem of c at once, each with its path under
// "auth".
func (c *AuthConfig) Validate() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("auth.issuer: required"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("auth.audience: required"))
	}
	switch {
	case c.JWKSURL == "" && c.JWKSFile == "":
		errs = append(errs, errors.New("auth.jwks_url: required (or auth.jwks_file)"))
	case c.JWKSURL != "" && c.JWKSFile != "":
		errs = append(errs, errors.New("auth.jwks_file: set jwks_url or jwks_file, not both"))
	case c.JWKSURL != "" && !jwksURLAllowed(c.JWKSURL):
		errs = append(errs, errors.New("auth.jwks_url: must be https (http only on localhost)"))
	}
	if c.ClockSkew < 0 || c.ClockSkew > 10*time.Minute {
		errs = append(errs, errors.New("auth.clock_skew: between 0 and 10m"))
	}
	if c.RefreshInterval < 0 || c.MinRefetch < 0 {
		errs = append(errs, errors.New("auth.refresh_interval: must not be negative"))
	}
	return errors.Join(errs...)
}

// AuthOptions are the parts an Authenticator uses besides its config.
type AuthOptions struct {
	// HTTPClient fetches JWKSURL (default: a client with a 10s timeout).
	HTTPClient *http.Client
	// StaticJWKS, when set, is the key set itself (the dev issuer's); the
	// config's JWKS URL and file are then not needed.
	StaticJWKS []byte
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives a warning for each failed fetch of the key set, with
	// its cause (default slog.Default()). Callers are told only
	// ErrKeysUnavailable.
	Logger *slog.Logger
}

// Principal is the verified caller.
type Principal struct {
	// Subject is the token's "sub" (an account id; never logged in clear).
	Subject string
	// Role is the highest known role the token grants.
	Role Role
	// Expires is the token's expiry.
	Expires time.Time
}

// Authenticator verifies bearer tokens. It is safe for concurrent use.
type Authenticator struct {
	cfg   AuthConfig
	now   func() time.Time
	fetch func(ctx context.Context) ([]byte, error)

	log *slog.Logger

	mu        sync.Mutex
	set       jwk.Set
	fetchedAt time.Time     // when set was fetched
	triedAt   time.Time     // when the last fetch, good or failed, ended
	fetching  chan struct{} // closed when the fetch in flight ends; nil when none is
}

// NewAuthenticator returns an Authenticator for cfg. The key set is fetched
// on first use, not here.
func NewAuthenticator(cfg AuthConfig, opts AuthOptions) (*Authenticator, error) {
	if opts.StaticJWKS != nil {
		if cfg.JWKSURL == "" && cfg.JWKSFile == "" {
			cfg.JWKSFile = "(static)"
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "roles"
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = time.Minute
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = 15 * time.Minute
	}
	if cfg.MinRefetch == 0 {
		cfg.MinRefetch = 10 * time.Second
	}
	a := &Authenticator{cfg: cfg, now: opts.Now, log: opts.Logger}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("component", "compliance")
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	switch {
	case opts.StaticJWKS != nil:
		static := opts.StaticJWKS
		a.fetch = func(context.Context) ([]byte, error) { return static, nil }
	case cfg.JWKSFile != "":
		a.fetch = func(context.Context) ([]byte, error) { return os.ReadFile(cfg.JWKSFile) }
	default:
		client := jwksClient(client)
		a.fetch = func(ctx context.Context) ([]byte, error) { return fetchURL(ctx, client, cfg.JWKSURL) }
	}
	return a, nil
}

// jwksURLAllowed reports whether the key set may be fetched from rawURL:
// over https, or over http from this host alone (localhost, a loopback
// address).
func jwksURLAllowed(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		return host == "localhost" || (ip != nil && ip.IsLoopback())
	}
	return false
}

// jwksClient returns client refusing a redirect to a URL the key set may
// not be fetched from (jwksURLAllowed): an issuer's https URL redirected
// to plain http would hand the keys that sign every token to whoever sits
// on the path.
func jwksClient(client *http.Client) *http.Client {
	c := *client
	next := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !jwksURLAllowed(req.URL.String()) {
			return fmt.Errorf("redirect to %s://%s refused: the key set is fetched over https only", req.URL.Scheme, req.URL.Host)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

func fetchURL(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// keys returns the key set. A fetch is due when there is none, when the
// last good one is older than RefreshInterval, or when force is set (a
// token names an unknown key id) and it is older than MinRefetch. Fetches
// are spaced: one starts only when the last attempt, good or failed, ended
// MinRefetch ago or more, so an issuer that is down or slow is asked at
// most once per MinRefetch. One fetch is in flight at a time, in its own
// goroutine, and the lock is never held while it runs: a caller holding a
// key set goes on with it (a refresh happens behind it), and a caller
// without one, or after an unknown key id, waits for that fetch (or gives
// up with its context). When a fetch fails, the keys held are kept; the
// error, which may name the issuer's URL or the key file, goes to the log,
// and callers without keys get ErrKeysUnavailable alone.
func (a *Authenticator) keys(ctx context.Context, force bool) (jwk.Set, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	waited := false
	for {
		now := a.now()
		age := now.Sub(a.fetchedAt)
		if a.set != nil && age < a.cfg.RefreshInterval && (!force || age < a.cfg.MinRefetch) {
			return a.set, nil
		}
		if a.fetching == nil && !waited && (a.triedAt.IsZero() || now.Sub(a.triedAt) >= a.cfg.MinRefetch) {
			a.fetching = make(chan struct{})
			go a.refresh(a.fetching)
		}
		if a.fetching == nil || waited || a.set != nil && !force {
			return a.held()
		}
		done := a.fetching
		a.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
		}
		a.mu.Lock()
		// One wait per call: afterwards the keys are fresh, or the fetch
		// failed (and the next is backed off), or ctx ended.
		waited = true
	}
}

// held returns the keys held, or ErrKeysUnavailable without any. The
// caller holds a.mu.
func (a *Authenticator) held() (jwk.Set, error) {
	if a.set == nil {
		return nil, ErrKeysUnavailable
	}
	return a.set, nil
}

// fetchTimeout bounds one fetch of the key set, whatever the HTTP client's
// own timeout.
const fetchTimeout = 10 * time.Second

// refresh fetches the key set and closes done. It runs on its own, not in
// a caller's context: a caller that goes away does not fail the fetch for
// the others waiting on it.
func (a *Authenticator) refresh(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	data, err := a.fetch(ctx)
	var set jwk.Set
	if err == nil {
		set, err = jwk.Parse(data)
	}
	a.mu.Lock()
	now := a.now()
	a.triedAt, a.fetching = now, nil
	if err == nil {
		a.set, a.fetchedAt = set, now
	}
	held := a.set != nil
	a.mu.Unlock()
	close(done)
	// Logged without the lock, which every request needs.
	if err != nil {
		a.log.Warn("issuer keys not fetched; the keys held are kept", "keys_held", held,
			"next_try_after", a.cfg.MinRefetch, "err", err)
	}
}

// Authenticate verifies token and returns its principal. Errors wrap
// ErrInvalidToken (with a short reason safe to show), ErrForbidden when the
// token grants no known role, or ErrKeysUnavailable.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*Principal, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	msg, err := jws.ParseString(token)
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrInvalidToken)
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	kid, alg := hdr.KeyID(), hdr.Algorithm()
	if kid == "" {
		return nil, fmt.Errorf("%w: no key id (kid) in the header", ErrInvalidToken)
	}
	if alg == jwa.NoSignature || strings.HasPrefix(string(alg), "HS") {
		return nil, fmt.Errorf("%w: algorithm %s not accepted", ErrInvalidToken, alg)
	}
	set, err := a.keys(ctx, false)
	if err != nil {
		return nil, err
	}
	key, ok := set.LookupKeyID(kid)
	if !ok {
		// Key rotation: the issuer may have published a new key.
		if set, err = a.keys(ctx, true); err != nil {
			return nil, err
		}
		if key, ok = set.LookupKeyID(kid); !ok {
			return nil, fmt.Errorf("%w: unknown signing key", ErrInvalidToken)
		}
	}
	tok, err := jwt.ParseString(token,
		jwt.WithKey(alg, key),
		jwt.WithValidate(true),
		jwt.WithIssuer(a.cfg.Issuer),
		jwt.WithAudience(a.cfg.Audience),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithAcceptableSkew(a.cfg.ClockSkew),
		jwt.WithClock(jwt.ClockFunc(a.now)),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidToken, tokenProblem(err))
	}
	claim, _ := claimAt(tok, a.cfg.RoleClaim)
	role := highestRole(claim)
	if role == RoleNone {
		return nil, fmt.Errorf("%w: the token grants no role in claim %q", ErrForbidden, a.cfg.RoleClaim)
	}
	return &Principal{Subject: tok.Subject(), Role: role, Expires: tok.Expiration()}, nil
}

// tokenProblem turns a jwx validation error into a short, fixed reason.
func tokenProblem(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired()):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotYetValid()):
		return "not yet valid"
	case errors.Is(err, jwt.ErrInvalidIssuedAt()):
		return "issued in the future"
	case errors.Is(err, jwt.ErrInvalidIssuer()):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrInvalidAudience()):
		return "wrong audience"
	case errors.Is(err, jwt.ErrRequiredClaim()), errors.Is(err, jwt.ErrMissingRequiredClaim(jwt.ExpirationKey)):
		return "missing a required claim (exp)"
	default:
		return "bad signature or malformed token"
	}
}

// claimAt reads a dotted claim path from tok.
func claimAt(tok jwt.Token, path string) (any, bool) {
	parts := strings.Split(path, ".")
	v, ok := tok.Get(parts[0])
	for _, p := range parts[1:] {
		if !ok {
			return nil, false
		}
		m, isMap := v.(map[string]any)
		if !isMap {
			return nil, false
		}
		v, ok = m[p]
	}
	return v, ok
}

// highestRole returns the highest known role named by a claim value (a
// string, space-separated names, or a list).
func highestRole(v any) Role {
	var names []string
	switch t := v.(type) {
	case string:
		names = strings.Fields(t)
	case []string:
		names = t
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok {
				names = append(names, s)
			}
		}
	}
	best := RoleNone
	for _, n := range names {
		if r, err := ParseRole(n); err == nil && r > best {
			best = r
		}
	}
	return best
}
