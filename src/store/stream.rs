//! A run's findings streamed in report order, for `report --format csv|json` of a million rows.
//! Two threads share the work: a reader with its own connection steps through the rows and
//! copies them into batches; the caller's thread turns each row into a borrowed
//! [`FindingView`] and writes it out. One query, so one consistent snapshot; at most a few
//! batches in flight, so memory stays flat whatever the size of the run.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc;

use rusqlite::params;
use rusqlite::types::ValueRef;

use super::{ActionView, FindingView, Store, StoreError};

/// Rows per batch, and batches in flight between the threads.
const BATCH_ROWS: usize = 2048;
const IN_FLIGHT: usize = 4;

/// Text cells per row: the finding's seven, then the action's seven.
const TEXTS: usize = 14;
/// The text cells, in the order the queries select them (after `f.id`, then `x.id, x.run_id`).
const FINDING_TEXTS: Range<usize> = 0..7;

/// Rows copied out of SQLite: every text cell's bytes back to back, cells as ranges into them.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// `TEXTS` per row; `None` is SQL NULL.
    cells: Vec<Option<Range<u32>>>,
    /// Per row: the finding id, the action id and the action's run id.
    ints: Vec<[Option<i64>; 3]>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.cells.clear();
        self.ints.clear();
    }

    fn push_text(&mut self, value: ValueRef<'_>) -> rusqlite::Result<()> {
        let cell = match value {
            ValueRef::Null => None,
            other => {
                let start = self.bytes.len() as u32;
                self.bytes.extend_from_slice(other.as_bytes()?);
                Some(start..self.bytes.len() as u32)
            }
        };
        self.cells.push(cell);
        Ok(())
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
    /// Whether any action touches these findings; without, the per-row look-up is skipped.
    has_actions: bool,
}

