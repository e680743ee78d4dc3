package faults

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// proxy is a TCP proxy on a fixed local address. Cut closes its listener
// and every connection through it (a network outage: clients get connection
// refused); Restore listens again on the same address. With capture set it
// keeps every byte clients sent upstream, for the canary search.
type proxy struct {
	t       testing.TB
	addr    string
	target  string
	capture bool

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	sent  bytes.Buffer
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, target string, capture bool) *proxy {
	t.Helper()
	p := &proxy{t: t, addr: freeAddr(t), target: target, capture: capture, conns: map[net.Conn]struct{}{}}
	p.Restore()
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Addr is the address clients connect to.
func (p *proxy) Addr() string { return p.addr }

// Restore starts accepting connections again.
func (p *proxy) Restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("faults: proxy listen %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go p.accept(ln)
}

// Cut closes the listener and every open connection.
func (p *proxy) Cut() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for c := range conns {
		_ = c.Close()
	}
}

// Sent returns a copy of every byte clients sent through the proxy.
func (p *proxy) Sent() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.sent.Bytes())
}

func (p *proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Add(2)
		go p.pipe(up, c, p.capture)
		go p.pipe(c, up, false)
	}
}

// track registers a connection pair unless the proxy was cut meanwhile.
func (p *proxy) track(c, up net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		_ = c.Close()
		_ = up.Close()
		return false
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	return true
}

// pipe copies src to dst until either side closes, then closes both.
func (p *proxy) pipe(dst, src net.Conn, capture bool) {
	defer p.wg.Done()
	var w io.Writer = dst
	if capture {
		w = io.MultiWriter(dst, captureWriter{p})
	}
	_, _ = io.Copy(w, src) // a cut connection ends the copy; both sides close below
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

type captureWriter struct{ p *proxy }

func (c captureWriter) Write(b []byte) (int, error) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return c.p.sent.Write(b)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func freePort(t testing.TB) int {
	t.Helper()
	addr, err := net.ResolveTCPAddr("tcp", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	return addr.Port
}
