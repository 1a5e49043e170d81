-- Card names (issue 15). Three parts:
--
-- 1. Reservations can be released in the append that claims a new value, so renaming a card
--    frees its old name in the same transaction. promptcards_append_one is replaced by the same
--    function with `releases: [{scope, value, stream_id}]` (only a value held by that stream is
--    released) and with a reservation the stream already holds counting as claimed.
--
-- 2. Cards created before names existed are named by the domain's upcaster
--    (crates/domain/src/prompt.rs `legacy_name`: the created title's ASCII slug, cut to 80
--    characters, then '-' and the last 8 hex digits of the card id). The same rule is written
--    here once, as promptcards_legacy_card_name, to reserve those names, so no new card can take
--    one. Stored events are not edited.
--
-- 3. The read models carry each card's name, its version's kind, messages and config. Cards
--    projected before this migration get the same legacy name here (a projector replay writes
--    the same values from the upcast events).

CREATE FUNCTION promptcards_legacy_card_name(title text, card_id uuid) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(NULLIF(rtrim(left(ltrim(lower(regexp_replace(title, '[^A-Za-z0-9]+', '-', 'g')), '-'), 80), '-'), ''),
                    'prompt')
           || '-' || right(replace(card_id::text, '-', ''), 8)
$$;

CREATE OR REPLACE FUNCTION promptcards_append_one(command jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_meta jsonb := command->'metadata';
    v_idem jsonb := command->'idempotency';
    v_reservation jsonb;
    v_stream jsonb;
    v_event jsonb;
    v_stream_id uuid;
    v_expected jsonb;
    v_count bigint;
    v_version bigint;
    v_base bigint;
    v_previous text;
    v_hash text;
    v_event_position bigint;
    v_last_position bigint := 0;
    v_streams jsonb := '[]';
    v_stored_hash text;
    v_stored_result jsonb;
    v_result jsonb;
    v_unchanged jsonb;
    v_actual bigint;
BEGIN
    -- Streams the decision read but does not write: a plain read suffices, since a change that
    -- commits after it orders after this command, as if it had arrived a moment later.
    FOR v_unchanged IN SELECT value FROM jsonb_array_elements(COALESCE(command->'unchanged', '[]')) LOOP
        SELECT s.version INTO v_actual FROM streams s WHERE s.stream_id = (v_unchanged->>'stream_id')::uuid;
        IF v_actual IS DISTINCT FROM (v_unchanged->>'version')::bigint THEN
            RETURN jsonb_build_object('error', 'wrong_expected_version',
                                      'stream_id', v_unchanged->>'stream_id', 'actual', v_actual);
        END IF;
    END LOOP;

    IF jsonb_typeof(v_idem) = 'object' THEN
        -- ON CONFLICT waits for a concurrent holder of the key to commit or roll back, so "not
        -- claimed" means an earlier append with this key has committed its result.
        INSERT INTO idempotency_keys (scope, key, request_hash)
        VALUES (v_idem->>'scope', v_idem->>'key', v_idem->>'request_hash')
        ON CONFLICT (scope, key) DO NOTHING;
        IF NOT FOUND THEN
            SELECT k.request_hash, k.result INTO v_stored_hash, v_stored_result
            FROM idempotency_keys k WHERE k.scope = v_idem->>'scope' AND k.key = v_idem->>'key';
            IF v_stored_hash IS DISTINCT FROM v_idem->>'request_hash' OR v_stored_result IS NULL THEN
                RETURN jsonb_build_object('error', 'idempotency_key_reused');
            END IF;
            RETURN v_stored_result || jsonb_build_object('replayed', true);
        END IF;
    END IF;

    -- Releases first, so a command may hand a value from one of its streams to another.
    FOR v_reservation IN SELECT value FROM jsonb_array_elements(COALESCE(command->'releases', '[]')) LOOP
        DELETE FROM reservations
        WHERE scope = v_reservation->>'scope' AND value = v_reservation->>'value'
          AND stream_id = (v_reservation->>'stream_id')::uuid;
    END LOOP;

    FOR v_reservation IN SELECT value FROM jsonb_array_elements(command->'reservations') LOOP
        INSERT INTO reservations (scope, value, stream_id)
        VALUES (v_reservation->>'scope', v_reservation->>'value', (v_reservation->>'stream_id')::uuid)
        ON CONFLICT (scope, value) DO NOTHING;
        -- A value the same stream already holds is not taken from it: claiming it again is a
        -- no-op (a card renamed back to a name it still holds).
        IF NOT FOUND AND NOT EXISTS (
            SELECT 1 FROM reservations
            WHERE scope = v_reservation->>'scope' AND value = v_reservation->>'value'
              AND stream_id = (v_reservation->>'stream_id')::uuid) THEN
            RETURN jsonb_build_object('error', 'reserved', 'scope', v_reservation->>'scope',
                                      'value', v_reservation->>'value');
        END IF;
    END LOOP;

    FOR v_stream IN SELECT value FROM jsonb_array_elements(command->'streams') LOOP
        v_count := jsonb_array_length(v_stream->'events');
        CONTINUE WHEN v_count = 0;
        v_stream_id := (v_stream->>'stream_id')::uuid;
        v_expected := v_stream->'expected';
        v_version := NULL;
        IF v_expected = '"no_stream"' OR v_expected = '0' THEN
            INSERT INTO streams (stream_id, stream_type, version, workspace_id)
            VALUES (v_stream_id, v_stream->>'stream_type', v_count, (v_meta->>'workspace_id')::uuid)
            ON CONFLICT DO NOTHING
            RETURNING streams.version INTO v_version;
        ELSIF v_expected = '"any"' THEN
            INSERT INTO streams AS s (stream_id, stream_type, version, workspace_id)
            VALUES (v_stream_id, v_stream->>'stream_type', v_count, (v_meta->>'workspace_id')::uuid)
            ON CONFLICT (stream_id) DO UPDATE SET version = s.version + EXCLUDED.version
            RETURNING s.version INTO v_version;
        ELSE
            UPDATE streams s SET version = s.version + v_count
            WHERE s.stream_id = v_stream_id AND s.version = (v_expected #>> '{}')::bigint
            RETURNING s.version INTO v_version;
        END IF;
        IF v_version IS NULL THEN
            -- A verbatim retry of an append that committed finds the stream moved on by its own
            -- events: it gets the original outcome, not a conflict (INVARIANT 3).
            v_result := promptcards_already_appended(command);
            IF v_result ? 'replayed' THEN
                RETURN v_result;
            END IF;
            RETURN jsonb_build_object(
                'error', 'wrong_expected_version', 'stream_id', v_stream_id,
                'actual', (SELECT s.version FROM streams s WHERE s.stream_id = v_stream_id));
        END IF;

        v_base := v_version - v_count;
        -- The stream is locked for this transaction, so its last hash cannot move under us.
        v_previous := '';
        IF v_base > 0 THEN
            SELECT COALESCE(e.hash, '') INTO v_previous
            FROM events e WHERE e.stream_id = v_stream_id AND e.version = v_base;
            v_previous := COALESCE(v_previous, '');
        END IF;
        FOR v_event IN SELECT value FROM jsonb_array_elements(v_stream->'events') LOOP
            v_base := v_base + 1;
            -- The same bytes as chain::event_hash: the parts joined by 0x1f, the data canonical.
            v_hash := encode(sha256(convert_to(concat_ws(chr(31), v_previous, v_event->>'event_id', v_stream_id::text,
                       v_base::text, v_event->>'event_type', v_event->>'schema_version', v_event->>'canonical'), 'UTF8')), 'hex');
            INSERT INTO events (event_id, stream_id, stream_type, version, event_type, schema_version,
                                workspace_id, actor_id, correlation_id, causation_id, traceparent,
                                tracestate, data, hash)
            VALUES ((v_event->>'event_id')::uuid, v_stream_id, v_stream->>'stream_type', v_base, v_event->>'event_type',
                    (v_event->>'schema_version')::int, (v_meta->>'workspace_id')::uuid, (v_meta->>'actor_id')::uuid,
                    (v_meta->>'correlation_id')::uuid, (v_meta->>'causation_id')::uuid, v_meta->>'traceparent',
                    v_meta->>'tracestate', v_event->'data', v_hash)
            RETURNING position INTO v_event_position;
            v_previous := v_hash;
            v_last_position := greatest(v_last_position, v_event_position);
        END LOOP;
        v_streams := v_streams || jsonb_build_object('stream_id', v_stream_id, 'version', v_version);
    END LOOP;

    v_result := jsonb_build_object('streams', v_streams, 'position', v_last_position);
    IF jsonb_typeof(v_idem) = 'object' THEN
        v_result := v_result || jsonb_build_object('response', v_idem->'response');
        UPDATE idempotency_keys SET result = v_result
        WHERE scope = v_idem->>'scope' AND key = v_idem->>'key';
    END IF;
    RETURN v_result || jsonb_build_object('replayed', false);
END
$$;


INSERT INTO reservations (scope, value, stream_id)
SELECT 'card_name:' || e.workspace_id::text, promptcards_legacy_card_name(e.data->>'title', e.stream_id), e.stream_id
FROM events e
WHERE e.event_type = 'PromptCardCreated' AND e.schema_version < 3 AND e.workspace_id IS NOT NULL
ON CONFLICT DO NOTHING;

ALTER TABLE read.prompt_cards
    ADD COLUMN name     text NOT NULL DEFAULT '',
    ADD COLUMN kind     text NOT NULL DEFAULT 'text',
    ADD COLUMN messages jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN config   jsonb NOT NULL DEFAULT '{}';
ALTER TABLE read.card_versions
    ADD COLUMN messages jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN config   jsonb NOT NULL DEFAULT '{}';
-- Not unique: the store's reservations keep names unique; the read model only follows them.
CREATE INDEX prompt_cards_by_name ON read.prompt_cards (workspace_id, name);

UPDATE read.prompt_cards c
SET name = promptcards_legacy_card_name(e.data->>'title', e.stream_id)
FROM events e
WHERE e.stream_id = c.card_id AND e.event_type = 'PromptCardCreated' AND c.name = '';
