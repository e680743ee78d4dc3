package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/policy"
	"github.com/uptrace/bun"
)

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: clearance report ropa   [--config FILE | --dir DIR --registry DIR] [--from T] [--to T] [--format json|csv|html]")
		fmt.Fprintln(stderr, "       clearance report whatif --proposed DIR [--config FILE | --dir DIR --registry DIR] [--from T] [--to T]")
		fmt.Fprintln(stderr, "\nropa:   Art. 30 records of processing, from the registry and the audit log (default: the last 365 days)")
		fmt.Fprintln(stderr, "whatif: which recorded decisions a proposed registry would flip, which allowed transfers would send other data, and why (default: the last 30 days)")
	}
	if len(args) == 0 || (args[0] != "ropa" && args[0] != "whatif") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			usage()
			return 0
		}
		usage()
		return 2
	}
	kind := args[0]
	fs := flag.NewFlagSet("report "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "broker configuration `FILE` (store, registry and audit HMAC key of clearance serve)")
	dir := fs.String("dir", ".clearance-dev", "dev data `DIR`ectory (used without --config)")
	regDir := fs.String("registry", filepath.Join("examples", "registry"), "registry `DIR`ectory in force (used without --config) where the store holds none applied")
	from := fs.String("from", "", "window start, RFC 3339 or YYYY-MM-DD")
	to := fs.String("to", "", "window end (exclusive), RFC 3339 or YYYY-MM-DD; default now")
	format := fs.String("format", "json", "ropa output: json, csv or html")
	proposed := fs.String("proposed", "", "whatif: the proposed registry `DIR`ectory")
	fs.Usage = func() { usage(); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	w, err := reportWindow(*from, *to, map[string]int{"ropa": 365, "whatif": 30}[kind])
	bad := func(msg string) int { fmt.Fprintln(stderr, "clearance report:", msg); return 2 }
	switch {
	case err != nil:
		return bad(err.Error())
	case fs.NArg() > 0:
		return bad("unexpected argument " + fs.Arg(0))
	case kind == "ropa" && *format != "json" && *format != "csv" && *format != "html":
		return bad("--format: want json, csv or html")
	case kind == "whatif" && *proposed == "":
		return bad("--proposed: required")
	}
	// A flag of the other report is refused rather than ignored.
	var misplaced string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "format" && kind == "whatif" || f.Name == "proposed" && kind == "ropa" {
			misplaced = f.Name
		}
	})
	if misplaced != "" {
		return bad("--" + misplaced + " is not a flag of report " + kind)
	}
	src, err := reportSource(ctx, *cfgPath, *dir, *regDir)
	if err != nil {
		fmt.Fprintln(stderr, "clearance report:", err)
		return 1
	}
	defer src.close()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	if kind == "ropa" {
		rp, seq, err := compliance.BuildROPAFromSaved(ctx, src.db, src.log, src.reg, nil, w[0], w[1], time.Now())
		if err == nil && seq > 0 {
			fmt.Fprintf(stderr, "clearance report ropa: whole days up to audit entry %d from the counts the console saved; the rest from the log\n", seq)
		}
		if err == nil {
			switch *format {
			case "csv":
				err = rp.WriteCSV(out)
			case "html":
				err = rp.WriteHTML(out)
			default:
				err = writeIndented(out, rp)
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, "clearance report ropa:", err)
			return 1
		}
		return 0
	}
	prop, err := agreements.Load(*proposed)
	if err != nil {
		fmt.Fprintf(stderr, "clearance report whatif: proposed registry %s:\n", *proposed)
		for _, p := range agreements.Problems(err) {
			fmt.Fprintln(stderr, "  -", p)
		}
		return 2
	}
	res, err := reportWhatIf(ctx, src, prop, compliance.WhatIfQuery{From: w[0], To: w[1]})
	if err == nil {
		err = writeIndented(out, res)
	}
	if err != nil {
		fmt.Fprintln(stderr, "clearance report whatif:", err)
		return 1
	}
	return 0
}

