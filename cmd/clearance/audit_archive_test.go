package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clearance-broker/clearance/audit"
)

// TestAuditArchiveCommitOutcome runs clearance audit archive on a Postgres
// log through a proxy that cuts the connection as the archive's COMMIT goes
// out. The archive file is removed only when nothing left the log: kept as
// the archive when the COMMIT took effect, and kept, with the manifest
// printed, when that cannot be found out.
func TestAuditArchiveCommitOutcome(t *testing.T) {
	tests := []struct {
		name         string
		give         commitCut
		wantCode     int
		wantStderr   []string
		wantFile     bool // the archive file (3 entries) is there afterwards
		wantManifest bool // and its manifest file
		wantEntries  int  // entries left in the log
	}{
		{"commit reaches the server but its reply is lost", commitForwarded, 0, nil, true, true, 0},
		{"commit never reaches the server", commitDropped, 1, []string{"archive: commit:"}, false, false, 3},
		{"commit reaches the server which is then unreachable", commitForwardedThenUnreachable, 1,
			[]string{"outcome of the commit unknown", "entries 1 to 3 may have left the log", "is kept", "entries up to 3 (or further) archived", "eyJ"},
			true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dsn := postgresTestDSN(t)
			signer, jwks, _, _ := testSigningKey(t)
			_, _, _, archivePEM := testSigningKey(t)
			archive, jwksFile, archiveKey := filepath.Join(dir, "archive.jsonl"), filepath.Join(dir, "jwks.json"), filepath.Join(dir, "archive.pem")
			for name, b := range map[string][]byte{jwksFile: jwks, archiveKey: archivePEM} {
				if err := os.WriteFile(name, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			writeTestLog(t, dsn, []byte("cli-test-subject-key-0123456789ab"), signer)

			var out, errOut bytes.Buffer
			code := run(t.Context(), []string{"audit", "archive", "--db", startCommitProxy(t, dsn, tt.give), "--jwks", jwksFile,
				"--older-than", "1h", "--out", archive, "--signing-key", archiveKey}, &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.wantCode, out.String(), errOut.String())
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
				}
			}
			data, err := os.ReadFile(archive)
			if tt.wantFile && (err != nil || bytes.Count(data, []byte("\n")) != 3) {
				t.Errorf("the archive of the 3 entries: %d bytes, %v", len(data), err)
			}
			if !tt.wantFile && err == nil {
				t.Error("archive file left behind, though nothing left the log")
			}
			if _, err := os.Stat(archive + ".manifest.jws"); (err == nil) != tt.wantManifest {
				t.Errorf("manifest file: %v, want it there: %v", err, tt.wantManifest)
			}
			db, err := audit.OpenDB(t.Context(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var entries int
			if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM audit_entries").Scan(&entries); err != nil || entries != tt.wantEntries {
				t.Errorf("%d entries left in the log (%v), want %d", entries, err, tt.wantEntries)
			}
		})
	}
}

// postgresTestDSN creates a schema of its own in the test Postgres
// (CLEARANCE_TEST_POSTGRES, or the local one), drops it in cleanup, and
// returns a DSN whose search_path is that schema.
func postgresTestDSN(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("CLEARANCE_TEST_POSTGRES")
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	db, err := audit.OpenDB(context.Background(), admin)
	if err != nil {
		t.Fatalf("postgres for tests: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "cli_t_" + hex.EncodeToString(rnd[:])
	if _, err := db.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	sep := "?"
	if strings.Contains(admin, "?") {
		sep = "&"
	}
	return admin + sep + "search_path=" + schema
}

// commitCut is what startCommitProxy does with the COMMIT of a transaction
// that inserted into audit_archives.
type commitCut int

const (
	// commitForwarded: forwarded, then the client's connection is closed
	// (and the server's once it replied).
	commitForwarded commitCut = iota
	// commitDropped: not forwarded; both connections are closed.
	commitDropped
	// commitForwardedThenUnreachable: forwarded, then every connection is
	// closed and no new one accepted.
	commitForwardedThenUnreachable
)

// startCommitProxy forwards TCP connections to the Postgres of dsn and
// cuts the one that commits an archive as cut says. It returns dsn
// pointing at the proxy.
func startCommitProxy(t *testing.T, dsn string, cut commitCut) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &commitProxy{ln: ln, target: u.Host, cut: cut}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	u.Host = ln.Addr().String()
	return u.String()
}

type commitProxy struct {
	ln     net.Listener
	target string
	cut    commitCut
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	cutOff bool // every connection closed (unreachable)
}

func (p *commitProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		cutOff := p.cutOff
		p.mu.Unlock()
		if cutOff {
			_ = c.Close()
			_ = s.Close()
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			p.toServer(c, s)
		}()
		go func() {
			defer p.wg.Done()
			// The server's side closes once its reply cannot be passed on:
			// after it answered a forwarded COMMIT, not before.
			_, _ = io.Copy(c, s)
			_ = c.Close()
			_ = s.Close()
		}()
	}
}

// toServer copies the client's messages to the server, one at a time:
// the startup message (a length and a body), then messages of a type byte,
// a length and a body. A simple query ('Q') or parse ('P') that inserts
// into audit_archives arms the cut; the next one that commits triggers it.
func (p *commitProxy) toServer(c, s net.Conn) {
	defer c.Close()
	head := make([]byte, 4)
	archiving := false
	for first := true; ; first = false {
		var typ []byte
		if !first {
			typ = make([]byte, 1)
			if _, err := io.ReadFull(c, typ); err != nil {
				_ = s.Close()
				return
			}
		}
		if _, err := io.ReadFull(c, head); err != nil {
			_ = s.Close()
			return
		}
		body := make([]byte, int(binary.BigEndian.Uint32(head))-4)
		if _, err := io.ReadFull(c, body); err != nil {
			_ = s.Close()
			return
		}
		query := len(typ) == 1 && (typ[0] == 'Q' || typ[0] == 'P')
		commit := query && archiving && bytes.Contains(body, []byte("COMMIT"))
		archiving = archiving || query && bytes.Contains(body, []byte("INSERT")) && bytes.Contains(body, []byte("audit_archives"))
		if commit && p.cut == commitDropped {
			_ = s.Close()
			return
		}
		if _, err := s.Write(bytes.Join([][]byte{typ, head, body}, nil)); err != nil {
			return
		}
		if commit {
			if p.cut == commitForwardedThenUnreachable {
				p.unreachable(s)
			}
			return
		}
	}
}

// unreachable closes the listener and every connection but the server's
// side of keep, which closes once the server replied to it.
func (p *commitProxy) unreachable(keep net.Conn) {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOff = true
	for _, c := range p.conns {
		if c != keep {
			_ = c.Close()
		}
	}
}

func (p *commitProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
