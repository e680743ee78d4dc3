package hostile

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/clearance-broker/clearance/audit"
	"github.com/clearance-broker/clearance/broker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var update = flag.Bool("update", false, "rewrite the golden answers in testdata")

// canaries are the personal values of the corpus records; no log line may
// hold them.
var canaries = []string{"Hostile Canary", "1 Hostile Road", "hostile@example.invalid", "+49 30 1234567"}

// answer is what the broker said about one hostile input, without the
// values that change from run to run (generated ids, audit sequences).
type answer struct {
	HTTPStatus int      `json:"http_status,omitempty"`
	Status     []string `json:"status"`
	Reasons    []string `json:"reasons"`
	Audited    []string `json:"audited"`
}

func corpus(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	if len(out) < 50 {
		t.Fatalf("corpus holds %d inputs, want at least 50", len(out))
	}
	return out
}

// TestHostileHTTP posts every corpus input to POST /v1/transfers.
func TestHostileHTTP(t *testing.T) {
	in := start(t)
	got := map[string]answer{}
	for _, name := range sortedKeys(corpus(t)) {
		body := corpus(t)[name]
		t.Run(name, func(t *testing.T) {
			code, receipts := post(t, in.api.URL, body, nil)
			got[name] = in.judge(t, code, receipts)
		})
	}
	t.Run("generated", func(t *testing.T) { in.generatedHTTP(t, got) })
	in.afterwards(t)
	golden(t, "http.golden.json", got)
}

// TestHostileNATS publishes every corpus input to the transfer stream as a
// producer would: on clearance.transfers.<source>, with the request's id
// as Nats-Msg-Id when it has a usable one.
func TestHostileNATS(t *testing.T) {
	in := start(t)
	js, err := jetstream.New(in.nc)
	if err != nil {
		t.Fatal(err)
	}
	receipts := make(chan *nats.Msg, 16)
	sub, err := in.nc.ChanSubscribe(broker.ReceiptsSubject+".>", receipts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	got := map[string]answer{}
	for _, name := range sortedKeys(corpus(t)) {
		body := corpus(t)[name]
		t.Run(name, func(t *testing.T) {
			var env struct {
				ID     any `json:"id"`
				Source any `json:"source"`
			}
			_ = json.Unmarshal(body, &env)
			source, _ := env.Source.(string)
			if !subjectToken(source) {
				source = "hostile"
			}
			msg := nats.NewMsg(broker.TransfersSubject + "." + source)
			msg.Data = body
			if id, ok := env.ID.(string); ok && id != "" && len(id) < 1024 && !strings.ContainsFunc(id, unicode.IsControl) {
				msg.Header.Set(jetstream.MsgIDHeader, id)
			}
			bodyID, _ := env.ID.(string)
			got[name] = in.publish(t, js, msg, receipts, bodyID)
		})
	}
	t.Run("generated", func(t *testing.T) { in.generatedNATS(t, js, receipts, got) })
	in.afterwards(t)
	golden(t, "nats.golden.json", got)
}

// publish sends msg and waits for its receipt.
// publish sends msg and waits for its receipt: the one carrying the
// Nats-Msg-Id or the body's id, or, for a request without a usable id, the
// stream-sequence id the broker gives it.
func (in *instance) publish(t *testing.T, js jetstream.JetStream, msg *nats.Msg, receipts chan *nats.Msg, bodyID string) answer {
	t.Helper()
	ack, err := js.PublishMsg(t.Context(), msg)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Duplicate {
		return answer{Status: []string{"duplicate"}, Reasons: []string{}, Audited: []string{}}
	}
	headerID := msg.Header.Get(jetstream.MsgIDHeader)
	seqID := fmt.Sprintf("stream-seq-%d", ack.Sequence)
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m := <-receipts:
			var r broker.Receipt
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("receipt: %v", err)
			}
			if r.RequestID != seqID && (r.RequestID == "" || (r.RequestID != headerID && r.RequestID != bodyID)) {
				continue // another request's
			}
			return in.judge(t, 0, []broker.Receipt{r})
		case <-timeout:
			t.Fatal("no receipt within 15s")
		}
	}
}

