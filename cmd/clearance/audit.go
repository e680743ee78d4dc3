package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/audit/mirror"
	"github.com/clearance-broker/clearance/compliance"
	"github.com/clearance-broker/clearance/config"
	"github.com/clearance-broker/clearance/keys"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Environment variables the audit commands read when the flag is not given.
// Secrets are given by reference (a file path), never by value.
const (
	envAuditDB          = "CLEARANCE_AUDIT_DB"
	envAuditHMACKey     = "CLEARANCE_AUDIT_HMAC_KEY_FILE"
	envAuditJWKS        = "CLEARANCE_AUDIT_JWKS"
	envAuditArchiveJWKS = "CLEARANCE_AUDIT_ARCHIVE_JWKS"
)

// runAudit implements `clearance audit verify|query|export|archive|verify-archive`. Exit codes: 0
// success, 1 tampering found or the store failed, 2 bad usage.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: clearance audit verify|query|export|archive|verify-archive [flags]\n\n"+
			"  verify   recompute the hash chain, check every signed checkpoint, name the first entry changed, removed or inserted\n"+
			"  query    print matching entries as JSON lines (subject ids are hashed before the query)\n"+
			"  export   stream matching entries as csv or jsonl\n"+
			"  archive  export entries older than a horizon with a signed manifest, then remove them\n"+
			"  verify-archive  check an archive file against its signed manifest\n\n"+
			"Run 'clearance audit <subcommand> -h' for its flags.")
	}
	selecting := func(kind string) runFunc {
		return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
			return runAuditSelect(ctx, kind, args, stdout, stderr)
		}
	}
	return subcommands(ctx, "audit", map[string]runFunc{
		"verify": runAuditVerify, "query": selecting("query"), "export": selecting("export"),
		"archive": runAuditArchive, "verify-archive": runAuditVerifyArchive,
	}, usage, args, stdout, stderr)
}

// auditFlags are the flags every audit subcommand shares.
type auditFlags struct {
	db      string
	hmacKey string
	dir     string
	// key is the subject HMAC key, once resolve has read it.
	key      []byte
	resolved bool
}

func (a *auditFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.db, "db", "",
		"audit store `DSN`: postgres://user@host/db?sslmode=disable or sqlite:///path/audit.db (env "+envAuditDB+")")
	fs.StringVar(&a.hmacKey, "hmac-key-file", "",
		"`FILE` holding the subject HMAC key, read as audit.hmac_key's file is, needed for --subject (env "+envAuditHMACKey+")")
	fs.StringVar(&a.dir, "dir", "",
		"data `DIR`ectory of clearance dev: its audit log and subject key, and for verify its checkpoint keys, where --db, --hmac-key-file or --jwks name none")
}

// resolve settles the store and the subject key: a flag first, then the
// dev data directory of --dir, then the environment. The key file is read
// as clearance serve reads audit.hmac_key's (surrounding white space
// trimmed), so that a query hashes subjects as the broker did; the dev data
// directory's subject-hmac.key holds the key in hex, as clearance dev
// writes it.
func (a *auditFlags) resolve(name string, stderr io.Writer) int {
	if a.resolved {
		return 0
	}
	a.resolved = true
	if a.dir != "" {
		if a.db == "" {
			p := filepath.Join(a.dir, "audit.db")
			if _, err := os.Stat(p); err != nil {
				fmt.Fprintf(stderr, "clearance audit %s: no audit log in %s (run clearance dev first, or give --db)\n", name, a.dir)
				return 2
			}
			a.db = "sqlite://" + p
		}
		if a.hmacKey == "" {
			p := filepath.Join(a.dir, "subject-hmac.key")
			if b, err := os.ReadFile(p); err == nil {
				k, err := hex.DecodeString(strings.TrimSpace(string(b)))
				if err != nil || len(k) == 0 {
					fmt.Fprintf(stderr, "clearance audit %s: %s: not the hex key clearance dev writes\n", name, p)
					return 2
				}
				a.key = k
			}
		}
	}
	if a.db == "" {
		a.db = os.Getenv(envAuditDB)
	}
	if a.hmacKey == "" && a.key == nil {
		a.hmacKey = os.Getenv(envAuditHMACKey)
	}
	if a.hmacKey != "" {
		k, err := config.SecretRef{File: a.hmacKey}.Resolve()
		if err != nil {
			fmt.Fprintf(stderr, "clearance audit %s: --hmac-key-file: %v\n", name, err)
			return 2
		}
		a.key = k
	}
	return 0
}

