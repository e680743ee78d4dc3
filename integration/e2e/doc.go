// Package e2e holds Clearance's end-to-end tests: brokers on embedded NATS
// servers, the real Vault dev server (integration/vaulttest), PostgreSQL and
// an httptest partner that holds its private key and reads what it is sent
// with the broker's published JWK set. The package has no non-test code
// besides this comment.
package e2e
