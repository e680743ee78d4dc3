package samplepartner

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sync"

	"github.com/clearance-broker/clearance/agreements"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Key is a partner's key pair: the private key decrypts deliveries; the
// public JWK goes into the registry as the party's public_key.
type Key struct {
	private jwk.Key
	// PublicJWK is the JSON of the public JWK.
	PublicJWK []byte
}

// NewKey generates a P-256 key pair with the given key id.
func NewKey(kid string) (*Key, error) {
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("samplepartner: generate key: %w", err)
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, fmt.Errorf("samplepartner: key: %w", err)
	}
	if err := priv.Set(jwk.KeyIDKey, kid); err != nil {
		return nil, fmt.Errorf("samplepartner: key id: %w", err)
	}
	return fromPrivate(priv)
}

// LoadOrCreateKey reads the private JWK at path, or generates a key with
// the given key id and saves it there (mode 0600), so that a partner keeps
// its key across restarts.
func LoadOrCreateKey(path, kid string) (*Key, error) {
	if b, err := os.ReadFile(path); err == nil {
		priv, err := jwk.ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("samplepartner: key file %s: %w", path, err)
		}
		return fromPrivate(priv)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("samplepartner: %w", err)
	}
	k, err := NewKey(kid)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(k.private)
	if err != nil {
		return nil, fmt.Errorf("samplepartner: key: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("samplepartner: %w", err)
	}
	return k, nil
}

func fromPrivate(priv jwk.Key) (*Key, error) {
	pub, err := priv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("samplepartner: public key: %w", err)
	}
	pubJSON, err := json.Marshal(pub)
	if err != nil {
		return nil, fmt.Errorf("samplepartner: public key: %w", err)
	}
	return &Key{private: priv, PublicJWK: pubJSON}, nil
}

// Decrypt opens a compact JWE addressed to k and returns its plaintext (the
// broker's compact JWS).
func (k *Key) Decrypt(compact []byte) ([]byte, error) {
	msg, err := jwe.Parse(compact)
	if err != nil {
		return nil, fmt.Errorf("samplepartner: parse jwe: %w", err)
	}
	alg := jwa.ECDH_ES_A256KW
	if len(msg.Recipients()) > 0 {
		alg = msg.Recipients()[0].Headers().Algorithm()
	}
	plain, err := jwe.Decrypt(compact, jwe.WithKey(alg, k.private))
	if err != nil {
		return nil, fmt.Errorf("samplepartner: decrypt: %w", err)
	}
	return plain, nil
}

// JWKSFunc returns the broker's JSON JWK set (fetched over HTTP from
// /.well-known/jwks.json, or taken from the key service in tests).
type JWKSFunc func(ctx context.Context) ([]byte, error)

// FromURL fetches the JWK set from url on every call.
func FromURL(client *http.Client, url string) JWKSFunc {
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("samplepartner: fetch jwks: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("samplepartner: fetch jwks: status %d", resp.StatusCode)
		}
		return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}
}

// Open decrypts a delivery body and verifies the inner signature against the
// JWK set, returning the signed payload (JSON).
func (k *Key) Open(ctx context.Context, body []byte, jwks JWKSFunc) ([]byte, error) {
	signed, err := k.Decrypt(body)
	if err != nil {
		return nil, err
	}
	setJSON, err := jwks(ctx)
	if err != nil {
		return nil, err
	}
	set, err := jwk.Parse(setJSON)
	if err != nil {
		return nil, fmt.Errorf("samplepartner: parse jwks: %w", err)
	}
	payload, err := jws.Verify(signed, jws.WithKeySet(set, jws.WithInferAlgorithmFromKey(true), jws.WithRequireKid(false)))
	if err != nil {
		return nil, fmt.Errorf("samplepartner: verify signature: %w", err)
	}
	return payload, nil
}

// Received is one delivery as the partner saw it.
type Received struct {
	// IdempotencyKey is the Idempotency-Key header (the request id).
	IdempotencyKey string
	// Body is the sealed body as it travelled.
	Body []byte
	// Payload is the verified, decrypted payload (JSON).
	Payload []byte
}

// Handler is an http.Handler accepting deliveries. Status, when set, chooses
// the response status for each delivery before it is opened (to simulate an
// outage); otherwise deliveries that open and verify get 200 and others 400.
// OnReceive is called once per accepted delivery; repeated deliveries of one
// Idempotency-Key are acknowledged but not passed on again.
type Handler struct {
	Key       *Key
	JWKS      JWKSFunc
	Status    func(r *http.Request) int
	OnReceive func(Received)

	mu   sync.Mutex
	seen map[string]bool
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if h.Status != nil {
		if code := h.Status(r); code != 0 && code != http.StatusOK {
			w.WriteHeader(code)
			return
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	payload, err := h.Key.Open(r.Context(), body, h.JWKS)
	if err != nil {
		http.Error(w, "cannot open delivery", http.StatusBadRequest)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	h.mu.Lock()
	if h.seen == nil {
		h.seen = map[string]bool{}
	}
	dup := key != "" && h.seen[key]
	h.seen[key] = true
	h.mu.Unlock()
	if !dup && h.OnReceive != nil {
		h.OnReceive(Received{IdempotencyKey: key, Body: body, Payload: payload})
	}
	w.WriteHeader(http.StatusOK)
}

// WithPartyKey returns a registry like reg in which every party that has a
// public key (a webhook party) has pub instead, so that one sample partner
// can read what is sent to any of them.
func WithPartyKey(reg *agreements.Registry, pub []byte) (*agreements.Registry, error) {
	return WithKeyFor(reg, pub, func(p agreements.Party) bool { return len(p.PublicKey) > 0 })
}

// WithKeyFor returns a registry like reg in which every party that pick
// selects has the public key pub.
func WithKeyFor(reg *agreements.Registry, pub []byte, pick func(agreements.Party) bool) (*agreements.Registry, error) {
	c := reg.Content()
	parties := make([]agreements.Party, len(c.Parties))
	for i, p := range c.Parties {
		if pick(p) {
			p.PublicKey = append(json.RawMessage(nil), pub...)
		}
		parties[i] = p
	}
	c.Parties = parties
	out, err := agreements.New(c)
	if err != nil {
		return nil, errors.Join(errors.New("samplepartner: rebuild registry"), err)
	}
	return out, nil
}

var _ http.Handler = (*Handler)(nil)
