// Package webhook delivers sealed payloads to partners over HTTPS: a POST of
// the compact JWE the broker made, with Content-Type application/jose, an
// Idempotency-Key header holding the request id and an X-Clearance-Kind
// header telling the partner what the payload is.
//
// Each recipient has its endpoint (Config.URLs, else Config.DefaultURL). The
// partner's answer decides what the broker does: 2xx is delivered; 408, 429
// and 5xx are transient, with Retry-After (seconds or an HTTP date) surfaced
// as *connectors.RetryAfterError; any other status is permanent and wraps
// connectors.ErrPermanent. Network and TLS errors are transient.
//
// One http.Transport is shared by all deliveries of a connector so that
// connections to a partner are reused; optional mutual TLS presents a client
// certificate. Kind returns the connectors.Kind to put in the broker's
// registry.
package webhook
