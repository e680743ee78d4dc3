package keys

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// Vault seals, opens and signs with keys held in HashiCorp Vault's transit
// engine. Sealing uses envelope encryption: a data key from
// transit/datakey/plaintext/<encryption_key> seals many messages (bounded by
// data_key_max_uses and data_key_max_age) and travels wrapped in each
// message; opening unwraps it through transit/decrypt once and caches it.
// Signing batches payloads into transit/sign requests. All methods are safe
// for concurrent use; those that may call Vault block for at most the
// configured timeout and return an error matching ErrUnavailable when Vault
// is sealed, unreachable or slow, ErrPermissionDenied when its policy refuses.
type Vault struct {
	cfg    VaultConfig
	keyRef string
	client *vault.Client
	log    *slog.Logger
	trips  atomic.Uint64

	env     *envelope
	sign    *transitSigner
	auth    *authRenewer
	batcher *signBatcher
	// readyWithin is Ready's bound on the age of the last read of the
	// signing key (readyWithin; shorter in tests).
	readyWithin time.Duration

	closeOnce sync.Once
}

// NewVault validates cfg, connects and logs in to Vault, starts token
// renewal, reads the signing key and takes the first data key. It fails if
// Vault is unreachable (ErrUnavailable), the credentials are refused
// (ErrPermissionDenied), the signing key is missing or of an unsupported
// type, or the encryption key makes no data key; the error names the
// configuration key at fault. Close stops renewal.
func NewVault(ctx context.Context, cfg VaultConfig, logger *slog.Logger) (*Vault, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v := &Vault{cfg: cfg, keyRef: cfg.Mount + ":" + cfg.EncryptionKey, log: logger.With("component", "keys")}
	client, err := v.newClient()
	if err != nil {
		return nil, err
	}
	v.client = client
	v.env = newEnvelope(transitSource{v}, cfg.DataKeyMaxUses, cfg.DataKeyMaxAge, cfg.OpenCacheSize, cfg.OpenCacheTTL)
	v.sign = &transitSigner{v: v}
	v.readyWithin = readyWithin
	auth, err := startAuth(ctx, v)
	if err != nil {
		return nil, err
	}
	v.auth = auth
	if _, err := v.sign.info(ctx, true); err != nil {
		v.auth.stop()
		return nil, fmt.Errorf("vault.signing_key %q (mount %q): %w", cfg.SigningKey, cfg.Mount, err)
	}
	// The first data key now, which the first seals then use: a missing
	// encryption key, one of a type that makes no data keys, or a policy
	// without transit/datakey fails the start here instead of every transfer
	// that needs sealing while the instance reports itself ready.
	if _, err := v.env.current(ctx); err != nil {
		v.auth.stop()
		return nil, fmt.Errorf("vault.encryption_key %q (mount %q): %w", cfg.EncryptionKey, cfg.Mount, err)
	}
	v.batcher = startSignBatcher(cfg.SignBatchSize, cfg.Timeout, v.signDirect)
	v.log.Info("vault key service ready", "encryption_key", v.KeyRef(), "signing_key", cfg.SigningKey)
	return v, nil
}

