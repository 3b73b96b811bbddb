//! The queries behind `diff`, `scan --fail-on` and drift: which runs recorded which accounts'
//! scans, and what changed in one account between two of them. Reads only; which runs to
//! compare is decided by `crate::diff`, not here.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError};

/// The detaches that make a finding of run `?1` in account `?2` drift, oldest first (the last
/// one wins): the definition of the `drift` view (migrations/0004_drift.sql), per account, for
/// the streamed report, which must not run a subquery per finding.
pub(super) const DRIFT_DETACHES: &str = "
    SELECT x.user_name, x.policy_arn, x.run_id, x.request_id, x.finished_at
    FROM actions x
    WHERE x.account_id = ?2 AND x.operation = 'detach' AND x.status = 'detached'
      AND x.rolled_back_by IS NULL AND x.run_id <> ?1
      AND x.finished_at < (SELECT coalesce(scanned_at, finished_at, started_at)
                           FROM run_accounts WHERE run_id = ?1 AND account_id = ?2)
    ORDER BY x.id";

/// One account of a run, as far as comparing its findings goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScanCoverage {
    pub account_id: String,
    pub account_name: Option<String>,
    /// The account's scan was recorded in the run: its findings are complete (they are
    /// committed in one transaction per account, or not at all).
    pub scanned: bool,
    pub status: String,
    pub error_code: Option<String>,
}

/// How a finding changed between two runs, in the order `diff` lists them (drift first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// In the later run, and iamsweep had detached it before that run's scan (since the
    /// earlier run's scan, if that one saw it too): drift.
    Reappeared,
    /// In the later run, not in the earlier one.
    New,
    /// In the earlier run, not in the later one.
    Resolved,
    /// In both (listed only on request).
    Unchanged,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Reappeared => "reappeared",
            ChangeKind::New => "new",
            ChangeKind::Resolved => "resolved",
            ChangeKind::Unchanged => "unchanged",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "reappeared" => ChangeKind::Reappeared,
            "new" => ChangeKind::New,
            "resolved" => ChangeKind::Resolved,
            _ => ChangeKind::Unchanged,
        }
    }
}

/// One finding of `diff`. A finding is (account, user, policy ARN, kind): one whose kind
/// changed is the old kind resolved and the new kind new.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub account_id: String,
    pub account_name: Option<String>,
    pub user_name: String,
    pub user_arn: String,
    pub policy_arn: String,
    pub policy_name: String,
    pub kind: String,
    pub covering_groups: Vec<String>,
    pub change: ChangeKind,
    /// The detach that did not hold (for `reappeared`; for `unchanged`, drift that was already
    /// there in the earlier run).
    pub detached_in_run: Option<i64>,
    pub detach_request_id: Option<String>,
    pub detached_at: Option<String>,
    /// The live `[[exception]]` that covered it when its (latest) scan saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<crate::exceptions::ExceptionMark>,
}

