-- Tenancy (organization → client → site → device group), technicians, service principals,
-- sessions and per-organization ACL policies.
CREATE TABLE organizations (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name                     text NOT NULL UNIQUE,
  is_operator              boolean NOT NULL DEFAULT false,
  require_totp_for_admins  boolean NOT NULL DEFAULT false,
  created_at               timestamptz NOT NULL DEFAULT now()
);
-- At most one operator organization: the one created by `helm-hub admin bootstrap`.
CREATE UNIQUE INDEX organizations_one_operator ON organizations (is_operator) WHERE is_operator;

CREATE TABLE clients (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, name)
);

CREATE TABLE sites (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  client_id  uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (client_id, name)
);

CREATE TABLE device_groups (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  client_id  uuid REFERENCES clients (id) ON DELETE CASCADE,
  site_id    uuid REFERENCES sites (id) ON DELETE CASCADE,
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, name)
);

CREATE TABLE technicians (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  email           text NOT NULL,
  display_name    text NOT NULL DEFAULT '',
  role            text NOT NULL CHECK (role IN ('owner', 'admin', 'technician', 'readonly')),
  password_hash   text NOT NULL,
  disabled        boolean NOT NULL DEFAULT false,
  totp_secret     text,
  totp_enabled    boolean NOT NULL DEFAULT false,
  totp_last_step  bigint NOT NULL DEFAULT 0,
  failed_logins   integer NOT NULL DEFAULT 0,
  locked_until    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX technicians_email ON technicians (lower(email));

CREATE TABLE service_principals (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  name         text NOT NULL,
  role         text NOT NULL CHECK (role IN ('admin', 'technician', 'readonly')),
  token_hash   bytea NOT NULL UNIQUE,
  expires_at   timestamptz,
  last_used_at timestamptz,
  disabled     boolean NOT NULL DEFAULT false,
  created_by   uuid,
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, name)
);

CREATE TABLE sessions (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash          bytea NOT NULL UNIQUE,
  org_id              uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  technician_id       uuid NOT NULL REFERENCES technicians (id) ON DELETE CASCADE,
  totp_pending        boolean NOT NULL DEFAULT false,
  created_at          timestamptz NOT NULL DEFAULT now(),
  last_used_at        timestamptz NOT NULL DEFAULT now(),
  absolute_expires_at timestamptz NOT NULL,
  ended_at            timestamptz,
  end_reason          text,
  source_address      text NOT NULL DEFAULT '',
  user_agent          text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_technician ON sessions (technician_id) WHERE ended_at IS NULL;

CREATE TABLE acl_policies (
  org_id     uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
  policy     jsonb NOT NULL,
  revision   integer NOT NULL DEFAULT 1,
  updated_by uuid,
  updated_at timestamptz NOT NULL DEFAULT now()
);
