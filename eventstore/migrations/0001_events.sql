-- The event log and the stream versions. Positions are assigned by the writer
-- under a transaction-scoped advisory lock (see eventstore/postgres.py), never
-- by a sequence, so a rolled-back batch leaves no hole. The canonical event
-- bytes are stored as bytea because they are what the hash chain commits to.
CREATE TABLE events (
    position bigint PRIMARY KEY CHECK (position > 0),
    stream_id text NOT NULL,
    stream_version bigint NOT NULL CHECK (stream_version >= 0),
    event_id text NOT NULL UNIQUE,
    event_type text NOT NULL,
    recorded_at double precision NOT NULL,
    data bytea NOT NULL,
    prev_hash bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    UNIQUE (stream_id, stream_version)
);

CREATE TABLE streams (
    stream_id text PRIMARY KEY,
    version bigint NOT NULL
);

-- The log is append-only for every role, the owner included (the owner can
-- still drop the trigger: that is what the runtime role's grants prevent).
CREATE FUNCTION baton_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION baton_events_append_only();

CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION baton_events_append_only();
