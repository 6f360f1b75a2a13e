-- Agents: one-time enrollment keys, enrolled devices (with the keyed hash of their token) and
-- the durable command outbox. The key that hashes device tokens lives in hub_meta
-- ('device_token_key', created by the hub at first start; see agent_service.cpp).
CREATE TABLE enrollment_keys (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  client_id       uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
  site_id         uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
  device_group_id uuid REFERENCES device_groups (id) ON DELETE SET NULL,
  key_hash        bytea NOT NULL UNIQUE,
  key_prefix      text NOT NULL,  -- the first characters, so an admin can tell keys apart
  uses            integer NOT NULL CHECK (uses >= 1),
  uses_left       integer NOT NULL CHECK (uses_left >= 0),
  expires_at      timestamptz NOT NULL,
  revoked_at      timestamptz,
  last_used_at    timestamptz,
  created_by      text NOT NULL DEFAULT '',
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enrollment_keys_org ON enrollment_keys (org_id, id);

CREATE TABLE devices (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  client_id       uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
  site_id         uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
  device_group_id uuid REFERENCES device_groups (id) ON DELETE SET NULL,
  machine_id      text NOT NULL,
  hostname        text NOT NULL,
  os              text NOT NULL,
  os_version      text NOT NULL,
  arch            text NOT NULL,
  agent_version   text NOT NULL,
  token_hash      bytea NOT NULL UNIQUE,
  token_issued_at timestamptz NOT NULL DEFAULT now(),
  enrollment_key_id uuid REFERENCES enrollment_keys (id) ON DELETE SET NULL,
  facts           jsonb NOT NULL DEFAULT '{}',  -- the latest inventory event's data
  last_seen       timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  -- Re-enrolling a machine replaces its token instead of creating a second device.
  UNIQUE (org_id, machine_id)
);
CREATE INDEX devices_org ON devices (org_id, id);

-- Written before anything is sent; delivered again on every reconnect until acked.
CREATE TABLE device_commands (
  id          uuid PRIMARY KEY,
  seq         bigserial NOT NULL UNIQUE,  -- creation order, the order of redelivery
  org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  kind        text NOT NULL,
  args        jsonb NOT NULL,
  state       text NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'sent', 'acked', 'done', 'expired')),
  deadline    timestamptz NOT NULL,
  created_by  text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  sent_at     timestamptz,
  send_count  integer NOT NULL DEFAULT 0,
  acked_at    timestamptz,
  finished_at timestamptz,
  result      jsonb
);
CREATE INDEX device_commands_device ON device_commands (device_id, id);
CREATE INDEX device_commands_pending ON device_commands (device_id, seq)
  WHERE state IN ('queued', 'sent');
CREATE INDEX device_commands_deadline ON device_commands (deadline)
  WHERE state IN ('queued', 'sent');
