-- Finding events of one type in log order: signed checkpoints for `baton verify`
-- and `baton export-checkpoints`, denied exchanges for the audit views.
CREATE INDEX events_type_position ON events (event_type, position);
