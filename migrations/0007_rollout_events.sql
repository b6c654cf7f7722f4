-- Schema version 7: a run's rollout milestones (issue 11: canary, waves,
-- maintenance-window pauses, the error budget) are events of kind
-- 'Rollout', in the same hash chain. SQLite cannot change a CHECK, so the
-- events table is rebuilt with the longer list and its rows copied unchanged
-- (the chain still verifies), as migration 0004 did.

CREATE TABLE events_v7 (
    id            INTEGER PRIMARY KEY,
    at_ms         INTEGER NOT NULL,
    run_id        INTEGER,
    instance_id   TEXT,
    kind          TEXT    NOT NULL CHECK (kind IN
        ('RunStarted', 'RunEnded', 'Imported', 'FoundAlreadyEncrypted', 'VerifiedEncrypted',
         'ReadNotEncrypted', 'PreflightFailed', 'AttemptWritten', 'AttemptAnswered',
         'RetryScheduled', 'GaveUp', 'AttemptRecovered', 'ResetForRetry', 'ApiCalled', 'Rollout')),
    from_state    TEXT    CHECK (from_state IN
        ('pending', 'requesting', 'verifying', 'retry_wait', 'encrypted', 'already_encrypted', 'failed')),
    to_state      TEXT    CHECK (to_state IN
        ('pending', 'requesting', 'verifying', 'retry_wait', 'encrypted', 'already_encrypted', 'failed')),
    action        TEXT,
    endpoint      TEXT,
    sent_at_ms    INTEGER,
    latency_ms    INTEGER,
    attempt       INTEGER,
    request_id    TEXT,
    error_code    TEXT,
    error_message TEXT,
    detail        TEXT,
    prev_hash     TEXT    NOT NULL,
    hash          TEXT    NOT NULL
);
INSERT INTO events_v7 SELECT * FROM events;
DROP TABLE events;
ALTER TABLE events_v7 RENAME TO events;

CREATE INDEX events_by_instance ON events (instance_id, id);
CREATE INDEX events_sends ON events (sent_at_ms, action, endpoint) WHERE sent_at_ms IS NOT NULL;
CREATE INDEX events_rollout ON events (run_id, id) WHERE kind = 'Rollout';

CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
