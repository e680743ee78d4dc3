package main

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/clearance-broker/clearance/audit"
)

// runAuditArchive implements `clearance audit archive`: retention. It signs
// the manifest with a local Ed25519 key (PKCS #8 PEM, e.g. from `openssl
// genpkey -algorithm ed25519`). It verifies the whole log first, as
// clearance audit verify does, and archives nothing from a log that does
// not verify: the signed manifest would otherwise vouch for entries that
// were changed, or never sealed by a checkpoint, before they were removed.
func runAuditArchive(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("archive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var af auditFlags
	af.register(fs)
	vf := registerVerifyFlags(fs)
	olderThan := fs.Duration("older-than", 0, "archive entries older than this `DURATION` (e.g. 2160h for 90 days; required)")
	out := fs.String("out", "", "archive `FILE` (JSON lines); the signed manifest goes to FILE.manifest.jws (required)")
	keyPath := fs.String("signing-key", "", "Ed25519 private key `FILE` (PKCS #8 PEM) that signs the manifest (required)")
	printJWKS := fs.Bool("print-jwks", false, "print the JWK set of --signing-key's public key, which verify-archive --jwks takes, and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance audit archive --db DSN --jwks FILE [--config FILE] --older-than DURATION --out FILE --signing-key FILE")
		fmt.Fprintln(stderr, "       clearance audit archive --print-jwks --signing-key FILE > archive-jwks.json")
		fmt.Fprintln(stderr, "\nThe log is verified first, as clearance audit verify does it (--jwks, --config and the checkpoint\n"+
			"settings are verify's; the archive key's own set is added to --jwks), and nothing is archived unless it verifies.")
		fs.PrintDefaults()
	}
	if code, ok := parseAuditFlags(fs, args, stderr); !ok {
		return code
	}
	if *printJWKS {
		return printSigningJWKS(ctx, *keyPath, stdout, stderr)
	}
	if code := af.resolve("archive", stderr); code != 0 {
		return code
	}
	if *olderThan <= 0 || *out == "" || *keyPath == "" || af.db == "" {
		fmt.Fprintln(stderr, "clearance audit archive: --db (or --dir), --older-than, --out and --signing-key are required")
		return 2
	}
	signer, err := loadSigningKey(*keyPath)
	if err != nil {
		fmt.Fprintf(stderr, "clearance audit archive: %v\n", err)
		return 2
	}
	// The manifests of earlier archives were signed with the archive key:
	// the verification takes its set besides the checkpoint keys.
	own, err := signer.JWKS(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "clearance audit archive: %v\n", err)
		return 1
	}
	vd, code := vf.verify(ctx, "archive", &af, stderr, jwkSet{from: "of --signing-key", data: own})
	if vd == nil {
		return code
	}
	defer vd.done()
	if vd.rep.Problem != nil {
		fmt.Fprintln(stdout, "nothing archived: the log does not verify")
		printReport(stdout, vd.rep, vd.stream)
		return 1
	}
	l := vd.log
	file, err := createOut(*out, false)
	if err != nil {
		fmt.Fprintf(stderr, "clearance audit archive: %v\n", err)
		return 1
	}
	m, jws, err := l.Archive(ctx, signer, time.Now().Add(-*olderThan), file)
	cerr := file.Close()
	if errors.Is(err, audit.ErrArchiveOutcomeUnknown) {
		// The entries may have left the log: the file may be their only
		// copy, and is kept, with its manifest, until the log tells.
		fmt.Fprintf(stderr, "clearance audit archive: %v\n", err)
		if cerr != nil {
			fmt.Fprintf(stderr, "clearance audit archive: closing %s: %v\n", *out, cerr)
		}
		fmt.Fprintf(stderr, "entries %d to %d may have left the log: %s is kept; save the manifest that follows as %s.manifest.jws.\n"+
			"Then run clearance audit verify with the same --db and --jwks: if it reports entries up to %d (or further) archived, "+
			"they left the log and the file is their only copy (check it with verify-archive); if not, nothing was archived "+
			"and the file and manifest may be removed.\n%s\n",
			m.FromSequence, m.ToSequence, *out, *out, m.ToSequence, jws)
		return 1
	}
	if err != nil || m == nil {
		// Nothing left the log (Archive says so of every other error): the
		// file is no copy of anything.
		_ = os.Remove(*out)
		if err != nil {
			fmt.Fprintf(stderr, "clearance audit archive: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "nothing to archive")
		return 0
	}
	// The entries have left the log: the file is their copy and is kept
	// whatever follows.
	if cerr != nil {
		fmt.Fprintf(stderr, "clearance audit archive: entries %d to %d left the log, but closing %s failed: %v; keep the file and check it with verify-archive\n",
			m.FromSequence, m.ToSequence, *out, cerr)
		return 1
	}
	mf, err := createOut(*out+".manifest.jws", false)
	if err == nil {
		_, err = mf.Write(jws)
		if cerr := mf.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		// The log keeps the manifest too (its archive row); it is printed
		// here so that it can be kept beside the file.
		fmt.Fprintf(stderr, "clearance audit archive: entries %d to %d are in %s, but its manifest was not written: %v; the manifest follows, save it as %s.manifest.jws\n%s\n",
			m.FromSequence, m.ToSequence, *out, err, *out, jws)
		return 1
	}
	fmt.Fprintf(stdout, "archived entries %d to %d (%d) to %s; manifest %s.manifest.jws\n",
		m.FromSequence, m.ToSequence, m.Entries, *out, *out)
	return 0
}

// printSigningJWKS writes the JWK set of the public half of the archive
// signing key at path: what verify-archive checks a manifest against. Keep
// it apart from the archives, with the key's owner: a set shipped beside an
// archive proves nothing about who signed it.
func printSigningJWKS(ctx context.Context, path string, stdout, stderr io.Writer) int {
	if path == "" {
		fmt.Fprintln(stderr, "clearance audit archive: --print-jwks needs --signing-key")
		return 2
	}
	signer, err := loadSigningKey(path)
	if err != nil {
		fmt.Fprintf(stderr, "clearance audit archive: %v\n", err)
		return 2
	}
	jwks, err := signer.JWKS(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "clearance audit archive: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", jwks)
	return 0
}

func loadSigningKey(path string) (*audit.LocalSigner, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --signing-key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("--signing-key: not a PEM file")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("--signing-key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("--signing-key: not an Ed25519 key")
	}
	return audit.NewLocalSigner(ek)
}

// runAuditVerifyArchive implements `clearance audit verify-archive`.
func runAuditVerifyArchive(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify-archive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jwksPath := registerJWKS(fs, "JWK set `FILE` of the archive key (clearance audit archive --print-jwks) and the broker's checkpoint keys")
	archivePath := registerArchiveJWKS(fs)
	manifest := fs.String("manifest", "", "manifest JWS `FILE` (default: ARCHIVE.manifest.jws)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: clearance audit verify-archive --jwks FILE[,FILE] [--archive-jwks FILE] [--manifest FILE] ARCHIVE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 || len(jwksPath.files) == 0 {
		fs.Usage()
		return 2
	}
	v, code := loadJWKS("verify-archive", jwksPath, stderr)
	if v == nil {
		return code
	}
	mv := v
	if len(archivePath.files) > 0 {
		if mv, code = loadJWKS("verify-archive", archivePath, stderr); mv == nil {
			return code
		}
	}
	if *manifest == "" {
		*manifest = fs.Arg(0) + ".manifest.jws"
	}
	jws, err := os.ReadFile(*manifest)
	if err != nil {
		fmt.Fprintf(stderr, "clearance audit verify-archive: %v\n", err)
		return 2
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "clearance audit verify-archive: %v\n", err)
		return 2
	}
	defer f.Close()
	var size int64
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	m, err := audit.VerifyArchiveWith(ctx, &progressReader{r: f, size: size, p: newProgress("verify-archive", stderr, time.Now)}, jws, v, mv)
	if err != nil {
		label, text := verificationProblem(err, err.Error())
		fmt.Fprintf(stdout, "%s: %s\n", label, text)
		return 1
	}
	fmt.Fprintf(stdout, "OK: archive of entries %d to %d (%d entries, %d checkpoints) matches its signed manifest\n",
		m.FromSequence, m.ToSequence, m.Entries, len(m.Checkpoints))
	return 0
}

// outFile is a file a command writes its --out to (createOut).
type outFile struct {
	*os.File
	regular bool
}

// createOut creates the file path of a command's --out readable by its
// owner only: the audit log's entries are the operator's to share (their
// subject HMACs, recipients and purposes among them). A file that exists is
// refused, with an error that matches os.ErrExist, so that a mistyped name
// does not replace an earlier export or archive, unless overwrite: then a
// regular file is made readable by its owner only and truncated, and
// anything else (a device, a pipe) is written to as it is.
func createOut(path string, overwrite bool) (*outFile, error) {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
			if err := os.Chmod(path, 0o600); err != nil {
				return nil, err
			}
		}
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("--out %s: %w", path, os.ErrExist)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &outFile{File: f, regular: st.Mode().IsRegular()}, nil
}

// discard closes and removes the file of a write that failed, so that a
// part is not taken for the whole (and the command can be run again
// without --force); a device or a pipe is only closed.
func (o *outFile) discard() {
	_ = o.Close()
	if o.regular {
		_ = os.Remove(o.Name())
	}
}
