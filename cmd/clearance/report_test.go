package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/compliance/compliancetest"
	"github.com/clearance-broker/clearance/policy"
)

func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	// clearance dev creates the issuer in its directory; token only reads it.
	if _, err := compliance.LoadOrCreateDevIssuer(filepath.Join(dir, compliance.DevIssuerKeyFile)); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	tests := []struct {
		name     string
		give     []string
		wantCode int
		wantErr  string
	}{
		{"officer", []string{"--dir", dir, "--role", "officer"}, 0, ""},
		{"no dev directory", []string{"--dir", empty, "--role", "officer"}, 1, "no development issuer in " + empty + ": start clearance dev first"},
		{"unknown role", []string{"--dir", dir, "--role", "root"}, 2, "unknown role"},
		{"bad ttl", []string{"--dir", dir, "--role", "viewer", "--ttl", "-1h"}, 2, "--ttl"},
		{"stray argument", []string{"--dir", dir, "extra"}, 2, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"token"}, tt.give...), &out, &errb)
			if code != tt.wantCode || !strings.Contains(errb.String(), tt.wantErr) {
				t.Fatalf("exit %d, stderr %q", code, errb.String())
			}
			if code != 0 {
				return
			}
			// The dev process verifies it with the key in the same directory.
			issuer, err := compliance.LoadDevIssuer(filepath.Join(dir, compliance.DevIssuerKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			auth, err := issuer.Authenticator(nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := auth.Authenticate(context.Background(), strings.TrimSpace(out.String()))
			if err != nil || p.Role != compliance.RoleOfficer {
				t.Fatalf("token: %v %+v", err, p)
			}
		})
	}
}

