package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Instances announce themselves in a KV bucket whose keys expire unless
// refreshed, and report every event they put in force on appliedSubject, so
// that a change returns once it is in force everywhere.
const (
	presenceTTL     = 15 * time.Second
	presenceRefresh = 5 * time.Second
	appliedSubject  = "clearance.registry.applied"
)

// applied is what an instance reports after it put an event in force.
type applied struct {
	Instance string `json:"instance"`
	Seq      int64  `json:"seq"`
}

// Sync says which instances confirmed that an event is in force.
type Sync struct {
	// Confirmed counts the instances (this one included) that put the
	// event in force before the change returned.
	Confirmed int
	// Unconfirmed lists the ids of announced instances that did not
	// confirm within Options.SyncTimeout; they catch up through the watch
	// or the store.
	Unconfirmed []string
	// Took is how long the confirmations took.
	Took time.Duration
}

// presence opens the instances bucket and announces this instance.
func (l *Live) presence(ctx context.Context, js jetstream.JetStream) error {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: l.opts.Bucket + "-instances", Description: "Clearance instances following the registry",
		History: 1, TTL: presenceTTL, Storage: jetstream.MemoryStorage, Replicas: l.opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("policy: instances bucket: %w", err)
	}
	l.instances = kv
	if _, err := kv.Put(ctx, l.id, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("policy: announce instance: %w", err)
	}
	return nil
}

// announce refreshes this instance's presence until Stop, then withdraws it.
func (l *Live) announce() {
	defer l.wg.Done()
	t := time.NewTicker(presenceRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = l.instances.Delete(ctx, l.id)
			cancel()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := l.instances.Put(ctx, l.id, []byte(time.Now().UTC().Format(time.RFC3339)))
		cancel()
		if err != nil {
			l.log.Warn("announce instance", "err", err)
		}
	}
}

// reportApplied tells the writer of ev that this instance has it in force.
func (l *Live) reportApplied(ev Event) {
	data, _ := json.Marshal(applied{Instance: l.id, Seq: ev.Seq}) // two plain fields
	_ = l.opts.NATS.Publish(appliedSubject, data)
}

// confirmations subscribes to the instances' reports before an event is
// published; wait collects them.
type confirmations struct {
	l   *Live
	sub *nats.Subscription
	ch  chan *nats.Msg
}

func (l *Live) confirmations() (*confirmations, error) {
	c := &confirmations{l: l, ch: make(chan *nats.Msg, 256)}
	sub, err := l.opts.NATS.ChanSubscribe(appliedSubject, c.ch)
	if err != nil {
		return nil, fmt.Errorf("policy: subscribe to confirmations: %w", err)
	}
	c.sub = sub
	return c, nil
}

// wait returns once every announced instance reported seq in force, or
// after SyncTimeout, and unsubscribes.
func (c *confirmations) wait(ctx context.Context, seq int64) Sync {
	defer func() { _ = c.sub.Unsubscribe() }()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.l.opts.SyncTimeout)
	defer cancel()
	pending := map[string]bool{}
	if keys, err := c.l.instances.Keys(ctx); err == nil {
		for _, k := range keys {
			pending[k] = true
		}
	} else if !errors.Is(err, jetstream.ErrNoKeysFound) {
		c.l.log.Warn("list instances", "err", err)
	}
	delete(pending, c.l.id)
	s := Sync{Confirmed: 1}
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			for id := range pending {
				s.Unconfirmed = append(s.Unconfirmed, id)
			}
			s.Took = time.Since(start)
			return s
		case m := <-c.ch:
			var a applied
			if json.Unmarshal(m.Data, &a) == nil && a.Seq >= seq && pending[a.Instance] {
				delete(pending, a.Instance)
				s.Confirmed++
			}
		}
	}
	s.Took = time.Since(start)
	return s
}
