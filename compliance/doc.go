// Package compliance is what compliance officers and data-protection teams
// use: the /v1 compliance API (audit search and export, one subject's
// recipients, the registry with agreement version history, the Art. 30
// records of processing, the what-if of a proposed registry) and the web
// console that presents the same answers in a browser.
//
// Everything but the health checks, the issuer's JWKS, the console's sign-in
// page and its static assets needs a bearer JWT. Authenticator verifies it
// against a configured issuer's JWKS (issuer, audience, expiry with clock
// skew, keys refetched on an unknown key id) and reads the caller's Role
// (viewer < officer < admin) from a configurable claim. DevIssuer is the
// built-in issuer of `clearance dev`, whose key `clearance token` shares.
//
// New builds a Server from Options; Server.Handler serves only the
// compliance routes and Server.Mount adds them to an existing mux next to the
// broker's routes. The package reads the audit log through the small
// AuditLog interface and, for the aggregates of the overview, the records of
// processing and the version history, the audit store's SQL database
// directly (read only). The registry comes from a RegistrySource, such as the
// broker's *agreements.Engine.
//
// The what-if re-decides past transfers from the audit entries' metadata
// (recipient, purpose, dataset, origin, categories, removed fields, subject
// HMAC): the audit log never holds the records themselves, so the record of
// each transfer is reconstructed from its categories and removed fields, a
// subject is recognised only when the subject HMAC key is configured and the
// subject appears in a registry (consents, legal orders, erasures), and
// whether the subject was a minor is not recorded (taken as false). WhatIf's
// result states these limits.
package compliance
