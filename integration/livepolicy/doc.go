// Package livepolicy holds the end-to-end tests of the live registry and of
// data-subject rights: instances on a shared JetStream stream, registry
// store and audit log (PostgreSQL), changes made on one instance stopping
// transfers on all of them, erasure notices and crypto-shredding.
package livepolicy