// open opens the store read-only: the audit commands never write (archive
// removes what it archived). A SQLite file must exist already
// (audit.OpenExistingDB): a missing one is a mistyped path, and an empty
// log made in its place would verify, and answer a query, as if nothing
// had been recorded.
func (a *auditFlags) open(ctx context.Context, name string, stderr io.Writer) (*audit.Log, func(), int) {
	if code := a.resolve(name, stderr); code != 0 {
		return nil, nil, code
	}
	if a.db == "" {
		fmt.Fprintf(stderr, "clearance audit %s: --db (or %s, or --dir of a clearance dev run) is required\n", name, envAuditDB)
		return nil, nil, 2
	}
	db, err := audit.OpenExistingDB(ctx, a.db)
	if err != nil {
		fmt.Fprintf(stderr, "clearance audit %s: %v\n", name, err)
		return nil, nil, 1
	}
	l, err := audit.Open(ctx, db, audit.Options{SubjectKey: a.key})
	if err != nil {
		_ = db.Close()
		fmt.Fprintf(stderr, "clearance audit %s: %v\n", name, err)
		return nil, nil, 1
	}
	return l, func() { _ = l.Close(context.WithoutCancel(ctx)); _ = db.Close() }, 0
}

func parseAuditFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	return parseFlags(fs, args, "clearance audit "+fs.Name(), stderr)
}

func runAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af auditFlags
	af.register(fs)
	vf := registerVerifyFlags(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance audit verify --db DSN --jwks FILE[,FILE] [--archive-jwks FILE] [--config FILE] [--json]\n       clearance audit verify --dir DIR   (a clearance dev run's data directory)\n\n"+
			"Entries must be sealed by checkpoints at the cadence the log was written with: give the broker's\n"+
			"configuration (--config) or its checkpoint settings, or verify reports the entries left unsealed.")
		fs.PrintDefaults()
	}
	if code, ok := parseAuditFlags(fs, args, stderr); !ok {
		return code
	}
	vd, code := vf.verify(ctx, "verify", &af, stderr)
	if vd == nil {
		return code
	}
	defer vd.done()
	rep := vd.rep
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printReport(stdout, rep, vd.stream)
	}
	if rep.Problem != nil {
		return 1
	}
	return 0
}

// verifyFlags are the flags of the commands that verify the log: verify,
// and archive, which verifies it before it signs what it removes.
type verifyFlags struct {
	jwks     *jwksFiles
	archive  *jwksFiles
	unsigned *bool
	cfgPath  *string
	every    *int64
	interval *time.Duration
	natsURL  *string
	stream   *string
	fs       *flag.FlagSet
}

func registerVerifyFlags(fs *flag.FlagSet) *verifyFlags {
	return &verifyFlags{
		fs:       fs,
		jwks:     registerJWKS(fs, "JWK set `FILE` of the checkpoint verification keys, as served at /.well-known/jwks.json"),
		archive:  registerArchiveJWKS(fs),
		unsigned: fs.Bool("no-signatures", false, "check the chain and checkpoint heads without authenticating signatures"),
		cfgPath:  fs.String("config", "", "broker configuration `FILE` whose audit.checkpoint_every, audit.checkpoint_interval and audit.checkpoint_stream (on its nats servers) the log was written with"),
		every:    fs.Int64("checkpoint-every", 0, "the writers' audit.checkpoint_every `N` (default: --config's, else clearance serve's default 30000, or for --dir clearance dev's 1000)"),
		interval: fs.Duration("checkpoint-interval", 0, "the writers' audit.checkpoint_interval `D` (default: --config's, else 1m)"),
		natsURL:  fs.String("nats", "", "NATS `URL` of the stream that keeps copies of the checkpoints (default: --config's nats.urls; without either, no copies are checked)"),
		stream:   fs.String("checkpoint-stream", "", "`NAME` of that stream (default: --config's audit.checkpoint_stream, else "+mirror.DefaultStream+"); empty checks no copies"),
	}
}

