-- Facts about this hub installation (install id, creation time) and the nodes sharing it.
CREATE TABLE hub_meta (
  key        text PRIMARY KEY,
  value      text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO hub_meta (key, value) VALUES ('installation_id', gen_random_uuid()::text);

CREATE TABLE hub_nodes (
  node_id    text PRIMARY KEY,
  hostname   text NOT NULL,
  version    text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  last_seen  timestamptz NOT NULL DEFAULT now()
);
