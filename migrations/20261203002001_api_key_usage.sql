-- When each API key last authenticated a request. The APIs write it (at most once a minute per
-- key and process); it is operational data, not a read model of events, so a replay neither
-- needs nor rebuilds it.
CREATE TABLE api_key_usage (
    key_id       uuid PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