// verification is how a command verifies the log: the verifier of the
// signatures (nil with --no-signatures), the options, and the stream whose
// copies of the checkpoints the options hold ("" for none asked for,
// streamOff for a stream turned off, devNoMirror for a clearance dev data
// directory that holds none).
type verification struct {
	v      audit.Verifier
	opts   audit.VerifyOptions
	stream string
}

// resolve returns how the command name verifies the log: --jwks's sets
// and, for --dir, the dev run's checkpoint keys, with the sets of extra
// besides (the archive key's own); the cadence of verifyCadence; the
// copies of the checkpoints in the stream of --nats and
// --checkpoint-stream (or of --config); progress on stderr.
func (f *verifyFlags) resolve(ctx context.Context, name string, af *auditFlags, stderr io.Writer, extra ...jwkSet) (*verification, int) {
	var cfg *config.Config
	if *f.cfgPath != "" {
		var code int
		if cfg, code = loadConfig("clearance audit "+name, *f.cfgPath, stderr); cfg == nil {
			return nil, code
		}
	}
	vn := &verification{opts: audit.VerifyOptions{Progress: verifyProgress(name, stderr, time.Now), RefuseManifestKey: true}}
	if code := verifyCadence(name, &vn.opts, cfg, af.dir != "", *f.every, *f.interval, stderr); code != 0 {
		return nil, code
	}
	var sets []jwkSet
	if *f.unsigned {
		// The chain and the checkpoint heads only: no key set is read
		// (a dev directory's included), and one asked for is a mistake.
		if f.jwks.flagged || f.archive.flagged {
			fmt.Fprintf(stderr, "clearance audit %s: --no-signatures checks no signature: leave out --jwks and --archive-jwks\n", name)
			return nil, 2
		}
		if code := f.mirrored(ctx, name, af, cfg, vn, stderr); code != 0 {
			return nil, code
		}
		return vn, 0
	}
	if af.dir != "" {
		// A dev run's checkpoint keys, and --jwks's sets besides (the
		// archive key's, for a log archived since).
		set, code := devJWKS(ctx, name, af.dir, stderr)
		if set == nil {
			return nil, code
		}
		sets = append(sets, jwkSet{from: "of " + af.dir, data: set})
	}
	switch {
	case len(f.jwks.files) > 0 && (af.dir == "" || f.jwks.flagged):
		read, code := f.jwks.read(name, stderr)
		if read == nil {
			return nil, code
		}
		sets = append(sets, read...)
	case sets == nil && !*f.unsigned:
		fmt.Fprintf(stderr, "clearance audit %s: --jwks is required to authenticate checkpoints (or --no-signatures)\n", name)
		return nil, 2
	}
	var archive []jwkSet
	if len(f.archive.files) > 0 {
		var code int
		if archive, code = f.archive.read(name, stderr); archive == nil {
			return nil, code
		}
	}
	switch {
	case sets == nil:
	case archive == nil && len(extra) == 0:
		v, code := mergeJWKS(name, sets, stderr)
		if v == nil {
			return nil, code
		}
		vn.v = v
	default:
		// The retention keys verify the manifests, and the checkpoints
		// are held to the writers' keys alone. Without --archive-jwks the
		// manifests are verified by every set given, as before the flag.
		v, code := mergeJWKS(name, sets, stderr)
		if v == nil {
			return nil, code
		}
		manifests := append(archive, extra...)
		if archive == nil {
			manifests = append(slices.Clone(sets), extra...)
		}
		mv, code := mergeJWKS(name, manifests, stderr)
		if mv == nil {
			return nil, code
		}
		vn.v, vn.opts.Manifests = v, mv
	}
	if code := f.mirrored(ctx, name, af, cfg, vn, stderr); code != 0 {
		return nil, code
	}
	return vn, 0
}