impl Store {
    /// Runs no longer running that recorded the scan of at least one account, newest first;
    /// only those before run `before` when given. (A scan still running has recorded only the
    /// accounts it reached: it is compared only when named.)
    pub fn scan_runs(&self, before: Option<i64>) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT a.run_id FROM run_accounts a JOIN runs r ON r.id = a.run_id
             WHERE a.users_seen IS NOT NULL AND r.status <> 'running'
               AND (?1 IS NULL OR a.run_id < ?1)
             ORDER BY a.run_id DESC",
        )?;
        let rows = stmt.query_map(params![before], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every account of run `run_id`, in the run's order, with whether its scan was recorded.
    pub fn scan_coverage(&self, run_id: i64) -> Result<Vec<ScanCoverage>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT account_id, account_name, users_seen IS NOT NULL, status, error_code
             FROM run_accounts WHERE run_id = ?1 ORDER BY position",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok(ScanCoverage {
                account_id: r.get(0)?,
                account_name: r.get(1)?,
                scanned: r.get(2)?,
                status: r.get(3)?,
                error_code: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest run before `before` that recorded the scan of `account`.
    pub fn previous_scan(&self, account: &str, before: i64) -> Result<Option<i64>, StoreError> {
        super::stretches::recorded_before(&self.conn, account, before)
    }

    /// Runs `from` and `to` (both recorded `account`) saw the very same findings there, and no
    /// detach iamsweep made in the account since `from` read it can make one reappear: every
    /// stretch of the account either covers both runs or neither. Then nothing changed.
    fn same_findings(&self, from: i64, to: i64, account: &str) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM finding_stretches s
                                WHERE s.account_id = ?3
                                  AND (s.first_run <= ?1 OR s.first_run <= ?2)
                                  AND ((s.first_run <= ?1 AND (s.last_run IS NULL OR s.last_run >= ?1))
                                       <> (s.first_run <= ?2 AND (s.last_run IS NULL OR s.last_run >= ?2))))
                AND NOT EXISTS (SELECT 1 FROM actions x
                                WHERE x.account_id = ?3 AND x.operation = 'detach'
                                  AND x.status = 'detached'
                                  AND x.finished_at >= (SELECT coalesce(scanned_at, finished_at, started_at)
                                                        FROM run_account_rows
                                                        WHERE run_id = ?1 AND account_id = ?3))",
            params![from, to, account],
            |r| r.get(0),
        )?)
    }

    /// What changed in `account` from run `from` (`None`: nothing before, every finding of
    /// `to` is new or reappeared) to run `to`: reappeared first, then new, then resolved (then
    /// unchanged, with `unchanged`), each by user and policy. Both runs must have recorded the
    /// account's scan; the caller checks it.
    pub fn changes(
        &self,
        from: Option<i64>,
        to: i64,
        account: &str,
        unchanged: bool,
    ) -> Result<Vec<Change>, StoreError> {
        if let Some(from) = from
            && !unchanged
            && self.same_findings(from, to, account)?
        {
            return Ok(Vec::new());
        }
        // The detach behind each finding of `to` is the drift view's definition (the latest
        // detach of the same user and policy before `to` read the account, not rolled back),
        // looked up per finding by the journal's index; whether it counts as reappeared *since*
        // `from` depends on `from`'s scan time. Each run's findings in the account are read once
        // (`p`, `t`), and matched by user, policy and kind.
        let mut stmt = self.conn.prepare_cached(
            "WITH p AS MATERIALIZED (
                 SELECT user_name, user_arn, policy_arn, policy_name, kind, covering_groups,
                        exception
                 FROM findings WHERE run_id = ?1 AND account_id = ?3),
             t AS MATERIALIZED (
                 SELECT user_name, user_arn, policy_arn, policy_name, kind, covering_groups,
                        exception
                 FROM findings WHERE run_id = ?2 AND account_id = ?3)
             SELECT * FROM (
                 SELECT CASE WHEN d.id IS NOT NULL
                                  AND (NOT t.before
                                       OR d.finished_at >= (SELECT coalesce(scanned_at, finished_at, started_at)
                                                            FROM run_accounts
                                                            WHERE run_id = ?1 AND account_id = ?3))
                             THEN 'reappeared'
                             WHEN NOT t.before THEN 'new'
                             ELSE 'unchanged' END AS change,
                        t.user_name, t.user_arn, t.policy_arn, t.policy_name, t.kind,
                        t.covering_groups, d.run_id, d.request_id, d.finished_at, t.exception
                 FROM (SELECT t.*,
                              EXISTS (SELECT 1 FROM p
                                      WHERE p.user_name = t.user_name
                                        AND p.policy_arn = t.policy_arn
                                        AND p.kind = t.kind) AS before,
                              (SELECT max(x.id) FROM actions x
                               WHERE x.account_id = ?3 AND x.user_name = t.user_name
                                 AND x.policy_arn = t.policy_arn
                                 AND x.operation = 'detach' AND x.status = 'detached'
                                 AND x.rolled_back_by IS NULL AND x.run_id <> ?2
                                 AND x.finished_at < (SELECT coalesce(scanned_at, finished_at, started_at)
                                                      FROM run_accounts
                                                      WHERE run_id = ?2 AND account_id = ?3))
                                  AS detach
                       FROM t) t
                 LEFT JOIN actions d ON d.id = t.detach
                 UNION ALL
                 SELECT 'resolved', p.user_name, p.user_arn, p.policy_arn, p.policy_name, p.kind,
                        p.covering_groups, NULL, NULL, NULL, p.exception
                 FROM p
                 WHERE NOT EXISTS (SELECT 1 FROM t
                                   WHERE t.user_name = p.user_name
                                     AND t.policy_arn = p.policy_arn AND t.kind = p.kind))
             WHERE ?4 OR change <> 'unchanged'
             ORDER BY CASE change WHEN 'reappeared' THEN 0 WHEN 'new' THEN 1
                                  WHEN 'resolved' THEN 2 ELSE 3 END,
                      user_name, policy_arn, kind",
        )?;
        let name: Option<String> = self
            .conn
            .query_row(
                "SELECT account_name FROM run_accounts
                 WHERE account_id = ?2 AND run_id IN (?1, ?3) ORDER BY run_id DESC LIMIT 1",
                params![to, account, from],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let rows = stmt.query_map(params![from, to, account, unchanged], |r| {
            let groups: String = r.get(6)?;
            Ok(Change {
                account_id: account.to_owned(),
                account_name: name.clone(),
                change: ChangeKind::parse(&r.get::<_, String>(0)?),
                user_name: r.get(1)?,
                user_arn: r.get(2)?,
                policy_arn: r.get(3)?,
                policy_name: r.get(4)?,
                kind: r.get(5)?,
                covering_groups: serde_json::from_str(&groups).unwrap_or_default(),
                detached_in_run: r.get(7)?,
                detach_request_id: r.get(8)?,
                detached_at: r.get(9)?,
                exception: r
                    .get::<_, Option<String>>(10)?
                    .and_then(|e| serde_json::from_str(&e).ok()),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
