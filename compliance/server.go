package compliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/uptrace/bun"
)

// AuditLog is what the compliance API needs of the audit log. *audit.Log
// satisfies it; all methods must be safe for concurrent use.
type AuditLog interface {
	// Scan streams the entries matching f to fn, in sequence order.
	Scan(ctx context.Context, f audit.Filter, fn func(*audit.Entry) error) error
	// Export streams the entries matching f to w in a format.
	Export(ctx context.Context, w io.Writer, format audit.Format, f audit.Filter) (int64, error)
	// Append writes an entry and returns once it is durable.
	Append(ctx context.Context, e *audit.Entry) (int64, error)
	// StableSequence returns the sequence up to which every entry is
	// written and none will be added.
	StableSequence(ctx context.Context) (int64, error)
}

// RegistrySource gives the registry in force. *agreements.Engine satisfies
// it; Registry must be safe for concurrent use.
type RegistrySource interface {
	Registry() *agreements.Registry
}

// AgreementVersioner gives every stored version of an agreement, oldest
// first. The live registry's store (*policy.Store) satisfies it; it must be
// safe for concurrent use.
type AgreementVersioner interface {
	AgreementVersions(ctx context.Context, id string) ([]agreements.Agreement, error)
}

// Events this package writes to the audit log.
const (
	// EventAPICall records a call of the compliance API that changes or
	// evaluates something (what-if runs, and any POST, PUT or DELETE).
	EventAPICall audit.Event = "compliance_api_call"
)

// Options configures a Server. Audit, DB, Registry and Auth are required.
type Options struct {
	// Audit is the audit log read by searches and exports and written for
	// every mutating call.
	Audit AuditLog
	// DB is the audit log's database, read (never written) for aggregates.
	DB *bun.DB
	// Registry is the registry in force.
	Registry RegistrySource
	// Versions, when set, is the registry store whose agreement versions
	// the history shows. Without it, the history holds the versions the
	// audit log saw decisions rest on.
	Versions AgreementVersioner
	// Auth verifies bearer tokens.
	Auth *Authenticator
	// DevIssuer, when set, has its public keys served at
	// /v1/auth/jwks.json.
	DevIssuer *DevIssuer
	// Changes, when set, records legal orders as run-time changes of the
	// live registry (see also Server.UseRights).
	Changes RegistryChanger
	// Erasures, when set, gives the erasure notices' status per recipient
	// for the subject page (see also Server.UseRights).
	Erasures ErasureStatus
	// SubjectKey is the audit log's subject HMAC key, used by what-if to
	// recognise subjects named in a registry. Optional.
	SubjectKey []byte
	// KeyRefs name the key services protecting transfers (for the records
	// of processing); key references recorded in the audit log are added.
	KeyRefs []string
	// Logger receives operational messages (component=compliance).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// SecureCookie sets the Secure flag on the console's session cookie
	// (set it when served over TLS).
	SecureCookie bool
	// MaxWhatIf caps the entries one what-if re-decides (default 200000).
	MaxWhatIf int
}

// Server serves the compliance API and console.
type Server struct {
	opts   Options
	log    *slog.Logger
	routes []route
	ui     *console

	ovCache    overviewCache
	rollup     rollup // the overview's, hourly
	flowRollup rollup // the records of processing's, daily
	versions   rollup // the registry and agreement versions', over the whole log
	rights     rightsHolder
	tokens     *subjectTokens
}

// route is one registered pattern with the role it needs (RoleNone: public).
type route struct {
	method, path string
	role         Role
	api          bool // documented in openapi.yaml
	h            http.HandlerFunc
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	var missing []string
	if opts.Audit == nil {
		missing = append(missing, "Audit")
	}
	if opts.DB == nil {
		missing = append(missing, "DB")
	}
	if opts.Registry == nil {
		missing = append(missing, "Registry")
	}
	if opts.Auth == nil {
		missing = append(missing, "Auth")
	}
	if len(missing) > 0 {
		return nil, errors.New("compliance: options missing: " + strings.Join(missing, ", "))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxWhatIf <= 0 {
		opts.MaxWhatIf = 200000
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "compliance")}
	s.rollup.init(overviewRollup, time.Hour, func() counter { return newTally() }, s.log)
	s.flowRollup.init(ropaRollup, 24*time.Hour, func() counter { return newFlowTally() }, s.log)
	s.versions.init(versionsRollup, 0, func() counter { return versionCells{} }, s.log)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if err := MigrateRollups(ctx, opts.DB); err != nil {
		return nil, err
	}
	tokens, err := newSubjectTokens(opts.SubjectKey, opts.Now)
	if err != nil {
		return nil, fmt.Errorf("compliance: subject tokens: %w", err)
	}
	s.tokens = tokens
	ui, err := newConsole(s)
	if err != nil {
		return nil, err
	}
	s.ui = ui
	s.routes = append(s.apiRoutes(), s.ui.routes()...)
	return s, nil
}

