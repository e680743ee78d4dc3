// Package pgcut is a TCP proxy in front of PostgreSQL for tests that cut
// a connection at the COMMIT of a transaction that inserted into
// audit_archives: a COMMIT whose reply is lost, one that never arrives,
// and one after which the server cannot be reached.
package pgcut

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Cut is what Start does with the COMMIT of a transaction that inserted
// into audit_archives.
type Cut int

const (
	// Forwarded: forwarded, then the client's connection is closed
	// (and the server's once it replied).
	Forwarded Cut = iota
	// Dropped: not forwarded; both connections are closed.
	Dropped
	// ForwardedThenUnreachable: forwarded, then every connection is
	// closed and no new one accepted.
	ForwardedThenUnreachable
)

// Start forwards TCP connections to the Postgres of dsn and
// cuts the one that commits an archive as cut says. It returns dsn
// pointing at the proxy.
func Start(t testing.TB, dsn string, cut Cut) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: u.Host, cut: cut}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	u.Host = ln.Addr().String()
	return u.String()
}

type proxy struct {
	ln     net.Listener
	target string
	cut    Cut
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	cutOff bool // every connection closed (unreachable)
}

func (p *proxy) accept() {
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
func (p *proxy) toServer(c, s net.Conn) {
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
		if commit && p.cut == Dropped {
			_ = s.Close()
			return
		}
		if _, err := s.Write(bytes.Join([][]byte{typ, head, body}, nil)); err != nil {
			return
		}
		if commit {
			if p.cut == ForwardedThenUnreachable {
				p.unreachable(s)
			}
			return
		}
	}
}

// unreachable closes the listener and every connection but the server's
// side of keep, which closes once the server replied to it.
func (p *proxy) unreachable(keep net.Conn) {
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

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
