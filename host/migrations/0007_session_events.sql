-- Session lifecycle events (session.started / session.ended with its reason) for plugins, through
-- a durable outbox: the hub announces every session's start and end from the sessions table
-- itself, so an end written by any code path (logout, revocation, a disabled account) or found
-- by the expiry sweep (idle or absolute timeout, also for sessions that ended while the hub was
-- down) is announced exactly once into session_events, and delivered at least once.
ALTER TABLE sessions
  ADD COLUMN started_announced boolean NOT NULL DEFAULT false,
  ADD COLUMN ended_announced   boolean NOT NULL DEFAULT false;
-- History before this migration is not announced.
UPDATE sessions SET started_announced = true, ended_announced = true WHERE ended_at IS NOT NULL;
CREATE INDEX sessions_start_unannounced ON sessions (created_at) WHERE NOT started_announced;
CREATE INDEX sessions_end_unannounced ON sessions (ended_at)
  WHERE ended_at IS NOT NULL AND NOT ended_announced;
CREATE INDEX sessions_live ON sessions (absolute_expires_at) WHERE ended_at IS NULL;

CREATE TABLE session_events (
  seq           bigserial PRIMARY KEY,
  session_id    uuid NOT NULL,
  org_id        uuid NOT NULL,
  technician_id uuid NOT NULL,
  kind          text NOT NULL CHECK (kind IN ('started', 'ended')),
  reason        text,
  occurred_at   timestamptz NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  delivered_at  timestamptz
);
CREATE INDEX session_events_undelivered ON session_events (seq) WHERE delivered_at IS NULL;
