-- iamsweep audit database, schema version 3: what a real network and an eventually consistent
-- IAM need the journal to say.
--   - runs.caller_arn: who the base credentials were (GetCallerIdentity at start).
--   - run_accounts.scanned_at: when the scan read the account; a grant it saw is relied on only
--     once it is older than the settle window.
--   - findings.user_id: the IAM UserId the scan saw; a user deleted and re-created under the same
--     name is another principal and is never acted on for the old one.
--   - actions.status gains `unknown` (a write whose answer was lost and that no read has settled
--     yet) and `reverting` (the post-check's re-attach intent, committed before the call);
--     actions.proof_age_ms: how old the live proof of the covering grant was when the detach
--     was sent.
-- SQLite cannot change a CHECK constraint in place: `actions` is rebuilt (rows, ids and
-- indexes kept) and the views that read it are created again, unchanged.

ALTER TABLE runs ADD COLUMN caller_arn TEXT;
ALTER TABLE run_accounts ADD COLUMN scanned_at TEXT;
ALTER TABLE findings ADD COLUMN user_id TEXT;

-- References between actions rows are checked at commit, once the new table has its name.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE actions_v3 (
    id                INTEGER PRIMARY KEY,
    run_id            INTEGER NOT NULL REFERENCES runs (id),
    finding_id        INTEGER REFERENCES findings (id),
    account_id        TEXT NOT NULL,
    user_name         TEXT NOT NULL,
    policy_arn        TEXT NOT NULL,
    operation         TEXT NOT NULL CHECK (operation IN ('detach', 'attach')),
    -- pending: intent committed, outcome not yet known (the process may have died here);
    -- unknown: the call was sent but its answer was lost, and no read has settled it yet;
    -- interrupted: a read showed the call never took effect, and the finding was retried;
    -- reverting: the post-check's re-attach intent is committed, its outcome not yet known.
    status            TEXT NOT NULL CHECK (status IN
                          ('pending', 'unknown', 'detached', 'already_detached', 'skipped',
                           'failed', 'reverting', 'reverted', 'attached', 'already_attached',
                           'interrupted')),
    reason            TEXT,
    covering_group    TEXT,
    request_id        TEXT,
    error_code        TEXT,
    error_message     TEXT,
    intent_at         TEXT NOT NULL,
    finished_at       TEXT,
    revert_request_id TEXT,
    checked_at        TEXT,
    rolled_back_by    INTEGER REFERENCES actions (id),
    undoes            INTEGER REFERENCES actions (id),
    proof_age_ms      INTEGER
);

INSERT INTO actions_v3 (id, run_id, finding_id, account_id, user_name, policy_arn, operation,
                        status, reason, covering_group, request_id, error_code, error_message,
                        intent_at, finished_at, revert_request_id, checked_at, rolled_back_by,
                        undoes)
SELECT id, run_id, finding_id, account_id, user_name, policy_arn, operation, status, reason,
       covering_group, request_id, error_code, error_message, intent_at, finished_at,
       revert_request_id, checked_at, rolled_back_by, undoes
FROM actions;

DROP VIEW detaches;
DROP VIEW open_findings;
DROP VIEW rollbacks;
DROP TABLE actions;
ALTER TABLE actions_v3 RENAME TO actions;

CREATE INDEX actions_by_run ON actions (run_id, account_id, status);
CREATE INDEX actions_by_finding_run ON actions (finding_id, run_id);
CREATE INDEX actions_by_finding ON actions (finding_id);
CREATE INDEX actions_by_user ON actions (account_id, user_name, policy_arn);
CREATE INDEX actions_undoes ON actions (undoes);

-- The views of schema version 2, as they were.
CREATE VIEW detaches AS
SELECT x.id                AS action_id,
       x.run_id            AS run_id,
       r.kind              AS run_kind,
       x.account_id        AS account_id,
       a.account_name      AS account_name,
       x.user_name         AS user_name,
       x.policy_arn        AS policy_arn,
       x.covering_group    AS covering_group,
       x.status            AS status,
       x.reason            AS reason,
       x.request_id        AS request_id,
       x.finished_at       AS detached_at,
       a.role_arn          AS role_arn,
       a.session_name      AS session_name,
       x.rolled_back_by    AS rolled_back_by
FROM actions x
JOIN runs r ON r.id = x.run_id
JOIN run_accounts a ON a.run_id = x.run_id AND a.account_id = x.account_id
WHERE x.operation = 'detach' AND x.status = 'detached';

CREATE VIEW open_findings AS
WITH latest AS (
    SELECT account_id, max(run_id) AS run_id
    FROM run_accounts WHERE users_seen IS NOT NULL
    GROUP BY account_id
)
SELECT f.account_id        AS account_id,
       f.run_id            AS scan_run_id,
       r.started_at        AS scanned_at,
       f.user_name         AS user_name,
       f.policy_arn        AS policy_arn,
       f.policy_name       AS policy_name,
       f.kind              AS kind,
       f.covering_groups   AS covering_groups
FROM findings f
JOIN latest l ON l.account_id = f.account_id AND l.run_id = f.run_id
JOIN runs r ON r.id = f.run_id
WHERE NOT EXISTS (
    SELECT 1 FROM actions x
    WHERE x.account_id = f.account_id AND x.user_name = f.user_name
      AND x.policy_arn = f.policy_arn AND x.operation = 'detach'
      AND x.status IN ('detached', 'already_detached')
      AND x.rolled_back_by IS NULL
      AND x.intent_at >= r.started_at);

CREATE VIEW rollbacks AS
SELECT x.id                AS action_id,
       x.run_id            AS rollback_run_id,
       r.source_run_id     AS rolled_back_run_id,
       x.undoes            AS undoes_action_id,
       x.account_id        AS account_id,
       x.user_name         AS user_name,
       x.policy_arn        AS policy_arn,
       x.status            AS status,
       x.reason            AS reason,
       x.request_id        AS request_id,
       x.finished_at       AS attached_at
FROM actions x
JOIN runs r ON r.id = x.run_id
WHERE x.operation = 'attach';
