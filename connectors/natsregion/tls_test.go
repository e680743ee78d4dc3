package natsregion_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/clearance-broker/clearance/connectors"
	"github.com/clearance-broker/clearance/connectors/natsregion"
)

type certKey struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// issue makes a certificate for cn signed by parent (self-signed when nil).
func issue(t *testing.T, parent *certKey, cn string, ca bool) *certKey {
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
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  ca,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certKey{cert: cert, key: key}
}

// files writes c as PEM certificate and key files.
func (c *certKey) files(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	der, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestMutualTLS(t *testing.T) {
	ca := issue(t, nil, "region CA", true)
	srvCert := issue(t, ca, "nats.region.test", false)
	client := issue(t, ca, "clearance broker", false)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)

	s := runServer(t, &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		TLS: true, TLSVerify: true, TLSTimeout: 2,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.cert.Raw}, PrivateKey: srvCert.key}},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
		},
	})

	caFile, _ := ca.files(t, "ca")
	certFile, keyFile := client.files(t, "client")
	url := "tls://" + s.Addr().String()
	tests := []struct {
		name   string
		tls    natsregion.TLSConfig
		wantOK bool
	}{
		{name: "client certificate", tls: natsregion.TLSConfig{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}, wantOK: true},
		{name: "no client certificate", tls: natsregion.TLSConfig{CAFile: caFile}},
		{name: "server not trusted", tls: natsregion.TLSConfig{CertFile: certFile, KeyFile: keyFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := natsregion.DefaultConfig()
			cfg.URLs = []string{url}
			cfg.TLS = tt.tls
			cfg.Stream, cfg.EnsureStream = "REGION", true
			cfg.ConnectTimeout = connectors.Duration(2 * time.Second)
			if !tt.wantOK {
				if _, err := natsregion.New(t.Context(), "tls-region", cfg, connectors.Deps{}); err == nil {
					t.Fatal("connected without a valid certificate pair")
				}
				return
			}
			r := newRegion(t, cfg)
			if err := r.Deliver(t.Context(), sealedDelivery("req-tls")); err != nil {
				t.Fatalf("Deliver over mutual TLS: %v", err)
			}
		})
	}
}