// apiRoutes lists the /v1 routes. openapi.yaml documents exactly these.
func (s *Server) apiRoutes() []route {
	rs := []route{
		{"GET", "/v1/me", RoleViewer, true, s.getMe},
		{"GET", "/v1/openapi.yaml", RoleViewer, true, s.getOpenAPI},
		{"GET", "/v1/audit/entries", RoleViewer, true, s.getEntries},
		{"GET", "/v1/audit/entries/{seq}", RoleViewer, true, s.getEntry},
		{"GET", "/v1/audit/export", RoleViewer, true, s.getExport},
		{"GET", "/v1/subjects/{subject}/recipients", RoleViewer, true, s.getSubjectRecipients},
		{"GET", "/v1/registry", RoleViewer, true, s.getRegistry},
		{"GET", "/v1/registry/versions", RoleViewer, true, s.getRegistryVersions},
		{"GET", "/v1/registry/agreements", RoleViewer, true, s.getAgreements},
		{"GET", "/v1/registry/agreements/{id}/history", RoleViewer, true, s.getAgreementHistory},
		{"GET", "/v1/reports/overview", RoleViewer, true, s.getOverview},
		{"GET", "/v1/reports/ropa", RoleViewer, true, s.getROPA},
		{"POST", "/v1/whatif", RoleOfficer, true, s.postWhatIf},
		{"GET", "/v1/legal-orders", RoleViewer, true, s.getLegalOrders},
		{"POST", "/v1/legal-orders", RoleOfficer, true, s.postLegalOrder},
		{"GET", "/v1/legal-orders/{id}", RoleViewer, true, s.getLegalOrder},
		{"GET", "/v1/consents", RoleOfficer, true, s.getConsents},
		{"GET", "/v1/erasures", RoleOfficer, true, s.getErasures},
	}
	if s.opts.DevIssuer != nil {
		rs = append(rs, route{"GET", "/v1/auth/jwks.json", RoleNone, true, s.getIssuerJWKS})
	}
	return rs
}

// APIRoutes lists the /v1 routes as "METHOD /path" patterns; openapi.yaml
// documents exactly these.
func (s *Server) APIRoutes() []string {
	var out []string
	for _, r := range s.routes {
		if r.api {
			out = append(out, r.method+" "+r.path)
		}
	}
	return out
}

// Handler returns a handler serving only the compliance routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Mount(mux)
	return mux
}

// Mount registers the compliance routes on mux, next to whatever it serves
// already (the broker's routes). Their patterns are exact, so they do not
// shadow other /v1 routes.
//
// The console's routes, which a browser reaches with the session cookie,
// refuse a cross-origin form or script (http.CrossOriginProtection: the
// Sec-Fetch-Site header, or Origin against Host) with 403: SameSite=Strict
// keeps the cookie off another site's requests, but not off a sibling
// subdomain's, and a sign-in posted from another site would set a session
// of its maker's choosing. The API's routes take only a bearer token,
// which a browser never adds on its own.
func (s *Server) Mount(mux *http.ServeMux) {
	csrf := http.NewCrossOriginProtection()
	for _, r := range s.routes {
		h := s.wrap(r)
		if !r.api {
			h = csrf.Handler(h)
		}
		mux.Handle(r.method+" "+r.path, h)
	}
}

// GuardRoute returns h guarded as a Server guards its own API routes: the
// bearer token checked by opts.Auth and the caller's role against role (401,
// 403 or 503 with the API's JSON error body), then a call other than GET or
// HEAD audited in opts.Audit as EventAPICall with method and path (the
// route's pattern, so never a subject id from the URL), the caller's role
// and the answer's status, and the caller's account as an HMAC under
// opts.SubjectKey. The binary serves through it the API routes of packages
// this one cannot import (the live registry's consents and erasures); h's
// own error answers are given the API's error body too (shapeErrors), and
// every answer Cache-Control: no-store. Of opts only Auth and Audit (both
// required), SubjectKey, Logger and Now are used.
func GuardRoute(opts Options, method, path string, role Role, h http.Handler) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "compliance")}
	guarded := s.wrap(route{method: method, path: path, role: role, api: true, h: shapeErrors(h).ServeHTTP})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// As every answer of the API: consents, erasures and notices are
		// not for a browser's or a proxy's cache.
		w.Header().Set("Cache-Control", "no-store")
		guarded.ServeHTTP(w, r)
	})
}

type ctxKey struct{}

// principalOf returns the caller authenticated by wrap.
func principalOf(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}

// CallerAccount returns the account id (the token's "sub") of the caller
// that a route served through GuardRoute, or one of the Server's own
// routes, authenticated, from the request's context; false when none was.
// Handlers of the packages this one cannot import (erasure's
// justifications) record their caller with it, as an HMAC, never in clear.
func CallerAccount(ctx context.Context) (string, bool) {
	p := principalOf(ctx)
	if p == nil || p.Subject == "" {
		return "", false
	}
	return p.Subject, true
}