// verified is a log opened read-only and verified as a command asked: its
// report, and the stream of checkpoint copies it was held to
// (verification.stream). done closes the log.
type verified struct {
	log    *audit.Log
	done   func()
	rep    *audit.Report
	stream string
}

// verify resolves the flags (resolve), opens the log and verifies it. A
// failure other than tampering is printed and its exit code returned;
// tampering is in the report.
func (f *verifyFlags) verify(ctx context.Context, name string, af *auditFlags, stderr io.Writer, extra ...jwkSet) (*verified, int) {
	vn, code := f.resolve(ctx, name, af, stderr, extra...)
	if vn == nil {
		return nil, code
	}
	l, done, code := af.open(ctx, name, stderr)
	if l == nil {
		return nil, code
	}
	rep, err := l.VerifyWith(ctx, vn.v, vn.opts)
	if err != nil && !errors.Is(err, audit.ErrTampered) {
		done()
		fmt.Fprintf(stderr, "clearance audit %s: verify: %v\n", name, err)
		return nil, 1
	}
	return &verified{log: l, done: done, rep: rep, stream: vn.stream}, 0
}

// mirrored reads into vn the copies of the checkpoints kept in a stream
// (audit/mirror): that of --checkpoint-stream, else --config's
// audit.checkpoint_stream, else the default, on the servers of --nats,
// else --config's nats section. Without either, it reads none.
func (f *verifyFlags) mirrored(ctx context.Context, name string, af *auditFlags, cfg *config.Config, vn *verification, stderr io.Writer) int {
	stream, given := mirror.DefaultStream, false
	f.fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == "checkpoint-stream" })
	switch {
	case given:
		stream = *f.stream
	case cfg != nil:
		stream = cfg.Audit.CheckpointStream
	}
	switch {
	case stream == "" && (given || cfg != nil):
		vn.stream = streamOff
		return 0
	case stream == "" || (*f.natsURL == "" && cfg == nil):
		if af.dir != "" && !given {
			return devCopies(ctx, name, af.dir, vn, stderr)
		}
		return 0
	}
	if !mirror.ValidStream(stream) {
		fmt.Fprintf(stderr, "clearance audit %s: --checkpoint-stream: %q is not a stream name\n", name, stream)
		return 2
	}
	url, opts := *f.natsURL, []nats.Option{nats.Name("clearance audit " + name)}
	if url == "" {
		var err error
		if opts, err = natsOptions(cfg.NATS, slog.New(slog.DiscardHandler)); err != nil {
			fmt.Fprintf(stderr, "clearance audit %s: nats: %v\n", name, err)
			return 2
		}
		url = joinURLs(cfg.NATS.URLs)
	}
	copies, err := readCopies(ctx, url, stream, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "clearance audit %s: the copies of the checkpoints in stream %s: %v (--checkpoint-stream '' checks none)\n", name, stream, err)
		return 1
	}
	vn.opts.Mirrored, vn.stream = copies, stream
	return 0
}

// readCopies reads the checkpoint copies of stream on the NATS servers of
// url.
func readCopies(ctx context.Context, url, stream string, opts ...nats.Option) ([]string, error) {
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return mirror.Read(ctx, js, stream)
}

// devCopies reads into vn the copies of the checkpoints a clearance dev
// run keeps on its embedded NATS server: through that server while the dev
// runs on dir, else from its store, through a server of its own started
// on it for the read.
func devCopies(ctx context.Context, name, dir string, vn *verification, stderr io.Writer) int {
	var copies []string
	var err error
	if unlock, lerr := lockDevDir(dir); lerr == nil {
		var ns *server.Server
		var url string
		if ns, url, _, err = startDevNATS(dir, -1); err == nil {
			copies, err = readCopies(ctx, url, mirror.DefaultStream)
			ns.Shutdown()
			ns.WaitForShutdown()
		}
		unlock()
	} else {
		var b []byte
		if b, err = os.ReadFile(filepath.Join(dir, devNATSURLFile)); err == nil {
			copies, err = readCopies(ctx, strings.TrimSpace(string(b)), mirror.DefaultStream)
		}
	}
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		vn.stream = devNoMirror // a data directory of a version that kept none
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "clearance audit %s: the copies of the checkpoints of the clearance dev run on %s: %v\n", name, dir, err)
		return 1
	}
	vn.opts.Mirrored, vn.stream = copies, mirror.DefaultStream
	return 0
}

