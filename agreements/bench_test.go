package agreements

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// benchRegistry builds a registry of about n agreements for n parties (one
// delivery DPA each; every tenth party is in the US and also has SCCs, so
// there are 1.1n agreements), n consents and n/10 erasures.
func benchRegistry(tb testing.TB, n int) *Registry {
	tb.Helper()
	from, until := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2028, 12, 31, 0, 0, 0, 0, time.UTC)
	c := Content{
		Zones:    []Zone{{ID: "EEA", Countries: []string{"AT", "BE", "DE", "FR", "NL", "IE", "IT", "ES", "SE", "PL"}}},
		Adequacy: []Adequacy{{ID: "eu", From: []string{"EEA"}, To: []string{"JP", "GB", "CH"}}},
		Datasets: []Dataset{{ID: "orders", Personal: true, Fields: map[string]string{
			"order_id": "order.reference", "name": "identity.name", "address": "contact.address", "phone": "contact.phone",
			"email": "contact.email", "payment.method": "financial.payment", "payment.card_last4": "financial.card",
			"device.imei": "device.id", "device.model": "device.model", "note.health": "special.health",
		}}},
		Purposes: []Purpose{{ID: "delivery", LegalBasis: BasisContract}, {ID: "marketing", LegalBasis: BasisConsent}},
	}
	cats := []string{"order.reference", "identity.name", "contact.address", "contact.phone", "financial.payment", "device.*"}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("party-%06d", i)
		country := "DE"
		if i%10 == 0 {
			country = "US"
		}
		c.Parties = append(c.Parties, Party{ID: id, Name: id, Role: RoleProcessor, Country: country, Connector: "hook"})
		c.Agreements = append(c.Agreements, Agreement{ID: "dpa-" + id, Version: 1, Kind: KindDPA, Parties: []string{id},
			Purposes: []string{"delivery"}, Categories: cats, ValidFrom: from, ValidUntil: until, Status: StatusActive})
		if country == "US" {
			c.Agreements = append(c.Agreements, Agreement{ID: "scc-" + id, Version: 1, Kind: KindSCC, Module: "C2P", Parties: []string{id},
				Destinations: []string{"US"}, Purposes: []string{"delivery"}, Categories: cats, ValidFrom: from, ValidUntil: until,
				Status: StatusActive, TIA: &TIA{Reference: "t", ReviewBy: until}})
		}
		c.Consents = append(c.Consents, Consent{Subject: fmt.Sprintf("cust-%d", i), Purpose: "marketing", GrantedAt: from})
		if i%10 == 0 {
			c.Erasures = append(c.Erasures, Erasure{Subject: fmt.Sprintf("gone-%d", i), At: from})
		}
	}
	r, err := New(c)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRecord is an order record of about 1 KB: kept, removed
// (category_not_permitted) and unclassified fields, some nested.
func benchRecord() map[string]any {
	return map[string]any{
		"order_id": "100234567", "name": "Ada Lovelace", "address": "12 Example Street, Building C, 3rd floor, 80331 Munich, Germany",
		"phone": "+49 89 000000000", "email": "ada.lovelace@example.invalid",
		"payment":   map[string]any{"method": "card", "card_last4": "4242", "authorisation": "A1B2C3D4E5"},
		"device":    map[string]any{"imei": "350000000000000", "model": "P40 Pro", "serial": "SN-0000-1111-2222"},
		"note":      map[string]any{"health": "deliver to the door", "driver": "ring twice, the bell is broken"},
		"gift_note": "Happy birthday! With love from all of us, see you at the weekend for cake and coffee.",
		"items": []any{
			map[string]any{"sku": "P40-PRO-256-BLK", "qty": 1, "price": "899.00"},
			map[string]any{"sku": "CASE-P40-CLR", "qty": 2, "price": "19.90"},
			map[string]any{"sku": "CHG-65W-USB-C", "qty": 1, "price": "49.00"},
		},
		"delivery_window": "2026-11-30T08:00:00Z/2026-11-30T12:00:00Z",
		"instructions":    "Leave with the neighbour at number 14 if nobody is at home; do not leave at the door.",
		"loyalty":         map[string]any{"tier": "gold", "points": 12840, "member_since": "2019-04-02"},
		"marketing_opt":   false,
		"channel":         "web-shop-de",
		"currency":        "EUR",
		"total":           "987.80",
	}
}

