-- The event store. Only the event-store crate (crates/event-store/src/sql.rs) writes these tables.

-- One row per stream: its type and current version. Appends lock this row, which is what makes
-- a single winner among racing writers and keeps versions contiguous.
CREATE TABLE streams (
    stream_id    uuid PRIMARY KEY,
    stream_type  text   NOT NULL,
    version      bigint NOT NULL CHECK (version >= 0),
    workspace_id uuid
);

CREATE TABLE events (
    -- Global position: unique and increasing in insert order, but NOT commit order. Tailing
    -- readers order by (tx_id, position) and stop below the oldest running transaction.
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id          xid8   NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid   NOT NULL,
    stream_id      uuid   NOT NULL REFERENCES streams (stream_id),
    stream_type    text   NOT NULL,
    version        bigint NOT NULL CHECK (version >= 1),
    event_type     text   NOT NULL,
    schema_version integer NOT NULL,
    workspace_id   uuid,
    actor_id       uuid,
    correlation_id uuid   NOT NULL,
    causation_id   uuid,
    traceparent    text,
    tracestate     text,
    data           jsonb  NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

CREATE INDEX events_global_order ON events (tx_id, position);
CREATE INDEX events_workspace ON events (workspace_id, position);
CREATE INDEX events_recorded_at ON events (recorded_at);

-- The first result of a command sent with an Idempotency-Key, per client scope.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    result       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- Set-wide uniqueness the write side needs (an email belongs to one user, an API key id to one
-- workspace), claimed in the same transaction as the events that rely on it.
CREATE TABLE reservations (
    scope     text NOT NULL,
    value     text NOT NULL,
    stream_id uuid NOT NULL,
    PRIMARY KEY (scope, value)
);
