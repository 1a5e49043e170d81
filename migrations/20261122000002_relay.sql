-- Where the Kafka relay stands in the store's global order. It moves only after the broker
-- acknowledged every event up to it.
CREATE TABLE relay_checkpoints (
    name       text PRIMARY KEY,
    tx_id      bigint NOT NULL,
    position   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
