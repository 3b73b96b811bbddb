//! `prune --before DATE`: forgets scan runs that changed nothing, so a file kept for years by
//! scheduled sweeps holds the runs that tell something. A scan run is forgotten only when every
//! account it read was read completely and shows exactly what the run before it showed (the run
//! `diff` compares it with: same accounts, the same findings field for field, the same counts),
//! iamsweep changed nothing in those accounts between the two, it is not the latest scan of any
//! of its accounts, and nothing refers to it (no apply of it, no journal row, nothing published
//! from it). Every report, diff, drift and gate over the runs kept reads the same afterwards:
//! where the forgotten run was compared, the run before it is, and finds the same.

use rusqlite::params;

use super::stretches;
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
    /// Why the space could not be reclaimed (the runs are forgotten all the same).
    pub vacuum_error: Option<String>,
}

/// An account's users seen, groups seen and users excluded, as a scan counted them.
type Counts = (Option<i64>, Option<i64>, Option<i64>);

/// Every stored field of a finding but its id and run.
const FIELDS: &str = "user_name, user_arn, policy_arn, policy_name, kind, covering_groups, user_id,
    covering_group_ids, exception, owner";

/// The rows of run ?1 and run ?2 in account ?3 that the other does not have, field for field.
fn differing_rows_sql() -> String {
    let of = |run: &str| {
        format!("SELECT {FIELDS} FROM findings WHERE run_id = {run} AND account_id = ?3")
    };
    format!(
        "SELECT count(*) FROM ({} EXCEPT {} UNION ALL {} EXCEPT {})",
        of("?1"),
        of("?2"),
        of("?2"),
        of("?1")
    )
}

impl Store {
    /// Forgets the scan runs started before `before` (a stored time) that changed nothing, then
    /// reclaims the space; `dry`: only says which.
    pub fn prune(&mut self, before: &str, dry: bool) -> Result<Pruned, StoreError> {
        let bytes_before = self.size_bytes()?;
        // Unchecked: the store's own queries (`scan_runs`) run inside it, on the same
        // connection; nothing else holds a transaction on it.
        let tx = self.conn.unchecked_transaction()?;
        let candidates: Vec<i64> = {
            let mut stmt = tx.prepare(
                "SELECT r.id FROM runs r
                 WHERE r.kind = 'scan' AND r.status = 'completed' AND r.started_at < ?1
                   AND NOT EXISTS (SELECT 1 FROM runs s WHERE s.source_run_id = r.id)
                   AND NOT EXISTS (SELECT 1 FROM actions x WHERE x.run_id = r.id)
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
            // Both list the same accounts (diff picks the run to compare with by its list), and
            // the previous one recorded the scan of each.
            let mut same_accounts = tx.prepare(
                "SELECT (SELECT group_concat(account_id) FROM
                            (SELECT account_id FROM run_accounts WHERE run_id = ?1
                             ORDER BY account_id))
                      IS (SELECT group_concat(account_id) FROM
                            (SELECT account_id FROM run_accounts WHERE run_id = ?2
                             ORDER BY account_id))
                    AND NOT EXISTS (SELECT 1 FROM run_accounts WHERE run_id = ?2
                                    AND users_seen IS NULL)",
            )?;
            // An account whose latest scan this is: kept (the open findings, the next diff).
            let mut latest_somewhere = tx.prepare(
                "SELECT EXISTS (SELECT 1 FROM run_accounts a WHERE a.run_id = ?1
                   AND NOT EXISTS (SELECT 1 FROM run_accounts b JOIN runs q ON q.id = b.run_id
                                   WHERE b.account_id = a.account_id AND b.run_id > ?1
                                     AND b.users_seen IS NOT NULL AND q.status <> 'running'))",
            )?;
            // Anything iamsweep did in these accounts between the two scans (a detach there
            // makes a finding both saw "reappeared" when compared across it).
            let mut acted_between = tx.prepare(
                "SELECT EXISTS (SELECT 1 FROM actions x
                   WHERE x.account_id IN (SELECT account_id FROM run_accounts WHERE run_id = ?1)
                     AND x.intent_at >= (SELECT started_at FROM runs WHERE id = ?2)
                     AND x.intent_at <= (SELECT coalesce(finished_at, started_at) FROM runs
                                         WHERE id = ?1))",
            )?;
            let mut accounts = tx.prepare(
                "SELECT account_id, users_seen, groups_seen, users_excluded FROM run_accounts
                 WHERE run_id = ?1",
            )?;
            let mut counts = tx.prepare(
                "SELECT users_seen, groups_seen, users_excluded FROM run_accounts
                 WHERE run_id = ?1 AND account_id = ?2",
            )?;
            let mut same = tx.prepare(&differing_rows_sql())?;
            for run in candidates {
                // The run `diff` and `--fail-on new` would compare `run` with.
                let Some(&before) = self.scan_runs(Some(run))?.first() else {
                    continue;
                };
                let alike: bool = same_accounts.query_row(params![run, before], |r| r.get(0))?;
                let latest: bool = latest_somewhere.query_row(params![run], |r| r.get(0))?;
                let acted: bool = acted_between.query_row(params![run, before], |r| r.get(0))?;
                if !alike || latest || acted {
                    continue;
                }
                let rows: Vec<(String, Counts)> = accounts
                    .query_map(params![run], |r| {
                        Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
                    })?
                    .collect::<Result<_, _>>()?;
                let mut unchanged = !rows.is_empty();
                for (account, now) in &rows {
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
                    // Forgotten at once: the next candidate compares with the run kept before.
                    for table in ["api_calls", "run_account_rows"] {
                        tx.execute(&format!("DELETE FROM {table} WHERE run_id = ?1"), [run])?;
                    }
                    tx.execute("DELETE FROM runs WHERE id = ?1", [run])?;
                    for (account, _) in &rows {
                        stretches::forget_unseen(&tx, run, account)?;
                    }
                }
                pruned.runs.push(run);
            }
        }
        pruned.kept = scans as u64 - pruned.runs.len() as u64;
        tx.commit()?;
        // The runs are forgotten (committed); a VACUUM that fails (no room for its copy) only
        // leaves the space to SQLite's free list, and is said.
        if !dry && !pruned.runs.is_empty() {
            pruned.vacuum_error = self
                .conn
                .execute_batch("VACUUM")
                .err()
                .map(|e| e.to_string());
        }
        pruned.bytes_before = bytes_before;
        pruned.bytes_after = self.size_bytes()?;
        Ok(pruned)
    }

    /// The database's size: its pages, as a checkpoint leaves them in the file.
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}
