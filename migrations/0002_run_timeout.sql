-- Schema version 2: each run records its request timeout, so that a later run
-- recovering that run's in-flight attempts waits at least as long (a shorter
-- --timeout on resume must not shorten the window in which the server may
-- still complete an attempt sent by the crashed run).
ALTER TABLE runs ADD COLUMN timeout_ms INTEGER;
