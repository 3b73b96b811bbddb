//! Scan records: the findings a scan saw, and which of them an apply takes.

use rusqlite::{OptionalExtension, params};

use super::runs::write_calls;
use super::stretches;
use super::*;

impl Store {
    /// Records one account's scan: its findings, counts and API calls, in one transaction.
    /// `status` is `scanned` when an apply follows in the same run, else `completed`.
    pub fn record_scan(
        &mut self,
        run_id: i64,
        account: &AccountId,
        scan: &AccountFindings,
        calls: &CallCounts,
        status: AccountStatus,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        stretches::record(&tx, run_id, account.as_str(), &scan.findings)?;
        tx.execute(
            "UPDATE run_account_rows SET status = ?3, users_seen = ?4, groups_seen = ?5,
                    users_excluded = ?6, redundant_count = ?7, direct_only_count = ?8,
                    error_code = NULL, error_message = NULL, scanned_at = ?10,
                    finished_at = CASE WHEN ?3 = 'completed' THEN ?9 ELSE finished_at END
             WHERE run_id = ?1 AND account_id = ?2",
            params![
                run_id,
                account.as_str(),
                status.as_str(),
                scan.users_seen,
                scan.groups_seen,
                scan.users_excluded,
                scan.count(FindingKind::RedundantDirect),
                scan.count(FindingKind::DirectOnly),
                now(),
                scan.read_at,
            ],
        )?;
        write_calls(&tx, run_id, account, calls)?;
        tx.commit()?;
        Ok(())
    }

    /// The redundant findings of `findings_run` in `account` that run `action_run` has not
    /// settled: never acted on, or whose latest action failed or was interrupted; not those an
    /// earlier apply detached (and no rollback re-attached).
    pub fn findings_to_apply(
        &self,
        findings_run: i64,
        action_run: i64,
        account: &AccountId,
    ) -> Result<Vec<(i64, Finding)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT f.id, f.user_name, f.user_arn, f.policy_arn, f.policy_name, f.kind,
                    f.covering_groups, f.user_id, f.covering_group_ids
             FROM findings f
             LEFT JOIN actions x ON x.id = (SELECT max(y.id) FROM actions y
                                            WHERE y.finding_id = f.id AND y.run_id = ?2)
             WHERE f.run_id = ?1 AND f.account_id = ?3 AND f.kind = 'redundant_direct'
               AND (x.id IS NULL
                    OR x.status = 'interrupted'
                    OR (x.status = 'failed' AND coalesce(x.reason, '') <> 'reattach_failed'))
               AND NOT {DETACHED_BY_ANOTHER_APPLY}
             ORDER BY f.user_name, f.policy_arn"
        ))?;
        let rows = stmt.query_map(params![findings_run, action_run, account.as_str()], |r| {
            Ok((r.get::<_, i64>(0)?, finding_at(r, 1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The redundant findings of run `run_id` a live exception covered when the scan saw them:
    /// (account, user name, policy ARN).
    pub fn excepted_findings(
        &self,
        run_id: i64,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT account_id, user_name, policy_arn FROM findings
             WHERE run_id = ?1 AND kind = 'redundant_direct' AND exception IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![run_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the scan of run `run_id` read `account` (`None` if it never did).
    pub fn scanned_at(
        &self,
        run_id: i64,
        account: &AccountId,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT coalesce(scanned_at, finished_at, started_at) FROM run_account_rows
                 WHERE run_id = ?1 AND account_id = ?2",
                params![run_id, account.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }
}

/// A finding from eight consecutive columns, starting at `at`: user_name, user_arn,
/// policy_arn, policy_name, kind, covering_groups, user_id, covering_group_ids.
pub(super) fn finding_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Finding> {
    let kind: String = r.get(at + 4)?;
    let groups: String = r.get(at + 5)?;
    let group_ids: Option<String> = r.get(at + 7)?;
    Ok(Finding {
        user_name: UserName::new(r.get::<_, String>(at)?),
        user_id: r.get(at + 6)?,
        user_arn: r.get(at + 1)?,
        policy_arn: PolicyArn::new(r.get::<_, String>(at + 2)?),
        policy_name: r.get(at + 3)?,
        kind: FindingKind::parse(&kind).unwrap_or(FindingKind::RedundantDirect),
        covering_groups: serde_json::from_str(&groups).unwrap_or_default(),
        covering_group_ids: group_ids
            .and_then(|ids| serde_json::from_str(&ids).ok())
            .unwrap_or_default(),
        exception: None,
        owner: None,
    })
}
