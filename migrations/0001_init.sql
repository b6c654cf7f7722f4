-- fleetcrypt journal, schema version 1.
-- Facts only: the journal records what happened and calls nothing.

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,
    pid           INTEGER NOT NULL,
    command       TEXT    NOT NULL,
    tool_version  TEXT    NOT NULL,
    rate_limit    INTEGER,
    exit_code     INTEGER
);

CREATE TABLE instances (
    instance_id        TEXT    PRIMARY KEY,
    seq                INTEGER NOT NULL UNIQUE,          -- import order
    region             TEXT    NOT NULL,
    key_id             TEXT,
    key_region         TEXT,
    labels             TEXT    NOT NULL DEFAULT '{}',    -- JSON object of extra input columns
    state              TEXT    NOT NULL CHECK (state IN
        ('pending', 'requesting', 'verifying', 'retry_wait', 'encrypted', 'already_encrypted', 'failed')),
    attempts           INTEGER NOT NULL DEFAULT 0,       -- Open attempts ever journaled
    budget_base        INTEGER NOT NULL DEFAULT 0,       -- attempts at the last retry-failed
    kms_errors         INTEGER NOT NULL DEFAULT 0,       -- KmsError answers since the last reset
    cleared_to_send    INTEGER NOT NULL DEFAULT 0 CHECK (cleared_to_send IN (0, 1)),
    last_sent_at_ms    INTEGER,                          -- send time of the last attempt
    settles_at_ms      INTEGER,                          -- when that attempt can no longer be in flight
    last_outcome       TEXT,                             -- accepted | ambiguous | rejected | refused
    next_attempt_at_ms INTEGER,
    last_request_id    TEXT,
    last_error_code    TEXT,
    last_error_message TEXT,
    verified_at_ms     INTEGER,
    imported_at_ms     INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL
);

CREATE INDEX instances_by_state ON instances (state, seq);

-- Append-only audit trail. Each row carries the SHA-256 of its own canonical
-- content chained to the previous row's hash (see src/journal/chain.rs).
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    at_ms         INTEGER NOT NULL,
    run_id        INTEGER,
    instance_id   TEXT,
    kind          TEXT    NOT NULL,
    from_state    TEXT,
    to_state      TEXT,
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

CREATE INDEX events_by_instance ON events (instance_id, id);
CREATE INDEX events_by_send_time ON events (sent_at_ms) WHERE sent_at_ms IS NOT NULL;

CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
