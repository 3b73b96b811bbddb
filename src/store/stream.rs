//! A run's findings streamed in report order, for `report --format csv|json` of a million rows.
//! Two threads share the work: a reader with its own connection walks the run account by
//! account, in one read transaction (one consistent snapshot), and copies each finding with its
//! latest action into batches; the caller's thread turns each row into a borrowed
//! [`FindingView`] and writes it out. At most a few batches and one account's actions (and
//! drift detaches) are held, so memory stays flat whatever the size of the run.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc;

use rusqlite::params;
use rusqlite::types::ValueRef;

use super::diff::DRIFT_DETACHES;
use super::{ActionView, FindingRow, FindingView, ReappearedView, Store, StoreError};

/// Rows per batch, and batches in flight between the threads.
const BATCH_ROWS: usize = 2048;
const IN_FLIGHT: usize = 4;

/// Text cells per finding (user_name, user_arn, policy_arn, policy_name, kind,
/// covering_groups, exception, user_id, owner), per action (status, reason, covering_group, request_id, error_code,
/// error_message, finished_at) and per drift detach (request_id, finished_at).
const FINDING_TEXTS: usize = 9;
const ACTION_TEXTS: usize = 7;
const DRIFT_TEXTS: usize = 2;
const TEXTS: usize = FINDING_TEXTS + ACTION_TEXTS + DRIFT_TEXTS;

/// Text copied out of SQLite: every cell's bytes back to back, cells as ranges into them.
#[derive(Default)]
struct Cells {
    bytes: Vec<u8>,
    /// `None` is SQL NULL.
    cells: Vec<Option<Range<u32>>>,
}

impl Cells {
    fn clear(&mut self) {
        self.bytes.clear();
        self.cells.clear();
    }

    fn push(&mut self, value: Option<&[u8]>) {
        let cell = value.map(|v| {
            let start = self.bytes.len() as u32;
            self.bytes.extend_from_slice(v);
            start..self.bytes.len() as u32
        });
        self.cells.push(cell);
    }

    fn push_text(&mut self, value: ValueRef<'_>) -> rusqlite::Result<()> {
        match value {
            ValueRef::Null => self.push(None),
            other => self.push(Some(other.as_bytes()?)),
        }
        Ok(())
    }

    /// Cell `i`, as bytes.
    fn cell(&self, i: usize) -> Option<&[u8]> {
        let r = self.cells[i].as_ref()?;
        Some(&self.bytes[r.start as usize..r.end as usize])
    }
}

/// A finding and its latest action, as the reader hands them over.
struct RowIds {
    /// Index into the run's accounts, which the reader walks in order.
    account: usize,
    finding: i64,
    /// The action's id and run.
    action: Option<(i64, i64)>,
    /// The run of the earlier detach that did not hold (drift).
    detached_in_run: Option<i64>,
}

/// Findings copied out of SQLite: `TEXTS` cells per row.
#[derive(Default)]
struct Batch {
    cells: Cells,
    rows: Vec<RowIds>,
}

impl Batch {
    fn clear(&mut self) {
        self.cells.clear();
        self.rows.clear();
    }
}

/// An account's name and origin (its OU path), as the run stored them.
type NameOrigin = (Option<String>, Option<String>);

/// What a run's report reads: whose findings, and which run's actions.
#[derive(Clone, Copy)]
struct Scope {
    findings_run: i64,
    /// `None` for a scan: the latest action of any run on each finding.
    action_run: Option<i64>,
    /// Where each finding stands: a rollback's attach counts only once it took (one refused
    /// or never sent leaves the detach in force).
    standing: bool,
}

