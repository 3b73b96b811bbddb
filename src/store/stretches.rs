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

use rusqlite::{OptionalExtension, Transaction, params};

use super::StoreError;
use crate::findings::Finding;

/// A finding's stored columns (all but its id, run and account), as the table holds them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Columns {
    user_name: String,
    user_arn: String,
    policy_arn: String,
    policy_name: String,
    kind: String,
    covering_groups: String,
    user_id: Option<String>,
    covering_group_ids: Option<String>,
    exception: Option<String>,
    owner: Option<String>,
}

impl Columns {
    fn of(f: &Finding) -> Self {
        Self {
            user_name: f.user_name.as_str().to_owned(),
            user_arn: f.user_arn.clone(),
            policy_arn: f.policy_arn.as_str().to_owned(),
            policy_name: f.policy_name.clone(),
            kind: f.kind.as_str().to_owned(),
            covering_groups: serde_json::to_string(&f.covering_groups).expect("names serialize"),
            user_id: f.user_id.clone(),
            covering_group_ids: (!f.covering_group_ids.is_empty())
                .then(|| serde_json::to_string(&f.covering_group_ids).expect("ids serialize")),
            exception: f
                .exception
                .as_ref()
                .map(|e| serde_json::to_string(e).expect("exception serializes")),
            owner: f.owner.clone(),
        }
    }

    fn at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            user_name: r.get(at)?,
            user_arn: r.get(at + 1)?,
            policy_arn: r.get(at + 2)?,
            policy_name: r.get(at + 3)?,
            kind: r.get(at + 4)?,
            covering_groups: r.get(at + 5)?,
            user_id: r.get(at + 6)?,
            covering_group_ids: r.get(at + 7)?,
            exception: r.get(at + 8)?,
            owner: r.get(at + 9)?,
        })
    }
}

const COLUMNS: &str = "user_name, user_arn, policy_arn, policy_name, kind, covering_groups,
    user_id, covering_group_ids, exception, owner";

/// A stretch seen by the previous recording scan: its key, and whether it had ended.
struct Open {
    slot: i64,
    first_run: i64,
    ended: bool,
}

/// What recording one account's findings wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Stretches begun (rows inserted).
    pub begun: u64,
    /// Stretches ended or opened again (rows updated).
    pub touched: u64,
}

/// Records `findings` as what run `run_id` saw in `account`, inside the caller's transaction.
pub(super) fn record(
    tx: &Transaction<'_>,
    run_id: i64,
    account: &str,
    findings: &[Finding],
) -> Result<Written, StoreError> {
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
    let mut written = Written::default();
    let mut begin = tx.prepare_cached(&format!(
        "INSERT INTO finding_stretches (account_id, slot, first_run, last_run, {COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?;
    let mut insert = |slot: i64, last: Option<i64>, c: &Columns| {
        begin.execute(params![
            account,
            slot,
            run_id,
            last,
            c.user_name,
            c.user_arn,
            c.policy_arn,
            c.policy_name,
            c.kind,
            c.covering_groups,
            c.user_id,
            c.covering_group_ids,
            c.exception,
            c.owner,
        ])
    };
    if newer {
        // A newer run recorded the account already: no stretch may run through this one.
        written.touched += tx.execute(
            &format!(
                "INSERT INTO finding_stretches (account_id, slot, first_run, last_run, {COLUMNS})
                 SELECT account_id, slot, ?2 + 1, last_run, {COLUMNS} FROM finding_stretches
                 WHERE account_id = ?1 AND first_run < ?2
                   AND (last_run IS NULL OR last_run > ?2)"
            ),
            params![account, run_id],
        )? as u64;
        written.touched += tx.execute(
            "UPDATE finding_stretches SET last_run = ?2 - 1
             WHERE account_id = ?1 AND first_run < ?2 AND (last_run IS NULL OR last_run >= ?2)",
            params![account, run_id],
        )? as u64;
        for f in findings {
            insert(next_slot, Some(run_id), &Columns::of(f))?;
            next_slot += 1;
            written.begun += 1;
        }
    } else {
        // What the previous scan that recorded the account saw.
        // Walked back from this run along the primary key (run, account): the runs just before.
        let previous: Option<i64> = tx
            .query_row(
                "SELECT run_id FROM run_account_rows
                 WHERE run_id < ?2 AND account_id = ?1 AND finding_base IS NOT NULL
                 ORDER BY run_id DESC LIMIT 1",
                params![account, run_id],
                |r| r.get(0),
            )
            .optional()?;
        let mut seen: HashMap<Columns, Vec<Open>> = HashMap::new();
        if let Some(p) = previous {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT slot, first_run, last_run IS NOT NULL, {COLUMNS} FROM finding_stretches
                 WHERE account_id = ?1 AND first_run <= ?2
                   AND (last_run IS NULL OR last_run >= ?2)"
            ))?;
            let rows = stmt.query_map(params![account, p], |r| {
                Ok((
                    Columns::at(r, 3)?,
                    Open {
                        slot: r.get(0)?,
                        first_run: r.get(1)?,
                        ended: r.get(2)?,
                    },
                ))
            })?;
            for row in rows {
                let (columns, open) = row?;
                seen.entry(columns).or_default().push(open);
            }
        }
        let mut reopen = tx.prepare_cached(
            "UPDATE finding_stretches SET last_run = NULL
             WHERE account_id = ?1 AND slot = ?2 AND first_run = ?3",
        )?;
        for f in findings {
            let columns = Columns::of(f);
            match seen.get_mut(&columns).and_then(Vec::pop) {
                Some(open) => {
                    if open.ended {
                        reopen.execute(params![account, open.slot, open.first_run])?;
                        written.touched += 1;
                    }
                }
                None => {
                    insert(next_slot, None, &columns)?;
                    next_slot += 1;
                    written.begun += 1;
                }
            }
        }
        let mut end = tx.prepare_cached(
            "UPDATE finding_stretches SET last_run = ?4
             WHERE account_id = ?1 AND slot = ?2 AND first_run = ?3",
        )?;
        for open in seen.into_values().flatten().filter(|o| !o.ended) {
            end.execute(params![account, open.slot, open.first_run, run_id - 1])?;
            written.touched += 1;
        }
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
    Ok(written)
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
