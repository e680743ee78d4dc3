// Package vaulttest starts a real HashiCorp Vault dev server for tests: on a
// free local port, with a random root token and the transit engine enabled,
// stopped when the test ends. Tests that claim to test Vault use it instead
// of a mock. Launch is the same server for a program (the load harness): a
// Process the caller stops, and errors instead of test failures.
//
// The Vault binary is built from github.com/hashicorp/vault (the
// integration/vaultdev module) by scripts/vault-binary.sh and cached; the
// helper finds it through CLEARANCE_VAULT_BIN (the Makefile sets it) or in
// the user cache directory, and fails the test with instructions when it is
// missing.
package vaulttest