impl Store {
    /// Like [`Store::report`], one finding at a time, borrowed from a batch of rows: a run of a
    /// million findings is written out without holding it in memory. Returns the count.
    pub fn report_each(
        &self,
        run_id: i64,
        each: impl FnMut(&FindingView<'_>) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        let run = self.run(run_id)?;
        let findings_run = match (run.kind.as_str(), run.source_run_id) {
            ("apply", Some(src)) => src,
            _ => run_id,
        };
        let action_run: Option<i64> = (run.kind != "scan").then_some(run_id);
        self.stream_findings(
            Scope {
                findings_run,
                action_run,
                standing: false,
            },
            None,
            each,
        )
    }

    /// The findings run `run_id` stands for (an apply of an earlier scan: that scan's), each with
    /// its latest action in any run: where each finding stands now, whichever apply or rollback
    /// acted on it last. What a finding's lifecycle outside iamsweep (OCSF status, Security
    /// Hub) follows: an apply that continued a capped one must not reopen what the first one
    /// detached.
    /// `account`: only that account's (one account at a time, for a caller that holds them).
    pub fn findings_now_each(
        &self,
        run_id: i64,
        account: Option<&str>,
        each: impl FnMut(&FindingView<'_>) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        // A rollback found nothing.
        let Some(findings_run) = self.findings_run(run_id)? else {
            return Ok(0);
        };
        self.stream_findings(
            Scope {
                findings_run,
                action_run: None,
                standing: true,
            },
            account,
            each,
        )
    }

    /// [`Store::findings_now_each`], collected: for what needs the rows at once (a plan, the
    /// apply prompt).
    pub fn findings_now(&self, run_id: i64) -> Result<Vec<FindingRow>, StoreError> {
        let mut rows = Vec::new();
        self.findings_now_each(run_id, None, |f| {
            rows.push(f.to_row());
            Ok(())
        })?;
        Ok(rows)
    }

    fn stream_findings(
        &self,
        scope: Scope,
        only: Option<&str>,
        mut each: impl FnMut(&FindingView<'_>) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        let findings_run = scope.findings_run;
        // The run's accounts in report order, with what the report shows of each.
        let accounts: Vec<(String, NameOrigin)> = self
            .conn
            .prepare(
                "SELECT account_id, account_name, origin FROM run_accounts
                 WHERE run_id = ?1 AND (?2 IS NULL OR account_id = ?2) ORDER BY account_id",
            )?
            .query_map(params![findings_run, only], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
            })?
            .collect::<Result<_, _>>()?;
        let ids: Vec<&str> = accounts.iter().map(|(id, _)| id.as_str()).collect();

        let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(IN_FLIGHT);
        let (spare_tx, spare_rx) = mpsc::channel::<Batch>();
        let (path, ids) = (self.path.as_path(), ids.as_slice());
        std::thread::scope(|s| {
            let reader = s.spawn(move || read_rows(path, scope, ids, &full_tx, &spare_rx));
            let mut count = 0;
            let written = full_rx.iter().try_for_each(|batch| {
                let text = std::str::from_utf8(&batch.cells.bytes).map_err(|e| {
                    StoreError::NotFound(format!("a finding holds text that is not UTF-8: {e}"))
                })?;
                for (row, ids) in batch.rows.iter().enumerate() {
                    let cells = &batch.cells.cells[row * TEXTS..(row + 1) * TEXTS];
                    let cell = |i: usize| {
                        cells[i]
                            .clone()
                            .map(|r| &text[r.start as usize..r.end as usize])
                    };
                    let finding_id = ids.finding;
                    let required = |i: usize| {
                        cell(i).ok_or_else(|| {
                            StoreError::NotFound(format!(
                                "finding {finding_id} has an empty column"
                            ))
                        })
                    };
                    let (account_id, (account_name, account_origin)) = &accounts[ids.account];
                    let action = match ids.action {
                        Some((id, run_id)) => Some(ActionView {
                            id,
                            run_id,
                            status: required(FINDING_TEXTS)?,
                            reason: cell(FINDING_TEXTS + 1),
                            covering_group: cell(FINDING_TEXTS + 2),
                            request_id: cell(FINDING_TEXTS + 3),
                            error_code: cell(FINDING_TEXTS + 4),
                            error_message: cell(FINDING_TEXTS + 5),
                            finished_at: cell(FINDING_TEXTS + 6),
                        }),
                        None => None,
                    };
                    let reappeared = ids.detached_in_run.map(|run| ReappearedView {
                        detached_in_run: run,
                        detach_request_id: cell(FINDING_TEXTS + ACTION_TEXTS),
                        detached_at: cell(FINDING_TEXTS + ACTION_TEXTS + 1),
                    });
                    let view = FindingView {
                        finding_id,
                        account_id,
                        account_name: account_name.as_deref(),
                        account_origin: account_origin.as_deref(),
                        user_name: required(0)?,
                        user_arn: required(1)?,
                        policy_arn: required(2)?,
                        policy_name: required(3)?,
                        kind: required(4)?,
                        covering_groups: serde_json::from_str(required(5)?).map_err(|e| {
                            StoreError::NotFound(format!(
                                "finding {finding_id} has unreadable covering groups: {e}"
                            ))
                        })?,
                        exception: cell(6).map(serde_json::from_str).transpose().map_err(|e| {
                            StoreError::NotFound(format!(
                                "finding {finding_id} has an unreadable exception: {e}"
                            ))
                        })?,
                        user_id: cell(7),
                        owner: cell(8),
                        action,
                        reappeared,
                    };
                    each(&view).map_err(StoreError::Write)?;
                    count += 1;
                }
                // The reader refills it; if the reader is done, the batch is simply dropped.
                let _ = spare_tx.send(batch);
                Ok::<_, StoreError>(())
            });
            // On a write error the receiver goes first, so the reader's next send fails and it
            // stops; its own error (if any) comes second.
            drop(full_rx);
            let read = reader
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            written?;
            read?;
            Ok(count)
        })
    }
}

/// One account's actions on findings (`ACTION_TEXTS` cells each), and for each finding the
/// index of its latest action.
#[derive(Default)]
struct AccountActions {
    cells: Cells,
    /// Per action: its id and run.
    ids: Vec<(i64, i64)>,
    latest: HashMap<i64, usize>,
}

/// One account's detaches that make a finding drift, by user and policy (see `DRIFT_DETACHES`):
/// few, and usually none.
#[derive(Default)]
struct AccountDrift {
    cells: Cells,
    runs: Vec<i64>,
    /// `user_name` NUL `policy_arn` -> index of the latest detach.
    latest: HashMap<String, usize>,
}

/// A text column, borrowed from the row.
fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn drift_key(key: &mut String, user: &str, policy: &str) {
    key.clear();
    key.push_str(user);
    key.push('\0');
    key.push_str(policy);
}

/// Loads the detaches that make findings of `scope`'s run in `account` drift.
fn load_drift(
    detaches: &mut rusqlite::Statement<'_>,
    scope: Scope,
    account: &str,
    these: &mut AccountDrift,
) -> Result<(), StoreError> {
    these.cells.clear();
    these.runs.clear();
    these.latest.clear();
    let mut key = String::new();
    let mut rows = detaches.query(params![scope.findings_run, account])?;
    while let Some(r) = rows.next()? {
        drift_key(&mut key, text(r, 0)?, text(r, 1)?);
        // Oldest first: the latest detach of a finding is the one kept.
        these.latest.insert(key.clone(), these.runs.len());
        these.runs.push(r.get(2)?);
        these.cells.push_text(r.get_ref(3)?)?;
        these.cells.push_text(r.get_ref(4)?)?;
    }
    Ok(())
}

/// Loads `account`'s actions on findings into `these` (other runs' findings match none of this
/// run's).
fn load_actions(
    actions: &mut rusqlite::Statement<'_>,
    scope: Scope,
    account: &str,
    these: &mut AccountActions,
) -> Result<(), StoreError> {
    these.cells.clear();
    these.ids.clear();
    these.latest.clear();
    let mut rows = actions.query(params![scope.action_run, account])?;
    while let Some(r) = rows.next()? {
        let (finding, id): (i64, i64) = (r.get(0)?, r.get(1)?);
        let row = these.ids.len();
        these.ids.push((id, r.get(2)?));
        for i in 3..3 + ACTION_TEXTS {
            these.cells.push_text(r.get_ref(i)?)?;
        }
        let newest = these.latest.entry(finding).or_insert(row);
        if these.ids[*newest].0 < id {
            *newest = row;
        }
    }
    Ok(())
}

/// The reader thread: its own read-only connection, one read transaction (one consistent
/// snapshot), account by account: the account's actions, then its findings in report order,
/// each with its latest action, copied into batches. Stops quietly when the receiving side is
/// gone.
fn read_rows(
    path: &Path,
    scope: Scope,
    accounts: &[&str],
    full: &mpsc::SyncSender<Batch>,
    spare: &mpsc::Receiver<Batch>,
) -> Result<(), StoreError> {
    let mut store = Store::open_read_only(path)?
        .ok_or_else(|| StoreError::NotFound(format!("{} is gone", path.display())))?;
    let tx = store.conn.transaction()?;
    let mut findings = tx.prepare(
        "SELECT id, user_name, user_arn, policy_arn, policy_name, kind, covering_groups,
                exception, user_id, owner
         FROM findings WHERE run_id = ?1 AND account_id = ?2 ORDER BY user_name, policy_arn",
    )?;
    const ACTIONS: &str = "SELECT finding_id, id, run_id, status, reason, covering_group,
                request_id, error_code, error_message, finished_at
         FROM actions WHERE account_id = ?2 AND finding_id IS NOT NULL";
    let mut actions = match (scope.action_run, scope.standing) {
        (Some(_), _) => tx.prepare(&format!("{ACTIONS} AND run_id = ?1"))?,
        (None, true) => tx.prepare(&format!(
            "{ACTIONS} AND (operation = 'detach' OR status IN ('attached', 'already_attached'))"
        ))?,
        // A scan's findings show the latest action of any run (?1 is NULL, unused).
        (None, false) => tx.prepare(ACTIONS)?,
    };
    let mut detaches = tx.prepare(DRIFT_DETACHES)?;
    let mut these = AccountActions::default();
    let mut drift = AccountDrift::default();
    let mut key = String::new();
    let mut batch = Batch::default();
    for (index, account) in accounts.iter().enumerate() {
        load_actions(&mut actions, scope, account, &mut these)?;
        load_drift(&mut detaches, scope, account, &mut drift)?;
        let mut rows = findings.query(params![scope.findings_run, account])?;
        while let Some(r) = rows.next()? {
            let finding: i64 = r.get(0)?;
            let action = these.latest.get(&finding).copied();
            let detach = if drift.latest.is_empty() {
                None
            } else {
                drift_key(&mut key, text(r, 1)?, text(r, 3)?);
                drift.latest.get(key.as_str()).copied()
            };
            batch.rows.push(RowIds {
                account: index,
                finding,
                action: action.map(|a| these.ids[a]),
                detached_in_run: detach.map(|d| drift.runs[d]),
            });
            for i in 1..=FINDING_TEXTS {
                batch.cells.push_text(r.get_ref(i)?)?;
            }
            for i in 0..ACTION_TEXTS {
                let cell = action.and_then(|a| these.cells.cell(a * ACTION_TEXTS + i));
                batch.cells.push(cell);
            }
            for i in 0..DRIFT_TEXTS {
                let cell = detach.and_then(|d| drift.cells.cell(d * DRIFT_TEXTS + i));
                batch.cells.push(cell);
            }
            if batch.rows.len() == BATCH_ROWS {
                let next = spare.try_recv().unwrap_or_default();
                if full.send(std::mem::replace(&mut batch, next)).is_err() {
                    return Ok(());
                }
                batch.clear();
            }
        }
    }
    if !batch.rows.is_empty() {
        let _ = full.send(batch);
    }
    Ok(())
}
