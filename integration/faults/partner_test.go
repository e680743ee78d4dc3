package faults

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/broker/samplepartner"
)

// countingPartner is a webhook partner that opens and verifies every
// delivery (samplepartner.Handler, which applies each Idempotency-Key once)
// and records, per key, how often it was posted and when it was applied,
// and every byte it was sent.
type countingPartner struct {
	*httptest.Server
	key *samplepartner.Key

	mu      sync.Mutex
	posts   map[string]int
	applied map[string][]time.Time
	wire    bytes.Buffer
	bodies  []posted
	sample  []byte // one decrypted payload: the canary search's control
}

// posted is one request body as it arrived.
type posted struct {
	at   time.Time
	body []byte
}

func newPartner(t testing.TB, jwks []byte) *countingPartner {
	t.Helper()
	key, err := samplepartner.NewKey("faults-partner")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingPartner{key: key, posts: map[string]int{}, applied: map[string][]time.Time{}}
	h := &samplepartner.Handler{
		Key: key,
		// The JWK set is taken once: the signing key does not rotate during
		// the run, and a partner must still open deliveries while Vault is
		// unreachable from the broker.
		JWKS: func(context.Context) ([]byte, error) { return jwks, nil },
		OnReceive: func(r samplepartner.Received) {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.applied[r.IdempotencyKey] = append(p.applied[r.IdempotencyKey], time.Now())
			if p.sample == nil {
				p.sample = bytes.Clone(r.Payload)
			}
		},
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			http.Error(w, "unreadable", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.posts[r.Header.Get("Idempotency-Key")]++
		for k, vs := range r.Header {
			for _, v := range vs {
				p.wire.WriteString(k + ": " + v + "\n")
			}
		}
		p.wire.Write(body)
		p.wire.WriteByte('\n')
		p.bodies = append(p.bodies, posted{at: time.Now(), body: body})
		p.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Server.Close)
	return p
}

// snapshot returns copies of the counts, application times and wire bytes.
// Sample returns one decrypted payload.
func (p *countingPartner) Sample() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.sample)
}

func (p *countingPartner) snapshot() (posts map[string]int, applied map[string][]time.Time, wire []byte, bodies []posted) {
	p.mu.Lock()
	defer p.mu.Unlock()
	posts = make(map[string]int, len(p.posts))
	for k, v := range p.posts {
		posts[k] = v
	}
	applied = make(map[string][]time.Time, len(p.applied))
	for k, v := range p.applied {
		applied[k] = append([]time.Time(nil), v...)
	}
	return posts, applied, bytes.Clone(p.wire.Bytes()), append([]posted(nil), p.bodies...)
}
