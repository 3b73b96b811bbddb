-- iamsweep audit database, schema version 5: what recovery and proofs need to keep their promise.
--   - actions.send_by: for a detach, the latest time any attempt of it may be sent (UTC RFC
--     3339). Committed with the intent, and moved later (committed again) before an attempt
--     that would leave after it (throttled re-sends): the recovery of an intent left by a crash
--     knows the request is over once send_by and the call timeout have passed.
--   - findings.covering_group_ids: the IAM GroupId of each covering group, in the order of
--     covering_groups (a JSON array). A group deleted and re-created under the same name is a
--     new grant, not the one the scan saw: a live proof does not rely on it.
--   - the `detaches` view lists every detach iamsweep made, also those whose post-check
--     re-attach is under way (`reverting`) or failed (`failed` / `reattach_failed`: the user
--     lacks the policy now). Same columns as before.

ALTER TABLE actions ADD COLUMN send_by TEXT;
ALTER TABLE findings ADD COLUMN covering_group_ids TEXT;

DROP VIEW detaches;
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
