# Vault policy for the Clearance broker: exactly what package keys uses, on
# the default key names (keys.vault.mount "transit", encryption_key
# "clearance-data", signing_key "clearance-signing"). Change the paths if you
# change those names.
#
#   vault policy write clearance deploy/vault/clearance-policy.hcl
#
# Creating, rotating and retiring keys is an operator's job and is not
# granted here.

# Envelope encryption: a fresh data key, returned wrapped and in plaintext.
path "transit/datakey/plaintext/clearance-data" {
  capabilities = ["update"]
}

# Opening: unwrap a data key carried by a sealed message.
path "transit/decrypt/clearance-data" {
  capabilities = ["update"]
}

# Moving stored sealed messages to the latest key version.
path "transit/rewrap/clearance-data" {
  capabilities = ["update"]
}

# Signing messages to partners and audit checkpoints (batched).
path "transit/sign/clearance-signing" {
  capabilities = ["update"]
}

# Reading the signing key's versions and public keys for JWKS and Verify.
path "transit/keys/clearance-signing" {
  capabilities = ["read"]
}

# Keeping the token alive (also in Vault's default policy).
path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
