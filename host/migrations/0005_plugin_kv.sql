-- Plugins' private key-value storage (host API kv_get / kv_put). A key belongs to one plugin and
-- to one organization, or to the whole hub when org_id is NULL. org_id is a nullable foreign key
-- rather than '' for hub-wide so that deleting an organization deletes its keys (ON DELETE
-- CASCADE) and a key can never name an organization that does not exist. A primary key cannot
-- contain a nullable column, so two partial unique indexes make (plugin, org_id, key) unique
-- with NULL counted as one scope (UNIQUE NULLS NOT DISTINCT would need PostgreSQL 15).
CREATE TABLE plugin_kv (
  plugin     text NOT NULL CHECK (plugin <> ''),
  org_id     uuid REFERENCES organizations (id) ON DELETE CASCADE,
  key        text NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 256),
  value      bytea NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- (org_id, plugin, key): also serves the cascade from organizations, which looks up org_id alone.
CREATE UNIQUE INDEX plugin_kv_org_key ON plugin_kv (org_id, plugin, key) WHERE org_id IS NOT NULL;
CREATE UNIQUE INDEX plugin_kv_hub_key ON plugin_kv (plugin, key) WHERE org_id IS NULL;
