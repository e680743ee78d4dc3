package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/agreements"
)

// Class is what the decision engine is expected to do with a request.
type Class string

// Request classes of the mix.
const (
	// ClassAllowed requests pass with every field.
	ClassAllowed Class = "allowed"
	// ClassMinimised requests pass with some fields removed.
	ClassMinimised Class = "minimised"
	// ClassRefused requests are denied.
	ClassRefused Class = "refused"
)

const (
	idMark   = "@@ID@@"
	subjMark = "@@SUBJECT@@"
	padMark  = "@@PAD@@"
)

// template is one kind of request of the mix, rendered once to JSON with
// marks where the id, the subject id and the padding go.
type template struct {
	name   string
	class  Class
	weight int
	source string
	req    map[string]any
	// pre, mid, post are the JSON around id and subject; pad is inside post.
	parts [][]byte
	order []string
}

// mixes are the request mixes per sink over examples/registry: 40%
// allowed, 35% minimised, 25% refused for four different reasons.
func mixFor(sink string) []*template {
	device := func(recipient, purpose, jurisdiction string, extra map[string]any) map[string]any {
		rec := map[string]any{
			"customer_id": "c-" + subjMark,
			"device":      map[string]any{"imei": "350000000000000", "model": "P40", "os_version": "12.1"},
			"location":    map[string]any{"area": "DE-BY-091"},
			"error_log":   "E1023 camera " + padMark,
		}
		for k, v := range extra {
			rec[k] = v
		}
		return map[string]any{
			"id": idMark, "source": "device-fleet", "recipient": recipient, "purpose": purpose,
			"dataset": "device.service",
			"subject": map[string]any{"id": subjMark, "jurisdiction": jurisdiction, "minor": false},
			"record":  rec,
		}
	}
	order := func(recipient, jurisdiction string, extra map[string]any) map[string]any {
		rec := map[string]any{
			"order_id": "o-" + idMark, "name": "Customer " + subjMark,
			"address": "1 Example Street, 80331 Munich " + padMark, "phone": "+49 89 0000000",
		}
		for k, v := range extra {
			rec[k] = v
		}
		return map[string]any{
			"id": idMark, "source": "order-service", "recipient": recipient, "purpose": "delivery",
			"dataset": "order.delivery",
			"subject": map[string]any{"id": subjMark, "jurisdiction": jurisdiction, "minor": false},
			"record":  rec,
		}
	}
	if sink == SinkWebhook {
		extra := map[string]any{"email": "c@example.invalid", "product": "P40",
			"payment": map[string]any{"method": "card", "card_last4": "4242"}, "gift_note": "-"}
		return []*template{
			{name: "delivery-eea", class: ClassAllowed, weight: 40, req: order("swiftship-de", "DE", nil)},
			{name: "delivery-us-dpf-minimised", class: ClassMinimised, weight: 35, req: order("fastfreight-us", "DE", extra)},
			{name: "erased-subject", class: ClassRefused, weight: 8, req: withSubject(order("swiftship-de", "DE", nil), "cust-13")},
			{name: "unknown-recipient", class: ClassRefused, weight: 5, req: order("parcelco-fr", "DE", nil)},
			{name: "india-tia-overdue", class: ClassRefused, weight: 7, req: order("shipfast-in", "DE", nil)},
			{name: "brazil-no-mechanism", class: ClassRefused, weight: 5, req: order("rapido-br", "DE", nil)},
		}
	}
	extra := map[string]any{"location": map[string]any{"area": "DE-BY-091", "gps": "48.13,11.57"}, "serial": "SN123"}
	return []*template{
		{name: "hosting-tokyo-adequacy", class: ClassAllowed, weight: 40, req: device("dc-tokyo", "regional_hosting", "DE", nil)},
		{name: "hosting-singapore-bcr-minimised", class: ClassMinimised, weight: 35, req: device("dc-singapore", "regional_hosting", "FR", extra)},
		{name: "erased-subject", class: ClassRefused, weight: 8, req: withSubject(device("dc-tokyo", "regional_hosting", "DE", nil), "cust-13")},
		{name: "unknown-recipient", class: ClassRefused, weight: 5, req: device("dc-frankfurt", "regional_hosting", "DE", nil)},
		{name: "marketing-no-consent", class: ClassRefused, weight: 7, req: device("dc-tokyo", "marketing", "DE", nil)},
		{name: "after-sales-wrong-dataset-purpose", class: ClassRefused, weight: 5, req: device("swiftship-de", "regional_hosting", "DE", nil)},
	}
}

