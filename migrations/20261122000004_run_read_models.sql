-- Read models of test runs, written by the projector (crates/projector/src/postgres.rs).
CREATE TABLE read.test_runs (
    run_id       uuid PRIMARY KEY,
    workspace_id uuid NOT NULL,
    card_id      uuid NOT NULL,
    card_version integer NOT NULL,
    providers    jsonb NOT NULL,
    repeat       integer NOT NULL,
    status       text NOT NULL,
    total        bigint NOT NULL,
    completed    bigint NOT NULL DEFAULT 0,
    passed       bigint NOT NULL DEFAULT 0,
    failed       bigint NOT NULL DEFAULT 0,
    failure      text,
    requested_by uuid,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX test_runs_page ON read.test_runs (workspace_id, created_at, run_id);
CREATE INDEX test_runs_by_card ON read.test_runs (card_id, created_at, run_id);

CREATE TABLE read.test_results (
    run_id            uuid NOT NULL,
    case_id           uuid NOT NULL,
    provider          text NOT NULL,
    repetition        integer NOT NULL,
    rendered_prompt   text NOT NULL,
    output            text,
    error             text,
    latency_ms        bigint NOT NULL,
    prompt_tokens     integer NOT NULL,
    completion_tokens integer NOT NULL,
    cost_micro_usd    bigint NOT NULL,
    passed            boolean NOT NULL,
    score             double precision NOT NULL,
    assertions        jsonb NOT NULL,
    position          bigint NOT NULL,
    recorded_at       timestamptz NOT NULL,
    PRIMARY KEY (run_id, case_id, provider, repetition)
);
CREATE INDEX test_results_in_order ON read.test_results (run_id, position);
