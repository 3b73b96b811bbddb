//! Findings stored by stretches (schema version 10): one `finding_stretches` row per finding and
//! unbroken stretch of scans that saw it exactly so. A scan of an account that changed nothing
//! writes its `run_account_rows` row and no row per finding; the `findings` view gives every run its
//! findings back, with ids unique across runs (`finding_base` + the stretch's `slot`).
//!
//! The rule every reader relies on: a stretch is seen by every scan that recorded its account
//! (`run_account_rows.finding_base` set) with a run id from `first_run` to `last_run` (NULL: no end).
//! Writing a scan of run R keeps it true:
//! - usually R is the newest run to record the account: the stretches the previous recording
//!   run P saw and R sees again are left open (or opened again), those R no longer sees end
//!   before R, and what is new starts at R;
//! - a run that records the account after a newer run already did (a resumed old scan) cuts
//!   every stretch around R in two and records its own findings as stretches of R alone.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use rusqlite::types::{Type, ValueRef};
use rusqlite::{OptionalExtension, Transaction, params};

use super::StoreError;
use crate::findings::Finding;

/// The stored columns of a finding (all but its id, run and account), as the table holds them;
/// `None` is NULL.
type Cells<'a> = [Option<&'a str>; 10];

const COLUMNS: &str = "user_name, user_arn, policy_arn, policy_name, kind, covering_groups,
    user_id, covering_group_ids, exception, owner";

/// A new finding's columns: its text borrowed, its JSON columns written out.
struct Columns<'a> {
    finding: &'a Finding,
    covering_groups: String,
    covering_group_ids: Option<String>,
    exception: Option<String>,
}

impl<'a> Columns<'a> {
    fn of(f: &'a Finding) -> Self {
        Self {
            finding: f,
            covering_groups: serde_json::to_string(&f.covering_groups).expect("names serialize"),
            covering_group_ids: (!f.covering_group_ids.is_empty())
                .then(|| serde_json::to_string(&f.covering_group_ids).expect("ids serialize")),
            exception: f
                .exception
                .as_ref()
                .map(|e| serde_json::to_string(e).expect("exception serializes")),
        }
    }

    fn cells(&self) -> Cells<'_> {
        let f = self.finding;
        [
            Some(f.user_name.as_str()),
            Some(f.user_arn.as_str()),
            Some(f.policy_arn.as_str()),
            Some(f.policy_name.as_str()),
            Some(f.kind.as_str()),
            Some(self.covering_groups.as_str()),
            f.user_id.as_deref(),
            self.covering_group_ids.as_deref(),
            self.exception.as_deref(),
            f.owner.as_deref(),
        ]
    }
}

/// The cells of a stored row, from column `at` on, borrowed from SQLite.
fn cells_at<'r>(r: &'r rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Cells<'r>> {
    let mut cells: Cells<'r> = [None; 10];
    for (i, cell) in cells.iter_mut().enumerate() {
        *cell = match r.get_ref(at + i)? {
            ValueRef::Null => None,
            value => Some(value.as_str().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(at + i, Type::Text, Box::new(e))
            })?),
        };
    }
    Ok(cells)
}

fn key(cells: &Cells<'_>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cells.hash(&mut h);
    h.finish()
}

