package natsregion

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/clearance-broker/clearance/connectors"
)

// Config is the configuration of one natsregion connector. Secrets are given
// by file reference only.
type Config struct {
	// URLs are the remote region's NATS servers (nats://, tls://).
	URLs []string `yaml:"urls" json:"urls"`
	// CredsFile is a NATS credentials file (user JWT and NKey seed).
	CredsFile string `yaml:"creds_file" json:"creds_file"`
	// NKeySeedFile is a file holding an NKey user seed; exclusive with
	// CredsFile.
	NKeySeedFile string `yaml:"nkey_seed_file" json:"nkey_seed_file"`
	// TLS holds the CA used to verify the servers and an optional client
	// certificate.
	TLS TLSConfig `yaml:"tls" json:"tls"`
	// SubjectPrefix: deliveries go to <subject_prefix>.<recipient>.
	// Default "clearance.region".
	SubjectPrefix string `yaml:"subject_prefix" json:"subject_prefix"`
	// Stream, when set, is the remote stream every publish must land in
	// (Nats-Expected-Stream).
	Stream string `yaml:"stream" json:"stream"`
	// EnsureStream creates Stream (file storage, subjects
	// <subject_prefix>.>) at start when it does not exist.
	EnsureStream bool `yaml:"ensure_stream" json:"ensure_stream"`
	// Replicas of the ensured stream. Default 1.
	Replicas int `yaml:"replicas" json:"replicas"`
	// DuplicateWindow of the ensured stream. Default 2m.
	DuplicateWindow connectors.Duration `yaml:"duplicate_window" json:"duplicate_window"`
	// AckTimeout bounds the wait for the stream's acknowledgement when the
	// caller's context has no earlier deadline. Default 5s.
	AckTimeout connectors.Duration `yaml:"ack_timeout" json:"ack_timeout"`
	// ConnectTimeout bounds the first connection. Default 5s.
	ConnectTimeout connectors.Duration `yaml:"connect_timeout" json:"connect_timeout"`
	// ReconnectWait is the pause between reconnection attempts. Default 2s.
	ReconnectWait connectors.Duration `yaml:"reconnect_wait" json:"reconnect_wait"`
	// NoResponderRetries is how often a publish that no stream answered is
	// retried within one delivery (leader elections). Default 2.
	NoResponderRetries int `yaml:"no_responder_retries" json:"no_responder_retries"`
	// FullRetryAfter is the wait asked of the broker when the remote stream
	// is full. Default 30s.
	FullRetryAfter connectors.Duration `yaml:"full_retry_after" json:"full_retry_after"`
}

// TLSConfig names PEM files for TLS to the remote servers.
type TLSConfig struct {
	// CAFile holds the CA certificates the servers are verified against.
	CAFile string `yaml:"ca_file" json:"ca_file"`
	// CertFile and KeyFile hold a client certificate; both or neither.
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
}

// DefaultConfig returns a Config holding the defaults.
func DefaultConfig() *Config {
	return &Config{
		SubjectPrefix:      DefaultSubjectPrefix,
		Replicas:           1,
		DuplicateWindow:    connectors.Duration(2 * time.Minute),
		AckTimeout:         connectors.Duration(5 * time.Second),
		ConnectTimeout:     connectors.Duration(5 * time.Second),
		ReconnectWait:      connectors.Duration(2 * time.Second),
		NoResponderRetries: 2,
		FullRetryAfter:     connectors.Duration(30 * time.Second),
	}
}

// Validate reports every problem of c at once, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("urls: at least one server is required"))
	}
	for i, raw := range c.URLs {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("urls[%d]: not a URL", i))
		case u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss":
			errs = append(errs, fmt.Errorf("urls[%d]: scheme %q: want nats, tls, ws or wss", i, u.Scheme))
		case u.User != nil:
			errs = append(errs, fmt.Errorf("urls[%d]: credentials in the URL are not allowed; use creds_file or nkey_seed_file", i))
		}
	}
	if c.CredsFile != "" && c.NKeySeedFile != "" {
		errs = append(errs, errors.New("creds_file and nkey_seed_file: give one, not both"))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls.cert_file and tls.key_file: give both or neither"))
	}
	if err := CheckPrefix(c.SubjectPrefix); err != nil {
		errs = append(errs, fmt.Errorf("subject_prefix: %w", err))
	}
	if strings.ContainsAny(c.Stream, ".*> \t\r\n/\\") {
		errs = append(errs, errors.New("stream: a name without dots, wildcards, slashes or spaces"))
	}
	if c.EnsureStream && c.Stream == "" {
		errs = append(errs, errors.New("ensure_stream: needs stream"))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, errors.New("replicas: must be 1 to 5"))
	}
	for _, d := range []struct {
		key string
		v   connectors.Duration
	}{
		{"duplicate_window", c.DuplicateWindow},
		{"ack_timeout", c.AckTimeout},
		{"connect_timeout", c.ConnectTimeout},
		{"reconnect_wait", c.ReconnectWait},
		{"full_retry_after", c.FullRetryAfter},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", d.key))
		}
	}
	if c.NoResponderRetries < 0 {
		errs = append(errs, errors.New("no_responder_retries: must not be negative"))
	}
	return errors.Join(errs...)
}
