-- Stream versions are read from the log itself: the newest event of a stream,
-- one backward step on the UNIQUE (stream_id, stream_version) index of events
-- (see eventstore/batch.py). The table that repeated them is no longer written.
DROP TABLE streams;