// wrap authenticates (bearer header for the API, the session cookie for
// the console), checks the role and audits mutating calls.
func (s *Server) wrap(r route) http.Handler {
	if r.role == RoleNone {
		return r.h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		token := bearer(req)
		if token == "" && !r.api {
			if c, err := req.Cookie(sessionCookie); err == nil {
				token = c.Value
			}
		}
		p, err := s.opts.Auth.Authenticate(req.Context(), token)
		if err != nil {
			if !r.api && !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrKeysUnavailable) {
				http.Redirect(w, req, consoleSignIn+"?next="+urlEscape(req.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			s.authError(w, req, r.api, err)
			return
		}
		if p.Role < r.role {
			s.authError(w, req, r.api, errForbiddenRole(r.role, p.Role))
			return
		}
		ctx := context.WithValue(req.Context(), ctxKey{}, p)
		req = req.WithContext(ctx)
		if req.Method == http.MethodGet || req.Method == http.MethodHead {
			r.h(w, req)
			return
		}
		if searchRoutes[r.method+" "+r.path] {
			r.h(w, req) // a search posted to keep the subject out of the URL changes nothing
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		r.h(rec, req)
		s.auditCall(context.WithoutCancel(ctx), r, p, rec.status)
	})
}

// searchRoutes are console forms posted only so that the subject typed
// stays out of the address bar; they change nothing and are not audited.
var searchRoutes = map[string]bool{"POST /console/subject": true, "POST /console/audit": true}

func errForbiddenRole(need, have Role) error {
	return &roleError{need: need, have: have}
}

type roleError struct{ need, have Role }

func (e *roleError) Error() string {
	return "compliance: role " + e.have.String() + " may not do this; needs " + e.need.String()
}
func (e *roleError) Unwrap() error { return ErrForbidden }

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// keysUnavailableMessage is the whole answer to a caller when the issuer's
// keys cannot be read: the cause (the issuer's URL, a file path, a network
// error) is for the server's log only (Authenticator logs it).
const keysUnavailableMessage = "issuer keys unavailable; try again later"

// authAnswer returns the status, error code and message that answer an
// authentication error: 401, 403 with err's short reason, or 503 with a
// fixed message.
func authAnswer(err error) (status int, code, msg string) {
	switch {
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden, "forbidden", strings.TrimPrefix(err.Error(), "compliance: ")
	case errors.Is(err, ErrKeysUnavailable):
		return http.StatusServiceUnavailable, "issuer_keys_unavailable", keysUnavailableMessage
	}
	return http.StatusUnauthorized, "unauthorized", strings.TrimPrefix(err.Error(), "compliance: ")
}

// authError answers 401, 403 or 503 with a JSON body (API) or a page.
func (s *Server) authError(w http.ResponseWriter, r *http.Request, api bool, err error) {
	status, code, msg := authAnswer(err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="clearance"`)
	}
	if !api {
		s.ui.errorPage(w, r, status, msg)
		return
	}
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

// apiError is the JSON body of every error answer.
type apiError struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	Parameter string `json:"parameter,omitempty"`
}

// paramError is a bad request parameter; the API answers 400 naming it,
// unless its name is empty (a name not to repeat, see unknownParam).
type paramError struct{ name, problem string }

func (e *paramError) Error() string {
	if e.name == "" {
		return "parameter: " + e.problem
	}
	return "parameter " + e.name + ": " + e.problem
}

func badParam(name, problem string) error { return &paramError{name: name, problem: problem} }

// fail answers err: 400 for a *paramError, 500 otherwise (logged, with no
// detail in the body).
func (s *Server) fail(w http.ResponseWriter, err error) {
	var pe *paramError
	if errors.As(err, &pe) {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "bad_request", Message: pe.Error(), Parameter: pe.name})
		return
	}
	s.log.Error("request", "err", err)
	writeJSON(w, http.StatusInternalServerError, apiError{Error: "internal", Message: "internal error; see the server log"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// auditCall records a mutating call: the route, the caller's role, the
// outcome, and the caller's account id as an HMAC (prefixed "account:" so
// that it never matches a data subject).
func (s *Server) auditCall(ctx context.Context, r route, p *Principal, status int) {
	outcome := "allow"
	if status >= 400 {
		outcome = "deny"
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	e := &audit.Entry{
		Time:      s.opts.Now(),
		Event:     EventAPICall,
		RequestID: "api-" + hex.EncodeToString(id),
		Source:    "compliance-api",
		Decision:  outcome,
		Reasons:   []string{r.method + " " + r.path, "role:" + p.Role.String(), "status:" + http.StatusText(status)},
	}
	if len(s.opts.SubjectKey) > 0 && p.Subject != "" {
		e.SubjectID = "account:" + p.Subject
	}
	if _, err := s.opts.Audit.Append(ctx, e); err != nil {
		s.log.Error("audit api call", "route", r.path, "err", err)
	}
}

func (s *Server) getMe(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"role": p.Role.String(), "expires": p.Expires.UTC()})
}

func (s *Server) getIssuerJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(s.opts.DevIssuer.JWKS())
}

// Interface guards: the concrete parts the binary passes in.
var (
	_ AuditLog       = (*audit.Log)(nil)
	_ RegistrySource = (*agreements.Engine)(nil)
	_ Scanner        = (*audit.Log)(nil)
)
