//! What a finished run reports: its findings, tallies, reasons and API calls.

use rusqlite::params;

use super::*;

impl Store {
    /// What the journal says of an account's findings in a run: each finding counted once, by
    /// its latest action.
    pub fn account_tally(&self, run_id: i64, account: &AccountId) -> Result<Tally, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT status, count(*) FROM (
                 SELECT status, row_number() OVER (
                     PARTITION BY coalesce(finding_id, -id) ORDER BY id DESC) AS latest
                 FROM actions WHERE run_id = ?1 AND account_id = ?2)
             WHERE latest = 1 GROUP BY status",
        )?;
        let rows = stmt.query_map(params![run_id, account.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
        })?;
        let mut t = Tally::default();
        for row in rows {
            let (status, n) = row?;
            match status.as_str() {
                "detached" | "attached" => t.detached += n,
                "already_detached" | "already_attached" => t.already_detached += n,
                "skipped" => t.skipped += n,
                "failed" => t.failed += n,
                "reverted" => t.reverted += n,
                "pending" | "unknown" | "reverting" => t.unsettled += n,
                _ => {}
            }
        }
        Ok(t)
    }

    /// Why actions of a run did not detach: (`status` or `status: reason`, count), most first.
    pub fn outcome_reasons(&self, run_id: i64) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT CASE WHEN reason IS NULL OR reason = status THEN status
                         ELSE status || ': ' || reason END AS what, count(*) AS n
             FROM actions
             WHERE run_id = ?1 AND status NOT IN ('detached', 'attached')
             GROUP BY what ORDER BY n DESC, what",
        )?;
        let rows = stmt.query_map(params![run_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// API calls per account and operation for a run.
    pub fn api_calls(&self, run_id: i64) -> Result<Vec<ApiCallRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT account_id, operation, calls, throttled, errors FROM api_calls
             WHERE run_id = ?1 ORDER BY account_id, operation",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok(ApiCallRow {
                account_id: r.get(0)?,
                operation: r.get(1)?,
                calls: r.get(2)?,
                throttled: r.get(3)?,
                errors: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The findings a run reported (its own, or for `apply --run`, the scan's), each with the
    /// latest action taken on it: by this run if it is an apply, by any run for a scan.
    pub fn report(&self, run_id: i64) -> Result<Vec<FindingRow>, StoreError> {
        let mut rows = Vec::new();
        self.report_each(run_id, |view| {
            rows.push(view.to_row());
            Ok(())
        })?;
        Ok(rows)
    }
}