// verifyCadence sets the checkpoint cadence that the verification of the
// command name holds the log to: the flags', else the broker configuration
// cfg's, else the default of clearance dev (dev) or of clearance serve.
func verifyCadence(name string, opts *audit.VerifyOptions, cfg *config.Config, dev bool, every int64, interval time.Duration, stderr io.Writer) int {
	if every < 0 || interval < 0 {
		fmt.Fprintf(stderr, "clearance audit %s: --checkpoint-every and --checkpoint-interval must be positive\n", name)
		return 2
	}
	a := config.Defaults().Audit
	if dev {
		// clearance dev writes with the audit package's defaults.
		a.CheckpointEvery, a.CheckpointInterval = 1000, time.Minute
	}
	if cfg != nil {
		a = cfg.Audit
	}
	opts.CheckpointEvery, opts.CheckpointInterval = int64(a.CheckpointEvery), a.CheckpointInterval
	if every > 0 {
		opts.CheckpointEvery = every
	}
	if interval > 0 {
		opts.CheckpointInterval = interval
	}
	return 0
}

// devNoMirror stands, in printReport, for the log of a clearance dev data
// directory that holds no copies of its checkpoints (one of a version that
// kept none).
const devNoMirror = "(dev)"

// streamOff stands, in printReport, for a verification whose stream of
// checkpoint copies was turned off: an empty --checkpoint-stream, or
// --config's audit.checkpoint_stream.
const streamOff = "(off)"

// printReport prints rep of a verification that held the log to the
// copies of its checkpoints in stream (see verification.stream).
func printReport(w io.Writer, rep *audit.Report, stream string) {
	if rep.Problem != nil {
		label, text := verificationProblem(rep.Problem, rep.Problem.Detail)
		if rep.Problem.Finding == audit.FindingUnsealed && label == "TAMPERED" {
			label = "UNSEALED"
		}
		if rep.ProblemLast > rep.Problem.Sequence {
			fmt.Fprintf(w, "%s: entries %d to %d %s: %s\n", label, rep.Problem.Sequence, rep.ProblemLast, rep.Problem.Finding, text)
		} else {
			fmt.Fprintf(w, "%s: entry %d %s: %s\n", label, rep.Problem.Sequence, rep.Problem.Finding, text)
		}
	} else {
		fmt.Fprintln(w, "OK: the audit chain verifies")
	}
	fmt.Fprintf(w, "entries checked:     %d (sequence %d to %d)\n", rep.Entries, rep.FirstSequence, rep.LastSequence)
	if rep.Anchor > 0 {
		fmt.Fprintf(w, "retention anchor:    entries up to %d archived (signed manifest checked)\n", rep.Anchor)
	}
	fmt.Fprintf(w, "checkpoints checked: %d (last at %d)\n", rep.Checkpoints, rep.LastCheckpoint)
	if rep.Problem == nil {
		fmt.Fprintf(w, "unsealed tail:       %d entries (after the last checkpoint, within the checkpoint cadence)\n", rep.Unsealed)
	}
	switch stream {
	case "":
		fmt.Fprintln(w, "mirrored copies:     not checked (give --config or --nats to hold the log to the checkpoints kept in NATS)")
	case streamOff:
		fmt.Fprintln(w, "mirrored copies:     not checked (no stream of copies: --checkpoint-stream or audit.checkpoint_stream is empty)")
	case devNoMirror:
		fmt.Fprintln(w, "mirrored copies:     none (this clearance dev data directory holds no copies of its checkpoints)")
	default:
		fmt.Fprintf(w, "mirrored copies:     %d checked (stream %s)\n", rep.Mirrored, stream)
	}
	if !rep.SignaturesChecked {
		fmt.Fprintln(w, "WARNING: signatures were not checked (--no-signatures)")
	}
}

