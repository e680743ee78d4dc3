package compliance

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/audit"
)

//go:embed web/templates/*.html web/static/*
var webFS embed.FS

// Console paths.
const (
	consoleRoot   = "/console/"
	consoleSignIn = "/console/signin"
	sessionCookie = "clearance_session"
)

// console renders the web console's pages.
type console struct {
	s      *Server
	pages  map[string]*template.Template
	static fs.FS
}

var funcs = template.FuncMap{
	"date":       func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"day":        func(t time.Time) string { return t.UTC().Format(time.DateOnly) },
	"join":       strings.Join,
	"reasonText": ReasonText,
	"short":      short,
	"dash":       orDash,
	// query encodes values for an href; Encode escapes every key and value,
	// so the result is safe to place after "?" as it is.
	"query":     func(v url.Values) template.URL { return template.URL(v.Encode()) },
	"hasPrefix": strings.HasPrefix,
	"add":       func(a, b int) int { return a + b },
	"events":    func() []audit.Event { return eventNames },
	"officer":   func(p *Principal) bool { return p != nil && p.Role >= RoleOfficer },
	"has":       func(list []string, v string) bool { return slices.Contains(list, v) },
}

func newConsole(s *Server) (*console, error) {
	c := &console{s: s, pages: map[string]*template.Template{}}
	static, err := fs.Sub(webFS, "web/static")
	if err != nil {
		return nil, err
	}
	c.static = static
	names, err := fs.Glob(webFS, "web/templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimPrefix(n, "web/templates/")
		if strings.HasPrefix(base, "_") || base == "ropa_file.html" {
			continue // shared: the layout and partials
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(webFS, "web/templates/_*.html", n)
		if err != nil {
			return nil, fmt.Errorf("compliance: console template %s: %w", base, err)
		}
		c.pages[base] = t
	}
	return c, nil
}

func (c *console) routes() []route {
	s := c.s
	return []route{
		{"GET", "/console", RoleNone, false, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, consoleRoot, http.StatusMovedPermanently)
		}},
		{"GET", "/console/{$}", RoleViewer, false, c.overview},
		{"GET", "/console/signin", RoleNone, false, c.signInPage},
		{"POST", "/console/signin", RoleNone, false, c.signIn},
		{"POST", "/console/signout", RoleNone, false, c.signOut},
		{"GET", "/console/audit", RoleViewer, false, c.auditPage},
		{"GET", "/console/audit/{seq}", RoleViewer, false, c.entryPage},
		{"POST", "/console/audit", RoleViewer, false, c.auditSearch},
		{"GET", "/console/audit/export", RoleViewer, false, c.export},
		{"GET", "/console/subject", RoleViewer, false, c.subjectPage},
		{"POST", "/console/subject", RoleViewer, false, c.subjectSearch},
		{"GET", "/console/agreements", RoleViewer, false, c.agreementsPage},
		{"GET", "/console/agreements/{id}", RoleViewer, false, c.agreementPage},
		{"GET", "/console/ropa", RoleViewer, false, c.ropaPage},
		{"GET", "/console/ropa/print", RoleViewer, false, c.ropaPrint},
		{"GET", "/console/ropa/export", RoleViewer, false, s.getROPA},
		{"GET", "/console/legal-orders", RoleOfficer, false, c.legalOrdersPage},
		{"POST", "/console/legal-orders", RoleOfficer, false, c.legalOrderCreate},
		{"GET", "/console/whatif", RoleOfficer, false, c.whatIfPage},
		{"POST", "/console/whatif", RoleOfficer, false, c.whatIfRun},
		{"GET", "/console/static/{file}", RoleNone, false, c.asset},
	}
}

// render executes a page into a buffer first, so that a template error
// never sends half a page.
func (c *console) render(w http.ResponseWriter, r *http.Request, name string, data map[string]any) {
	c.renderStatus(w, r, http.StatusOK, name, data)
}

func (c *console) renderStatus(w http.ResponseWriter, r *http.Request, status int, name string, data map[string]any) {
	t := c.pages[name]
	if t == nil {
		c.s.log.Error("console: no template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if data == nil {
		data = map[string]any{}
	}
	data["Principal"] = principalOf(r.Context())
	data["Path"] = r.URL.Path
	var buf bytes.Buffer
	entry := "layout"
	if t.Lookup("standalone") != nil {
		entry = "standalone"
	}
	if err := t.ExecuteTemplate(&buf, entry, data); err != nil {
		c.s.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (c *console) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.renderStatus(w, r, status, "error.html", map[string]any{"Title": http.StatusText(status), "Status": status, "Message": msg})
}

// paramError shows a bad parameter on the page (400) or, for any other
// error, logs it and shows a 500 page.
func (c *console) problem(w http.ResponseWriter, r *http.Request, err error) {
	var pe *paramError
	if errors.As(err, &pe) {
		c.errorPage(w, r, http.StatusBadRequest, pe.Error())
		return
	}
	c.s.log.Error("console", "err", err)
	c.errorPage(w, r, http.StatusInternalServerError, "internal error; see the server log")
}

func (c *console) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	data, err := fs.ReadFile(c.static, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch {
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".js"):
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case strings.HasSuffix(name, ".svg"):
		w.Header().Set("Content-Type", "image/svg+xml")
	}
	w.Header().Set("Cache-Control", "max-age=300")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(data)
}

func (c *console) signInPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "signin.html", map[string]any{"Title": "Sign in", "Next": safeNext(r.URL.Query().Get("next"))})
}

// safeNext keeps a post-sign-in target inside the console.
func safeNext(next string) string {
	if strings.HasPrefix(next, consoleRoot) && !strings.HasPrefix(next, "//") && !strings.Contains(next, "\\") {
		return next
	}
	return consoleRoot
}

func (c *console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.errorPage(w, r, http.StatusBadRequest, "parameter token: unreadable form")
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	token = strings.TrimSpace(strings.TrimPrefix(token, "Bearer "))
	next := safeNext(r.PostForm.Get("next"))
	_, err := c.s.opts.Auth.Authenticate(r.Context(), token)
	if err != nil {
		status, _, msg := authAnswer(err)
		c.renderStatus(w, r, status, "signin.html", map[string]any{"Title": "Sign in", "Next": next, "Error": msg})
		return
	}
	// A session cookie: it ends with the browser session, and the token's
	// own expiry is checked on every request.
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: consoleRoot, HttpOnly: true,
		Secure: c.s.opts.SecureCookie, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *console) signOut(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: consoleRoot, MaxAge: -1,
		HttpOnly: true, Secure: c.s.opts.SecureCookie, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, consoleSignIn, http.StatusSeeOther)
}
