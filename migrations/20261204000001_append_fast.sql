-- Group commit's common case in a few set-based statements (issue 14). A batch whose commands
-- carry no idempotency key, reservation or release, write each stream at an exact expected
-- version (0 for a new stream) and share no stream with one another is appended by this
-- function: no subtransaction per command, no JSON to walk, one INSERT for every event of the
-- batch. Any conflict (a stream not at its expected version, an event id already stored)
-- raises, the statement writes nothing, and the caller sends the same batch to
-- promptcards_append_batch, which finds each command's own outcome (crates/event-store/src/sql.rs
-- is the only caller and says which batches qualify).
--
-- Arrays, each with one entry per item and read in parallel:
--   unchanged_*: streams read to decide but not written, with the versions they must be at;
--   stream_*:    the streams written, with their expected versions and event counts;
--   event_*:     every event, grouped by stream in version order (versions numbered by the
--                caller from the expected version), with its command's metadata and its data
--                in canonical form for the hash chain.
-- Returns each event's id and global position.

CREATE FUNCTION promptcards_append_batch_fast(
    lock_keys bigint[],
    unchanged_ids uuid[], unchanged_versions bigint[],
    stream_ids uuid[], stream_types text[], stream_expected bigint[], stream_counts bigint[],
    stream_workspaces uuid[],
    event_ids uuid[], event_streams uuid[], event_stream_types text[], event_versions bigint[],
    event_types text[],
    event_schemas integer[], event_workspaces uuid[], event_actors uuid[], event_correlations uuid[],
    event_causations uuid[], event_traceparents text[], event_tracestates text[],
    event_data jsonb[], event_canonical text[])
RETURNS TABLE (appended_event_id uuid, appended_position bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_rows bigint;
    v_previous text;
    v_hashes text[] := '{}';
BEGIN
    -- Every stream's lock before the first write, in sorted order (see lock_keys in sql.rs).
    PERFORM pg_advisory_xact_lock(k) FROM unnest(lock_keys) AS k;

    IF (SELECT count(*) FROM unnest(unchanged_ids, unchanged_versions) AS u(id, v)
        JOIN streams s ON s.stream_id = u.id AND s.version = u.v) <> cardinality(unchanged_ids) THEN
        RAISE EXCEPTION 'a stream read moved' USING ERRCODE = 'PC409';
    END IF;

    UPDATE streams s SET version = s.version + w.n
    FROM unnest(stream_ids, stream_expected, stream_counts) AS w(id, expected, n)
    WHERE w.expected > 0 AND s.stream_id = w.id AND s.version = w.expected;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows <> (SELECT count(*) FROM unnest(stream_expected) AS e WHERE e > 0) THEN
        RAISE EXCEPTION 'a stream is not at its expected version' USING ERRCODE = 'PC409';
    END IF;

    INSERT INTO streams (stream_id, stream_type, version, workspace_id)
    SELECT w.id, w.stream_type, w.n, w.workspace_id
    FROM unnest(stream_ids, stream_types, stream_expected, stream_counts, stream_workspaces)
         AS w(id, stream_type, expected, n, workspace_id)
    WHERE w.expected = 0
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows <> (SELECT count(*) FROM unnest(stream_expected) AS e WHERE e = 0) THEN
        RAISE EXCEPTION 'a new stream exists already' USING ERRCODE = 'PC409';
    END IF;

    -- The chain: the same bytes as chain::event_hash, each event's hash over its predecessor's.
    -- The streams are locked and at the versions expected, so each predecessor is stored.
    FOR i IN 1 .. coalesce(cardinality(event_ids), 0) LOOP
        IF i = 1 OR event_streams[i] <> event_streams[i - 1] THEN
            v_previous := '';
            IF event_versions[i] > 1 THEN
                SELECT coalesce(e.hash, '') INTO v_previous
                FROM events e WHERE e.stream_id = event_streams[i] AND e.version = event_versions[i] - 1;
            END IF;
        END IF;
        v_previous := encode(sha256(convert_to(concat_ws(chr(31), coalesce(v_previous, ''), event_ids[i]::text,
                        event_streams[i]::text, event_versions[i]::text, event_types[i], event_schemas[i]::text,
                        event_canonical[i]), 'UTF8')), 'hex');
        v_hashes[i] := v_previous;
    END LOOP;

    RETURN QUERY
    INSERT INTO events AS e (event_id, stream_id, stream_type, version, event_type, schema_version,
                             workspace_id, actor_id, correlation_id, causation_id, traceparent,
                             tracestate, data, hash)
    SELECT x.event_id, x.stream_id, x.stream_type, x.version, x.event_type, x.schema_version,
           x.workspace_id, x.actor_id, x.correlation_id, x.causation_id, x.traceparent,
           x.tracestate, x.data, x.hash
    FROM unnest(event_ids, event_streams, event_stream_types, event_versions, event_types,
                event_schemas, event_workspaces, event_actors, event_correlations, event_causations,
                event_traceparents, event_tracestates, event_data, v_hashes) WITH ORDINALITY
         AS x(event_id, stream_id, stream_type, version, event_type, schema_version, workspace_id,
              actor_id, correlation_id, causation_id, traceparent, tracestate, data, hash, ord)
    -- Positions in the order given, so each stream's versions ascend with them.
    ORDER BY x.ord
    RETURNING e.event_id, e.position;
END
$$;