// newClient builds the Vault client from the configuration alone. The
// client library's defaults (vault.DefaultConfig) read VAULT_* environment
// variables: VAULT_SKIP_VERIFY would turn certificate checks off,
// VAULT_AGENT_ADDR or VAULT_PROXY_ADDR send the token elsewhere,
// VAULT_CACERT trust another CA. So the client starts from a transport built
// here, and what vault.NewClient (and Clone) still take from the
// environment is reset (resetFromEnv). A VAULT_* variable the library
// cannot parse still fails the build of the client: vault.NewClient reads
// its defaults whatever it is given.
func (v *Vault) newClient() (*vault.Client, error) {
	transport := &http.Transport{
		// HTTPS_PROXY and NO_PROXY, as for every other connection Clearance
		// makes; not VAULT_PROXY_ADDR or VAULT_HTTP_PROXY.
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   runtime.GOMAXPROCS(0) + 1,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	vc := &vault.Config{
		Address: v.cfg.Address,
		HttpClient: &http.Client{
			Transport: transport,
			// The client follows a standby's redirect itself, once.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Timeout:      v.cfg.Timeout,
		MaxRetries:   max(v.cfg.MaxRetries, 0),
		MinRetryWait: time.Second,
		MaxRetryWait: 1500 * time.Millisecond,
		// The library's default backoff, which heeds Retry-After on 429.
		Backoff: vault.DefaultConfig().Backoff,
	}
	t := v.cfg.TLS
	if err := vc.ConfigureTLS(&vault.TLSConfig{
		CACert: t.CAFile, ClientCert: t.ClientCertFile, ClientKey: t.ClientKeyFile,
		TLSServerName: t.ServerName, Insecure: t.InsecureSkipVerify,
	}); err != nil {
		return nil, newError("vault tls", nil, err)
	}
	vc.HttpClient.Transport = &countingTransport{base: transport, n: &v.trips}
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, newError("vault client", nil, err)
	}
	v.resetFromEnv(client)
	// Every answer is read while its request lasts (bufferBody): made
	// here, before the client is shared, since the library's shallow
	// copy is not safe beside a token being set.
	return client.WithResponseCallbacks(bufferBody), nil
}

// resetFromEnv undoes what vault.NewClient takes from the environment
// whatever its configuration says: the token (VAULT_TOKEN), the namespace
// (VAULT_NAMESPACE) and extra headers (VAULT_HEADERS). The client is left
// with no token, the configured namespace and no other header than the one
// every Vault request carries. Clone calls NewClient again: a clone is
// reset too.
func (v *Vault) resetFromEnv(c *vault.Client) {
	c.ClearToken()
	c.SetHeaders(http.Header{vault.RequestHeaderName: []string{"true"}})
	if v.cfg.Namespace != "" {
		c.SetNamespace(v.cfg.Namespace)
	}
}

// countingTransport counts HTTP round trips to Vault, retries included.
type countingTransport struct {
	base http.RoundTripper
	n    *atomic.Uint64
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.base.RoundTrip(r)
}

// RoundTrips returns the number of HTTP requests sent to Vault since
// NewVault, including logins, renewals and retries. The broker exports it as
// a metric; it is the measure of how well data keys and batching work.
func (v *Vault) RoundTrips() uint64 { return v.trips.Load() }

// KeyRef names the encryption key for the audit log: "<mount>:<key>", e.g.
// "transit:clearance-data". Sealed messages carry it with the key version.
func (v *Vault) KeyRef() string { return v.keyRef }

// Seal encrypts plaintext into a compact JWE (alg dir, enc A256GCM) under a
// cached data key, asking Vault for a new data key only when the cached one
// is spent or too old. If Vault cannot give one, Seal returns an error
// matching ErrUnavailable and nothing is sealed.
func (v *Vault) Seal(ctx context.Context, plaintext []byte) ([]byte, error) {
	return v.env.seal(ctx, plaintext)
}

// SealAppend is Seal appending the message to dst, so that a caller can
// reuse its buffers.
func (v *Vault) SealAppend(ctx context.Context, dst, plaintext []byte) ([]byte, error) {
	return v.env.sealAppend(ctx, dst, plaintext)
}

// Open decrypts a message sealed by Seal on any instance sharing the
// encryption key. Errors: ErrMalformed, ErrNotAuthentic (altered message),
// ErrKeyRetired (version below min_decryption_version), ErrUnavailable.
func (v *Vault) Open(ctx context.Context, sealed []byte) ([]byte, error) {
	return v.env.open(ctx, sealed)
}

// Close stops token renewal and the signing worker, waiting for both. It
// is idempotent; the Vault must not be used afterwards.
func (v *Vault) Close(ctx context.Context) error {
	v.closeOnce.Do(func() {
		v.batcher.stop()
		v.auth.stop()
	})
	return nil
}

func (v *Vault) path(op, key string) string {
	return v.cfg.Mount + "/" + op + "/" + key
}

// write sends a transit request and classifies failures.
func (v *Vault) write(ctx context.Context, op, path string, body map[string]any) (*vault.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	s, err := v.client.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		return nil, v.failed(op, err)
	}
	if s == nil || s.Data == nil {
		return nil, newError(op, nil, errors.New("vault returned no data"))
	}
	return s, nil
}

// writeBatch is write for a request with batch_input (sign, rewrap).
// Transit answers a batch in which an item failed with 400 and the items'
// errors in batch_results, where the client library sees an error without
// a message: writeBatch returns such an answer as a secret, for the caller
// to classify each item's error.
func (v *Vault) writeBatch(ctx context.Context, op, path string, body map[string]any) (*vault.Secret, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, newError(op, nil, err)
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	// WriteRaw ends the request's context (the client's timeout) before it
	// returns: the body is readable after it since the client reads every
	// answer while its request lasts (bufferBody, newClient).
	resp, err := v.client.Logical().WriteRawWithContext(ctx, path, data)
	if resp != nil {
		defer resp.Body.Close()
	}
	var re *vault.ResponseError
	if err != nil && (resp == nil || !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest || len(re.Errors) > 0) {
		return nil, v.failed(op, err)
	}
	s, perr := vault.ParseSecret(resp.Body)
	if err != nil && (perr != nil || !batchItemFailed(s)) {
		return nil, v.failed(op, err)
	}
	if perr != nil {
		return nil, newError(op, nil, fmt.Errorf("unexpected response: %w", perr))
	}
	if s == nil || s.Data == nil {
		return nil, newError(op, nil, errors.New("vault returned no data"))
	}
	return s, nil
}

// bufferBody reads a response's body whole while its request lasts, and
// leaves it readable from memory: the client's callback on every answer
// (Vault's answers are small JSON documents the library reads whole).
func bufferBody(r *vault.Response) {
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		r.Body = io.NopCloser(errReader{err})
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// batchItemFailed reports whether an item of s's batch_results carries an
// error.
func batchItemFailed(s *vault.Secret) bool {
	if s == nil {
		return false
	}
	results, _ := s.Data["batch_results"].([]any)
	for _, r := range results {
		if m, _ := r.(map[string]any); m != nil {
			if e, _ := m["error"].(string); e != "" {
				return true
			}
		}
	}
	return false
}

func (v *Vault) read(ctx context.Context, op, path string) (*vault.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	s, err := v.client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, v.failed(op, err)
	}
	if s == nil || s.Data == nil {
		return nil, newError(op, nil, fmt.Errorf("%s: not found", path))
	}
	return s, nil
}

