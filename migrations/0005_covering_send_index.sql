-- `status` and every report compute the busiest second per action and
-- endpoint by reading every send in time order. A covering index makes that
-- an index-only scan (on a 100,000-instance journal, the table lookups were
-- most of `status`'s time). It replaces the plain send-time index, whose
-- queries it serves as well.
CREATE INDEX events_sends ON events (sent_at_ms, action, endpoint) WHERE sent_at_ms IS NOT NULL;
DROP INDEX events_by_send_time;
