// Package config holds the configuration of a Clearance broker: where NATS,
// the SQL store and Vault are, how the pipeline behaves, which connectors
// deliver to which targets, and what an inbound region consumes.
//
// A configuration is YAML, read strictly: a key the broker does not know is
// an error that names its path and line. Environment variables of the form
// CLEARANCE_<SECTION>_<KEY> (for example CLEARANCE_NATS_URLS or
// CLEARANCE_PIPELINE_CONCURRENCY) override scalar values after the file is
// read. Validate reports every problem at once, each with its path.
//
// Secrets never appear in the file: a SecretRef names an environment variable
// or a file that holds the secret, and Resolve reads it at start: a
// variable's value whole, a file's trimmed of surrounding white space.
package config
