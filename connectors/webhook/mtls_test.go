package webhook_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/webhook"
)

// clientPKI is a CA and a client certificate it issued, as PEM files.
type clientPKI struct {
	pool                *x509.CertPool
	certFile, keyFile   string
	otherCert, otherKey string // issued by another CA
}

func newClientPKI(t *testing.T) clientPKI {
	t.Helper()
	dir := t.TempDir()
	caCert, caKey := issue(t, nil, nil, "clearance test CA", true)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	cert, key := issue(t, caCert, caKey, "clearance broker", false)
	strayCA, strayKey := issue(t, nil, nil, "stray CA", true)
	other, otherKey := issue(t, strayCA, strayKey, "clearance broker", false)
	p := clientPKI{pool: pool}
	p.certFile, p.keyFile = writePair(t, dir, "client", cert, key)
	p.otherCert, p.otherKey = writePair(t, dir, "other", other, otherKey)
	return p
}

func issue(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, ca bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  ca,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePair(t *testing.T, dir, name string, cert *x509.Certificate, key *ecdsa.PrivateKey) (string, string) {
	t.Helper()
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestMutualTLS(t *testing.T) {
	pki := newClientPKI(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := writeCertPEM(t, srv.Certificate().Raw)

	tests := []struct {
		name     string
		certFile string
		keyFile  string
		wantOK   bool
	}{
		{name: "client certificate from the trusted CA", certFile: pki.certFile, keyFile: pki.keyFile, wantOK: true},
		{name: "no client certificate", wantOK: false},
		{name: "client certificate from another CA", certFile: pki.otherCert, keyFile: pki.otherKey, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := webhook.DefaultConfig()
			cfg.DefaultURL = srv.URL + "/in"
			cfg.TLS = webhook.TLSConfig{CAFile: caFile, CertFile: tt.certFile, KeyFile: tt.keyFile}
			w, err := webhook.New("mtls-partner", cfg, connectors.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			closeConnector(t, w)
			err = w.Deliver(t.Context(), &connectors.Delivery{RequestID: "req-mtls", Recipient: "partner-a", Kind: "transfer", Body: []byte("a.b.c.d.e")})
			if tt.wantOK && err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if !tt.wantOK {
				if err == nil {
					t.Fatal("Deliver without an acceptable client certificate succeeded")
				}
				// A handshake refusal is a configuration problem to fix and
				// retry, not a reason to dead-letter the transfer.
				if connectors.IsPermanent(err) {
					t.Errorf("TLS refusal classified permanent: %v", err)
				}
			}
		})
	}
}

func TestUntrustedServer(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(srv.Close)
	cfg := webhook.DefaultConfig()
	cfg.DefaultURL = srv.URL // no ca_file: the test server's certificate is not trusted
	w, err := webhook.New("untrusted", cfg, connectors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	closeConnector(t, w)
	if err := w.Deliver(t.Context(), &connectors.Delivery{RequestID: "req-1", Recipient: "p", Body: []byte("x")}); err == nil {
		t.Fatal("Deliver to a server with an untrusted certificate succeeded")
	}
}