/// Records `findings` as what run `run_id` saw in `account`, inside the caller's transaction.
pub(super) fn record(
    tx: &Transaction<'_>,
    run_id: i64,
    account: &str,
    findings: &[Finding],
) -> Result<(), StoreError> {
    let base: Option<Option<i64>> = tx
        .query_row(
            "SELECT finding_base FROM run_account_rows WHERE run_id = ?1 AND account_id = ?2",
            params![run_id, account],
            |r| r.get(0),
        )
        .optional()?;
    match base {
        None => {
            return Err(StoreError::NotFound(format!(
                "account {account} is not part of run {run_id}"
            )));
        }
        Some(Some(_)) => {
            return Err(StoreError::NotFound(format!(
                "run {run_id} already recorded the findings of account {account}"
            )));
        }
        Some(None) => {}
    }
    let newer: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM run_account_rows WHERE account_id = ?1 AND run_id > ?2
                                                      AND finding_base IS NOT NULL)",
        params![account, run_id],
        |r| r.get(0),
    )?;
    let mut next_slot: i64 = tx.query_row(
        "SELECT coalesce(max(slot), -1) + 1 FROM finding_stretches WHERE account_id = ?1",
        params![account],
        |r| r.get(0),
    )?;
    let columns: Vec<Columns<'_>> = findings.iter().map(Columns::of).collect();
    // Which findings are already stored (a stretch the previous scan saw goes on).
    let mut stored = vec![false; columns.len()];
    if newer {
        // A newer run recorded the account already: no stretch may run through this one.
        tx.execute(
            &format!(
                "INSERT INTO finding_stretches (account_id, slot, first_run, last_run, {COLUMNS})
                 SELECT account_id, slot, ?2 + 1, last_run, {COLUMNS} FROM finding_stretches
                 WHERE account_id = ?1 AND first_run < ?2
                   AND (last_run IS NULL OR last_run > ?2)"
            ),
            params![account, run_id],
        )?;
        tx.execute(
            "UPDATE finding_stretches SET last_run = ?2 - 1
             WHERE account_id = ?1 AND first_run < ?2 AND (last_run IS NULL OR last_run >= ?2)",
            params![account, run_id],
        )?;
    } else {
        let previous = recorded_before(tx, account, run_id)?;
        if let Some(p) = previous {
            // The new findings by their cells; each stretch the previous scan saw is looked up
            // in them, compared cell for cell, and goes on, opens again or ends.
            let mut waiting: HashMap<u64, Vec<usize>> = HashMap::with_capacity(columns.len());
            for (i, c) in columns.iter().enumerate() {
                waiting.entry(key(&c.cells())).or_default().push(i);
            }
            // Stretches to open again (`None`) or end (at the run before this one), by key
            // (user name, policy ARN, first run): changed after the read, not during it.
            let mut changes: Vec<(String, String, i64, Option<i64>)> = Vec::new();
            let mut seen = tx.prepare_cached(&format!(
                "SELECT first_run, last_run IS NOT NULL, {COLUMNS} FROM finding_stretches
                 WHERE account_id = ?1 AND first_run <= ?2
                   AND (last_run IS NULL OR last_run >= ?2)"
            ))?;
            let mut rows = seen.query(params![account, p])?;
            while let Some(r) = rows.next()? {
                let (first_run, ended): (i64, bool) = (r.get(0)?, r.get(1)?);
                let cells = cells_at(r, 2)?;
                let same = waiting.get_mut(&key(&cells)).and_then(|candidates| {
                    let at = candidates
                        .iter()
                        .position(|&i| columns[i].cells() == cells)?;
                    Some(candidates.swap_remove(at))
                });
                let change = match (same, ended) {
                    (Some(i), ended) => {
                        stored[i] = true;
                        ended.then_some(None)
                    }
                    (None, false) => Some(Some(run_id - 1)),
                    (None, true) => None,
                };
                if let Some(last) = change {
                    let (user, policy) = (cells[0].unwrap_or(""), cells[2].unwrap_or(""));
                    changes.push((user.to_owned(), policy.to_owned(), first_run, last));
                }
            }
            drop(rows);
            let mut set_last = tx.prepare_cached(
                "UPDATE finding_stretches SET last_run = ?5
                 WHERE account_id = ?1 AND user_name = ?2 AND policy_arn = ?3 AND first_run = ?4",
            )?;
            for (user, policy, first_run, last) in &changes {
                set_last.execute(params![account, user, policy, first_run, last])?;
            }
        }
    }
    // What is new starts a stretch here (of this run alone when a newer run recorded it).
    let last = newer.then_some(run_id);
    let mut begin = tx.prepare_cached(&format!(
        "INSERT INTO finding_stretches (account_id, slot, first_run, last_run, {COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?;
    for (c, _) in columns.iter().zip(&stored).filter(|(_, stored)| !**stored) {
        let [a, b, c3, d, e, f, g, h, i, j] = c.cells();
        begin.execute(params![
            account, next_slot, run_id, last, a, b, c3, d, e, f, g, h, i, j
        ])?;
        next_slot += 1;
    }
    // The ids of this run's findings in the account: a range no other run's ids share.
    let base: i64 = tx.query_row("SELECT next FROM finding_ids", [], |r| r.get(0))?;
    tx.execute(
        "UPDATE finding_ids SET next = ?1",
        params![base + next_slot.max(1)],
    )?;
    tx.execute(
        "UPDATE run_account_rows SET finding_base = ?3, finding_span = ?4
         WHERE run_id = ?1 AND account_id = ?2",
        params![run_id, account, base, next_slot],
    )?;
    Ok(())
}

/// The latest run before `before` that recorded the scan of `account`: walked back from
/// `before` along the primary key (run, account) of `run_account_rows`.
pub(super) fn recorded_before(
    conn: &rusqlite::Connection,
    account: &str,
    before: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT run_id FROM run_account_rows
             WHERE run_id < ?2 AND account_id = ?1 AND finding_base IS NOT NULL
             ORDER BY run_id DESC LIMIT 1",
            params![account, before],
            |r| r.get(0),
        )
        .optional()?)
}

/// After `run_id`'s rows in `account` are gone (prune): forgets the stretches no scan that
/// recorded the account sees any more.
pub(super) fn forget_unseen(
    tx: &Transaction<'_>,
    run_id: i64,
    account: &str,
) -> Result<u64, StoreError> {
    Ok(tx.execute(
        "DELETE FROM finding_stretches
         WHERE account_id = ?1 AND first_run <= ?2 AND (last_run IS NULL OR last_run >= ?2)
           AND NOT EXISTS (SELECT 1 FROM run_account_rows a
                           WHERE a.account_id = ?1 AND a.finding_base IS NOT NULL
                             AND a.run_id >= finding_stretches.first_run
                             AND (finding_stretches.last_run IS NULL
                                  OR a.run_id <= finding_stretches.last_run))",
        params![account, run_id],
    )? as u64)
}
