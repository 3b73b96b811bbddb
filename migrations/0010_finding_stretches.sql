-- iamsweep audit database, schema version 10: findings stored by stretches, so that a history of
-- scheduled sweeps grows with what changed, not with the number of runs.
--
--   - finding_stretches: one row per finding and unbroken stretch of scans that saw it exactly
--     so (same user, policy, kind, covering groups and their ids, owner, exception). A stretch is
--     seen by every scan that recorded its account from `first_run` to `last_run` (NULL: still
--     seen by the latest). A scan of an unchanged account writes no row per finding.
--   - run_accounts.finding_base / finding_span: set when a scan recorded the account (NULL: it
--     did not, e.g. the account failed: its findings are "not seen", never "resolved"). The id of
--     a finding in that run is finding_base + the stretch's `slot` (stable within the account);
--     ids stay unique across runs, and every id recorded before this version is kept.
--   - findings: now a view with the columns and ids of the table it replaces.
--   - actions.finding_id no longer has a foreign key (findings is a view): `actions` is rebuilt
--     (rows, ids and indexes kept), and the views that read it are created again, unchanged.

PRAGMA defer_foreign_keys = ON;

DROP VIEW detaches;
DROP VIEW open_findings;
DROP VIEW rollbacks;
DROP VIEW drift;

-- The old table is renamed first, so that its rows' references to each other (rolled_back_by,
-- undoes) follow it and the new table's references name the new table.
ALTER TABLE actions RENAME TO actions_v9;

CREATE TABLE actions (
    id                INTEGER PRIMARY KEY,
    run_id            INTEGER NOT NULL REFERENCES runs (id),
    -- findings.id of the finding acted on (findings is a view: no foreign key).
    finding_id        INTEGER,
    account_id        TEXT NOT NULL,
    user_name         TEXT NOT NULL,
    policy_arn        TEXT NOT NULL,
    operation         TEXT NOT NULL CHECK (operation IN ('detach', 'attach')),
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
    proof_age_ms      INTEGER,
    send_by           TEXT
);

INSERT INTO actions (id, run_id, finding_id, account_id, user_name, policy_arn, operation,
                         status, reason, covering_group, request_id, error_code, error_message,
                         intent_at, finished_at, revert_request_id, checked_at, rolled_back_by,
                         undoes, proof_age_ms, send_by)
SELECT id, run_id, finding_id, account_id, user_name, policy_arn, operation, status, reason,
       covering_group, request_id, error_code, error_message, intent_at, finished_at,
       revert_request_id, checked_at, rolled_back_by, undoes, proof_age_ms, send_by
FROM actions_v9;

DROP TABLE actions_v9;

CREATE INDEX actions_by_run ON actions (run_id, account_id, status);
CREATE INDEX actions_by_finding_run ON actions (finding_id, run_id);
CREATE INDEX actions_by_finding ON actions (finding_id);
CREATE INDEX actions_by_user ON actions (account_id, user_name, policy_arn);
CREATE INDEX actions_undoes ON actions (undoes);

-- What each run keeps of an account that stays the same from run to run (its name, resolved
-- settings, role, session name, OU path) is stored once: `run_accounts` becomes a view over
-- `run_account_rows` and `account_targets`, with the same columns. The rename carries the
-- foreign keys of `api_calls` along.
ALTER TABLE run_accounts RENAME TO run_account_rows;

CREATE TABLE account_targets (
    id           INTEGER PRIMARY KEY,
    account_name TEXT,
    target_json  TEXT NOT NULL,
    role_arn     TEXT,
    session_name TEXT,
    origin       TEXT
);
CREATE INDEX account_targets_by_json ON account_targets (target_json);
INSERT INTO account_targets (account_name, target_json, role_arn, session_name, origin)
SELECT DISTINCT account_name, target_json, role_arn, session_name, origin FROM run_account_rows;

ALTER TABLE run_account_rows ADD COLUMN target_id INTEGER REFERENCES account_targets (id);
UPDATE run_account_rows
SET target_id = (SELECT t.id FROM account_targets t
                 WHERE t.target_json = run_account_rows.target_json
                   AND t.account_name IS run_account_rows.account_name
                   AND t.role_arn IS run_account_rows.role_arn
                   AND t.session_name IS run_account_rows.session_name
                   AND t.origin IS run_account_rows.origin);
ALTER TABLE run_account_rows DROP COLUMN account_name;
ALTER TABLE run_account_rows DROP COLUMN target_json;
ALTER TABLE run_account_rows DROP COLUMN role_arn;
ALTER TABLE run_account_rows DROP COLUMN session_name;
ALTER TABLE run_account_rows DROP COLUMN origin;
ALTER TABLE run_account_rows ADD COLUMN finding_base INTEGER;
ALTER TABLE run_account_rows ADD COLUMN finding_span INTEGER;

