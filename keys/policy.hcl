# Least-privilege policy for the pii-vault service token.
#
# `pii-vault init` (run once with a privileged token) enables the transit mount,
# creates the shared keys and writes this policy; the service itself runs with
# a token holding only this policy. The mount path "transit/" is rewritten when
# another mount is configured.

# Per-subject key-encryption keys: create (never exportable, never with a
# plaintext backup), read metadata, allow deletion, rotate, hard-delete.
path "transit/keys/pii-subject-*" {
  capabilities = ["create", "read", "update", "delete"]
  allowed_parameters = {
    "type"                   = ["aes256-gcm96"]
    "exportable"             = [false]
    "allow_plaintext_backup" = [false]
    "deletion_allowed"       = [true]
    # `pii-vault rotate-keys`: once every data key is rewrapped under the newest
    # version, older versions stop decrypting and are trimmed.
    "min_decryption_version" = []
    "min_encryption_version" = []
    "min_available_version"  = []
  }
}

# `pii-vault reconcile` lists the keys to find orphans (names hold subject ids only).
path "transit/keys" {
  capabilities = ["list"]
}

# Data keys are generated, unwrapped and re-wrapped under subject keys only.
path "transit/datakey/plaintext/pii-subject-*" {
  capabilities = ["update"]
}
path "transit/decrypt/pii-subject-*" {
  capabilities = ["update"]
}
path "transit/rewrap/pii-subject-*" {
  capabilities = ["update"]
}

# Blind-index HMAC (the key itself never leaves Vault).
path "transit/hmac/pii-index" {
  capabilities = ["update"]
}
path "transit/hmac/pii-index/*" {
  capabilities = ["update"]
}

# Grant MACs (principal rows, policy rules, API-key digests): the service derives its
# grant key once per process from this HMAC; the key itself never leaves Vault.
path "transit/hmac/pii-grants/*" {
  capabilities = ["update"]
}

# Audit checkpoints and deletion receipts are signed in Vault; the public key is readable.
path "transit/sign/pii-audit" {
  capabilities = ["update"]
}
path "transit/sign/pii-audit/*" {
  capabilities = ["update"]
}
path "transit/keys/pii-audit" {
  capabilities = ["read"]
}

# Audit anchors (KV v2, mount "pii-audit-anchors"): the service may create an
# anchor and read and list anchors, but never overwrite one ("update"), delete,
# destroy or undelete a version, or change metadata or the mount's settings.
# Once `pii-vault init` has pinned the log's identity, the first stanza is split
# (keys/transit_setup.py): create only under "anchors/<log id>/*", read elsewhere,
# so the service cannot start a second namespace.
path "pii-audit-anchors/data/anchors/*" {
  capabilities = ["create", "read"]
}
path "pii-audit-anchors/metadata/anchors/*" {
  capabilities = ["list", "read"]
}

# The audit log's identity (its id and genesis), written once by `pii-vault init`
# with the operator's token: the service reads it, never writes it.
path "pii-audit-anchors/data/identity" {
  capabilities = ["read"]
}
