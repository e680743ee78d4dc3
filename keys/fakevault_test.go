package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTransit stands in for Vault over httptest where a test needs Vault to
// answer what a dev server does not (an altered wrapped key) or needs no
// Vault binary. It answers as transit does what NewVault, Seal, Open and
// Rewrap ask: token lookup-self (a token that does not expire), the
// signing key (ed25519), data keys, and decrypt and rewrap of the data keys
// it made. Any other ciphertext fails as transit fails an altered one: 400,
// "cipher: message authentication failed" (for rewrap, in batch_results).
// It records every request it gets.
type fakeTransit struct {
	*httptest.Server

	signing ed25519.PublicKey
	// signRefusal, when set, is the error transit gives each item of a
	// signing batch (in batch_results, with a 400 and no "errors");
	// unset, signing is not answered (404).
	signRefusal string
	mu          sync.Mutex
	keys        map[string][]byte // wrapped data key → plaintext
	reqs        []fakeRequest
}

// fakeRequest is what fakeTransit records of a request.
type fakeRequest struct {
	method, path string
	header       http.Header
	// clientCert is the common name of the client certificate presented,
	// empty for none.
	clientCert string
}

// newFakeTransit starts a fake Vault, over TLS (asking for a client
// certificate, which it records) when tlsOn is set, and stops it at the
// end of the test.
func newFakeTransit(t *testing.T, tlsOn bool) *fakeTransit {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeTransit{signing: pub, keys: map[string][]byte{}}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests want
	if tlsOn {
		f.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
		f.StartTLS()
	} else {
		f.Start()
	}
	t.Cleanup(f.Close)
	return f
}

// config returns a config logging in to f with a token file.
func (f *fakeTransit) config(t *testing.T) VaultConfig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("fake-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return VaultConfig{Address: f.URL, Auth: VaultAuth{TokenFile: path}, Timeout: 5 * time.Second, MaxRetries: -1}
}

// caFile writes f's (self-signed) certificate as a PEM file and returns its path.
func (f *fakeTransit) caFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vault-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// requests returns the requests f got so far.
func (f *fakeTransit) requests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.reqs...)
}

func (f *fakeTransit) serve(w http.ResponseWriter, r *http.Request) {
	rec := fakeRequest{method: r.Method, path: r.URL.Path, header: r.Header.Clone()}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		rec.clientCert = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, rec)
	var body struct {
		Ciphertext string `json:"ciphertext"`
		BatchInput []struct {
			Ciphertext string `json:"ciphertext"`
		} `json:"batch_input"`
	}
	raw, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(raw, &body)
	const authFailed = "cipher: message authentication failed"
	switch strings.TrimPrefix(r.URL.Path, "/v1/") {
	case "auth/token/lookup-self":
		fakeAnswer(w, http.StatusOK, map[string]any{"data": map[string]any{"ttl": 0, "renewable": false}})
	case "transit/keys/" + DefaultSigningKey:
		fakeAnswer(w, http.StatusOK, map[string]any{"data": map[string]any{
			"type": "ed25519", "latest_version": 1, "min_decryption_version": 1,
			"keys": map[string]any{"1": map[string]any{"public_key": base64.StdEncoding.EncodeToString(f.signing)}},
		}})
	case "transit/datakey/plaintext/" + DefaultEncryptionKey:
		key, nonce := make([]byte, dataKeySize), make([]byte, 12)
		rand.Read(key)
		rand.Read(nonce)
		wrapped := "vault:v1:" + base64.StdEncoding.EncodeToString(nonce)
		f.keys[wrapped] = key
		fakeAnswer(w, http.StatusOK, map[string]any{"data": map[string]any{"ciphertext": wrapped, "plaintext": base64.StdEncoding.EncodeToString(key)}})
	case "transit/decrypt/" + DefaultEncryptionKey:
		key, ok := f.keys[body.Ciphertext]
		if !ok {
			fakeAnswer(w, http.StatusBadRequest, map[string]any{"errors": []string{authFailed}})
			return
		}
		fakeAnswer(w, http.StatusOK, map[string]any{"data": map[string]any{"plaintext": base64.StdEncoding.EncodeToString(key)}})
	case "transit/rewrap/" + DefaultEncryptionKey:
		// As transit: one failed item makes the answer a 400, with the
		// items' errors in batch_results and no "errors".
		status, results := http.StatusOK, []map[string]any{}
		for _, in := range body.BatchInput {
			if _, ok := f.keys[in.Ciphertext]; !ok {
				status = http.StatusBadRequest
				results = append(results, map[string]any{"error": authFailed})
				continue
			}
			results = append(results, map[string]any{"ciphertext": in.Ciphertext, "key_version": 1})
		}
		fakeAnswer(w, status, map[string]any{"data": map[string]any{"batch_results": results}})
	case "transit/sign/" + DefaultSigningKey:
		if f.signRefusal == "" {
			fakeAnswer(w, http.StatusNotFound, map[string]any{"errors": []string{}})
			return
		}
		var sign struct {
			BatchInput []json.RawMessage `json:"batch_input"`
		}
		_ = json.Unmarshal(raw, &sign)
		results := make([]map[string]any, len(sign.BatchInput))
		for i := range results {
			results[i] = map[string]any{"error": f.signRefusal}
		}
		fakeAnswer(w, http.StatusBadRequest, map[string]any{"data": map[string]any{"batch_results": results}})
	default:
		fakeAnswer(w, http.StatusNotFound, map[string]any{"errors": []string{}})
	}
}

func fakeAnswer(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// clientCertFiles writes a self-signed client certificate with the common
// name cn and its key as PEM files and returns their paths.
func clientCertFiles(t *testing.T, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
