package livepolicy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
	"github.com/clearance-broker/clearance/broker/samplepartner"
	"github.com/clearance-broker/clearance/policy"
	"github.com/nats-io/nats.go"
	"github.com/uptrace/bun"
)

// instance is one Clearance instance: a broker whose engine a Live registry
// keeps up to date.
type instance struct {
	name   string
	nc     *nats.Conn
	audit  *audit.Log
	engine *agreements.Engine
	live   *policy.Live
	broker *broker.Broker

	mu    sync.Mutex
	swaps map[int64]swap // event seq -> when this instance put it in force
}

// swap is an event as an instance put it in force.
type swap struct {
	version string
	at      time.Time
}

// cluster is what the instances share.
type cluster struct {
	natsURL string
	dsn     string
	ring    string // dev key ring file
	reg     *agreements.Registry
	conns   broker.ConnectorSet
}

func (c *cluster) start(t *testing.T, name string) *instance {
	t.Helper()
	nc, err := nats.Connect(c.natsURL, nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	k := brokertest.DevKeys(t, c.ring)
	in := &instance{name: name, nc: nc, swaps: map[int64]swap{}}
	var db *bun.DB
	in.audit, db = brokertest.OpenAudit(t, c.dsn, k)
	store, err := policy.OpenStore(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	in.engine = agreements.NewEngine(c.reg)
	in.live, err = policy.Start(t.Context(), policy.Options{
		Store: store, Engine: in.engine, NATS: nc, Audit: in.audit,
		OnSwap: func(ev policy.Event) {
			now := time.Now()
			in.mu.Lock()
			in.swaps[ev.Seq] = swap{ev.Version, now}
			in.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.live.Stop)
	in.broker, err = broker.New(broker.Options{
		NATS:        nc,
		Stream:      broker.StreamOptions{AckWait: 10 * time.Second, FetchBatch: 64},
		Retry:       broker.RetryPolicy{MaxDeliver: 20, BackoffBase: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
		Concurrency: 16,
		Decider:     in.engine,
		Parties:     broker.PartiesOf(in.engine),
		Keys:        k,
		Audit:       in.audit,
		Connectors:  c.conns,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.broker.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.broker.Stop(context.Background()) })
	return in
}

// swapAt returns when the instance put event seq in force.
func (in *instance) swapAt(seq int64) (time.Time, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	s, ok := in.swaps[seq]
	return s.at, ok
}

// versionsFrom returns the registry versions of the events from seq on.
func (in *instance) versionsFrom(seq int64) map[string]bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := map[string]bool{}
	for s, sw := range in.swaps {
		if s >= seq {
			out[sw.version] = true
		}
	}
	return out
}

// arrival is one delivery a recipient endpoint received.
type arrival struct {
	requestID string
	at        time.Time
}

// recipient is a webhook endpoint that records what arrives and when,
// answering after delay (a partner under load).
type recipient struct {
	*httptest.Server
	key   *samplepartner.Key
	delay time.Duration

	mu       sync.Mutex
	arrivals []arrival
	attempts map[string]int
	failures int
}

func newRecipient(t *testing.T, delay time.Duration) *recipient {
	t.Helper()
	key, err := samplepartner.NewKey("livepolicy-partner")
	if err != nil {
		t.Fatal(err)
	}
	r := &recipient{key: key, delay: delay, attempts: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		a := arrival{requestID: req.Header.Get("Idempotency-Key"), at: time.Now()}
		time.Sleep(r.delay)
		r.mu.Lock()
		r.attempts[a.requestID]++
		// Every seventh request fails its first attempt: it waits for a
		// retry, as messages do behind a flaky partner.
		fail := failFirst(a.requestID) && r.attempts[a.requestID] == 1
		if fail {
			r.failures++
		} else {
			r.arrivals = append(r.arrivals, a)
		}
		r.mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recipient) received() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]arrival(nil), r.arrivals...)
}

// transfer builds a request of the given kind with id.
func transfer(kind, id string) (subject string, body []byte) {
	req := map[string]any{"id": id, "subject": map[string]any{"id": "cust-7", "jurisdiction": "DE", "minor": false}}
	switch kind {
	case "marketing": // needs cust-7's consent
		req["source"], req["recipient"], req["purpose"], req["dataset"] = "crm", "promoreach-nl", "marketing", "customer.marketing"
		req["record"] = map[string]any{"customer_id": "c-7", "email": "e"}
	case "swiftship": // rests on dpa-swiftship-de
		req["source"], req["recipient"], req["purpose"], req["dataset"] = "order-service", "swiftship-de", "delivery", "order.delivery"
		req["record"] = map[string]any{"order_id": id, "name": "N", "address": "A"}
		req["subject"] = map[string]any{"id": "cust-" + id, "jurisdiction": "DE", "minor": false}
	default: // fastfreight: unaffected by both changes
		req["source"], req["recipient"], req["purpose"], req["dataset"] = "order-service", "fastfreight-us", "delivery", "order.delivery"
		req["record"] = map[string]any{"order_id": id, "name": "N", "address": "A"}
		req["subject"] = map[string]any{"id": "cust-" + id, "jurisdiction": "DE", "minor": false}
	}
	b, _ := json.Marshal(req)
	return "clearance.transfers." + req["source"].(string), b
}

// percentile returns the p-th percentile (0 < p <= 100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func devRing(t *testing.T) string { return filepath.Join(t.TempDir(), "keyring.json") }

// failFirst says whether the recipient refuses the first attempt of id.
func failFirst(id string) bool {
	h := 0
	for _, c := range id {
		h = h*31 + int(c)
	}
	return h%7 == 0
}
