-- iamsweep audit database, schema version 2: views for the common audit questions.
-- Documented in docs/schema.md; names and columns are kept stable.

-- Every detach iamsweep ever made, with what CloudTrail needs to find it again.
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

-- Per account, the findings of its latest scan that are still open: direct-only ones, and
-- redundant ones that no later detach removed (or whose detach was rolled back).
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

-- Every re-attach made by a rollback run, with the detach it undid.
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

CREATE INDEX actions_undoes ON actions (undoes);
