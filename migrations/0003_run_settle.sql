-- Schema version 3: each run records its settle window (--settle), the time
-- after sending an Open during which the server may still be working on it.
-- After a crash, every attempt not yet cleared waits a fresh window counted
-- from the restart: the longest window any run on the journal used.
ALTER TABLE runs ADD COLUMN settle_ms INTEGER;
