-- The vault: per-organization data keys (wrapped by the master key, which never enters the
-- database), sealed secret versions, which plugin may use which secret, and the hash-chained,
-- append-only audit log.
CREATE TABLE vault_data_keys (
  org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  version    integer NOT NULL CHECK (version >= 1),
  format     integer NOT NULL,
  master_kcv text NOT NULL,  -- check value of the master key that wrapped it
  nonce      bytea NOT NULL,
  ciphertext bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  active     boolean NOT NULL DEFAULT true,
  PRIMARY KEY (org_id, version)
);
-- New secrets are sealed under the one active data key of their organization.
CREATE UNIQUE INDEX vault_data_keys_one_active ON vault_data_keys (org_id) WHERE active;

CREATE TABLE vault_secrets (
  org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  name             text NOT NULL,
  version          integer NOT NULL CHECK (version >= 1),
  data_key_version integer NOT NULL,
  format           integer NOT NULL,
  nonce            bytea NOT NULL,
  ciphertext       bytea NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  created_by       uuid,
  PRIMARY KEY (org_id, name, version)
);

-- Which declared secrets an organization lets a plugin use (filled through the plugin routes).
CREATE TABLE plugin_secret_grants (
  org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  plugin      text NOT NULL,
  secret_name text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, plugin, secret_name)
);

-- seq is assigned by the writer (last + 1 under an advisory lock), so it has no gaps.
CREATE TABLE audit_log (
  seq            bigserial PRIMARY KEY,
  ts             timestamptz NOT NULL,
  actor          text NOT NULL,
  session_id     text NOT NULL,
  plugin         text NOT NULL,
  org_id         text NOT NULL,
  action         text NOT NULL,
  secret_name    text NOT NULL,
  secret_version integer NOT NULL,
  outcome        text NOT NULL,
  reason         text NOT NULL,
  extra          text NOT NULL,  -- canonical JSON text, hashed as stored
  prev_hash      bytea NOT NULL,
  hash           bytea NOT NULL
);

-- The table owner could ignore a REVOKE, so the log refuses changes itself. Tampering needs
-- ALTER TABLE ... DISABLE TRIGGER, which `helm-hub audit verify` then detects through the chain.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END;
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