CREATE VIEW run_accounts AS
SELECT r.run_id            AS run_id,
       r.account_id        AS account_id,
       t.account_name      AS account_name,
       r.position          AS position,
       t.target_json       AS target_json,
       t.role_arn          AS role_arn,
       t.session_name      AS session_name,
       t.origin            AS origin,
       r.status            AS status,
       r.error_code        AS error_code,
       r.error_message     AS error_message,
       r.started_at        AS started_at,
       r.finished_at       AS finished_at,
       r.users_seen        AS users_seen,
       r.groups_seen       AS groups_seen,
       r.users_excluded    AS users_excluded,
       r.redundant_count   AS redundant_count,
       r.direct_only_count AS direct_only_count,
       r.api_calls         AS api_calls,
       r.scanned_at        AS scanned_at,
       r.finding_base      AS finding_base,
       r.finding_span      AS finding_span
FROM run_account_rows r
LEFT JOIN account_targets t ON t.id = r.target_id;

CREATE TABLE finding_stretches (
    account_id         TEXT NOT NULL,
    slot               INTEGER NOT NULL,
    first_run          INTEGER NOT NULL,
    last_run           INTEGER,
    user_name          TEXT NOT NULL,
    user_arn           TEXT NOT NULL,
    policy_arn         TEXT NOT NULL,
    policy_name        TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('redundant_direct', 'direct_only')),
    covering_groups    TEXT NOT NULL DEFAULT '[]',
    user_id            TEXT,
    covering_group_ids TEXT,
    exception          TEXT,
    owner              TEXT,
    -- One row per user and policy in each run: the key is also the report order.
    PRIMARY KEY (account_id, user_name, policy_arn, first_run)
) WITHOUT ROWID;

-- The next id range a scan of an account takes.
CREATE TABLE finding_ids (next INTEGER NOT NULL);
INSERT INTO finding_ids (next) SELECT coalesce(max(id), 0) + 1 FROM findings;

-- Every finding recorded so far keeps its id: each (run, account) keeps the range its rows had,
-- and each row becomes a stretch of that one run.
UPDATE run_account_rows
SET finding_base = g.base, finding_span = g.span
FROM (SELECT run_id, account_id, min(id) AS base, max(id) - min(id) + 1 AS span
      FROM findings GROUP BY run_id, account_id) AS g
WHERE run_account_rows.run_id = g.run_id AND run_account_rows.account_id = g.account_id;
UPDATE run_account_rows SET finding_base = 0, finding_span = 0
WHERE finding_base IS NULL AND users_seen IS NOT NULL;

INSERT INTO finding_stretches (account_id, slot, first_run, last_run, user_name, user_arn,
                               policy_arn, policy_name, kind, covering_groups, user_id,
                               covering_group_ids, exception, owner)
SELECT f.account_id, f.id - a.finding_base, f.run_id, f.run_id, f.user_name, f.user_arn,
       f.policy_arn, f.policy_name, f.kind, f.covering_groups, f.user_id, f.covering_group_ids,
       f.exception, f.owner
FROM findings f
JOIN run_account_rows a ON a.run_id = f.run_id AND a.account_id = f.account_id;

DROP TABLE findings;

-- The findings of each run, as the table of schema versions 1 to 9 had them: same columns, same
-- ids.
CREATE VIEW findings AS
SELECT a.finding_base + s.slot AS id,
       a.run_id               AS run_id,
       s.account_id           AS account_id,
       s.user_name            AS user_name,
       s.user_arn             AS user_arn,
       s.policy_arn           AS policy_arn,
       s.policy_name          AS policy_name,
       s.kind                 AS kind,
       s.covering_groups      AS covering_groups,
       s.user_id              AS user_id,
       s.covering_group_ids   AS covering_group_ids,
       s.exception            AS exception,
       s.owner                AS owner
FROM run_account_rows a
JOIN finding_stretches s
  ON s.account_id = a.account_id AND s.first_run <= a.run_id
 AND (s.last_run IS NULL OR s.last_run >= a.run_id)
WHERE a.finding_base IS NOT NULL;

-- The views of schema version 9, as they were.
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
WHERE x.operation = 'detach'
  AND (x.status IN ('detached', 'reverting')
       OR (x.status = 'failed' AND x.reason = 'reattach_failed'));

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

CREATE VIEW drift AS
SELECT f.id                AS finding_id,
       f.run_id            AS run_id,
       coalesce(a.scanned_at, a.finished_at, a.started_at) AS seen_at,
       f.account_id        AS account_id,
       a.account_name      AS account_name,
       f.user_name         AS user_name,
       f.policy_arn        AS policy_arn,
       f.policy_name       AS policy_name,
       f.kind              AS kind,
       d.run_id            AS detached_in_run,
       d.id                AS detach_action_id,
       d.request_id        AS detach_request_id,
       d.finished_at       AS detached_at
FROM findings f
JOIN run_accounts a ON a.run_id = f.run_id AND a.account_id = f.account_id
JOIN actions d ON d.id = (
    SELECT max(x.id) FROM actions x
    WHERE x.account_id = f.account_id AND x.user_name = f.user_name
      AND x.policy_arn = f.policy_arn
      AND x.operation = 'detach' AND x.status = 'detached'
      AND x.rolled_back_by IS NULL
      AND x.run_id <> f.run_id
      AND x.finished_at < coalesce(a.scanned_at, a.finished_at, a.started_at));
