-- Schema version 8: several accounts in one run (issue 12). Each instance
-- names the account whose credentials work on it: a tccli profile name
-- (`~/.tccli/NAME.credential`), never a secret. NULL: the run's own
-- credentials (--profile, the environment, the shared file), as before.
-- The partial index serves the per-account counts of `status` and the
-- reports without touching a journal that names no account.
ALTER TABLE instances ADD COLUMN account TEXT;
CREATE INDEX instances_by_account ON instances (account, state) WHERE account IS NOT NULL;