// failed classifies the error of a call made with the token in use and,
// when Vault refused it (ErrPermissionDenied), tells the renewer, which
// replaces the token at once if Vault no longer knows it.
func (v *Vault) failed(op string, err error) error {
	err = classify(op, err)
	if errors.Is(err, ErrPermissionDenied) {
		v.auth.refused()
	}
	return err
}

// classify maps a Vault client error to an error class.
func classify(op string, err error) error {
	var item *vaultItemError
	if errors.As(err, &item) {
		switch {
		case strings.Contains(item.msg, "disallowed by policy"):
			return newError(op, ErrKeyRetired, err)
		case badCiphertext(item.msg):
			return newError(op, ErrNotAuthentic, err)
		}
		return newError(op, nil, err)
	}
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) {
		// A certificate Clearance does not trust is a configuration
		// problem (tls.ca_file, tls.server_name), not an outage.
		return newError(op, ErrUntrustedServer, err)
	}
	var re *vault.ResponseError
	if !errors.As(err, &re) {
		// Transport errors: refused, reset, DNS, TLS handshake, timeouts.
		return newError(op, ErrUnavailable, err)
	}
	msg := strings.Join(re.Errors, "; ")
	cause := &statusError{re: re, msg: msg}
	switch {
	case re.StatusCode == http.StatusForbidden:
		return newError(op, ErrPermissionDenied, cause)
	case strings.Contains(msg, "disallowed by policy"), strings.Contains(msg, "too old"):
		return newError(op, ErrKeyRetired, cause)
	case re.StatusCode == http.StatusBadRequest && badCiphertext(msg):
		return newError(op, ErrNotAuthentic, cause)
	case re.StatusCode == http.StatusTooManyRequests, re.StatusCode == http.StatusPreconditionFailed, re.StatusCode >= 500:
		return newError(op, ErrUnavailable, cause)
	default:
		return newError(op, nil, cause)
	}
}

// badCiphertext reports whether transit's error message says that a
// ciphertext given to decrypt or rewrap (a message's wrapped data key) is
// not one the key made: it does not authenticate ("cipher: message
// authentication failed") or does not parse ("invalid ciphertext: no
// prefix", "invalid ciphertext: could not decode base64", "invalid
// ciphertext length", ...). Such a message was altered or sealed under
// another key; no retry opens it. "invalid ciphertext: version is too new"
// is left out: a Vault node that has not yet seen a rotation (a replica)
// says it of a good message. Errors about the request itself ("missing
// ciphertext to decrypt") or the key ("encryption key not found") are not
// matched.
func badCiphertext(msg string) bool {
	if strings.Contains(msg, "version is too new") {
		return false
	}
	return strings.Contains(msg, "message authentication failed") || strings.Contains(msg, "invalid ciphertext")
}

// transitSource makes data keys with transit.
type transitSource struct{ v *Vault }

func (s transitSource) keyRef() string { return s.v.KeyRef() }

func (s transitSource) newDataKey(ctx context.Context) ([]byte, string, int, error) {
	v := s.v
	sec, err := v.write(ctx, "transit datakey", v.path("datakey/plaintext", v.cfg.EncryptionKey), map[string]any{"bits": 256})
	if err != nil {
		return nil, "", 0, err
	}
	wrapped, _ := sec.Data["ciphertext"].(string)
	plainB64, _ := sec.Data["plaintext"].(string)
	plain, err := base64.StdEncoding.DecodeString(plainB64)
	if err != nil || wrapped == "" {
		return nil, "", 0, newError("transit datakey", nil, errors.New("unexpected response"))
	}
	version, ok := wrappedVersion(wrapped)
	if !ok {
		return nil, "", 0, newError("transit datakey", nil, errors.New("unexpected ciphertext format"))
	}
	return plain, wrapped, version, nil
}

func (s transitSource) unwrap(ctx context.Context, wrapped string) ([]byte, error) {
	v := s.v
	sec, err := v.write(ctx, "transit decrypt", v.path("decrypt", v.cfg.EncryptionKey), map[string]any{"ciphertext": wrapped})
	if err != nil {
		return nil, err
	}
	plainB64, _ := sec.Data["plaintext"].(string)
	plain, err := base64.StdEncoding.DecodeString(plainB64)
	if err != nil {
		return nil, newError("transit decrypt", nil, errors.New("unexpected response"))
	}
	return plain, nil
}

// statusError is a Vault response error with a short message (status and
// Vault's error strings, without the request URL).
type statusError struct {
	re  *vault.ResponseError
	msg string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("vault status %d: %s", e.re.StatusCode, e.msg)
}

func (e *statusError) Unwrap() error { return e.re }
