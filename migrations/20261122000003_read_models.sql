-- Read models. Only the projector (crates/projector/src/postgres.rs) writes this schema; the
-- query API reads it. Everything here can be dropped and rebuilt from the event store.
CREATE SCHEMA read;

-- The last stream version applied per stream, written in the same transaction as the effect:
-- an event at or below it is a redelivery and is skipped.
CREATE TABLE read.stream_versions (
    stream_id  uuid PRIMARY KEY,
    version    bigint NOT NULL,
    position   bigint NOT NULL
);

CREATE TABLE read.users (
    user_id    uuid PRIMARY KEY,
    email      text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE read.workspaces (
    workspace_id uuid PRIMARY KEY,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE read.members (
    workspace_id uuid NOT NULL,
    user_id      uuid NOT NULL,
    role         text NOT NULL,
    added_at     timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX members_by_user ON read.members (user_id);

-- The secret's SHA-256 lets the query API authenticate keys without the event store.
CREATE TABLE read.api_keys (
    key_id       uuid PRIMARY KEY,
    workspace_id uuid NOT NULL,
    name         text NOT NULL,
    role         text NOT NULL,
    secret_hash  text NOT NULL,
    created_at   timestamptz NOT NULL
);

CREATE TABLE read.prompt_cards (
    card_id      uuid PRIMARY KEY,
    workspace_id uuid NOT NULL,
    title        text NOT NULL,
    description  text NOT NULL,
    template     text NOT NULL,
    variables    jsonb NOT NULL,
    tags         text[] NOT NULL,
    version      integer NOT NULL,
    labels       jsonb NOT NULL DEFAULT '{}',
    archived     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    search       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', title), 'A') ||
        setweight(to_tsvector('simple', description), 'B') ||
        setweight(to_tsvector('simple', template), 'C')
    ) STORED
);
CREATE INDEX prompt_cards_page ON read.prompt_cards (workspace_id, created_at, card_id);
CREATE INDEX prompt_cards_search ON read.prompt_cards USING gin (search);
CREATE INDEX prompt_cards_tags ON read.prompt_cards USING gin (tags);

CREATE TABLE read.card_versions (
    card_id     uuid NOT NULL,
    version     integer NOT NULL,
    title       text NOT NULL,
    description text NOT NULL,
    template    text NOT NULL,
    variables   jsonb NOT NULL,
    tags        text[] NOT NULL,
    actor_id    uuid,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (card_id, version)
);

CREATE TABLE read.label_moves (
    card_id          uuid NOT NULL,
    position         bigint NOT NULL,
    label            text NOT NULL,
    version          integer NOT NULL,
    previous_version integer,
    actor_id         uuid,
    moved_at         timestamptz NOT NULL,
    PRIMARY KEY (card_id, position)
);

CREATE TABLE read.test_cases (
    case_id         uuid PRIMARY KEY,
    card_id         uuid NOT NULL,
    workspace_id    uuid NOT NULL,
    name            text NOT NULL,
    vars            jsonb NOT NULL,
    expected_output text,
    assertions      jsonb NOT NULL,
    deleted         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX test_cases_by_card ON read.test_cases (card_id, created_at, case_id);
