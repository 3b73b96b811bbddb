-- iamsweep audit database, schema version 4: drift, the direct attachments that iamsweep
-- detached and that came back (Terraform, CloudFormation or a script applying them again).
-- Documented in docs/schema.md; names and columns are kept stable.
--
-- A finding is drift when, before the scan that recorded it read its account, an earlier run
-- of iamsweep detached the same (account, user name, policy ARN) and that detach still holds
-- in the journal: status `detached` (iamsweep's own detach, as in the `detaches` view), and not
-- rolled back. A detach undone by `rollback` is not drift: iamsweep put the policy back itself.
-- The latest such detach is the one shown.

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