// reportDir is a dev data directory with an audit log of the example
// requests and its subject key.
func reportDir(t *testing.T) (*compliancetest.Fixture, string) {
	t.Helper()
	f := compliancetest.New(t)
	f.Seed(t, 1)
	key := hex.EncodeToString(compliancetest.SubjectKey)
	if err := os.WriteFile(filepath.Join(f.Dir, "subject-hmac.key"), []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, f.Dir
}

func TestReportROPA(t *testing.T) {
	f, dir := reportDir(t)
	from := compliancetest.Now.AddDate(0, -2, 0).Format(time.DateOnly)
	base := []string{"report", "ropa", "--dir", dir, "--registry", f.Registry, "--from", from}
	var out, errb bytes.Buffer
	if code := run(context.Background(), append(base, "--format", "csv"), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(rows) < 2 || rows[0][0] != "purpose" {
		t.Fatalf("csv: %v %v", err, rows)
	}
	out.Reset()
	if code := run(context.Background(), append(base, "--format", "html"), &out, &errb); code != 0 || !strings.Contains(out.String(), "Purpose: delivery") {
		t.Fatalf("html: exit %d %.200s", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), base, &out, &errb); code != 0 {
		t.Fatalf("json: exit %d", code)
	}
	var rp compliance.ROPA
	if err := json.Unmarshal(out.Bytes(), &rp); err != nil || len(rp.Purposes) == 0 {
		t.Fatalf("json: %v", err)
	}
	if strings.Contains(errb.String(), "saved") {
		t.Fatalf("saved counts before the console saved any: %s", errb.String())
	}
	// Once the console has saved its records of processing, the command
	// takes their whole days, says so, and gives the same records.
	now := compliancetest.Now
	if _, err := f.Server.BuildROPA(context.Background(), now.AddDate(-1, 0, 0), now); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(context.Background(), base, &out, &errb); code != 0 || !strings.Contains(errb.String(), "from the counts the console saved") {
		t.Fatalf("json from the saved counts: exit %d %s", code, errb.String())
	}
	var again compliance.ROPA
	if err := json.Unmarshal(out.Bytes(), &again); err != nil {
		t.Fatal(err)
	}
	if a, b := mustJSON(t, rp.Purposes), mustJSON(t, again.Purposes); a != b {
		t.Fatalf("records of processing from the saved counts:\n%s\nfrom the log:\n%s", b, a)
	}
	errb.Reset()
	if code := run(context.Background(), append(base, "--format", "pdf"), &out, &errb); code != 2 || !strings.Contains(errb.String(), "--format") {
		t.Fatalf("bad format: exit %d %s", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"report", "ropa", "--dir", t.TempDir()}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no audit log") {
		t.Fatalf("empty dir: exit %d %s", code, errb.String())
	}
}

func TestReportWhatIf(t *testing.T) {
	f, dir := reportDir(t)
	prop := t.TempDir()
	names, _ := filepath.Glob(filepath.Join(f.Registry, "*.yaml"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(n) == "40-agreements.yaml" {
			b = []byte(strings.Replace(string(b), "valid_until: 2027-12-31", "valid_until: 2025-01-31", 1))
		}
		if err := os.WriteFile(filepath.Join(prop, filepath.Base(n)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	args := []string{"report", "whatif", "--dir", dir, "--registry", f.Registry, "--proposed", prop, "--from", "2026-10-01", "--to", "2026-12-01"}
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res compliance.WhatIfResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.NowRefused == 0 || res.SubjectsKnown == 0 {
		t.Fatalf("result: %v %+v", err, res)
	}
	errb.Reset()
	if code := run(context.Background(), []string{"report", "whatif", "--dir", dir}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--proposed") {
		t.Fatalf("no proposal: exit %d %s", code, errb.String())
	}
	// A flag of the other report is refused, not ignored.
	for _, args := range [][]string{
		{"report", "whatif", "--dir", dir, "--proposed", prop, "--format", "csv"},
		{"report", "ropa", "--dir", dir, "--proposed", prop},
	} {
		errb.Reset()
		if code := run(context.Background(), args, &out, &errb); code != 2 || !strings.Contains(errb.String(), "is not a flag of report") {
			t.Errorf("%q: exit %d %s", args, code, errb.String())
		}
	}

	// Once the proposal is applied (registry apply, through the live
	// registry's store), it is the version in force, not the directory's:
	// the same proposal then flips nothing.
	ctx := t.Context()
	store, err := policy.OpenStore(ctx, f.DB)
	if err != nil {
		t.Fatal(err)
	}
	live, err := policy.Start(ctx, policy.Options{Store: store, Engine: f.Engine, NATS: brokertest.Connect(t, brokertest.StartNATS(t)),
		Audit: f.Log, Now: func() time.Time { return compliancetest.Now }})
	if err != nil {
		t.Fatal(err)
	}
	applied, err := agreements.Load(prop)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := live.Apply(ctx, applied); err != nil {
		t.Fatal(err)
	}
	live.Stop()
	out.Reset()
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	res = compliance.WhatIfResult{}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.CurrentVersion != applied.Version() || res.NowRefused != 0 || res.Evaluated == 0 {
		t.Fatalf("after the proposal was applied: %v %+v; want it in force, nothing flipped", err, res)
	}
}

// mustJSON encodes v.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReportOpensExistingLog: a report reads the log of --config's store;
// a SQLite file that does not exist was created empty and reported on as
// if nothing had been recorded. It is an error, and nothing is created.
func TestReportOpensExistingLog(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	dir := t.TempDir()
	missing := filepath.Join(dir, "audit.db")
	keyFile := filepath.Join(dir, "hmac.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("k", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "clearance.yaml")
	if err := os.WriteFile(cfg, []byte("store: {dsn: "+missing+"}\naudit: {hmac_key: {file: "+keyFile+"}}\nregistry: {dir: "+
		filepath.Join(root, "examples", "registry")+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"report", "ropa", "--config", cfg}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), missing+`": file does not exist`) {
		t.Errorf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("%s created: %v", missing, err)
	}
}