// judge checks one answer: nothing failed on the server, every request was
// audited with the outcome its receipt gives, and every refusal names a
// specific reason. Hostile inputs that are still lawful transfers (an
// injection string in a field the agreement does not cover) may be
// delivered, minimised; afterwards checks what the partner got.
func (in *instance) judge(t *testing.T, code int, receipts []broker.Receipt) answer {
	t.Helper()
	a := answer{HTTPStatus: code, Status: []string{}, Reasons: []string{}, Audited: []string{}}
	if code >= 500 {
		t.Errorf("answered %d", code)
	}
	if len(receipts) == 0 {
		t.Errorf("answered %d without a receipt", code)
	}
	for _, r := range receipts {
		id := short(r.RequestID)
		a.Status = append(a.Status, r.Status)
		a.Reasons = append(a.Reasons, r.Reasons...)
		for _, c := range canaries {
			if strings.Contains(strings.Join(r.Reasons, "\n"), c) {
				t.Errorf("%s: an answer holds %q", id, c)
			}
		}
		if r.Status == broker.StatusDuplicate {
			continue
		}
		want := map[string]string{
			broker.StatusDelivered: "delivered/allow", broker.StatusDenied: "decided/deny",
			broker.StatusRejected: "rejected/deny", broker.StatusDeadLettered: "delivery_failed/allow",
		}[r.Status]
		ev := in.events(t, r.RequestID)
		if want == "" || !slices.Contains(ev, want) {
			t.Errorf("%s: status %q, audit holds %v", id, r.Status, ev)
		}
		if r.Status != broker.StatusDelivered {
			if len(r.Reasons) == 0 {
				t.Errorf("%s: %s without a reason", id, r.Status)
			}
			for _, reason := range r.Reasons {
				if reason == "invalid_request" || !strings.Contains(reason, "_") {
					t.Errorf("%s: reason %q is not specific", id, reason)
				}
			}
		}
		a.Audited = append(a.Audited, ev...)
	}
	return a
}

// short cuts a hostile id for messages.
func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// hostileMarkers must never reach a recipient: they sit in fields no
// agreement covers, or in values the minimisation drops.
var hostileMarkers = []string{"DROP TABLE", "<script>", "__proto__", "{{", "jndi", `"deep"`, "callback_url"}

// afterwards: nothing reached the partner, no log line and no audit entry
// holds a personal value of the corpus (some are member names: see
// agreements.WithheldName), and the broker is ready.
func (in *instance) afterwards(t *testing.T) {
	t.Helper()
	for _, r := range in.partner.Received() {
		for _, m := range hostileMarkers {
			if strings.Contains(string(r.Payload), m) {
				t.Errorf("%s: the partner received %q", short(r.IdempotencyKey), m)
			}
		}
	}
	logs := in.logs.String()
	for _, c := range canaries {
		if strings.Contains(logs, c) {
			t.Errorf("a log line holds %q", c)
		}
	}
	var entries bytes.Buffer
	n, err := in.audit.Export(t.Context(), &entries, audit.FormatJSONL, audit.Filter{})
	if err != nil || n < int64(len(corpus(t))) {
		t.Fatalf("audit export: %d entries, %v", n, err)
	}
	for _, c := range canaries {
		if strings.Contains(entries.String(), c) {
			t.Errorf("an audit entry holds %q", c)
		}
	}
	resp, err := http.Get(in.api.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz answered %d after the hostile inputs", resp.StatusCode)
	}
}

// post sends body with extra headers and decodes one receipt or an array.
func post(t *testing.T, url string, body []byte, header http.Header) (int, []broker.Receipt) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v1/transfers", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var one struct {
		broker.Receipt
		Error string `json:"error"`
	}
	var many []broker.Receipt
	switch {
	case json.Unmarshal(b, &many) == nil:
		return resp.StatusCode, many
	case json.Unmarshal(b, &one) == nil && one.RequestID != "":
		if one.Error != "" && len(one.Reasons) == 0 {
			one.Reasons = []string{one.Error}
		}
		return resp.StatusCode, []broker.Receipt{one.Receipt}
	}
	return resp.StatusCode, nil
}

func golden(t *testing.T, name string, got map[string]answer) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(want, b) {
		t.Errorf("answers differ from %s (run with -update after checking):\n%s", path, diffLines(string(want), string(b)))
	}
}

func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := range max(len(w), len(g)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			out = append(out, fmt.Sprintf("line %d:\n  want %s\n  got  %s", i+1, a, b))
		}
		if len(out) > 20 {
			break
		}
	}
	return strings.Join(out, "\n")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func subjectToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !(r == '_' || r == '-' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'))
	})
}
