-- iamsweep audit database, schema version 1.
-- Shipped migrations are never edited: changes go in a new numbered file.
-- Times are UTC RFC 3339 with milliseconds (2026-11-27T22:16:06.123Z).

-- One invocation's unit of work.
CREATE TABLE runs (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('scan', 'apply', 'rollback')),
    status           TEXT NOT NULL CHECK (status IN
                         ('running', 'completed', 'completed_with_errors', 'failed', 'interrupted')),
    -- apply --run ID: the scan whose findings this run applies; rollback ID: the run undone.
    source_run_id    INTEGER REFERENCES runs (id),
    started_at       TEXT NOT NULL,
    finished_at      TEXT,
    iamsweep_version TEXT NOT NULL,
    accounts_path    TEXT NOT NULL,
    -- The accounts file as it was when the run started, so a resume works on the same list.
    accounts_toml    TEXT NOT NULL,
    options_json     TEXT NOT NULL DEFAULT '{}'
);

-- Each account within a run.
CREATE TABLE run_accounts (
    run_id            INTEGER NOT NULL REFERENCES runs (id),
    account_id        TEXT NOT NULL,
    account_name      TEXT,
    position          INTEGER NOT NULL,
    -- The resolved target (partition, role, filters) as JSON; never any credential.
    target_json       TEXT NOT NULL,
    role_arn          TEXT,
    session_name      TEXT,
    -- Where the account came from: NULL for accounts.toml, else its OU path in the
    -- organization (Root/Prod/Web).
    origin            TEXT,
    status            TEXT NOT NULL CHECK (status IN
                          ('pending', 'scanned', 'completed', 'failed', 'stopped')),
    error_code        TEXT,
    error_message     TEXT,
    started_at        TEXT,
    finished_at       TEXT,
    users_seen        INTEGER,
    groups_seen       INTEGER,
    users_excluded    INTEGER,
    redundant_count   INTEGER,
    direct_only_count INTEGER,
    api_calls         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, account_id)
);

-- AWS requests made per account and operation (retries included).
CREATE TABLE api_calls (
    run_id     INTEGER NOT NULL,
    account_id TEXT NOT NULL,
    operation  TEXT NOT NULL,
    calls      INTEGER NOT NULL,
    throttled  INTEGER NOT NULL DEFAULT 0,
    errors     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, account_id, operation),
    FOREIGN KEY (run_id, account_id) REFERENCES run_accounts (run_id, account_id)
);

-- Every managed policy attached directly to a user, as a scan saw it.
CREATE TABLE findings (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL,
    account_id      TEXT NOT NULL,
    user_name       TEXT NOT NULL,
    user_arn        TEXT NOT NULL,
    policy_arn      TEXT NOT NULL,
    policy_name     TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('redundant_direct', 'direct_only')),
    -- JSON array of group names that grant the same policy ARN (empty for direct_only).
    covering_groups TEXT NOT NULL DEFAULT '[]',
    FOREIGN KEY (run_id, account_id) REFERENCES run_accounts (run_id, account_id),
    -- Also the index for reading a run's findings in report order.
    UNIQUE (run_id, account_id, user_name, policy_arn)
);

-- The journal: every change made or attempted in AWS. The row is written (status 'pending')
-- and committed before the AWS call, and completed after it.
CREATE TABLE actions (
    id                INTEGER PRIMARY KEY,
    run_id            INTEGER NOT NULL REFERENCES runs (id),
    finding_id        INTEGER REFERENCES findings (id),
    account_id        TEXT NOT NULL,
    user_name         TEXT NOT NULL,
    policy_arn        TEXT NOT NULL,
    operation         TEXT NOT NULL CHECK (operation IN ('detach', 'attach')),
    -- pending: intent committed, outcome not yet known (the process may have died here);
    -- interrupted: a resume found the call never took effect, and retried the finding.
    status            TEXT NOT NULL CHECK (status IN
                          ('pending', 'detached', 'already_detached', 'skipped', 'failed',
                           'reverted', 'attached', 'already_attached', 'interrupted')),
    -- skipped: no_longer_covered | user_gone | excluded | limit_reached;
    -- already_detached: not_attached_at_verify | no_such_entity
    reason            TEXT,
    -- The group that a live read showed granting the policy when the detach was made.
    covering_group    TEXT,
    request_id        TEXT,
    error_code        TEXT,
    error_message     TEXT,
    intent_at         TEXT NOT NULL,
    finished_at       TEXT,
    -- reverted: the re-attach made when the covering grant vanished during the detach.
    revert_request_id TEXT,
    -- When the post-check confirmed a group still grants the policy after the detach.
    checked_at        TEXT,
    -- The rollback action that undid this one.
    rolled_back_by    INTEGER REFERENCES actions (id),
    -- For a rollback's attach: the detach it undoes.
    undoes            INTEGER REFERENCES actions (id)
);

CREATE INDEX actions_by_run ON actions (run_id, account_id, status);
CREATE INDEX actions_by_finding_run ON actions (finding_id, run_id);
CREATE INDEX actions_by_finding ON actions (finding_id);
CREATE INDEX actions_by_user ON actions (account_id, user_name, policy_arn);
