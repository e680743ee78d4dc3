// Package brokertest starts the real parts a broker runs on, for the
// broker's own tests and the integration tests: an embedded NATS server with
// JetStream in a temporary directory, an audit log on SQLite or on a fresh
// Postgres schema, the development key ring, the example registry re-keyed to
// a sample partner, an httptest partner endpoint, and a log capture for
// checking that no personal value reaches a log line.
package brokertest
