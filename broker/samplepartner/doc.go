// Package samplepartner is a recipient endpoint for development and tests:
// it holds a party's private key, accepts the broker's webhook deliveries
// (a compact JWE encrypted to the party, holding a JWS signed by the broker),
// decrypts them, verifies the signature against the broker's JWK set and
// hands the payload to a callback. `clearance dev` runs one so that a
// newcomer sees what a partner receives; the integration tests use it as the
// partner that must be able to read what it was sent.
package samplepartner
