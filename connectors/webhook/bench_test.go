package webhook_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/connectortest"
	"github.com/clearance-broker/clearance/connectors/webhook"
)

// BenchmarkDeliver measures Deliver against a bare http.Client POST of the
// same sealed body with the same headers to the same httptest server, in the
// same run: the ratio is the connector's overhead.
func BenchmarkDeliver(b *testing.B) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	body := connectortest.NewSealer(b).Seal(b, connectortest.NewCanaries().Record("o-1"))

	baseTransport := srv.Client().Transport.(*http.Transport).Clone()
	baseTransport.MaxIdleConnsPerHost = 16
	client := &http.Client{Transport: baseTransport}
	post := func(id string) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/in/partner-a", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/jose")
		req.Header.Set("Idempotency-Key", id)
		req.Header.Set("X-Clearance-Kind", "transfer")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}

	cfg := webhook.DefaultConfig()
	cfg.URLs = map[string]string{"partner-a": srv.URL + "/in/partner-a"}
	cfg.TLS.CAFile = writeCertPEM(b, srv.Certificate().Raw)
	w, err := webhook.New("bench", cfg, connectors.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Close(b.Context()) })
	deliver := func(id string) {
		d := &connectors.Delivery{RequestID: id, Recipient: "partner-a", Kind: "transfer",
			ContentType: "application/jose", Body: body}
		if err := w.Deliver(b.Context(), d); err != nil {
			b.Fatal(err)
		}
	}

	var seq atomic.Int64
	next := func() string { return "req-" + strconv.FormatInt(seq.Add(1), 10) }
	for _, bm := range []struct {
		name string
		do   func(string)
	}{
		{name: "baseline_http_post", do: post},
		{name: "webhook_deliver", do: deliver},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				bm.do(next())
			}
		})
		b.Run(bm.name+"_parallel", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bm.do(next())
				}
			})
		})
	}
}
