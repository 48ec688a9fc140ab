-- Wake-up hint for asynchronous projection runners (LISTEN baton_events).
-- Polling stays the source of truth. The payload names the schema so that
-- several Baton deployments in one database only wake their own runners;
-- PostgreSQL folds identical notifications of one transaction into one.
CREATE FUNCTION baton_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('baton_events', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION baton_events_notify();
