// Package keys seals, opens and signs the payloads Clearance moves, with keys
// that HashiCorp Vault's transit engine manages (*Vault), or, for `clearance
// dev` only, with a local file-based key ring (*DevKeyRing). Both have the
// same methods: Seal, Open, Sign, Verify, SealFor, JWKS and KeyRef; the
// broker and the audit log declare the small interfaces they consume.
//
// # Sealed format
//
// Seal returns a compact JWE (RFC 7516) with alg "dir" and enc "A256GCM": a
// fresh random 96-bit nonce per message under a data key, and in the
// protected header "kref" (the wrapping key and its version, e.g.
// "transit:clearance-data:v3") and "wk" (the data key wrapped by transit,
// "vault:v3:..."). Any JOSE library can parse it; given the data key it can
// decrypt it.
//
// # Envelope encryption
//
// A data key comes from transit/datakey/plaintext/<encryption_key> and seals
// up to data_key_max_uses messages (at most 2^32, the AES-GCM bound for
// random nonces) for at most data_key_max_age; then the next Seal asks for a
// new one. At steady state that is one Vault round trip per data key, not
// per message. Open unwraps a data key through transit/decrypt once and
// keeps it (open_cache_size keys for open_cache_ttl). RoundTrips counts every
// request to Vault.
//
// Rotating the encryption key (transit/keys/<key>/rotate) needs no restart:
// new data keys come from the new version within data_key_max_age; messages
// under older versions still open. Raising min_decryption_version retires
// old versions: Open then fails with ErrKeyRetired once the unwrapped key
// has left the cache (within open_cache_ttl). Rewrap moves stored messages
// to the latest version with transit/rewrap, without exposing them.
//
// # Signing
//
// Sign makes compact JWS with a transit key of type ecdsa-p256 (ES256,
// marshaling_algorithm=jws) or ed25519 (EdDSA), sign_batch_size payloads
// per transit/sign request (batch_input). The kid is
// "<signing_key>:v<version>". JWKS lists the public keys of all versions
// from min_decryption_version to latest, so partners verify with any JOSE
// library. SealFor nests such a JWS in a JWE to a party's public JWK
// (ECDH-ES+A256KW for EC and X25519 keys, RSA-OAEP-256 for RSA).
//
// # Failing closed
//
// When Vault cannot give a key (sealed, unreachable, timing out, rate
// limiting) the methods return an error matching ErrUnavailable and nothing
// is sealed, opened or signed with anything else; the broker retries later.
// ErrPermissionDenied means the token's policy is missing a capability;
// ErrUntrustedServer that Vault's certificate does not verify (tls.ca_file,
// tls.server_name); ErrKeyRetired that a key version has been retired.
// Error messages never contain payloads.
//
// # Setting up Vault
//
// Clearance needs the transit engine, an encryption key and a signing key:
//
//	vault secrets enable transit
//	vault write -f transit/keys/clearance-data type=aes256-gcm96
//	vault write -f transit/keys/clearance-signing type=ecdsa-p256   # or ed25519
//	vault policy write clearance deploy/vault/clearance-policy.hcl
//
// and a token with that policy: a periodic or renewable token
// (auth.token_env or auth.token_file, e.g. from Vault Agent), or AppRole:
//
//	vault auth enable approle
//	vault write auth/approle/role/clearance token_policies=clearance token_ttl=1h token_max_ttl=24h
//	vault read -field=role_id auth/approle/role/clearance/role-id
//	vault write -f -field=secret_id auth/approle/role/clearance/secret-id > /run/secrets/vault-secret-id
//
// Renewable tokens are renewed with renew-self; when renewal fails or the
// token can be renewed no further, the renewer tries again (auth.go): a
// token is read again from its file or variable, an AppRole token is
// replaced by logging in again. A call Vault refuses (ErrPermissionDenied)
// makes the renewer do the same at once if Vault no longer knows the token
// (revoked, its uses spent, Vault restored from a snapshot), at most every
// few seconds, so that a policy lacking a path costs Vault little.
// Operators rotate with
// `vault write -f transit/keys/<key>/rotate` and retire versions with
// `vault write transit/keys/<key>/config min_decryption_version=N`.
package keys
