-- ClickHouse analytics tables. Applied in file order by the projector at start; every statement
-- is idempotent. Rows are keyed so that a retried batch collapses to one row per event
-- (ReplacingMergeTree); queries that must not see a not-yet-merged duplicate use FINAL.
CREATE DATABASE IF NOT EXISTS {database};

CREATE TABLE IF NOT EXISTS {database}.events (
    event_id        UUID,
    position        Int64,
    stream_id       UUID,
    stream_type     String,
    version         Int64,
    event_type      String,
    schema_version  Int32,
    workspace_id    UUID,
    actor_id        UUID,
    correlation_id  UUID,
    recorded_at     DateTime,
    recorded_at_ms  Int64,
    data            String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (stream_id, version);

CREATE TABLE IF NOT EXISTS {database}.test_results (
    result_id          UUID,
    run_id             UUID,
    workspace_id       UUID,
    card_id            UUID,
    card_version       UInt32,
    test_case_id       UUID,
    provider           String,
    repetition         UInt32,
    passed             UInt8,
    score              Float64,
    latency_ms         UInt32,
    prompt_tokens      UInt32,
    completion_tokens  UInt32,
    cost_micro_usd     Int64,
    error              String,
    recorded_at        DateTime,
    recorded_at_ms     Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (workspace_id, run_id, test_case_id, provider, repetition);
