package broker_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/clearance-broker/clearance/broker"
	"github.com/clearance-broker/clearance/broker/brokertest"
)

// changingDecider swaps its engine to the registry next right after its
// first decision, as a registry change arriving while that transfer is
// sealed and audited would.
type changingDecider struct {
	*agreements.Engine
	next func(*agreements.Registry) *agreements.Registry
	once sync.Once
}

func (d *changingDecider) Decide(req *agreements.Request, at time.Time) *agreements.Decision {
	dec := d.Engine.Decide(req, at)
	d.once.Do(func() { d.Engine.Update(d.next(d.Engine.Registry())) })
	return dec
}

// DecideInto is the broker's path (broker.DeciderInto): it too swaps the
// engine after the first decision.
func (d *changingDecider) DecideInto(dec *agreements.Decision, req *agreements.Request, at time.Time) {
	d.Engine.DecideInto(dec, req, at)
	d.once.Do(func() { d.Engine.Update(d.next(d.Engine.Registry())) })
}

var (
	_ broker.RegistrySource = (*changingDecider)(nil)
	_ broker.DeciderInto    = (*changingDecider)(nil)
)

func TestRedecideAtDelivery(t *testing.T) {
	with := func(ch agreements.Change) func(*agreements.Registry) *agreements.Registry {
		return func(r *agreements.Registry) *agreements.Registry {
			n, err := r.With(ch)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	withoutPhone := func(r *agreements.Registry) *agreements.Registry {
		c := r.Content()
		for i, a := range c.Agreements {
			if a.ID == "dpa-swiftship-de" {
				a.Categories = slices.DeleteFunc(slices.Clone(a.Categories), func(c string) bool { return c == "contact.phone" })
				a.Version++
				c.Agreements[i] = a
			}
		}
		n, err := agreements.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// rotated gives the partner's key a new id, as a partner that rotates
	// its key has the registry record its new one.
	rotated := func(r *agreements.Registry) *agreements.Registry {
		c := r.Content()
		for i, p := range c.Parties {
			if p.ID != "swiftship-de" {
				continue
			}
			var k map[string]any
			if err := json.Unmarshal(p.PublicKey, &k); err != nil {
				t.Fatal(err)
			}
			k["kid"] = "swiftship-rotated"
			b, err := json.Marshal(k)
			if err != nil {
				t.Fatal(err)
			}
			c.Parties[i].PublicKey = b
		}
		n, err := agreements.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	tests := []struct {
		name      string
		next      func(*agreements.Registry) *agreements.Registry
		status    string
		reasons   []string
		decisions []string // decided entries, in order
		phone     bool     // the delivered record holds the phone
		kid       string   // the key the delivery is sealed to, when it matters
		// sealedBefore: the payload is sealed with the registry of the
		// decision (the change arrives after sealing), not the next.
		sealedBefore bool
	}{
		{"suspension stops it", with(agreements.Change{Suspend: []string{"dpa-swiftship-de"}}), "denied",
			[]string{"agreement_suspended"}, []string{"allow", "deny"}, false, "", false},
		{"unrelated change lets it go", with(agreements.Change{Erasures: []agreements.Erasure{{Subject: "cust-other", At: time.Now()}}}), "delivered",
			[]string{}, []string{"allow"}, true, "", false},
		{"narrower agreement sends less", withoutPhone, "delivered",
			[]string{}, []string{"allow", "allow"}, false, "", false},
		{"a partner key replaced seals anew", rotated, "delivered",
			[]string{}, []string{"allow", "allow"}, true, "swiftship-rotated", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnvWith(t, brokertest.StartNATS(t), 3, func(o *broker.Options) {
				d := &changingDecider{Engine: o.Decider.(*agreements.Engine), next: tt.next}
				o.Decider, o.Parties = d, broker.PartiesOf(d.Engine)
				if tt.sealedBefore {
					o.Parties = &sealedBefore{old: d.Engine.Registry(), now: o.Parties}
				}
			})
			code, body := e.post(t, brokertest.ExampleRequest(t, "01-delivery-eea-allow.json"))
			var rc broker.Receipt
			if err := json.Unmarshal(body, &rc); err != nil || code != 200 {
				t.Fatalf("answer %d %s", code, body)
			}
			if string(rc.Status) != tt.status || !slices.Equal(rc.Reasons, tt.reasons) {
				t.Fatalf("receipt %s %v, want %s %v", rc.Status, rc.Reasons, tt.status, tt.reasons)
			}
			var decisions []string
			for _, en := range e.entries(t, rc.RequestID) {
				if en.Event == "decided" {
					decisions = append(decisions, en.Decision)
				}
			}
			if !slices.Equal(decisions, tt.decisions) {
				t.Fatalf("decided entries %v, want %v", decisions, tt.decisions)
			}
			got := e.partner.Received()
			if tt.status != "delivered" {
				if len(got) != 0 {
					t.Fatalf("partner received %d transfers", len(got))
				}
				return
			}
			if len(got) != 1 || bytes.Contains(got[0].Payload, []byte(`"phone"`)) != tt.phone {
				t.Fatalf("partner received %d transfers; phone sent = %v, want %v", len(got), len(got) == 1 && bytes.Contains(got[0].Payload, []byte(`"phone"`)), tt.phone)
			}
			if tt.kid != "" {
				if kid := jweKid(t, got[0].Body); kid != tt.kid {
					t.Fatalf("delivery sealed to key %q, want %q", kid, tt.kid)
				}
			}
		})
	}
}

// jweKid returns the kid of a compact JWE's protected header.
func jweKid(t *testing.T, compact []byte) string {
	t.Helper()
	head, _, _ := bytes.Cut(compact, []byte("."))
	raw, err := base64.RawURLEncoding.DecodeString(string(head))
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// sealedBefore answers the first look-up of a party (the one the payload
// is sealed with) from the registry of the decision, and the others from
// the registry in force, as when a change arrives after the payload was
// sealed.
type sealedBefore struct {
	old  *agreements.Registry
	now  broker.Parties
	once sync.Once
}

func (p *sealedBefore) Party(id string) (party agreements.Party, err error) {
	first := false
	p.once.Do(func() { first = true })
	if first {
		return p.old.Party(id)
	}
	return p.now.Party(id)
}