func runAuditSelect(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af auditFlags
	af.register(fs)
	var f audit.Filter
	var event, since, until string
	fs.StringVar(&f.SubjectID, "subject", "", "subject `ID` (hashed with the HMAC key before the query)")
	fs.StringVar(&f.RequestID, "request", "", "request `ID`")
	fs.StringVar(&f.Recipient, "recipient", "", "recipient party `ID`")
	fs.StringVar(&f.Country, "country", "", "recipient `COUNTRY` (ISO 3166 alpha-2 in capitals, such as DE)")
	fs.StringVar(&f.Purpose, "purpose", "", "`PURPOSE` id")
	fs.StringVar(&f.Decision, "decision", "", "allow or deny")
	fs.StringVar(&event, "event", "", "`EVENT` ("+strings.Join(auditEventNames(), ", ")+")")
	fs.StringVar(&since, "since", "", "entries at or after this `TIME`: RFC 3339 (2026-11-28T00:00:00Z) or a date (2026-11-28, midnight UTC)")
	fs.StringVar(&until, "until", "", "entries before this `TIME`: RFC 3339 or a date (midnight UTC)")
	fs.Int64Var(&f.AfterSequence, "after", 0, "entries after this `SEQUENCE` (paging; 0 or more)")
	format, out, force := "jsonl", "", false
	if name == "query" {
		fs.IntVar(&f.Limit, "limit", audit.DefaultLimit, "at most `N` entries (1 or more)")
	} else {
		fs.StringVar(&format, "format", "jsonl", "csv or jsonl")
		fs.StringVar(&out, "out", "", "write to `FILE` instead of stdout: created readable by its owner only; an existing FILE is refused unless --force")
		fs.BoolVar(&force, "force", false, "overwrite an existing --out FILE (a regular file is made readable by its owner only)")
	}
	fs.Usage = func() {
		if name == "query" {
			fmt.Fprintln(stderr, "usage: clearance audit query --db DSN [filters] [--limit N]")
		} else {
			fmt.Fprintln(stderr, "usage: clearance audit export --db DSN [filters] [--format csv|jsonl] [--out FILE [--force]]")
		}
		fs.PrintDefaults()
	}
	if code, ok := parseAuditFlags(fs, args, stderr); !ok {
		return code
	}
	f.Event = audit.Event(event)
	if err := checkAuditFilter(&f, since, until, name == "query"); err != nil {
		fmt.Fprintf(stderr, "clearance audit %s: %v\n", name, err)
		return 2
	}
	if code := af.resolve(name, stderr); code != 0 {
		return code
	}
	if f.SubjectID != "" && len(af.key) == 0 {
		fmt.Fprintf(stderr, "clearance audit %s: --subject needs --hmac-key-file (or %s, or --dir of a clearance dev run)\n", name, envAuditHMACKey)
		return 2
	}
	if format != string(audit.FormatCSV) && format != string(audit.FormatJSONL) {
		fmt.Fprintf(stderr, "clearance audit %s: --format: want csv or jsonl\n", name)
		return 2
	}
	if force && out == "" {
		fmt.Fprintf(stderr, "clearance audit %s: --force needs --out\n", name)
		return 2
	}
	l, done, code := af.open(ctx, name, stderr)
	if l == nil {
		return code
	}
	defer done()
	w := stdout
	var file *outFile
	if out != "" {
		var err error
		if file, err = createOut(out, force); err != nil {
			if errors.Is(err, os.ErrExist) {
				err = fmt.Errorf("%w (--force overwrites it)", err)
			}
			fmt.Fprintf(stderr, "clearance audit %s: %v\n", name, err)
			return 1
		}
		defer file.Close()
		w = file
	}
	n, err := l.Export(ctx, &progressWriter{w: w, p: newProgress(name, stderr, time.Now)}, audit.Format(format), f)
	if err == nil && file != nil {
		// A write the system buffered can still fail here (a full disk):
		// the export is complete only once the file is closed.
		err = file.Close()
	}
	if err != nil {
		if file != nil {
			file.discard()
		}
		fmt.Fprintf(stderr, "clearance audit %s: %v\n", name, strings.TrimPrefix(err.Error(), "audit: "))
		return 1
	}
	if out != "" {
		fmt.Fprintf(stderr, "clearance audit %s: %d entries written to %s\n", name, n, out)
	}
	return 0
}

