-- Webhook endpoints and alert rules: their read models (written by the projector, rebuilt from
-- the events like every table of `read`), and the deliverer's own tables (schema `webhooks`).

-- The deliverer and the alert evaluator list a workspace's endpoints and rules from the store.
CREATE INDEX streams_by_workspace ON streams (workspace_id, stream_type);

-- Endpoints as GraphQL lists them. The signing secret is not here: it is in the events, sealed,
-- and only the deliverer opens it.
CREATE TABLE read.webhooks (
    webhook_id      uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL,
    url             text NOT NULL,
    events          text[] NOT NULL,
    enabled         boolean NOT NULL,
    disabled_reason text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX webhooks_by_workspace ON read.webhooks (workspace_id, created_at, webhook_id);

CREATE TABLE read.alert_rules (
    rule_id         uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL,
    kind            text NOT NULL,
    card_id         uuid,
    label           text,
    provider        text,
    threshold       double precision NOT NULL,
    window_runs     integer,
    -- The alert firing now, if one is.
    firing_alert_id uuid,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX alert_rules_by_workspace ON read.alert_rules (workspace_id, created_at, rule_id);

-- One row per alert: fired, and resolved later.
CREATE TABLE read.alerts (
    alert_id         uuid PRIMARY KEY,
    rule_id          uuid NOT NULL,
    workspace_id     uuid NOT NULL,
    kind             text NOT NULL,
    threshold        double precision NOT NULL,
    figure           jsonb NOT NULL,
    message          text NOT NULL,
    run_id           uuid,
    fired_position   bigint NOT NULL,
    fired_at         timestamptz NOT NULL,
    resolved_figure  jsonb,
    resolved_message text,
    resolved_at      timestamptz
);
CREATE INDEX alerts_page ON read.alerts (workspace_id, fired_position);

-- The deliverer's outbox. Not a read model: a delivery's attempts happened once and cannot be
-- derived from the events again, so `promptcards replay` never touches this schema.
CREATE SCHEMA webhooks;

-- One delivery per (endpoint, event), written before the deliverer commits its Kafka offset:
-- a redelivered message finds its row and adds nothing. `delivery_id` is the `webhook-id` every
-- attempt sends, so receivers deduplicate by it.
CREATE TABLE webhooks.deliveries (
    delivery_id       uuid PRIMARY KEY,
    -- The order an endpoint's deliveries go out in.
    seq               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    webhook_id        uuid NOT NULL,
    workspace_id      uuid NOT NULL,
    event_id          uuid NOT NULL,
    event_position    bigint NOT NULL,
    -- The delivery's `type`, e.g. run.completed.
    event_type        text NOT NULL,
    -- The exact bytes every attempt signs and sends.
    body              text NOT NULL,
    event_recorded_at timestamptz NOT NULL,
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Attempts of the current series (a redelivery starts a new one); the backoff grows with it.
    series_attempts   integer NOT NULL DEFAULT 0,
    series_started_at timestamptz,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    last_error        text,
    -- The last redelivery request applied, so a request seen twice resends once.
    redelivery_id     uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deliveries_once UNIQUE (webhook_id, event_id)
);
CREATE INDEX deliveries_pending ON webhooks.deliveries (webhook_id, seq) WHERE status = 'pending';
CREATE INDEX deliveries_page ON webhooks.deliveries (webhook_id, seq);

CREATE TABLE webhooks.attempts (
    delivery_id      uuid NOT NULL REFERENCES webhooks.deliveries (delivery_id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    at               timestamptz NOT NULL,
    -- The HTTP status, NULL when no response came (refused, timed out, blocked).
    status           integer,
    latency_ms       integer NOT NULL,
    error            text,
    response_excerpt text,
    PRIMARY KEY (delivery_id, attempt)
);

-- Per endpoint: which deliverer sends its deliveries now (so two replicas never send one
-- endpoint's deliveries out of order) and how long it has been failing.
CREATE TABLE webhooks.endpoints (
    webhook_id      uuid PRIMARY KEY,
    lease_owner     text,
    lease_until     timestamptz,
    failing_since   timestamptz,
    last_success_at timestamptz
);
