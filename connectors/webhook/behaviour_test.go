package webhook_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/webhook"
)

func TestConfigValidate(t *testing.T) {
	reg, err := connectors.NewRegistry(webhook.Kind())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    string
		wantErr []string
	}{
		{name: "per recipient", give: "urls: {swiftship-de: 'https://hooks.example/in'}\n"},
		{name: "default only", give: "default_url: https://hooks.example/in\ntimeout: 3s\n"},
		{name: "http in development", give: "default_url: http://localhost:8081/in\nallow_http: true\n"},
		{name: "no endpoint", give: "timeout: 3s\n", wantErr: []string{"urls or default_url"}},
		{name: "plain http", give: "default_url: http://hooks.example/in\n", wantErr: []string{"default_url", "allow_http"}},
		{name: "credentials in url", give: "urls: {p: 'https://u:secret@hooks.example/'}\n", wantErr: []string{"urls.p", "credentials"}},
		{name: "other scheme", give: "default_url: ftp://hooks.example/\n", wantErr: []string{"scheme \"ftp\""}},
		{name: "cert without key", give: "default_url: https://h.example/\ntls: {cert_file: c.pem}\n", wantErr: []string{"tls.cert_file and tls.key_file"}},
		{name: "every problem at once", give: "urls: {a: 'http://x', b: 'https://'}\ntimeout: 0s\n",
			wantErr: []string{"urls.a", "urls.b: no host", "timeout: must be positive"}},
		{name: "negative connection caps", give: "default_url: https://h.example/\nmax_conns_per_host: -1\nmax_idle_conns_per_host: -2\n",
			wantErr: []string{"max_conns_per_host: must not be negative", "max_idle_conns_per_host: must not be negative"}},
		{name: "unknown key", give: "default_url: https://h.example/\nretries: 3\n", wantErr: []string{"retries"}},
		{name: "literal secret key refused", give: "default_url: https://h.example/\ntls: {key: '-----BEGIN'}\n", wantErr: []string{"key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := reg.Decode(webhook.KindName, connectors.YAML([]byte(tt.give)))
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

func TestRoutingAndHeaders(t *testing.T) {
	type seen struct{ path, key, kind, ct, agreement string }
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.URL.Path, r.Header.Get("Idempotency-Key"), r.Header.Get("X-Clearance-Kind"),
			r.Header.Get("Content-Type"), r.Header.Get("Clearance-Agreement")})
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	cfg := webhook.DefaultConfig()
	cfg.URLs = map[string]string{"swiftship-de": srv.URL + "/swift"}
	cfg.DefaultURL = srv.URL + "/default"
	cfg.TLS.CAFile = writeCertPEM(t, srv.Certificate().Raw)
	w, err := webhook.New("partners", cfg, connectors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	closeConnector(t, w)

	tests := []struct {
		name      string
		recipient string
		kind      string
		want      seen
	}{
		{name: "mapped", recipient: "swiftship-de", kind: "transfer",
			want: seen{"/swift", "req-swift", "transfer", "application/jose", "dpa-1@2"}},
		{name: "default", recipient: "other-party", kind: "erasure_notice",
			want: seen{"/default", "req-other", "erasure_notice", "application/jose", "dpa-1@2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			d := &connectors.Delivery{RequestID: tt.want.key, Recipient: tt.recipient, Kind: tt.kind,
				Body: []byte("a.b.c.d.e"), Headers: map[string]string{"Clearance-Agreement": "dpa-1@2"}}
			if err := w.Deliver(t.Context(), d); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("partner saw %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUnknownRecipientIsPermanent(t *testing.T) {
	cfg := webhook.DefaultConfig()
	cfg.URLs = map[string]string{"known": "https://127.0.0.1:1/"}
	w, err := webhook.New("partners", cfg, connectors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	closeConnector(t, w)
	err = w.Deliver(t.Context(), &connectors.Delivery{RequestID: "r", Recipient: "unknown", Body: []byte("x")})
	if !connectors.IsPermanent(err) {
		t.Errorf("Deliver to a recipient without endpoint = %v, want ErrPermanent", err)
	}
}

// TestErrorsNeverCarryBodies checks that neither the payload sent nor the
// partner's answer (which may echo it) appears in an error.
func TestErrorsNeverCarryBodies(t *testing.T) {
	const secret = "Ada Lovelace, 12 Analytical Row"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "invalid record: "+secret, http.StatusUnprocessableEntity)
	}))
	t.Cleanup(srv.Close)
	cfg := webhook.DefaultConfig()
	cfg.DefaultURL = srv.URL
	cfg.TLS.CAFile = writeCertPEM(t, srv.Certificate().Raw)
	w, err := webhook.New("echoing-partner", cfg, connectors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	closeConnector(t, w)
	err = w.Deliver(t.Context(), &connectors.Delivery{RequestID: "r-1", Recipient: "p", Body: []byte(secret)})
	if err == nil || !connectors.IsPermanent(err) {
		t.Fatalf("Deliver = %v, want a permanent error", err)
	}
	if strings.Contains(err.Error(), "Ada") || strings.Contains(err.Error(), "Analytical") {
		t.Errorf("error carries a body: %q", err)
	}
	if !strings.Contains(err.Error(), "422") {
		t.Errorf("error %q does not name the status", err)
	}
}

// countingPartner is a TLS partner answering h that counts the connections
// opened to it, and a connector configuration pointing at it.
func countingPartner(t *testing.T, h http.HandlerFunc) (*atomic.Int64, *webhook.Config) {
	t.Helper()
	conns := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := webhook.DefaultConfig()
	cfg.DefaultURL = srv.URL
	cfg.TLS.CAFile = writeCertPEM(t, srv.Certificate().Raw)
	return conns, cfg
}

func TestConnectionReuse(t *testing.T) {
	conns, cfg := countingPartner(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("ok", 1000))) // a body the connector must drain
	})
	w, err := webhook.New("reuse", cfg, connectors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	closeConnector(t, w)
	for i := range 20 {
		d := &connectors.Delivery{RequestID: "r-" + string(rune('a'+i)), Recipient: "p", Body: []byte("x")}
		if err := w.Deliver(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential deliveries opened %d connections, want 1", n)
	}
}

// TestConnectionCap: many concurrent deliveries to one partner share at
// most max_conns_per_host connections, all of which are reused.
func TestConnectionCap(t *testing.T) {
	conns, cfg := countingPartner(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	cfg.MaxConnsPerHost = 3
	w, err := webhook.New("capped", cfg, connectors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	closeConnector(t, w)
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			d := &connectors.Delivery{RequestID: "r-" + strings.Repeat("x", i+1), Recipient: "p", Body: []byte("x")}
			if err := w.Deliver(t.Context(), d); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := conns.Load(); n < 1 || n > 3 {
		t.Errorf("60 concurrent deliveries opened %d connections, want 1 to 3", n)
	}
}

// TestOutcomeUnknown: a failure after the request went out whole (the
// partner read it and never answered) may have reached the partner, and
// says so (connectors.ErrOutcomeUnknown); one before anything was sent, or
// one the partner answered, does not.
func TestOutcomeUnknown(t *testing.T) {
	release := make(chan struct{})
	_, silent := countingPartner(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-release
	})
	// After countingPartner's, so run before it: the server closes once
	// its handler is let go.
	t.Cleanup(func() { close(release) })
	silent.Timeout = connectors.Duration(300 * time.Millisecond)
	_, failing := countingPartner(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := webhook.DefaultConfig()
	gone.DefaultURL = "https://" + ln.Addr().String() + "/"
	ln.Close()
	for _, tt := range []struct {
		name    string
		cfg     *webhook.Config
		unknown bool
	}{
		{"sent, no answer", silent, true},
		{"answered 503", failing, false},
		{"nothing listening", gone, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, err := webhook.New("outcome", tt.cfg, connectors.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			closeConnector(t, w)
			err = w.Deliver(t.Context(), &connectors.Delivery{RequestID: "r-1", Recipient: "p", Body: []byte("x")})
			if err == nil || connectors.IsPermanent(err) {
				t.Fatalf("Deliver = %v, want a transient error", err)
			}
			if got := connectors.OutcomeUnknown(err); got != tt.unknown {
				t.Errorf("Deliver = %v: outcome unknown %v, want %v", err, got, tt.unknown)
			}
		})
	}
}
