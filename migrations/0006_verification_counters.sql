-- Schema version 6: each instance counts its own DescribeDBInstanceInfo reads
-- and polls, and keeps its delay from an accepted Open to the read that saw
-- YES, so `status` shows how verification spends the read quota without
-- scanning every event (on a 100,000-instance journal the event scans took
-- 0.25 s of a 0.2 s budget). The writer keeps them in the same transaction as
-- the event they count; here they are filled in from the events already
-- written. Definitions, as in `read::verification_from_events`:
--   describe_reads: events of action DescribeDBInstanceInfo that were sent;
--   polls: those read while verifying that did not find YES;
--   delay_to_yes_ms: the YES read's send time minus the accepted Open's.
ALTER TABLE instances ADD COLUMN describe_reads  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN polls           INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN yes_endpoint    TEXT;
ALTER TABLE instances ADD COLUMN delay_to_yes_ms INTEGER;

UPDATE instances SET
    describe_reads = (SELECT count(*) FROM events e
        WHERE e.instance_id = instances.instance_id
          AND e.action = 'DescribeDBInstanceInfo' AND e.sent_at_ms IS NOT NULL),
    polls = (SELECT count(*) FROM events e
        WHERE e.instance_id = instances.instance_id
          AND e.action = 'DescribeDBInstanceInfo' AND e.sent_at_ms IS NOT NULL
          AND e.from_state = 'verifying' AND e.kind <> 'VerifiedEncrypted');

UPDATE instances SET (yes_endpoint, delay_to_yes_ms) = (
    SELECT e.endpoint, max(e.sent_at_ms - instances.last_sent_at_ms, 0) FROM events e
    WHERE e.instance_id = instances.instance_id AND e.kind = 'VerifiedEncrypted'
      AND e.sent_at_ms IS NOT NULL AND e.endpoint IS NOT NULL
    ORDER BY e.id DESC LIMIT 1)
WHERE last_outcome = 'accepted' AND last_sent_at_ms IS NOT NULL;

-- `status` reads both figures from this index alone, not from the table.
CREATE INDEX instances_verification ON instances (yes_endpoint, delay_to_yes_ms, describe_reads, polls);
-- `status`'s rate over the last minute reads the instances changed in it, not
-- every instance.
CREATE INDEX instances_by_update ON instances (updated_at_ms, state);
