package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// TestArchiveCommitOutcome drops the connection of an archive as its
// COMMIT goes out, through a proxy in front of Postgres. Archive must
// report what happened: success if the COMMIT took effect, a plain error
// if it did not, and ErrArchiveOutcomeUnknown, with the manifest, if it
// cannot tell; never a plain error for entries that left the log.
func TestArchiveCommitOutcome(t *testing.T) {
	tests := []struct {
		name        string
		give        commitCut
		wantErr     error // nil, or what the error matches
		wantFailed  bool  // a plain error: nothing archived
		wantArchive bool  // the archive row is in the log afterwards
	}{
		{"commit reaches the server but its reply is lost", commitForwarded, nil, false, true},
		{"commit never reaches the server", commitDropped, nil, true, false},
		{"commit reaches the server which is then unreachable", commitForwardedThenUnreachable, ErrArchiveOutcomeUnknown, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dsn := postgresDSN(t)
			direct := openTestDB(t, dsn)
			opts := testOptions(t)
			opts.CheckpointEvery = 1 << 30
			appendN(t, openTestLog(t, direct, opts), 1, 3)
			if _, err := openTestLog(t, direct, opts).Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			l := openTestLog(t, openTestDB(t, startCommitProxy(t, dsn, tt.give)), opts)

			var buf bytes.Buffer
			m, jws, err := l.Archive(ctx, nil, testTime.Add(time.Hour), &buf)
			switch {
			case tt.wantFailed:
				if err == nil || errors.Is(err, ErrArchiveOutcomeUnknown) || m != nil {
					t.Fatalf("archive: %+v, %v; want a plain error and no manifest", m, err)
				}
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr), tt.wantErr == nil && err != nil:
				t.Fatalf("archive: %v; want %v", err, tt.wantErr)
			case m == nil || m.ToSequence != 3:
				t.Fatalf("archive: manifest %+v; want entries 1 to 3", m)
			default:
				if _, err := VerifyArchive(ctx, bytes.NewReader(buf.Bytes()), jws, testSigner(t)); err != nil {
					t.Errorf("the export and the manifest returned: %v", err)
				}
			}
			var entries, archives int
			if err := direct.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM audit_entries), (SELECT COUNT(*) FROM audit_archives)").
				Scan(&entries, &archives); err != nil {
				t.Fatal(err)
			}
			if want := map[bool][2]int{true: {0, 1}, false: {3, 0}}[tt.wantArchive]; entries != want[0] || archives != want[1] {
				t.Errorf("afterwards %d entries and %d archives in the log, want %v", entries, archives, want)
			}
		})
	}
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