// reportWhatIf answers as POST /v1/whatif does (compliance.WhatIfInForce):
// the run-time changes of the live registry's store (consents, withdrawals,
// erasures, legal orders, suspensions) are carried over the proposal and,
// when the registry in force was read from its directory, which lacks
// them, over that too.
func reportWhatIf(ctx context.Context, src *reportDB, prop *agreements.Registry, q compliance.WhatIfQuery) (*compliance.WhatIfResult, error) {
	current := src.reg
	if !src.stored {
		var err error
		if current, _, err = compliance.WithRuntimeChanges(ctx, src.store, src.reg); err != nil {
			return nil, err
		}
	}
	return compliance.WhatIfInForce(ctx, src.log, src.store, current, prop, src.subjectKey, q)
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func reportWindow(from, to string, days int) ([2]time.Time, error) {
	var w [2]time.Time
	parse := func(name, v string) (time.Time, error) {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t.UTC(), nil
		}
		if t, err := time.Parse(time.DateOnly, v); err == nil {
			return t, nil
		}
		return time.Time{}, fmt.Errorf("--%s: want RFC 3339 or YYYY-MM-DD", name)
	}
	var err error
	w[1] = time.Now().UTC()
	if to != "" {
		if w[1], err = parse("to", to); err != nil {
			return w, err
		}
	}
	w[0] = w[1].AddDate(0, 0, -days)
	if from != "" {
		if w[0], err = parse("from", from); err != nil {
			return w, err
		}
	}
	if !w[0].Before(w[1]) {
		return w, errors.New("--to: must be after --from")
	}
	return w, nil
}

// reportDB is what a report reads: the audit database (read only), the
// registry in force and the subject HMAC key, when known. The registry in
// force is the one the store's live registry events put in force (stored
// is then true: registry apply may have applied a version the directory
// does not hold, and run-time changes are in it), else the directory's.
type reportDB struct {
	db         *bun.DB
	reg        *agreements.Registry
	stored     bool
	store      *policy.Store
	log        *audit.Log
	subjectKey []byte
}

func (r *reportDB) close() {
	_ = r.log.Close(context.Background())
	_ = r.db.Close()
}

func reportSource(ctx context.Context, cfgPath, dir, regDir string) (*reportDB, error) {
	dsn := "sqlite://" + filepath.Join(dir, "audit.db")
	var subjectKey []byte
	if cfgPath != "" {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, err
		}
		if dsn, err = storeDSN(cfg.Store, "store"); err != nil {
			return nil, err
		}
		regDir = cfg.Registry.Dir
		if subjectKey, err = cfg.Audit.SubjectKey(); err != nil {
			return nil, err
		}
	} else {
		if _, err := os.Stat(filepath.Join(dir, "audit.db")); err != nil {
			return nil, fmt.Errorf("no audit log in %s (run clearance dev first, or give --config)", dir)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "subject-hmac.key")); err == nil {
			subjectKey, _ = hex.DecodeString(strings.TrimSpace(string(b)))
		}
	}
	reg, err := agreements.Load(regDir)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", regDir, err)
	}
	// A report reads a log someone else wrote: a SQLite file that is
	// missing is an error, not an empty log made in its place.
	db, err := audit.OpenExistingDB(ctx, dsn)
	if err != nil {
		return nil, err
	}
	log, err := audit.Open(ctx, db, audit.Options{SubjectKey: subjectKey})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	src := &reportDB{db: db, reg: reg, log: log, subjectKey: subjectKey}
	if src.store, err = policy.OpenStore(ctx, db); err == nil {
		var inForce *agreements.Registry
		if inForce, _, err = src.store.InForce(ctx); inForce != nil {
			src.reg, src.stored = inForce, true
		}
	}
	if err != nil {
		src.close()
		return nil, fmt.Errorf("the registry in force: %w", err)
	}
	return src, nil
}
