//! `prune --before DATE`: forgets scan runs that changed nothing, so a file kept for years by
//! scheduled sweeps holds the runs that tell something. A scan run is forgotten only when every
//! account it read was read completely and shows exactly what the previous scan of that account
//! kept showed (the same findings, field for field, and the same counts), and nothing refers to
//! it: no apply of it, no journal row, nothing published from it. The newest scan is kept.
//! Every report, diff and drift over the runs kept reads the same afterwards.

use rusqlite::params;

use super::*;

/// What a prune removed (or, dry, would remove).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub runs: Vec<i64>,
    pub findings: u64,
    /// Scan runs before the date kept because they changed something or are referred to.
    pub kept: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// An account's users seen, groups seen and users excluded, as a scan counted them.
type Counts = (Option<i64>, Option<i64>, Option<i64>);

/// What a scan of an account recorded, compared field for field with the previous scan's.
const SAME_FINDINGS: &str = "
    SELECT count(*) FROM (
        SELECT user_name, user_arn, policy_arn, policy_name, kind, covering_groups, user_id,
               covering_group_ids, exception, owner
        FROM findings WHERE run_id = ?1 AND account_id = ?3
        EXCEPT
        SELECT user_name, user_arn, policy_arn, policy_name, kind, covering_groups, user_id,
               covering_group_ids, exception, owner
        FROM findings WHERE run_id = ?2 AND account_id = ?3
        UNION ALL
        SELECT user_name, user_arn, policy_arn, policy_name, kind, covering_groups, user_id,
               covering_group_ids, exception, owner
        FROM findings WHERE run_id = ?2 AND account_id = ?3
        EXCEPT
        SELECT user_name, user_arn, policy_arn, policy_name, kind, covering_groups, user_id,
               covering_group_ids, exception, owner
        FROM findings WHERE run_id = ?1 AND account_id = ?3)";

impl Store {
    /// Forgets the scan runs started before `before` (a stored time) that changed nothing, then
    /// reclaims the space; `dry`: only says which.
    pub fn prune(&mut self, before: &str, dry: bool) -> Result<Pruned, StoreError> {
        let bytes_before = self.file_bytes()?;
        let tx = self.conn.transaction()?;
        let candidates: Vec<i64> = {
            let mut stmt = tx.prepare(
                "SELECT r.id FROM runs r
                 WHERE r.kind = 'scan' AND r.status = 'completed' AND r.started_at < ?1
                   AND r.id < (SELECT max(id) FROM runs WHERE kind = 'scan')
                   AND NOT EXISTS (SELECT 1 FROM runs s WHERE s.source_run_id = r.id)
                   AND NOT EXISTS (SELECT 1 FROM actions x WHERE x.run_id = r.id)
                   AND NOT EXISTS (SELECT 1 FROM actions x JOIN findings f ON f.id = x.finding_id
                                   WHERE f.run_id = r.id)
                   AND NOT EXISTS (SELECT 1 FROM published p WHERE p.run_id = r.id)
                   AND NOT EXISTS (SELECT 1 FROM run_accounts a WHERE a.run_id = r.id
                                   AND a.status <> 'completed')
                 ORDER BY r.id",
            )?;
            stmt.query_map(params![before], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let scans: i64 = tx.query_row(
            "SELECT count(*) FROM runs WHERE kind = 'scan' AND started_at < ?1",
            params![before],
            |r| r.get(0),
        )?;
        let mut pruned = Pruned::default();
        {
            // The scan of the same account kept before `run`: any run that recorded one (a scan,
            // or an apply that scanned), not one already forgotten.
            let mut previous = tx.prepare(
                "SELECT max(a.run_id) FROM run_accounts a
                 WHERE a.account_id = ?2 AND a.run_id < ?1 AND a.status IN ('scanned', 'completed')
                   AND a.scanned_at IS NOT NULL",
            )?;
            let mut accounts = tx.prepare(
                "SELECT account_id, users_seen, groups_seen, users_excluded FROM run_accounts
                 WHERE run_id = ?1",
            )?;
            let mut counts = tx.prepare(
                "SELECT users_seen, groups_seen, users_excluded FROM run_accounts
                 WHERE run_id = ?1 AND account_id = ?2",
            )?;
            let mut same = tx.prepare(SAME_FINDINGS)?;
            for run in candidates {
                let rows: Vec<(String, Counts)> = accounts
                    .query_map(params![run], |r| {
                        Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
                    })?
                    .collect::<Result<_, _>>()?;
                let mut unchanged = !rows.is_empty();
                for (account, now) in &rows {
                    let before: Option<i64> =
                        previous.query_row(params![run, account], |r| r.get(0))?;
                    let Some(before) = before else {
                        unchanged = false;
                        break;
                    };
                    let then: Counts = counts.query_row(params![before, account], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
                    let differing: i64 =
                        same.query_row(params![run, before, account], |r| r.get(0))?;
                    if then != *now || differing != 0 {
                        unchanged = false;
                        break;
                    }
                }
                if !unchanged {
                    continue;
                }
                pruned.findings += tx.query_row(
                    "SELECT count(*) FROM findings WHERE run_id = ?1",
                    params![run],
                    |r| r.get::<_, i64>(0),
                )? as u64;
                if !dry {
                    // Forgotten at once: the next candidate compares with the scan kept before.
                    for table in ["api_calls", "findings", "run_accounts"] {
                        tx.execute(&format!("DELETE FROM {table} WHERE run_id = ?1"), [run])?;
                    }
                    tx.execute("DELETE FROM runs WHERE id = ?1", [run])?;
                }
                pruned.runs.push(run);
            }
        }
        pruned.kept = scans as u64 - pruned.runs.len() as u64;
        tx.commit()?;
        if !dry && !pruned.runs.is_empty() {
            self.conn.execute_batch("VACUUM")?;
        }
        pruned.bytes_before = bytes_before;
        pruned.bytes_after = self.file_bytes()?;
        Ok(pruned)
    }

    fn file_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}
