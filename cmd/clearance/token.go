package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/policy"
	"github.com/uptrace/bun"
)

func runToken(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".clearance-dev", "dev data `DIR`ectory holding the built-in issuer's key (as for clearance dev)")
	role := fs.String("role", "viewer", "`ROLE`: viewer, officer or admin")
	subject := fs.String("subject", "dev-user", "the token's subject (an account id, not a person's name)")
	ttl := fs.Duration("ttl", 8*time.Hour, "how long the token is valid")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance token --role viewer|officer|admin [--dir DIR] [--ttl 8h] [--subject ID]")
		fmt.Fprintln(stderr, "\nMints a token for the compliance API and console of `clearance dev`, signed by")
		fmt.Fprintln(stderr, "its built-in development issuer, whose key clearance dev keeps in its --dir: run it")
		fmt.Fprintln(stderr, "where clearance dev runs, or give the same --dir. Production tokens come from your")
		fmt.Fprintln(stderr, "identity provider.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	r, err := compliance.ParseRole(*role)
	if err != nil || fs.NArg() > 0 || *ttl <= 0 || *ttl > 30*24*time.Hour {
		if err != nil {
			fmt.Fprintln(stderr, "clearance token:", err)
		} else if *ttl <= 0 || *ttl > 30*24*time.Hour {
			fmt.Fprintln(stderr, "clearance token: --ttl must be between 1s and 720h")
		}
		fs.Usage()
		return 2
	}
	issuer, err := compliance.LoadDevIssuer(filepath.Join(*dir, compliance.DevIssuerKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "clearance token: no development issuer in %s: start clearance dev first (it creates one there), "+
			"or give the --dir it runs with\n", *dir)
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "clearance token:", err)
		return 1
	}
	tok, err := issuer.Mint(*subject, r, *ttl, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "clearance token:", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// devCompliance builds the compliance API and console of `clearance dev`,
// with the built-in issuer whose key lives in the dev data directory.
func devCompliance(dir string, auditLog *audit.Log, db *bun.DB, engine *agreements.Engine, subjectKey []byte, keyRef string, logger *slog.Logger) (*compliance.Server, error) {
	issuer, err := compliance.LoadOrCreateDevIssuer(filepath.Join(dir, compliance.DevIssuerKeyFile))
	if err != nil {
		return nil, err
	}
	auth, err := issuer.Authenticator(nil)
	if err != nil {
		return nil, err
	}
	store, err := registryStore(db)
	if err != nil {
		return nil, err
	}
	return compliance.New(compliance.Options{
		Audit: auditLog, DB: db, Registry: engine, Versions: store, Auth: auth, DevIssuer: issuer,
		SubjectKey: subjectKey, KeyRefs: []string{keyRef}, Logger: logger,
	})
}

// printConsoleSteps tells a newcomer how to reach the console.
func printConsoleSteps(w io.Writer, apiURL, dir string) {
	fmt.Fprintf(w, `
Compliance console  %[1]s/console/   (API under %[1]s/v1/, described at /v1/openapi.yaml)
  Sign in with a token from:   clearance token --dir %[2]s --role officer
  Records of processing:       clearance report ropa --dir %[2]s --format html > ropa.html
  Check the audit log:         clearance audit verify --dir %[2]s
`, apiURL, dir)
}

// serveCompliance builds the compliance API and console of `clearance
// serve` when the configuration has an auth section (nil otherwise).
func serveCompliance(cfg *config.Config, auth *compliance.Authenticator, auditLog *audit.Log, db *bun.DB, engine *agreements.Engine, subjectKey []byte, keyRef string, logger *slog.Logger) (*compliance.Server, error) {
	if auth == nil {
		logger.Warn("compliance API and console disabled: no auth section in the configuration", "component", "compliance")
		return nil, nil
	}
	store, err := registryStore(db)
	if err != nil {
		return nil, err
	}
	return compliance.New(compliance.Options{
		Audit: auditLog, DB: db, Registry: engine, Versions: store, Auth: auth, SubjectKey: subjectKey,
		KeyRefs: []string{keyRef}, Logger: logger, SecureCookie: true,
	})
}

// registryStore opens the live registry's store (the agreement versions the
// compliance history shows) on the audit log's database.
func registryStore(db *bun.DB) (*policy.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	return policy.OpenStore(ctx, db)
}

// mountsOf returns the mount function of a compliance server, if any.
func mountsOf(cs *compliance.Server) []func(*http.ServeMux) {
	if cs == nil {
		return nil
	}
	return []func(*http.ServeMux){cs.Mount}
}
