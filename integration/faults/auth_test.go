package faults

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

const (
	testIssuer   = "https://idp.faults.test"
	testAudience = "clearance-api"
	testKid      = "faults-idp-1"
)

// idp is an identity provider of the test's own: its key signs tokens and
// its public JWK set is the broker's auth.jwks_file.
type idp struct {
	key      jwk.Key
	stranger jwk.Key // a key the broker does not know, with the same kid
	jwksFile string
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	mk := func() jwk.Key {
		raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k, err := jwk.FromRaw(raw)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, testKid)
		_ = k.Set(jwk.AlgorithmKey, jwa.ES256)
		return k
	}
	p := &idp{key: mk(), stranger: mk(), jwksFile: filepath.Join(t.TempDir(), "idp-jwks.json")}
	pub, err := p.key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	b, _ := json.Marshal(set)
	if err := os.WriteFile(p.jwksFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// token signs claims with key (ES256).
func (p *idp) token(t *testing.T, key jwk.Key, iss, aud string, exp time.Time, roles ...string) string {
	t.Helper()
	tok, err := jwt.NewBuilder().Issuer(iss).Audience([]string{aud}).Subject("auth-matrix").
		IssuedAt(time.Now().Add(-time.Minute)).Expiration(exp).Claim("roles", roles).Build()
	if err != nil {
		t.Fatal(err)
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, key))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// unsigned builds a token with alg none (and the known kid), or HS256
// keyed with the public JWK's JSON (an algorithm-confusion attempt).
func (p *idp) forged(t *testing.T, alg string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	hdr := enc.EncodeToString(fmt.Appendf(nil, `{"alg":%q,"kid":%q,"typ":"JWT"}`, alg, testKid))
	claims := enc.EncodeToString(fmt.Appendf(nil, `{"iss":%q,"aud":%q,"sub":"forger","exp":%d,"roles":["admin"]}`,
		testIssuer, testAudience, time.Now().Add(time.Hour).Unix()))
	if alg == "none" {
		return hdr + "." + claims + "."
	}
	pub, _ := p.key.PublicKey()
	secret, _ := json.Marshal(pub)
	hs, err := jwk.FromRaw(secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.NewBuilder().Issuer(testIssuer).Audience([]string{testAudience}).Subject("forger").
		Expiration(time.Now().Add(time.Hour)).Claim("roles", []string{"admin"}).Build()
	if err != nil {
		t.Fatal(err)
	}
	_ = hs.Set(jwk.KeyIDKey, testKid)
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256, hs))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// apiRoute is one authenticated route of `clearance serve` and the least
// role it needs.
type apiRoute struct {
	method, path string
	need         string
	body         string
}

// authRoutes are every bearer-token route `clearance serve` mounts with an
// auth section: the compliance API (compliance/openapi.yaml) and the rights
// routes (consents, erasures).
var authRoutes = []apiRoute{
	{"GET", "/v1/me", "viewer", ""},
	{"GET", "/v1/openapi.yaml", "viewer", ""},
	{"GET", "/v1/audit/entries", "viewer", ""},
	{"GET", "/v1/audit/entries/1", "viewer", ""},
	{"GET", "/v1/audit/export?format=jsonl", "viewer", ""},
	{"GET", "/v1/subjects/cust-1/recipients", "viewer", ""},
	{"GET", "/v1/registry", "viewer", ""},
	{"GET", "/v1/registry/versions", "viewer", ""},
	{"GET", "/v1/registry/agreements", "viewer", ""},
	{"GET", "/v1/registry/agreements/dpa-swiftship-de/history", "viewer", ""},
	{"GET", "/v1/reports/overview", "viewer", ""},
	{"GET", "/v1/reports/ropa", "viewer", ""},
	{"POST", "/v1/whatif", "officer", `{}`},
	{"POST", "/v1/consents", "officer", `{}`},
	{"POST", "/v1/subjects/cust-1/erasure", "officer", `{}`},
	{"GET", "/v1/subjects/cust-1/erasure", "officer", ""},
	{"POST", "/v1/subjects/cust-1/erasure/swiftship-de/justification", "officer", `{}`},
}

var roleRank = map[string]int{"viewer": 1, "officer": 2, "admin": 3}

// TestAPIAuthorization tries every authenticated route of a running
// `clearance serve` without a token, with an expired one, one from another
// issuer, for another audience, signed by an unknown key, with alg none,
// HS256 keyed with the public key, and with each role.
func TestAPIAuthorization(t *testing.T) {
	p := newIDP(t)
	w := startWorld(t, 1, fmt.Sprintf("auth: {issuer: %q, audience: %q, jwks_file: %q}\n", testIssuer, testAudience, p.jwksFile))
	api := w.brokers[0].api
	hour := time.Now().Add(time.Hour)
	refused := []struct {
		name  string
		token string
	}{
		{"no token", ""},
		{"expired", p.token(t, p.key, testIssuer, testAudience, time.Now().Add(-10*time.Minute), "admin")},
		{"another issuer", p.token(t, p.key, "https://evil.test", testAudience, hour, "admin")},
		{"another audience", p.token(t, p.key, testIssuer, "other-api", hour, "admin")},
		{"unknown key", p.token(t, p.stranger, testIssuer, testAudience, hour, "admin")},
		{"alg none", p.forged(t, "none")},
		{"HS256 with the public key", p.forged(t, "HS256")},
		{"no role", p.token(t, p.key, testIssuer, testAudience, hour)},
		{"garbage", "not.a.token"},
	}
	for _, r := range authRoutes {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			for _, c := range refused {
				// 401: not authenticated; 403: a valid token whose role is
				// too low ("no role"). Every route answers with the
				// compliance API's JSON error body.
				want, wantCode := http.StatusUnauthorized, "unauthorized"
				if c.name == "no role" {
					want, wantCode = http.StatusForbidden, "forbidden"
				}
				code, body := callBody(t, api, r, c.token)
				if code != want {
					t.Errorf("%s: answered %d, want %d", c.name, code, want)
					continue
				}
				var e struct{ Error, Message string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error != wantCode || e.Message == "" {
					t.Errorf("%s: body %q, want {\"error\": %q, \"message\": …}", c.name, body, wantCode)
				}
			}
			for role, rank := range roleRank {
				code := call(t, api, r, p.token(t, p.key, testIssuer, testAudience, hour, role))
				switch {
				case rank < roleRank[r.need] && code != http.StatusForbidden:
					t.Errorf("role %s: answered %d, want 403", role, code)
				case rank >= roleRank[r.need] && (code == http.StatusUnauthorized || code == http.StatusForbidden || code >= 500):
					t.Errorf("role %s: answered %d, want access", role, code)
				}
			}
		})
	}
	t.Run("secrets stay out of the log", func(t *testing.T) {
		log := w.brokers[0].Log()
		for _, s := range w.secrets {
			if strings.Contains(log, s) {
				t.Error("the log holds a secret")
			}
		}
		if strings.Contains(log, p.token(t, p.key, testIssuer, testAudience, hour, "admin")[:40]) {
			t.Error("the log holds a bearer token")
		}
	})
}

func call(t *testing.T, api string, r apiRoute, token string) int {
	t.Helper()
	code, _ := callBody(t, api, r, token)
	return code
}

// callBody calls r with token and returns the status and the body.
func callBody(t *testing.T, api string, r apiRoute, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), r.method, api+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, b
}
