package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"sort"

	"github.com/clearance-broker/clearance/connectors"
)

// Config is the configuration of one webhook connector. Secrets are given by
// file reference only.
type Config struct {
	// URLs maps a recipient (party id) to its endpoint.
	URLs map[string]string `yaml:"urls" json:"urls"`
	// DefaultURL receives deliveries for recipients missing from URLs.
	DefaultURL string `yaml:"default_url" json:"default_url"`
	// Timeout bounds one delivery when the caller's context has no earlier
	// deadline. Default 10s.
	Timeout connectors.Duration `yaml:"timeout" json:"timeout"`
	// MaxConnsPerHost caps the connections open to one partner host at
	// once; deliveries beyond it wait for a connection (within Timeout).
	// Default 64; 0 is no cap. Without a cap, a broker with a thousand
	// messages in flight opens a thousand TLS connections to a partner that
	// speaks HTTP/1.1, and closes all but MaxIdleConnsPerHost of them again.
	MaxConnsPerHost int `yaml:"max_conns_per_host" json:"max_conns_per_host"`
	// MaxIdleConnsPerHost is the number of idle connections kept per partner
	// host for reuse. Default 64 (as many as MaxConnsPerHost, so that none
	// is closed between bursts).
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host" json:"max_idle_conns_per_host"`
	// TLS holds the optional CA and client certificate files.
	TLS TLSConfig `yaml:"tls" json:"tls"`
	// AllowHTTP permits http:// endpoints; for local development only.
	AllowHTTP bool `yaml:"allow_http" json:"allow_http"`
}

// TLSConfig names PEM files for verifying partners and for mutual TLS.
type TLSConfig struct {
	// CAFile holds CA certificates that partner servers are verified
	// against instead of the system roots.
	CAFile string `yaml:"ca_file" json:"ca_file"`
	// CertFile and KeyFile hold the client certificate and its private key
	// presented to partners that require mutual TLS; both or neither.
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
	// ServerName overrides the name the partner certificate is checked
	// against.
	ServerName string `yaml:"server_name" json:"server_name"`
}

// DefaultConfig returns a Config holding the defaults.
func DefaultConfig() *Config {
	return &Config{
		Timeout:             connectors.Duration(defaultTimeout),
		MaxConnsPerHost:     64,
		MaxIdleConnsPerHost: 64,
	}
}

// Validate reports every problem of c at once, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	if len(c.URLs) == 0 && c.DefaultURL == "" {
		errs = append(errs, errors.New("urls or default_url: at least one endpoint is required"))
	}
	recipients := make([]string, 0, len(c.URLs))
	for r := range c.URLs {
		recipients = append(recipients, r)
	}
	sort.Strings(recipients)
	for _, r := range recipients {
		if r == "" {
			errs = append(errs, errors.New("urls: empty recipient id"))
			continue
		}
		if err := c.checkURL(c.URLs[r]); err != nil {
			errs = append(errs, fmt.Errorf("urls.%s: %w", r, err))
		}
	}
	if c.DefaultURL != "" {
		if err := c.checkURL(c.DefaultURL); err != nil {
			errs = append(errs, fmt.Errorf("default_url: %w", err))
		}
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be positive"))
	}
	if c.MaxConnsPerHost < 0 {
		errs = append(errs, errors.New("max_conns_per_host: must not be negative"))
	}
	if c.MaxIdleConnsPerHost < 0 {
		errs = append(errs, errors.New("max_idle_conns_per_host: must not be negative"))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls.cert_file and tls.key_file: give both or neither"))
	}
	return errors.Join(errs...)
}

func (c *Config) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && c.AllowHTTP:
	case u.Scheme == "http":
		return errors.New("http:// needs allow_http: true (development only)")
	default:
		return fmt.Errorf("scheme %q: want https", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	if u.User != nil {
		return errors.New("credentials in the URL are not allowed")
	}
	return nil
}
