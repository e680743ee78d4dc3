package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kind is what a request is meant to end as.
type kind int

const (
	kindWebhook kind = iota // allowed, delivered to the webhook partner
	kindRegion              // allowed, delivered to the regional data centre over NATS
	kindDenied              // denied (no transfer mechanism to Brazil)
	kindInvalid             // rejected (a required field is missing), dead-lettered
)

func (k kind) String() string {
	return [...]string{"webhook", "region", "denied", "invalid"}[k]
}

// kindOf spreads the kinds over the request numbers: 6 in 10 to the
// webhook, then one each of region, denied and invalid.
func kindOf(i int) kind {
	switch i % 10 {
	case 6:
		return kindRegion
	case 7:
		return kindDenied
	case 8:
		return kindInvalid
	}
	return kindWebhook
}

func requestID(i int) string { return fmt.Sprintf("flt-%06d", i) }

// request builds request i, planting the canaries in its record.
func request(i int) (source string, body []byte) {
	id := requestID(i)
	subject := map[string]any{"id": fmt.Sprintf("zyxsubj-%06d", i), "jurisdiction": "DE", "minor": false}
	order := map[string]any{
		"order_id": fmt.Sprint(100000 + i), "product": "P40 phone",
		"name": "Quirinus Zyxwarbler", "address": "Zyxwarblerweg 17, 10115 Berlin",
		"phone": "+4930 5550199", "email": "quirinus.zyxwarbler@canary.invalid",
		"payment":   map[string]any{"method": "card", "card_last4": "4242"},
		"note":      map[string]any{"health": "zyxwarbler wheelchair"},
		"gift_note": "zyxgift secret",
	}
	req := map[string]any{
		"id": id, "source": "order-service", "recipient": "swiftship-de",
		"purpose": "delivery", "dataset": "order.delivery", "subject": subject, "record": order,
	}
	switch kindOf(i) {
	case kindRegion:
		req["source"], req["recipient"], req["purpose"], req["dataset"] = "device-fleet", "dc-tokyo", "regional_hosting", "device.service"
		req["record"] = map[string]any{
			"customer_id": fmt.Sprintf("zyxcust-%06d", i),
			"device":      map[string]any{"imei": "359999000011118", "model": "P40", "os_version": "12.1"},
			"location":    map[string]any{"area": "DE-BY-091"},
			"error_log":   "E1023 camera",
		}
	case kindDenied:
		req["recipient"] = "rapido-br"
	case kindInvalid:
		delete(req, "purpose")
	}
	b, _ := json.Marshal(req)
	return req["source"].(string), b
}

// producer publishes requests in order to the transfer stream, each with
// its id as Nats-Msg-Id, retrying a publish (same id, so the stream keeps
// one copy) until the stream acknowledges it.
type producer struct {
	js      jetstream.JetStream
	sent    atomic.Int64
	retries atomic.Int64
}

func (p *producer) run(ctx context.Context, n int, pace time.Duration) error {
	start := time.Now()
	for i := range n {
		if due := start.Add(pace * time.Duration(i) / time.Duration(n)); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
		source, body := request(i)
		for {
			msg := nats.NewMsg("clearance.transfers." + source)
			msg.Data = body
			msg.Header.Set(jetstream.MsgIDHeader, requestID(i))
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := p.js.PublishMsg(pctx, msg)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("producer: request %d: %w", i, ctx.Err())
			}
			p.retries.Add(1)
			time.Sleep(200 * time.Millisecond)
		}
		p.sent.Add(1)
	}
	return nil
}