impl Store {
    /// Like [`Store::report`], one finding at a time, borrowed from a batch of rows: a run of a
    /// million findings is written out without holding it in memory. Returns the count.
    pub fn report_each(
        &self,
        run_id: i64,
        mut each: impl FnMut(&FindingView<'_>) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        let run = self.run(run_id)?;
        let findings_run = match (run.kind.as_str(), run.source_run_id) {
            ("apply", Some(src)) => src,
            _ => run_id,
        };
        let action_run: Option<i64> = (run.kind != "scan").then_some(run_id);
        let names: HashMap<String, NameOrigin> = self
            .conn
            .prepare("SELECT account_id, account_name, origin FROM run_accounts WHERE run_id = ?1")?
            .query_map(params![findings_run], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
            })?
            .collect::<Result<_, _>>()?;
        let scope = Scope {
            findings_run,
            action_run,
            has_actions: self.has_actions(findings_run, action_run)?,
        };

        let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(IN_FLIGHT);
        let (spare_tx, spare_rx) = mpsc::channel::<Batch>();
        let path = self.path.as_path();
        std::thread::scope(|s| {
            let reader = s.spawn(move || read_rows(path, scope, &full_tx, &spare_rx));
            let mut count = 0;
            let mut last: Option<(&str, &NameOrigin)> = None;
            let written = full_rx.iter().try_for_each(|batch| {
                let text = std::str::from_utf8(&batch.bytes).map_err(|e| {
                    StoreError::NotFound(format!("a finding holds text that is not UTF-8: {e}"))
                })?;
                for (row, ints) in batch.ints.iter().enumerate() {
                    let cells = &batch.cells[row * TEXTS..(row + 1) * TEXTS];
                    let cell = |i: usize| {
                        cells[i]
                            .clone()
                            .map(|r| &text[r.start as usize..r.end as usize])
                    };
                    let finding_id = ints[0].unwrap_or_default();
                    let required = |i: usize| {
                        cell(i).ok_or_else(|| {
                            StoreError::NotFound(format!(
                                "finding {finding_id} has an empty column"
                            ))
                        })
                    };
                    let account_id = required(0)?;
                    // Rows come account by account: look the account up when it changes.
                    if last.is_none_or(|(id, _)| id != account_id) {
                        last = names
                            .get_key_value(account_id)
                            .map(|(k, v)| (k.as_str(), v));
                    }
                    let (account_name, account_origin) = last
                        .filter(|(id, _)| *id == account_id)
                        .map_or((None, None), |(_, (n, o))| (n.as_deref(), o.as_deref()));
                    let action = match (ints[1], ints[2]) {
                        (Some(id), Some(run_id)) => Some(ActionView {
                            id,
                            run_id,
                            status: required(7)?,
                            reason: cell(8),
                            covering_group: cell(9),
                            request_id: cell(10),
                            error_code: cell(11),
                            error_message: cell(12),
                            finished_at: cell(13),
                        }),
                        _ => None,
                    };
                    let view = FindingView {
                        finding_id,
                        account_id,
                        account_name,
                        account_origin,
                        user_name: required(1)?,
                        user_arn: required(2)?,
                        policy_arn: required(3)?,
                        policy_name: required(4)?,
                        kind: required(5)?,
                        covering_groups: serde_json::from_str(required(6)?).map_err(|e| {
                            StoreError::NotFound(format!(
                                "finding {finding_id} has unreadable covering groups: {e}"
                            ))
                        })?,
                        action,
                    };
                    each(&view).map_err(|e| {
                        StoreError::NotFound(format!("cannot write the report: {e}"))
                    })?;
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

    /// Whether any action (of `action_run`, or of any run) touches the run's findings. Walks
    /// the actions, not the findings, and stops at the first.
    fn has_actions(&self, findings_run: i64, action_run: Option<i64>) -> Result<bool, StoreError> {
        Ok(match action_run {
            Some(run) => self.conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM actions x CROSS JOIN findings f
                                ON f.id = x.finding_id WHERE x.run_id = ?2 AND f.run_id = ?1)",
                params![findings_run, run],
                |r| r.get(0),
            )?,
            None => self.conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM actions x CROSS JOIN findings f
                                ON f.id = x.finding_id WHERE f.run_id = ?1)",
                params![findings_run],
                |r| r.get(0),
            )?,
        })
    }
}

/// The reader thread: its own read-only connection, one query, rows copied into batches.
/// Stops quietly when the receiving side is gone.
fn read_rows(
    path: &Path,
    scope: Scope,
    full: &mpsc::SyncSender<Batch>,
    spare: &mpsc::Receiver<Batch>,
) -> Result<(), StoreError> {
    let store = Store::open_read_only(path)?
        .ok_or_else(|| StoreError::NotFound(format!("{} is gone", path.display())))?;
    const FINDING: &str = "SELECT f.id, f.account_id, f.user_name, f.user_arn, f.policy_arn,
                f.policy_name, f.kind, f.covering_groups";
    const ORDER: &str = "WHERE f.run_id = ?1 ORDER BY f.account_id, f.user_name, f.policy_arn";
    let mut stmt;
    let mut rows = if scope.has_actions {
        stmt = store.conn.prepare(&format!(
            "{FINDING}, x.id, x.run_id, x.status, x.reason, x.covering_group, x.request_id,
                x.error_code, x.error_message, x.finished_at
             FROM findings f
             LEFT JOIN actions x ON x.id = (
                 SELECT max(y.id) FROM actions y
                 WHERE y.finding_id = f.id AND (?2 IS NULL OR y.run_id = ?2))
             {ORDER}"
        ))?;
        stmt.query(params![scope.findings_run, scope.action_run])?
    } else {
        stmt = store
            .conn
            .prepare(&format!("{FINDING} FROM findings f {ORDER}"))?;
        stmt.query(params![scope.findings_run])?
    };
    let mut batch = Batch::default();
    while let Some(r) = rows.next()? {
        let action = if scope.has_actions {
            [r.get(8)?, r.get(9)?]
        } else {
            [None, None]
        };
        batch.ints.push([Some(r.get(0)?), action[0], action[1]]);
        for i in FINDING_TEXTS {
            batch.push_text(r.get_ref(1 + i)?)?;
        }
        for i in FINDING_TEXTS {
            match scope.has_actions {
                true => batch.push_text(r.get_ref(10 + i)?)?,
                false => batch.cells.push(None),
            }
        }
        if batch.ints.len() == BATCH_ROWS {
            let next = spare.try_recv().unwrap_or_default();
            if full.send(std::mem::replace(&mut batch, next)).is_err() {
                return Ok(());
            }
            batch.clear();
        }
    }
    if !batch.ints.is_empty() {
        let _ = full.send(batch);
    }
    Ok(())
}
