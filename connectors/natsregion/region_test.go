package natsregion_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
	"github.com/clearance-broker/clearance/internal/syncbuf"
)

func TestSubject(t *testing.T) {
	tests := []struct {
		name      string
		prefix    string
		recipient string
		want      string
		wantErr   bool
	}{
		{name: "default prefix", prefix: natsregion.DefaultSubjectPrefix, recipient: "dc-eu-west", want: "clearance.region.dc-eu-west"},
		{name: "custom prefix", prefix: "acme.inbound", recipient: "sg", want: "acme.inbound.sg"},
		{name: "dot in recipient", prefix: "p", recipient: "a.b", wantErr: true},
		{name: "wildcard", prefix: "p", recipient: "*", wantErr: true},
		{name: "full wildcard", prefix: "p", recipient: ">", wantErr: true},
		{name: "space", prefix: "p", recipient: "a b", wantErr: true},
		{name: "empty", prefix: "p", recipient: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := natsregion.Subject(tt.prefix, tt.recipient)
			if tt.wantErr {
				if !errors.Is(err, natsregion.ErrInvalidSubject) {
					t.Errorf("Subject = %q, %v; want ErrInvalidSubject", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Subject = %q, %v; want %q", got, err, tt.want)
			}
			back, ok := natsregion.Recipient(tt.prefix, got)
			if !ok || back != tt.recipient {
				t.Errorf("Recipient(%q) = %q, %v", got, back, ok)
			}
		})
	}
	if _, ok := natsregion.Recipient("clearance.region", "clearance.regional.x"); ok {
		t.Error("Recipient accepted a subject outside the prefix")
	}
	if got := natsregion.SubjectFilter("clearance.region"); got != "clearance.region.>" {
		t.Errorf("SubjectFilter = %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	reg, err := connectors.NewRegistry(natsregion.Kind())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    string
		wantErr []string
	}{
		{name: "minimal", give: "urls: [nats://dc-sg.example:4222]\n"},
		{name: "full", give: `
urls: [tls://a.example:4222, tls://b.example:4222]
creds_file: /etc/clearance/region.creds
tls: {ca_file: /etc/clearance/ca.pem, cert_file: c.pem, key_file: k.pem}
subject_prefix: acme.inbound
stream: REGION_INBOUND
ensure_stream: true
replicas: 3
duplicate_window: 10m
ack_timeout: 2s
connect_timeout: 3s
reconnect_wait: 1s
no_responder_retries: 4
full_retry_after: 1m
`},
		{name: "no urls", give: "stream: S\n", wantErr: []string{"urls: at least one"}},
		{name: "bad scheme", give: "urls: [http://a:4222]\n", wantErr: []string{"urls[0]", "scheme"}},
		{name: "password in url", give: "urls: [nats://u:pw@a:4222]\n", wantErr: []string{"credentials in the URL"}},
		{name: "two credentials", give: "urls: [nats://a]\ncreds_file: a\nnkey_seed_file: b\n", wantErr: []string{"give one, not both"}},
		{name: "wildcard prefix", give: "urls: [nats://a]\nsubject_prefix: clearance.*\n", wantErr: []string{"subject_prefix"}},
		{name: "ensure without stream", give: "urls: [nats://a]\nensure_stream: true\n", wantErr: []string{"ensure_stream: needs stream"}},
		{name: "dotted stream", give: "urls: [nats://a]\nstream: a.b\n", wantErr: []string{"stream:"}},
		{name: "every problem at once", give: "urls: []\nreplicas: 9\nack_timeout: 0s\ntls: {key_file: k}\n",
			wantErr: []string{"urls", "replicas", "ack_timeout", "tls.cert_file"}},
		{name: "unknown key", give: "urls: [nats://a]\npassword: hunter2\n", wantErr: []string{"password"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := reg.Decode(natsregion.KindName, connectors.YAML([]byte(tt.give)))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Decode: no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func newRegion(t *testing.T, cfg *natsregion.Config) *natsregion.Region {
	t.Helper()
	r, err := natsregion.New(t.Context(), "test-region", cfg, connectors.Deps{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// ensuredStream starts a server and returns it with a connector config that
// delivers to it and creates stream name.
func ensuredStream(t *testing.T, name string) (*server.Server, *natsregion.Config) {
	t.Helper()
	s := startServer(t, t.TempDir(), -1)
	cfg := natsregion.DefaultConfig()
	cfg.URLs = []string{s.ClientURL()}
	cfg.Stream, cfg.EnsureStream = name, true
	return s, cfg
}

// streamOf returns stream name on s, through a connection of the test's own.
func streamOf(t *testing.T, s *server.Server, name string) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	st, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func sealedDelivery(id string) *connectors.Delivery {
	return &connectors.Delivery{RequestID: id, Recipient: "dc-sg", Kind: "transfer",
		ContentType: "application/jose", Body: []byte("eyJhbGciOi.x.y.z.w")}
}

func TestEnsureStream(t *testing.T) {
	s, cfg := ensuredStream(t, "REGION_SG")
	cfg.DuplicateWindow = connectors.Duration(time.Minute)
	r := newRegion(t, cfg)
	if err := r.Deliver(t.Context(), sealedDelivery("req-1")); err != nil {
		t.Fatalf("Deliver into the ensured stream: %v", err)
	}
	// A second connector finds the stream and keeps it.
	newRegion(t, cfg)

	st := streamOf(t, s, "REGION_SG")
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || info.Config.Storage != jetstream.FileStorage ||
		info.Config.Duplicates != time.Minute || info.Config.Subjects[0] != "clearance.region.>" {
		t.Errorf("stream %+v holding %d messages", info.Config, info.State.Msgs)
	}
}

func TestMalformedDeliveriesArePermanent(t *testing.T) {
	_, cfg := ensuredStream(t, "REGION")
	r := newRegion(t, cfg)
	tests := []struct {
		name string
		give func(d *connectors.Delivery)
	}{
		{name: "recipient with a dot", give: func(d *connectors.Delivery) { d.Recipient = "dc.sg" }},
		{name: "recipient wildcard", give: func(d *connectors.Delivery) { d.Recipient = ">" }},
		{name: "reserved header", give: func(d *connectors.Delivery) { d.Headers = map[string]string{"Nats-Expected-Last-Sequence": "1"} }},
		{name: "reserved header, other case", give: func(d *connectors.Delivery) { d.Headers = map[string]string{"nATS-msg-id": "x"} }},
		{name: "larger than the server allows", give: func(d *connectors.Delivery) { d.Body = make([]byte, 2<<20) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := sealedDelivery("req-" + tt.name)
			tt.give(d)
			if err := r.Deliver(t.Context(), d); !connectors.IsPermanent(err) {
				t.Errorf("Deliver = %v, want ErrPermanent", err)
			}
		})
	}
}

// TestServerRestart: a region that goes away gives transient errors, and
// deliveries resume once it is back, with the stream's data intact. A
// delivery that failed while it was away does not arrive afterwards (a
// reconnect buffer would send it unrecorded).
func TestServerRestart(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, -1)
	port := s.Addr().(*net.TCPAddr).Port
	cfg := natsregion.DefaultConfig()
	cfg.URLs = []string{s.ClientURL()}
	cfg.Stream, cfg.EnsureStream = "REGION", true
	cfg.AckTimeout = connectors.Duration(300 * time.Millisecond)
	cfg.ReconnectWait = connectors.Duration(50 * time.Millisecond)
	r := newRegion(t, cfg)
	if err := r.Deliver(t.Context(), sealedDelivery("req-before")); err != nil {
		t.Fatal(err)
	}

	s.Shutdown()
	s.WaitForShutdown()
	err := r.Deliver(t.Context(), sealedDelivery("req-during"))
	if err == nil || connectors.IsPermanent(err) {
		t.Fatalf("Deliver while the region is down = %v, want a transient error", err)
	}

	startServer(t, dir, port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = r.Deliver(t.Context(), sealedDelivery("req-after"))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Deliver after the region came back: %v", err)
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(t.Context(), "REGION")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		ids[m.Header.Get(jetstream.MsgIDHeader)] = true
	}
	if !ids["req-before"] || !ids["req-after"] || ids["req-during"] {
		t.Errorf("stream after restart holds %v, want req-before and req-after and not the delivery that failed", ids)
	}
}

func TestNKeyAuthentication(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	seedFile := filepath.Join(t.TempDir(), "region.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	s := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Nkeys: []*server.NkeyUser{{Nkey: pub}}})

	cfg := natsregion.DefaultConfig()
	cfg.URLs = []string{s.ClientURL()}
	cfg.Stream, cfg.EnsureStream = "REGION", true
	if _, err := natsregion.New(t.Context(), "anonymous", cfg, connectors.Deps{}); err == nil {
		t.Fatal("connected without credentials to a server that requires an NKey")
	}
	cfg.NKeySeedFile = seedFile
	r := newRegion(t, cfg)
	if err := r.Deliver(t.Context(), sealedDelivery("req-nkey")); err != nil {
		t.Fatalf("Deliver with NKey: %v", err)
	}
}

// TestDeliverKeepsNoBody: once Deliver returns, the connector holds nothing
// of the delivery's body, so the broker may reuse its buffer at once. The
// body is overwritten as soon as each Deliver returns; every message in the
// stream must still be the one delivered.
func TestDeliverKeepsNoBody(t *testing.T) {
	s, cfg := ensuredStream(t, "REGION_REUSE")
	r := newRegion(t, cfg)
	buf := make([]byte, 0, 64)
	const n = 200
	for i := range n {
		d := sealedDelivery(fmt.Sprintf("req-%d", i))
		buf = fmt.Appendf(buf[:0], "sealed-%03d.%s", i, strings.Repeat("x", 40))
		d.Body = buf
		if err := r.Deliver(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		for j := range buf {
			buf[j] = '!'
		}
	}
	st := streamOf(t, s, "REGION_REUSE")
	for i := range n {
		m, err := st.GetMsg(t.Context(), uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("sealed-%03d.%s", i, strings.Repeat("x", 40)); string(m.Data) != want {
			t.Fatalf("message %d = %q, want %q", i+1, m.Data, want)
		}
	}
}

// TestDeliverOnlyToItsStream: a message whose subject another stream takes
// is refused by that stream (the Nats-Expected-Stream header), not stored
// where the region's operator did not configure it; a redelivery of the
// same request is acknowledged as a duplicate and stored once.
func TestDeliverOnlyToItsStream(t *testing.T) {
	s := startServer(t, t.TempDir(), -1)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	other, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"clearance.region.>"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := natsregion.DefaultConfig()
	cfg.URLs = []string{s.ClientURL()}
	cfg.Stream = "REGION_SG"
	r := newRegion(t, cfg)
	err = r.Deliver(t.Context(), sealedDelivery("req-1"))
	var apiErr *jetstream.APIError
	if err == nil || !errors.As(err, &apiErr) || connectors.IsPermanent(err) {
		t.Fatalf("Deliver with another stream on the subject = %v, want the stream's refusal, transient", err)
	}
	if info, err := other.Info(t.Context()); err != nil || info.State.Msgs != 0 {
		t.Fatalf("the other stream holds %+v (%v), want nothing", info.State, err)
	}

	cfg.Stream = "OTHER"
	r = newRegion(t, cfg)
	for range 2 {
		if err := r.Deliver(t.Context(), sealedDelivery("req-2")); err != nil {
			t.Fatalf("Deliver to its own stream: %v", err)
		}
	}
	if info, err := other.Info(t.Context()); err != nil || info.State.Msgs != 1 {
		t.Fatalf("the stream holds %+v (%v) after a delivery and its repeat, want 1 message", info.State, err)
	}
}

// TestServerAnswersReadByHand: the answers of the server this module
// builds against, to a publish and to its repeat, with and without a
// JetStream domain, take the hand reader's path.
func TestServerAnswersReadByHand(t *testing.T) {
	for _, domain := range []string{"", "hub"} {
		s := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
			JetStreamDomain: domain, StoreDir: t.TempDir()})
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "REGION", Subjects: []string{"clearance.region.>"}}); err != nil {
			t.Fatal(err)
		}
		for i, want := range []natsregion.PubAck{{Stream: "REGION", Sequence: 1}, {Stream: "REGION", Sequence: 1, Duplicate: true}} {
			m := nats.NewMsg("clearance.region.dc-sg")
			m.Data = []byte("sealed")
			m.Header.Set(jetstream.MsgIDHeader, "req-1")
			resp, err := nc.RequestMsg(m, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := natsregion.ReadUsualPubAck(resp.Data, "REGION"); !ok || got != want {
				t.Errorf("domain %q, publish %d: answer %s read by hand as %+v, %v; want %+v", domain, i+1, resp.Data, got, ok, want)
			}
		}
	}
}

// TestDisconnectLogged: losing the region's server is logged as a warning
// with its error; the connector's own Close at shutdown is not.
func TestDisconnectLogged(t *testing.T) {
	s := startServer(t, t.TempDir(), -1)
	cfg := natsregion.DefaultConfig()
	cfg.URLs = []string{s.ClientURL()}
	cfg.ReconnectWait = connectors.Duration(50 * time.Millisecond)
	var logs syncbuf.Buffer
	r, err := natsregion.New(t.Context(), "test-region", cfg, connectors.Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "region disconnected") {
		if time.Now().After(deadline) {
			t.Fatalf("the lost server was not logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "error=<nil>") {
		t.Errorf("the lost server's line:\n%s", logs.String())
	}

	s2 := startServer(t, t.TempDir(), -1)
	cfg.URLs = []string{s2.ClientURL()}
	var closing syncbuf.Buffer
	r2, err := natsregion.New(t.Context(), "test-region", cfg, connectors.Deps{Logger: slog.New(slog.NewTextHandler(&closing, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, reg := range []*natsregion.Region{r, r2} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		if err := reg.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		cancel()
	}
	// Close returns after the connection's handlers ran.
	if strings.Contains(closing.String(), "disconnected") {
		t.Errorf("Close logged a disconnection:\n%s", closing.String())
	}
}

// TestOutcomeUnknown: a publish the region took and never acknowledged may
// be stored there, and the error says so (connectors.ErrOutcomeUnknown);
// one no stream took (no responders) is known not to be.
func TestOutcomeUnknown(t *testing.T) {
	s := startServer(t, t.TempDir(), -1)
	cfg := natsregion.DefaultConfig()
	cfg.URLs = []string{s.ClientURL()}
	cfg.AckTimeout = connectors.Duration(300 * time.Millisecond)
	cfg.NoResponderRetries = 0
	r := newRegion(t, cfg)
	err := r.Deliver(t.Context(), sealedDelivery("req-nobody"))
	if err == nil || connectors.OutcomeUnknown(err) {
		t.Fatalf("Deliver with no stream = %v, want an error known not to have reached it", err)
	}

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// Takes every publish, answers none: a stream whose acknowledgement is
	// lost.
	sub, err := nc.SubscribeSync("clearance.region.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	err = r.Deliver(t.Context(), sealedDelivery("req-silent"))
	if err == nil || connectors.IsPermanent(err) || !connectors.OutcomeUnknown(err) {
		t.Fatalf("Deliver with no acknowledgement = %v, want a transient error whose outcome is unknown", err)
	}
	if _, err := sub.NextMsg(time.Second); err != nil {
		t.Errorf("the publish did not go out: %v", err)
	}
}
