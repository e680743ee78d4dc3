// Package faults holds Clearance's fault-injection suite: a producer sends
// transfer requests over NATS while the harness kills a `clearance serve`
// process with SIGKILL and restarts it, cuts the network to Vault, restarts
// the NATS server and stops a private Postgres. Afterwards it checks that
// every request has exactly one final outcome in the audit log, that every
// allowed transfer reached its recipient and was applied once, that no
// delivery precedes its decision, that the audit chain verifies, that
// nothing left unsealed, and that planted personal values (canaries) appear
// in no log line, metric, dead letter, audit row or captured wire byte.
//
// The default run is short (2,000 requests, one fault of each kind); set
// CLEARANCE_LONG=1 or pass -long for 20,000 requests and three rounds of
// faults. Everything it starts is its own: a Vault dev server, an embedded
// NATS server on a fixed port, and a Postgres cluster in a temporary
// directory on its own port; the machine's shared services are not touched.
package faults
