-- Group commit: a batch of appends (one per command) in one statement, one transaction and one
-- round trip. Each command runs in its own subtransaction, so a conflict (stale expected
-- version, taken reservation, reused idempotency key) undoes that command's writes alone and
-- is reported for it; its batch-mates commit. The Rust side (crates/event-store/src/sql.rs)
-- builds `commands` and reads the outcomes; this file is the only other place that knows them.
--
-- commands: [{streams: [{stream_id, stream_type, expected: "no_stream" | "any" | n,
--              events: [{event_id, event_type, schema_version, data, canonical}]}],
--             metadata: {actor_id, workspace_id, correlation_id, causation_id, traceparent,
--                        tracestate},
--             unchanged: [{stream_id, version}],
--             reservations: [{scope, value, stream_id}],
--             idempotency: null | {scope, key, request_hash, response}}]
-- lock_keys: the advisory-lock keys of every stream written, sorted (see lock_keys in sql.rs).
-- No NOTIFY here: a notifying transaction holds Postgres's database-wide notify lock through
-- its commit's WAL flush, so concurrent batches could not share flushes (group_commit.rs
-- notifies after the commit instead).
-- Returns one outcome per command, in order: {streams, position, response?, replayed} or
-- {error: "wrong_expected_version" | "reserved" | "idempotency_key_reused" | "duplicate_event"
--         | "database", ...details}.

-- The outcome of a command whose every event id is already stored in its streams: the retry of
-- an append that committed (INVARIANT 3). Otherwise a duplicate_event error.
CREATE FUNCTION promptcards_already_appended(command jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH sent AS (
        SELECT (s->>'stream_id')::uuid AS stream_id, (e->>'event_id')::uuid AS event_id, s_ord
        FROM jsonb_array_elements(command->'streams') WITH ORDINALITY AS listed(s, s_ord),
             jsonb_array_elements(s->'events') e
    ), found AS (
        SELECT sent.stream_id AS sent_stream, sent.s_ord, e.stream_id, e.version, e.position, e.event_id
        FROM sent JOIN events e ON e.event_id = sent.event_id
    )
    SELECT CASE
        WHEN (SELECT count(*) FROM found WHERE stream_id = sent_stream) = (SELECT count(*) FROM sent)
        THEN jsonb_build_object(
            'replayed', true,
            'position', (SELECT max(position) FROM found),
            -- In the order the command lists its streams, as the first answer gave them.
            'streams', (SELECT jsonb_agg(jsonb_build_object('stream_id', stream_id, 'version', v) ORDER BY o)
                        FROM (SELECT stream_id, max(version) AS v, min(s_ord) AS o FROM found GROUP BY stream_id) per_stream))
        ELSE jsonb_build_object(
            'error', 'duplicate_event',
            'event_id', COALESCE((SELECT event_id FROM found LIMIT 1), (SELECT event_id FROM sent LIMIT 1)))
    END
$$;

-- One command's writes. Returns its outcome; an outcome with `error` has written nothing that
-- the caller keeps (it rolls the subtransaction back).
CREATE FUNCTION promptcards_append_one(command jsonb) RETURNS jsonb
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

    FOR v_reservation IN SELECT value FROM jsonb_array_elements(command->'reservations') LOOP
        INSERT INTO reservations (scope, value, stream_id)
        VALUES (v_reservation->>'scope', v_reservation->>'value', (v_reservation->>'stream_id')::uuid)
        ON CONFLICT (scope, value) DO NOTHING;
        IF NOT FOUND THEN
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

CREATE FUNCTION promptcards_append_batch(commands jsonb, lock_keys bigint[]) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    lock_key bigint;
    command jsonb;
    outcome jsonb;
    outcomes jsonb := '[]';
BEGIN
    -- Every stream's lock before the first write: tailing readers order by transaction id, and
    -- a transaction gets its id at its first write (see lock_streams in sql.rs).
    FOREACH lock_key IN ARRAY lock_keys LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;
    FOR command IN SELECT value FROM jsonb_array_elements(commands) LOOP
        BEGIN
            outcome := promptcards_append_one(command);
            IF outcome ? 'error' THEN
                -- Undo what this command wrote before it met its conflict.
                RAISE EXCEPTION USING ERRCODE = 'PC409';
            END IF;
        EXCEPTION
            WHEN SQLSTATE 'PC409' THEN
                NULL;
            WHEN unique_violation THEN
                -- Event ids already stored: the retry of a committed append, or a reuse.
                outcome := promptcards_already_appended(command);
            WHEN OTHERS THEN
                outcome := jsonb_build_object('error', 'database', 'message', SQLERRM);
        END;
        outcomes := outcomes || jsonb_build_array(outcome);
    END LOOP;
    RETURN outcomes;
END
$$;