// BenchmarkDecide measures one decision (a US recipient under SCCs, so
// every rule runs) with a 1 KB record against registries of 10, 1,000 and
// 100,000 agreements, made the two ways a caller can: DecideInto with one
// Decision reused from request to request (what the broker's workers do),
// and Decide with a new Decision each time. Both produce the whole
// decision: reasons, kept and removed fields, categories and the minimised
// record. Compare the sizes with each other: the cost must not grow with the
// registry (map lookups, not scans).
func BenchmarkDecide(b *testing.B) {
	rec := benchRecord()
	size, _ := json.Marshal(rec)
	for _, n := range []int{10, 1_000, 100_000} {
		b.Run(fmt.Sprintf("agreements=%d", n), func(b *testing.B) {
			r := benchRegistry(b, n)
			e := NewEngine(r)
			req := &Request{ID: "bench", Source: "orders", Recipient: fmt.Sprintf("party-%06d", n/2/10*10), Purpose: "delivery",
				Dataset: "orders", Subject: Subject{ID: "cust-x", Jurisdiction: "DE"}, Record: rec}
			at := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
			want := e.Decide(req, at)
			if !want.Allowed() || want.Mechanism != "scc:scc-"+req.Recipient || len(want.Fields.Kept) != 7 || len(want.Record) != 6 {
				b.Fatalf("benchmark request: %s %v %s %v", want.Decision, want.Reasons, want.Mechanism, want.Fields.Kept)
			}
			b.Run("DecideInto", func(b *testing.B) {
				var d Decision
				measureDecisions(b, len(size), func() { e.DecideInto(&d, req, at) })
				if !sameDecision(&d, want) {
					b.Fatalf("DecideInto differs from Decide")
				}
			})
			b.Run("Decide", func(b *testing.B) {
				measureDecisions(b, len(size), func() { decisionSink = e.Decide(req, at) })
			})
		})
	}
}

// decisionSink keeps Decide's result on the heap, where a caller's decision
// is, instead of letting the compiler put an unused one on the stack.
var decisionSink *Decision

// measureDecisions runs decide in the benchmark loop and reports wall and
// CPU time per decision.
func measureDecisions(b *testing.B, size int, decide func()) {
	b.SetBytes(int64(size))
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		decide()
	}
	// On a shared machine wall time includes waiting for a core; CPU time
	// is what one core spends per decision (GC included).
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "decisions/cpu-s")
}

// BenchmarkWith measures one run-time change (alternately a new subject's
// consent and its withdrawal, as consents arrive from a shop) against
// registries holding 1,000, 100,000 and 1,000,000 consents, each change
// made on the registry the one before made. Compare the sizes: the cost of
// a change grows with the square root of the subjects (people.go), where
// copying the subject index and the consent list grew with all of them.
func BenchmarkWith(b *testing.B) {
	from := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("consents=%d", n), func(b *testing.B) {
			reg := withConsents(b, n)
			var err error
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				subject := fmt.Sprintf("new-%d", i/2)
				ch := Change{Consents: []Consent{{Subject: subject, Purpose: "marketing", GrantedAt: from}}}
				if i%2 == 1 {
					ch = Change{Withdrawals: []Withdrawal{{Subject: subject, Purpose: "marketing", At: from.Add(time.Hour)}}}
				}
				if reg, err = reg.With(ch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// withConsents returns benchRegistry(100) with consents to marketing up to
// n, one per customer.
func withConsents(b *testing.B, n int) *Registry {
	b.Helper()
	from := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := benchRegistry(b, 100).Content()
	for i := len(c.Consents); i < n; i++ {
		c.Consents = append(c.Consents, Consent{Subject: fmt.Sprintf("cust-%d", i), Purpose: "marketing", GrantedAt: from})
	}
	reg, err := New(c)
	if err != nil {
		b.Fatal(err)
	}
	return reg
}

// BenchmarkWithEach measures carrying 10,000 run-time changes over a
// registry of 100,000 consents, as every instance does when a registry is
// applied (policy.CarryAll): each change a new subject's consent, every
// 50th a withdrawal of the one before instead. The baseline is With
// applied change by change, measured in the same run; x_change_by_change
// is WithEach's time over it.
func BenchmarkWithEach(b *testing.B) {
	from := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	reg := withConsents(b, 100_000)
	chs := make([]Change, 10_000)
	for i := range chs {
		if i%50 == 49 {
			chs[i] = Change{Withdrawals: []Withdrawal{{Subject: fmt.Sprintf("new-%d", i-1), Purpose: "marketing", At: from.Add(time.Hour)}}}
			continue
		}
		chs[i] = Change{Consents: []Consent{{Subject: fmt.Sprintf("new-%d", i), Purpose: "marketing", GrantedAt: from}}}
	}
	var base, withEach time.Duration
	var want string
	b.Run("change_by_change", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			r := reg
			for _, ch := range chs {
				n, err := r.With(ch)
				if err != nil {
					b.Fatal(err)
				}
				r = n
			}
			want = r.Version()
		}
		base = time.Since(start) / time.Duration(b.N)
	})
	b.Run("with_each", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			r, taken := reg.WithEach(chs)
			if taken != len(chs) || (want != "" && r.Version() != want) {
				b.Fatalf("took %d of %d, version %s, want %s", taken, len(chs), r.Version(), want)
			}
		}
		if base > 0 {
			b.ReportMetric(float64(time.Since(start)/time.Duration(b.N))/float64(base), "x_change_by_change")
		}
		withEach = time.Since(start) / time.Duration(b.N)
	})
	// What a store replaying the changes paid on top when it checked each
	// stored version with a hash of its own (before WithEachVersions): the
	// chained hash of every change, over WithEach's time.
	b.Run("hash_each", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			v := reg.Version()
			for i := range chs {
				sum, err := changeHash(v, &chs[i])
				if err != nil {
					b.Fatal(err)
				}
				v = "sha256:" + sum
			}
			if want != "" && v != want {
				b.Fatalf("chained %s, want %s", v, want)
			}
		}
		if withEach > 0 {
			b.ReportMetric(float64(time.Since(start)/time.Duration(b.N))/float64(withEach), "x_with_each")
		}
	})
}