// auditCountry is the form of a recipient country the audit log records
// (and the compliance API's country filter takes).
var auditCountry = regexp.MustCompile(`^[A-Z]{2}$`)

// auditEvents are the events written to the audit log, as the compliance
// API's event filter takes them.
func auditEvents() []audit.Event { return compliance.Events() }

func auditEventNames() []string {
	var out []string
	for _, e := range auditEvents() {
		out = append(out, string(e))
	}
	return out
}

// checkAuditFilter checks the filter flags of audit query and export as the
// compliance API checks its search parameters, and sets the time bounds
// from since and until; limited is query's, whose --limit must be 1 or
// more (export has no limit). The problem names the flag and what it
// takes, never the value given (a subject id may have been put anywhere).
func checkAuditFilter(f *audit.Filter, since, until string, limited bool) error {
	switch f.Decision {
	case "", string(agreements.Allow), string(agreements.Deny):
	default:
		return errors.New("--decision: want allow or deny")
	}
	if f.Country != "" && !auditCountry.MatchString(f.Country) {
		return errors.New("--country: want an ISO 3166 alpha-2 code in capitals, such as DE")
	}
	if f.Event != "" && !slices.Contains(auditEvents(), f.Event) {
		return fmt.Errorf("--event: not an event of the audit log (events: %s)", strings.Join(auditEventNames(), ", "))
	}
	for _, t := range []struct {
		flag string
		src  string
		dst  *time.Time
	}{{"since", since, &f.From}, {"until", until, &f.To}} {
		if t.src == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.src)
		if err != nil {
			if v, err = time.Parse(time.DateOnly, t.src); err != nil {
				return fmt.Errorf("--%s: want an RFC 3339 time such as 2026-11-28T00:00:00Z or a date such as 2026-11-28 (midnight UTC)", t.flag)
			}
		}
		*t.dst = v.UTC()
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return errors.New("--until: must be after --since")
	}
	if f.AfterSequence < 0 {
		return errors.New("--after: want a sequence number, 0 or more")
	}
	if limited && f.Limit < 1 {
		return errors.New("--limit: want a number of entries, 1 or more")
	}
	return nil
}

// jwksFiles is the --jwks flag: JWK set files, given by repeating the flag
// or separated by commas, whose keys are verified against together. A log
// archived with a key of its own needs two: the broker's
// (/.well-known/jwks.json, which signed the checkpoints) and the archive
// key's (clearance audit archive --print-jwks). Without the flag the list
// is CLEARANCE_AUDIT_JWKS's; the flag replaces it.
type jwksFiles struct {
	files   []string
	flagged bool
}

func (j *jwksFiles) String() string { return strings.Join(j.files, ",") }

// add appends the comma-separated files of v.
func (j *jwksFiles) add(v string) {
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			j.files = append(j.files, f)
		}
	}
}

func (j *jwksFiles) Set(v string) error {
	if !j.flagged {
		j.files, j.flagged = nil, true
	}
	j.add(v)
	return nil
}

// registerJWKS adds the --jwks flag to fs.
func registerJWKS(fs *flag.FlagSet, usage string) *jwksFiles {
	j := &jwksFiles{}
	j.add(os.Getenv(envAuditJWKS))
	fs.Var(j, "jwks", usage+"; repeat the flag, or separate FILEs with commas, for several sets (env "+envAuditJWKS+")")
	return j
}

