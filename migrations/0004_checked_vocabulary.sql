-- Schema version 4: SQLite itself checks the stored vocabulary. Event kinds,
-- the states an event moved between, and an instance's last Open outcome may
-- only hold the values of fleetcrypt's model (src/model/: EventKind, State,
-- Disposition; a test compares these lists with the enums). SQLite cannot add
-- a CHECK to an existing table, so both tables are rebuilt with their rows
-- copied unchanged (the hash chain still verifies).

CREATE TABLE instances_v4 (
    instance_id        TEXT    PRIMARY KEY,
    seq                INTEGER NOT NULL UNIQUE,
    region             TEXT    NOT NULL,
    key_id             TEXT,
    key_region         TEXT,
    labels             TEXT    NOT NULL DEFAULT '{}',
    state              TEXT    NOT NULL CHECK (state IN
        ('pending', 'requesting', 'verifying', 'retry_wait', 'encrypted', 'already_encrypted', 'failed')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    budget_base        INTEGER NOT NULL DEFAULT 0,
    kms_errors         INTEGER NOT NULL DEFAULT 0,
    cleared_to_send    INTEGER NOT NULL DEFAULT 0 CHECK (cleared_to_send IN (0, 1)),
    last_sent_at_ms    INTEGER,
    settles_at_ms      INTEGER,
    last_outcome       TEXT    CHECK (last_outcome IN ('accepted', 'ambiguous', 'rejected', 'refused')),
    next_attempt_at_ms INTEGER,
    last_request_id    TEXT,
    last_error_code    TEXT,
    last_error_message TEXT,
    verified_at_ms     INTEGER,
    imported_at_ms     INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL
);
INSERT INTO instances_v4 SELECT * FROM instances;
DROP TABLE instances;
ALTER TABLE instances_v4 RENAME TO instances;
CREATE INDEX instances_by_state ON instances (state, seq);

CREATE TABLE events_v4 (
    id            INTEGER PRIMARY KEY,
    at_ms         INTEGER NOT NULL,
    run_id        INTEGER,
    instance_id   TEXT,
    kind          TEXT    NOT NULL CHECK (kind IN
        ('RunStarted', 'RunEnded', 'Imported', 'FoundAlreadyEncrypted', 'VerifiedEncrypted',
         'ReadNotEncrypted', 'PreflightFailed', 'AttemptWritten', 'AttemptAnswered',
         'RetryScheduled', 'GaveUp', 'AttemptRecovered', 'ResetForRetry', 'ApiCalled')),
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
INSERT INTO events_v4 SELECT * FROM events;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;

CREATE INDEX events_by_instance ON events (instance_id, id);
CREATE INDEX events_by_send_time ON events (sent_at_ms) WHERE sent_at_ms IS NOT NULL;

CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