func withSubject(req map[string]any, subject string) map[string]any {
	req["subject"].(map[string]any)["id"] = subject
	return req
}

// workload renders requests of a given size from a mix.
type workload struct {
	templates []*template
	pick      []int // template index per weight unit
	size      int
}

// newWorkload renders the mix's templates padded so that a request is size
// bytes long (never less than the unpadded request).
func newWorkload(sink string, size int) (*workload, error) {
	w := &workload{templates: mixFor(sink), size: size}
	for i, t := range w.templates {
		t.source = t.req["source"].(string)
		raw, err := json.Marshal(t.req)
		if err != nil {
			return nil, fmt.Errorf("harness: template %s: %w", t.name, err)
		}
		// Length of one rendered request without padding, with a typical
		// id (lh12-123456) and subject (cust-12345).
		bare := len(raw) - strings.Count(string(raw), idMark)*(len(idMark)-11) -
			strings.Count(string(raw), subjMark)*(len(subjMark)-10) - len(padMark)
		pad := max(size-bare, 0)
		raw = bytes.Replace(raw, []byte(padMark), bytes.Repeat([]byte("x"), pad), 1)
		t.parts, t.order = splitMarks(raw)
		for range t.weight {
			w.pick = append(w.pick, i)
		}
	}
	return w, nil
}

// splitMarks cuts raw at every id and subject mark.
func splitMarks(raw []byte) ([][]byte, []string) {
	var parts [][]byte
	var order []string
	for {
		i, j := bytes.Index(raw, []byte(idMark)), bytes.Index(raw, []byte(subjMark))
		switch {
		case i < 0 && j < 0:
			return append(parts, raw), order
		case j < 0 || (i >= 0 && i < j):
			parts, order, raw = append(parts, raw[:i]), append(order, idMark), raw[i+len(idMark):]
		default:
			parts, order, raw = append(parts, raw[:j]), append(order, subjMark), raw[j+len(subjMark):]
		}
	}
}

// request returns request i of run: its template (chosen deterministically
// from i) and body. Subject ids avoid the example registry's named subjects
// (cust-7 to cust-21) except where the template sets one.
func (w *workload) request(run, i int, rng *rand.Rand, buf []byte) (*template, string, []byte) {
	t := w.templates[w.pick[(i*7919)%len(w.pick)]]
	id := "lh" + strconv.Itoa(run) + "-" + strconv.Itoa(i)
	subj := "cust-" + strconv.Itoa(1000+rng.IntN(90000))
	buf = buf[:0]
	for k, p := range t.parts {
		buf = append(buf, p...)
		if k < len(t.order) {
			if t.order[k] == idMark {
				buf = append(buf, id...)
			} else {
				buf = append(buf, subj...)
			}
		}
	}
	return t, id, buf
}

// indexOf parses the request index out of an id made by request.
func indexOf(id string) (int, bool) {
	k := strings.LastIndexByte(id, '-')
	if k < 0 || !strings.HasPrefix(id, "lh") {
		return 0, false
	}
	n, err := strconv.Atoi(id[k+1:])
	return n, err == nil
}

// expected counts the classes of the first n requests.
func (w *workload) expected(n int) map[Class]int {
	out := map[Class]int{}
	for i := range n {
		out[w.templates[w.pick[(i*7919)%len(w.pick)]].class]++
	}
	return out
}

// check decides one rendering of every template with the engine at the
// given time and fails if a template's class is not what the engine
// decides, so that the mix keeps meaning what the report says when the
// registry changes. It returns the reasons per template.
func (w *workload) check(e *agreements.Engine, at time.Time) (map[string][]string, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	reasons := map[string][]string{}
	var errs []error
	for i := range w.pick {
		t, _, body := w.request(0, i, rng, nil)
		if _, done := reasons[t.name]; done {
			continue
		}
		req, err := agreements.ParseRequest(body)
		if err != nil {
			errs = append(errs, fmt.Errorf("harness: template %s: %w", t.name, err))
			continue
		}
		d := e.Decide(req, at)
		var got Class
		switch {
		case !d.Allowed():
			got = ClassRefused
		case len(d.Fields.Removed) > 0:
			got = ClassMinimised
		default:
			got = ClassAllowed
		}
		if got != t.class {
			errs = append(errs, fmt.Errorf("harness: template %s: engine says %s %v, mix says %s", t.name, got, d.Reasons, t.class))
		}
		reasons[t.name] = append([]string{}, d.Reasons...)
		for _, f := range d.Fields.Removed {
			reasons[t.name] = append(reasons[t.name], f.Path+":"+f.Reason)
		}
	}
	return reasons, errors.Join(errs...)
}