// registerArchiveJWKS adds the --archive-jwks flag to fs: the JWK sets of
// the retention keys that signed archive manifests (clearance audit archive
// --print-jwks). Given, they verify the manifests alone, and --jwks's sets
// the checkpoints alone: a checkpoint signed with a retention key is
// refused. Without it, every --jwks set verifies both, as before the flag.
func registerArchiveJWKS(fs *flag.FlagSet) *jwksFiles {
	j := &jwksFiles{}
	j.add(os.Getenv(envAuditArchiveJWKS))
	fs.Var(j, "archive-jwks", "JWK set `FILE` of the retention key that signed the archive manifests (clearance audit archive --print-jwks); "+
		"given, the --jwks sets verify the checkpoints alone; repeat the flag, or separate FILEs with commas (env "+envAuditArchiveJWKS+")")
	return j
}

// devJWKS returns the JWK set of the checkpoint keys of the clearance dev
// run whose data directory is dir: the public half of its dev key ring.
func devJWKS(ctx context.Context, name, dir string, stderr io.Writer) ([]byte, int) {
	p := filepath.Join(dir, "dev-keyring.json")
	if _, err := os.Stat(p); err != nil {
		fmt.Fprintf(stderr, "clearance audit %s: no dev key ring in %s (run clearance dev first, or give --jwks)\n", name, dir)
		return nil, 2
	}
	ring, err := keys.NewDevKeyRing(keys.DevKeyRingOptions{Path: p, Allow: true})
	var set []byte
	if err == nil {
		set, err = ring.JWKS(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "clearance audit %s: the checkpoint keys of %s: %v\n", name, p, err)
		return nil, 1
	}
	return set, 0
}

// jwkSet is a JWK set and where it came from, for errors.
type jwkSet struct {
	from string
	data []byte
}

// read reads every file of the --jwks flag, or returns nil and an exit code.
func (j *jwksFiles) read(name string, stderr io.Writer) ([]jwkSet, int) {
	sets := make([]jwkSet, 0, len(j.files))
	for _, path := range j.files {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "clearance audit %s: read --jwks: %v\n", name, err)
			return nil, 2
		}
		sets = append(sets, jwkSet{from: path, data: b})
	}
	return sets, 0
}

// loadJWKS reads the JWK set files and verifies against all their keys.
func loadJWKS(name string, files *jwksFiles, stderr io.Writer) (*audit.JWKSVerifier, int) {
	sets, code := files.read(name, stderr)
	if sets == nil {
		return nil, code
	}
	return mergeJWKS(name, sets, stderr)
}

// mergeJWKS verifies against the keys of every one of sets.
func mergeJWKS(name string, sets []jwkSet, stderr io.Writer) (*audit.JWKSVerifier, int) {
	var keys []json.RawMessage
	from := make([]string, 0, len(sets))
	for _, s := range sets {
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(s.data, &set); err != nil {
			fmt.Fprintf(stderr, "clearance audit %s: --jwks %s: not a JWK set: %v\n", name, s.from, err)
			return nil, 2
		}
		keys = append(keys, set.Keys...)
		from = append(from, s.from)
	}
	merged, err := json.Marshal(map[string]any{"keys": keys})
	if err == nil {
		var v *audit.JWKSVerifier
		if v, err = audit.NewJWKSVerifier(merged); err == nil {
			return v, 0
		}
	}
	fmt.Fprintf(stderr, "clearance audit %s: --jwks %s: %v\n", name, strings.Join(from, ","), err)
	return nil, 2
}

// verificationProblem labels a verification failure: a signature by a key
// none of the --jwks sets holds cannot be checked, which is not the same as
// a signature found wrong, and the text says which key is missing.
func verificationProblem(err error, detail string) (label, text string) {
	if kid := audit.UnknownKeyID(err); kid != "" {
		return "UNVERIFIED", fmt.Sprintf("signed with key ID %q, which none of the --jwks sets holds "+
			"(give the broker's /.well-known/jwks.json as --jwks and, for an archived log, the archive key's set as --archive-jwks: "+
			"clearance audit archive --print-jwks)", kid)
	}
	return "TAMPERED", detail
}
