-- Plugins: the operator's hub-wide switch and configuration, and each organization's switch and
-- settings (grants are plugin_secret_grants, created with the vault).
CREATE TABLE plugin_settings (
  plugin     text PRIMARY KEY,
  enabled    boolean NOT NULL DEFAULT true,
  config     jsonb NOT NULL DEFAULT '{}'::jsonb,
  version    bigint NOT NULL DEFAULT 1,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plugin_org_settings (
  org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  plugin     text NOT NULL,
  enabled    boolean NOT NULL DEFAULT false,
  config     jsonb NOT NULL DEFAULT '{}'::jsonb,
  version    bigint NOT NULL DEFAULT 1,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, plugin)
);
