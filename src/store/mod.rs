//! The audit database: opening, migrating and every SQL statement of iamsweep. One [`Store`]
//! owns the connection; async code reaches it through [`actor::StoreHandle`].

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

pub mod actor;
mod diff;
mod rows;
mod stream;
mod tally;

pub use diff::*;
pub use rows::*;
pub use tally::Tally;

use crate::aws::AwsError;
use crate::calls::CallCounts;
use crate::config::{AccountTarget, AccountsFile};
use crate::findings::{AccountFindings, Finding, FindingKind};
use crate::model::{AccountId, PolicyArn, UserName};

/// A detach row that still needs attention: its intent has no outcome, its answer was lost, its
/// post-check never ran, or a re-attach was begun or failed.
const OPEN_DETACH: &str = "(x.status IN ('pending', 'unknown', 'reverting')
      OR (x.status = 'detached' AND x.checked_at IS NULL)
      OR (x.status = 'failed' AND x.reason = 'reattach_failed' AND x.rolled_back_by IS NULL))";

/// A detach iamsweep made, whatever happened after: done, its post-check's re-attach under way,
/// or that re-attach failed (the user lacks the policy now). What a rollback undoes.
const MADE_DETACH: &str = "(x.status IN ('detached', 'reverting')
      OR (x.status = 'failed' AND x.reason = 'reattach_failed'))";

/// `PRAGMA application_id` of an iamsweep database ("iams").
const APPLICATION_ID: i32 = 0x6961_6d73;

/// Every migration, embedded at build time, in order. Never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_history_views.sql"),
    include_str!("../../migrations/0003_truthful_journal.sql"),
    include_str!("../../migrations/0004_drift.sql"),
    include_str!("../../migrations/0005_send_bounds.sql"),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {message}")]
    Open { path: String, message: String },
    #[error(
        "database {path} was written by a newer iamsweep (schema version {found}; this one knows up to {known}); upgrade iamsweep or use another --db"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error(
        "{path} is not an iamsweep database (it holds other tables); pass --db with a new or an iamsweep file"
    )]
    Foreign { path: String },
    #[error("database error: {}", describe(.0))]
    Sql(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("cannot write the report: {0}")]
    Write(#[source] std::io::Error),
}

/// The current time as stored: UTC RFC 3339 with milliseconds.
pub fn now() -> String {
    stamp(SystemTime::now())
}

/// A time as stored: UTC RFC 3339 with milliseconds.
pub fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating with mode 0600 if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let open_err = |message: String| StoreError::Open {
            path: shown.clone(),
            message,
        };
        if !path.exists() {
            create_private(path).map_err(|e| open_err(e.to_string()))?;
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(describe(&e)))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let app_id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| open_err(describe(&e)))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if app_id != APPLICATION_ID {
            let tables: i64 =
                conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
            if app_id != 0 || version != 0 || tables != 0 {
                return Err(StoreError::Foreign { path: shown });
            }
        }
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: shown,
                found: version,
                known,
            });
        }
        // WAL lets report/runs/history read while a run writes. NORMAL sync survives a crash
        // of the process; journal intents are written with FULL sync (see `durably`) so they
        // also survive a power loss before the AWS call is made.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| open_err(describe(&e)))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 32 MiB of page cache: index pages of a million findings stay in memory.
        conn.pragma_update(None, "cache_size", -32768)?;
        if version < known {
            let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
            migrations.to_latest(&mut conn).map_err(|e| match e {
                rusqlite_migration::Error::RusqliteError { err, .. } => open_err(describe(&err)),
                other => StoreError::Migration(other),
            })?;
            conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Opens an existing database for reading only (`report`, `runs`): never creates,
    /// migrates or writes, so it works while a run writes, and on a read-only file system.
    /// `Ok(None)` when there is no database yet.
    pub fn open_read_only(path: &Path) -> Result<Option<Self>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let shown = path.display().to_string();
        let open_err = |e: &rusqlite::Error| StoreError::Open {
            path: shown.clone(),
            message: describe(e),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let check = |conn: &Connection| -> rusqlite::Result<(i32, i64)> {
            Ok((
                conn.query_row("PRAGMA application_id", [], |r| r.get(0))?,
                conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
            ))
        };
        let mut conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(&e))?;
        let ids = match check(&conn) {
            Ok(ids) => ids,
            // A WAL database on a read-only medium cannot create its shared-memory file: read
            // it as immutable (nobody can be writing it there anyway).
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
                ) =>
            {
                let uri = format!("file:{}?immutable=1", path.display());
                conn = Connection::open_with_flags(uri, flags).map_err(|e| open_err(&e))?;
                check(&conn).map_err(|e| open_err(&e))?
            }
            Err(e) => return Err(open_err(&e)),
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "cache_size", -32768)?;
        let (app_id, version) = ids;
        let known = MIGRATIONS.len() as i64;
        if app_id != APPLICATION_ID {
            return Err(StoreError::Foreign { path: shown });
        }
        if version > known {
            return Err(StoreError::TooNew {
                path: shown,
                found: version,
                known,
            });
        }
        if version < known {
            return Err(StoreError::Open {
                path: shown,
                message: format!(
                    "it has schema version {version} and this iamsweep reads version {known}; any writing command (scan, apply, resume) upgrades it"
                ),
            });
        }
        Ok(Some(Self {
            conn,
            path: path.to_owned(),
        }))
    }

    /// How long a write waits for another connection's lock before failing (default 10 s).
    pub fn set_busy_timeout(&self, wait: std::time::Duration) -> Result<(), StoreError> {
        Ok(self.conn.busy_timeout(wait)?)
    }

    // --- runs ----------------------------------------------------------------------------

    /// Starts a run: the run row and one `pending` row per account, in one transaction.
    pub fn create_run(
        &mut self,
        kind: RunKind,
        source_run_id: Option<i64>,
        file: &AccountsFile,
        targets: &[AccountTarget],
        options_json: &str,
    ) -> Result<i64, StoreError> {
        self.create_run_as(kind, source_run_id, file, targets, options_json, None)
    }

    /// [`Store::create_run`], recording who the base credentials were (`caller_arn`).
    pub fn create_run_as(
        &mut self,
        kind: RunKind,
        source_run_id: Option<i64>,
        file: &AccountsFile,
        targets: &[AccountTarget],
        options_json: &str,
        caller_arn: Option<&str>,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (kind, status, source_run_id, started_at, iamsweep_version,
                               accounts_path, accounts_toml, options_json, caller_arn)
             VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                kind.as_str(),
                source_run_id,
                now(),
                env!("CARGO_PKG_VERSION"),
                file.path,
                file.text,
                options_json,
                caller_arn
            ],
        )?;
        let run_id = tx.last_insert_rowid();
        {
            let mut stmt = tx.prepare(
                "INSERT INTO run_accounts (run_id, account_id, account_name, position, target_json,
                                           role_arn, session_name, origin, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending')",
            )?;
            for (i, t) in targets.iter().enumerate() {
                let json = serde_json::to_string(t).expect("targets serialize");
                stmt.execute(params![
                    run_id,
                    t.id.as_str(),
                    t.name,
                    i as i64,
                    json,
                    t.role_arn(),
                    t.session_name(),
                    t.origin
                ])?;
            }
        }
        tx.commit()?;
        Ok(run_id)
    }

    pub fn finish_run(&mut self, run_id: i64, status: RunStatus) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
            params![run_id, status.as_str(), now()],
        )?;
        Ok(())
    }

    pub fn mark_account_started(
        &mut self,
        run_id: i64,
        account: &AccountId,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE run_accounts SET started_at = coalesce(started_at, ?3)
             WHERE run_id = ?1 AND account_id = ?2",
            params![run_id, account.as_str(), now()],
        )?;
        Ok(())
    }

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
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO findings (run_id, account_id, user_name, user_arn, policy_arn,
                                       policy_name, kind, covering_groups, user_id,
                                       covering_group_ids)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for f in &scan.findings {
                stmt.execute(params![
                    run_id,
                    account.as_str(),
                    f.user_name.as_str(),
                    f.user_arn,
                    f.policy_arn.as_str(),
                    f.policy_name,
                    f.kind.as_str(),
                    serde_json::to_string(&f.covering_groups).expect("names serialize"),
                    f.user_id,
                    (!f.covering_group_ids.is_empty()).then(|| {
                        serde_json::to_string(&f.covering_group_ids).expect("ids serialize")
                    }),
                ])?;
            }
        }
        tx.execute(
            "UPDATE run_accounts SET status = ?3, users_seen = ?4, groups_seen = ?5,
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

    /// Ends an account's part of a run (after apply, or on failure or a stop).
    pub fn finish_account(
        &mut self,
        run_id: i64,
        account: &AccountId,
        status: AccountStatus,
        error: Option<&AwsError>,
        calls: &CallCounts,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE run_accounts SET status = ?3, error_code = ?4, error_message = ?5,
                    finished_at = ?6
             WHERE run_id = ?1 AND account_id = ?2",
            params![
                run_id,
                account.as_str(),
                status.as_str(),
                error.map(|e| e.code.as_str()),
                error.map(|e| e.message.as_str()),
                now()
            ],
        )?;
        write_calls(&tx, run_id, account, calls)?;
        tx.commit()?;
        Ok(())
    }

    // --- the journal ---------------------------------------------------------------------

    /// The redundant findings of `findings_run` in `account` that run `action_run` has not
    /// settled: never acted on, or whose latest action failed or was interrupted.
    pub fn findings_to_apply(
        &self,
        findings_run: i64,
        action_run: i64,
        account: &AccountId,
    ) -> Result<Vec<(i64, Finding)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.id, f.user_name, f.user_arn, f.policy_arn, f.policy_name, f.kind,
                    f.covering_groups, f.user_id, f.covering_group_ids
             FROM findings f
             LEFT JOIN actions x ON x.id = (SELECT max(y.id) FROM actions y
                                            WHERE y.finding_id = f.id AND y.run_id = ?2)
             WHERE f.run_id = ?1 AND f.account_id = ?3 AND f.kind = 'redundant_direct'
               AND (x.id IS NULL
                    OR x.status = 'interrupted'
                    OR (x.status = 'failed' AND coalesce(x.reason, '') <> 'reattach_failed'))
             ORDER BY f.user_name, f.policy_arn",
        )?;
        let rows = stmt.query_map(params![findings_run, action_run, account.as_str()], |r| {
            Ok((r.get::<_, i64>(0)?, finding_at(r, 1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs `f` with `synchronous=FULL`: its commit is on disk, not only in the OS cache,
    /// when it returns (the WAL is synced, with every commit before it).
    fn durably<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let result = f(self);
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        result
    }

    /// Writes and commits an action's intent, durably; returns its id. Called before the AWS
    /// call.
    pub fn journal_intent(&mut self, intent: &Intent) -> Result<i64, StoreError> {
        self.durably(|s| s.insert_intent(intent))
    }

    fn insert_intent(&mut self, intent: &Intent) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO actions (run_id, finding_id, account_id, user_name, policy_arn, operation,
                                  status, covering_group, intent_at, undoes, send_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?10)",
            params![
                intent.run_id,
                intent.finding_id,
                intent.account.as_str(),
                intent.user.as_str(),
                intent.policy.as_str(),
                intent.operation.as_str(),
                intent.covering_group,
                now(),
                intent.undoes,
                intent.send_by.map(stamp),
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Commits, durably, that no attempt of the pending write `action_id` will be sent after
    /// `send_by`: called before an attempt that would leave after the bound written so far.
    pub fn extend_send_by(
        &mut self,
        action_id: i64,
        send_by: SystemTime,
    ) -> Result<(), StoreError> {
        self.durably(|s| {
            s.conn.execute(
                "UPDATE actions SET send_by = ?2 WHERE id = ?1",
                params![action_id, stamp(send_by)],
            )?;
            Ok(())
        })
    }

    /// Commits, durably, that the post-check is about to re-attach a detached policy
    /// (`reverting`): a crash before the outcome leaves a row that says so.
    pub fn journal_reverting(&mut self, action_id: i64, reason: &str) -> Result<(), StoreError> {
        self.durably(|s| {
            s.conn.execute(
                "UPDATE actions SET status = 'reverting', reason = ?2, finished_at = ?3
                 WHERE id = ?1",
                params![action_id, reason, now()],
            )?;
            Ok(())
        })
    }

    /// Completes a journaled action with its outcome. A rollback's successful attach also marks
    /// the detach it undoes, in the same transaction.
    pub fn journal_outcome(&mut self, action_id: i64, outcome: &Outcome) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE actions SET status = ?2, reason = ?3, request_id = ?4, error_code = ?5,
                    error_message = ?6, revert_request_id = ?7, finished_at = ?8,
                    proof_age_ms = coalesce(?9, proof_age_ms)
             WHERE id = ?1",
            params![
                action_id,
                outcome.status.as_str(),
                outcome.reason,
                outcome.request_id,
                outcome.error.as_ref().map(|e| e.code.as_str()),
                outcome.error.as_ref().map(|e| e.message.as_str()),
                outcome.revert_request_id,
                now(),
                outcome.proof_age_ms
            ],
        )?;
        link_rollback(&tx, action_id, outcome.status)?;
        tx.commit()?;
        Ok(())
    }

    /// Records an action that needed no AWS call (skipped, already detached) in one write.
    pub fn journal_settled(
        &mut self,
        intent: &Intent,
        outcome: &Outcome,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        let id = {
            tx.execute(
                "INSERT INTO actions (run_id, finding_id, account_id, user_name, policy_arn,
                                      operation, status, reason, covering_group, intent_at,
                                      finished_at, undoes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
                params![
                    intent.run_id,
                    intent.finding_id,
                    intent.account.as_str(),
                    intent.user.as_str(),
                    intent.policy.as_str(),
                    intent.operation.as_str(),
                    outcome.status.as_str(),
                    outcome.reason,
                    intent.covering_group,
                    now(),
                    intent.undoes
                ],
            )?;
            tx.last_insert_rowid()
        };
        link_rollback(&tx, id, outcome.status)?;
        tx.commit()?;
        Ok(id)
    }

    // --- resuming ------------------------------------------------------------------------

    /// Runs left `running` by a process that died: called with the run lock held, so nobody
    /// is working on them. Marks them `interrupted` and returns their ids.
    pub fn interrupt_stale_runs(&mut self) -> Result<Vec<i64>, StoreError> {
        let ids: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id FROM runs WHERE status = 'running' ORDER BY id")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        self.conn.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'",
            params![now()],
        )?;
        Ok(ids)
    }

    /// The newest run that did not finish.
    pub fn unfinished_run(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT max(id) FROM runs WHERE status IN ('running', 'interrupted')",
            [],
            |r| r.get(0),
        )?)
    }

    /// The accounts file text and options a run started with.
    pub fn run_inputs(&self, run_id: i64) -> Result<(String, String, String), StoreError> {
        Ok(self.conn.query_row(
            "SELECT accounts_path, accounts_toml, options_json FROM runs WHERE id = ?1",
            params![run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    }

    /// Marks a run as working again.
    pub fn reopen_run(&mut self, run_id: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?1",
            params![run_id],
        )?;
        Ok(())
    }

    /// Every account of a run with what is left to do.
    pub fn resume_accounts(&self, run_id: i64) -> Result<Vec<ResumeAccount>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.target_json, a.status, a.users_seen IS NOT NULL,
                    EXISTS (SELECT 1 FROM actions x
                            WHERE x.run_id = a.run_id AND x.account_id = a.account_id
                              AND x.id = (SELECT max(y.id) FROM actions y
                                          WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)
                              AND (x.status IN ('pending', 'unknown', 'reverting', 'failed',
                                                 'interrupted')
                                   OR (x.status = 'detached' AND x.checked_at IS NULL)))
             FROM run_accounts a
             JOIN runs r ON r.id = a.run_id
             LEFT JOIN run_accounts s ON s.run_id = r.source_run_id AND s.account_id = a.account_id
             WHERE a.run_id = ?1 ORDER BY a.position",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (json, status, scanned, open_actions) = row?;
            let target = parse_target(run_id, &json)?;
            out.push(ResumeAccount {
                target,
                status,
                scanned,
                open_actions,
            });
        }
        Ok(out)
    }

    /// The calls an account already made in a run (a resume adds to them).
    pub fn prior_calls(&self, run_id: i64, account: &AccountId) -> Result<CallCounts, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT operation, calls, throttled, errors FROM api_calls
             WHERE run_id = ?1 AND account_id = ?2",
        )?;
        let rows = stmt.query_map(params![run_id, account.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                crate::calls::OpCount {
                    calls: r.get(1)?,
                    throttled: r.get(2)?,
                    errors: r.get(3)?,
                },
            ))
        })?;
        let mut counts = CallCounts::default();
        for row in rows {
            let (op, count) = row?;
            if let Some(op) = crate::aws::Op::parse(&op) {
                counts.set(op, count);
            }
        }
        Ok(counts)
    }

    /// Saves an interrupted account's calls, leaving its status (`pending` or `scanned`).
    pub fn pause_account(
        &mut self,
        run_id: i64,
        account: &AccountId,
        calls: &CallCounts,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        write_calls(&tx, run_id, account, calls)?;
        tx.commit()?;
        Ok(())
    }

    /// Detach rows of `run_id` in `account` left unsettled (by a dead process, a lost answer,
    /// or a run that ended before its post-checks): see [`OpenAction`].
    pub fn open_actions(
        &self,
        run_id: i64,
        account: &AccountId,
    ) -> Result<Vec<OpenAction>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT x.id, x.status, x.covering_group, x.request_id, x.intent_at, x.finished_at,
                    f.user_name, f.user_arn, f.policy_arn, f.policy_name, f.kind, f.covering_groups,
                    f.user_id, f.covering_group_ids, x.finding_id, x.reason, x.send_by
             FROM actions x JOIN findings f ON f.id = x.finding_id
             WHERE x.run_id = ?1 AND x.account_id = ?2 AND x.operation = 'detach'
               AND x.id = (SELECT max(y.id) FROM actions y
                           WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)
               AND {OPEN_DETACH}
             ORDER BY f.user_name, f.policy_arn"
        ))?;
        let rows = stmt.query_map(params![run_id, account.as_str()], |r| {
            let status: String = r.get(1)?;
            Ok(OpenAction {
                action_id: r.get(0)?,
                finding_id: r.get(14)?,
                status: match status.as_str() {
                    "pending" => ActionStatus::Pending,
                    "unknown" => ActionStatus::Unknown,
                    "detached" => ActionStatus::Detached,
                    "reverting" => ActionStatus::Reverting,
                    _ => ActionStatus::Failed,
                },
                covering_group: r.get(2)?,
                request_id: r.get(3)?,
                intent_at: r.get(4)?,
                finished_at: r.get(5)?,
                reason: r.get(15)?,
                send_by: r.get(16)?,
                finding: finding_at(r, 6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many of run `run_id`'s journal rows are still open: a detach that needs settling
    /// (see [`OpenAction`]) or an attach intent without outcome.
    pub fn open_rows(&self, run_id: i64) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            &format!(
                "SELECT count(*) FROM actions x
                 WHERE x.run_id = ?1
                   AND ((x.operation = 'attach' AND x.status = 'pending')
                        OR (x.operation = 'detach' AND {OPEN_DETACH}
                            AND x.id = (SELECT max(y.id) FROM actions y
                                        WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)))"
            ),
            params![run_id],
            |r| r.get(0),
        )?)
    }

    /// Accounts of runs other than `except` whose journal has open rows (see
    /// [`OpenAction`], and rollback attaches without outcome), oldest run first.
    pub fn unsettled(&self, except: Option<i64>) -> Result<Vec<Unsettled>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT a.run_id, r.kind, a.target_json, count(*)
             FROM actions x
             JOIN runs r ON r.id = x.run_id
             JOIN run_accounts a ON a.run_id = x.run_id AND a.account_id = x.account_id
             WHERE (?1 IS NULL OR x.run_id <> ?1)
               AND ((x.operation = 'attach' AND x.status = 'pending')
                    OR (x.operation = 'detach' AND {OPEN_DETACH}
                        AND x.id = (SELECT max(y.id) FROM actions y
                                    WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)))
             GROUP BY a.run_id, a.account_id
             ORDER BY a.run_id, a.position"
        ))?;
        let rows = stmt.query_map(params![except], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (run_id, kind, json, open) = row?;
            out.push(Unsettled {
                run_id,
                kind: if kind == "rollback" {
                    RunKind::Rollback
                } else {
                    RunKind::Apply
                },
                target: parse_target(run_id, &json)?,
                open,
            });
        }
        Ok(out)
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
                "SELECT coalesce(scanned_at, finished_at, started_at) FROM run_accounts
                 WHERE run_id = ?1 AND account_id = ?2",
                params![run_id, account.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Records that the post-check confirmed these detaches.
    pub fn mark_checked(&mut self, action_ids: &[i64]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("UPDATE actions SET checked_at = ?2 WHERE id = ?1")?;
            let at = now();
            for id in action_ids {
                stmt.execute(params![id, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

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

    /// Detaches an account has made in a run (for the circuit breaker across resumes).
    pub fn detached_in_run(&self, run_id: i64, account: &AccountId) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM actions WHERE run_id = ?1 AND account_id = ?2
             AND status IN ('detached', 'reverted')",
            params![run_id, account.as_str()],
            |r| r.get(0),
        )?)
    }

    // --- rollback ------------------------------------------------------------------------

    /// The successful detaches of `run_id` not rolled back yet (optionally of one account).
    pub fn rollback_items(
        &self,
        run_id: i64,
        account: Option<&AccountId>,
    ) -> Result<Vec<RollbackItem>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT x.account_id, a.account_name, x.user_name, x.policy_arn, x.id, x.run_id,
                    x.finding_id, x.finished_at, x.request_id, a.role_arn, f.user_id, x.status
             FROM actions x
             JOIN run_accounts a ON a.run_id = x.run_id AND a.account_id = x.account_id
             LEFT JOIN findings f ON f.id = x.finding_id
             WHERE x.run_id = ?1 AND x.operation = 'detach' AND {MADE_DETACH}
               AND x.rolled_back_by IS NULL AND (?2 IS NULL OR x.account_id = ?2)
             ORDER BY a.position, x.user_name, x.policy_arn"
        ))?;
        let rows = stmt.query_map(params![run_id, account.map(AccountId::as_str)], |r| {
            let arn: String = r.get(3)?;
            Ok(RollbackItem {
                account_id: r.get(0)?,
                account_name: r.get(1)?,
                user_name: r.get(2)?,
                policy_name: PolicyArn::new(arn.clone()).policy_name().to_owned(),
                policy_arn: arn,
                action_id: r.get(4)?,
                run_id: r.get(5)?,
                finding_id: r.get(6)?,
                detached_at: r.get(7)?,
                request_id: r.get(8)?,
                role_arn: r.get(9)?,
                user_id: r.get(10)?,
                state: match r.get::<_, String>(11)?.as_str() {
                    "detached" => DetachState::Detached,
                    "reverting" => DetachState::Reverting,
                    _ => DetachState::ReattachFailed,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every account target of a run, as the run used them.
    pub fn run_targets(&self, run_id: i64) -> Result<Vec<AccountTarget>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT target_json FROM run_accounts WHERE run_id = ?1 ORDER BY position")?;
        let rows = stmt.query_map(params![run_id], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(parse_target(run_id, &json?)?);
        }
        Ok(out)
    }

    /// Attach intents of a rollback run left without outcome.
    pub fn open_attaches(
        &self,
        run_id: i64,
        account: &AccountId,
    ) -> Result<Vec<OpenAttach>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT x.id, x.user_name, x.policy_arn, f.user_id FROM actions x
             LEFT JOIN findings f ON f.id = x.finding_id
             WHERE x.run_id = ?1 AND x.account_id = ?2 AND x.operation = 'attach'
               AND x.status = 'pending'
             ORDER BY x.id",
        )?;
        let rows = stmt.query_map(params![run_id, account.as_str()], |r| {
            Ok(OpenAttach {
                action_id: r.get(0)?,
                user: UserName::new(r.get::<_, String>(1)?),
                policy: PolicyArn::new(r.get::<_, String>(2)?),
                user_id: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // --- history -------------------------------------------------------------------------

    /// Every action ever journaled, oldest first, filtered.
    pub fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT x.id, x.run_id, r.kind, coalesce(x.finished_at, x.intent_at), x.account_id,
                    a.account_name, x.user_name, x.policy_arn, x.operation, x.status, x.reason,
                    x.request_id, a.role_arn, a.session_name, x.rolled_back_by, x.undoes
             FROM actions x
             JOIN runs r ON r.id = x.run_id
             JOIN run_accounts a ON a.run_id = x.run_id AND a.account_id = x.account_id
             WHERE (?1 IS NULL OR x.account_id = ?1)
               AND (?2 IS NULL OR x.user_name = ?2 COLLATE NOCASE)
               AND (?3 IS NULL OR x.policy_arn = ?3)
               AND (?4 IS NULL OR x.intent_at >= ?4)
             ORDER BY x.id",
        )?;
        let rows = stmt.query_map(
            params![filter.account, filter.user, filter.policy, filter.since],
            |r| {
                Ok(HistoryRow {
                    action_id: r.get(0)?,
                    run_id: r.get(1)?,
                    run_kind: r.get(2)?,
                    time: r.get(3)?,
                    account_id: r.get(4)?,
                    account_name: r.get(5)?,
                    user_name: r.get(6)?,
                    policy_arn: r.get(7)?,
                    operation: r.get(8)?,
                    status: r.get(9)?,
                    reason: r.get(10)?,
                    request_id: r.get(11)?,
                    role_arn: r.get(12)?,
                    session_name: r.get(13)?,
                    rolled_back_by: r.get(14)?,
                    undoes: r.get(15)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // --- reading -------------------------------------------------------------------------
    /// The accounts of `run_id` whose scan was recorded, with the targets they used.
    pub fn scanned_targets(&self, run_id: i64) -> Result<Vec<AccountTarget>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT target_json FROM run_accounts
             WHERE run_id = ?1 AND users_seen IS NOT NULL ORDER BY position",
        )?;
        let rows = stmt.query_map(params![run_id], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(parse_target(run_id, &json?)?);
        }
        Ok(out)
    }

    pub fn run(&self, run_id: i64) -> Result<RunRow, StoreError> {
        self.runs_where("WHERE r.id = ?1", params![run_id])?
            .pop()
            .ok_or_else(|| {
                StoreError::NotFound(format!("no run {run_id} in {}", self.path.display()))
            })
    }

    /// Who the base credentials were when run `run_id` started.
    pub fn run_caller(&self, run_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT caller_arn FROM runs WHERE id = ?1",
                params![run_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    pub fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        self.runs_where("", params![])
    }

    fn runs_where(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!(
            "SELECT r.id, r.kind, r.status, r.source_run_id, r.started_at, r.finished_at,
                    (SELECT count(*) FROM run_accounts a WHERE a.run_id = r.id),
                    (SELECT count(*) FROM run_accounts a WHERE a.run_id = r.id AND a.status IN ('failed', 'stopped')),
                    (SELECT coalesce(sum(redundant_count), 0) FROM run_accounts a
                     WHERE a.run_id = coalesce(r.source_run_id, r.id)),
                    (SELECT coalesce(sum(direct_only_count), 0) FROM run_accounts a
                     WHERE a.run_id = coalesce(r.source_run_id, r.id)),
                    (SELECT count(*) FROM actions x WHERE x.run_id = r.id AND x.status IN ('detached', 'attached')),
                    (SELECT count(*) FROM actions x WHERE x.run_id = r.id AND x.status = 'failed'
                       AND x.id = (SELECT max(y.id) FROM actions y WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)),
                    (SELECT coalesce(sum(api_calls), 0) FROM run_accounts a WHERE a.run_id = r.id)
             FROM runs r {filter} ORDER BY r.id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(args, |r| {
            Ok(RunRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                status: r.get(2)?,
                source_run_id: r.get(3)?,
                started_at: r.get(4)?,
                finished_at: r.get(5)?,
                accounts: r.get(6)?,
                accounts_failed: r.get(7)?,
                redundant: r.get(8)?,
                direct_only: r.get(9)?,
                changed: r.get(10)?,
                actions_failed: r.get(11)?,
                api_calls: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest run, optionally of one kind.
    pub fn latest_run(&self, kind: Option<RunKind>) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT max(id) FROM runs WHERE ?1 IS NULL OR kind = ?1",
                params![kind.map(RunKind::as_str)],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    pub fn run_accounts(&self, run_id: i64) -> Result<Vec<AccountRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.account_id, a.account_name, a.status, a.error_code, a.error_message,
                    a.users_seen, a.groups_seen, a.users_excluded,
                    coalesce(a.redundant_count, s.redundant_count),
                    coalesce(a.direct_only_count, s.direct_only_count), a.api_calls, a.role_arn, a.started_at, a.finished_at,
                    (SELECT count(*) FROM actions x WHERE x.run_id = a.run_id AND x.account_id = a.account_id AND x.status IN ('detached', 'attached')),
                    (SELECT count(*) FROM actions x WHERE x.run_id = a.run_id AND x.account_id = a.account_id AND x.status IN ('skipped', 'already_detached', 'already_attached')),
                    (SELECT count(*) FROM actions x WHERE x.run_id = a.run_id AND x.account_id = a.account_id AND x.status = 'failed'
                       AND x.id = (SELECT max(y.id) FROM actions y WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)),
                    (SELECT count(*) FROM actions x WHERE x.run_id = a.run_id AND x.account_id = a.account_id AND x.status = 'reverted'),
                    a.origin
             FROM run_accounts a
             JOIN runs r ON r.id = a.run_id
             LEFT JOIN run_accounts s ON s.run_id = r.source_run_id AND s.account_id = a.account_id
             WHERE a.run_id = ?1 ORDER BY a.position",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok(AccountRow {
                account_id: r.get(0)?,
                account_name: r.get(1)?,
                status: r.get(2)?,
                error_code: r.get(3)?,
                error_message: r.get(4)?,
                users_seen: r.get(5)?,
                groups_seen: r.get(6)?,
                users_excluded: r.get(7)?,
                redundant: r.get(8)?,
                direct_only: r.get(9)?,
                api_calls: r.get(10)?,
                role_arn: r.get(11)?,
                started_at: r.get(12)?,
                finished_at: r.get(13)?,
                changed: r.get(14)?,
                skipped: r.get(15)?,
                failed: r.get(16)?,
                reverted: r.get(17)?,
                origin: r.get(18)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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

/// An account target as a run stored it.
fn parse_target(run_id: i64, json: &str) -> Result<AccountTarget, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::NotFound(format!(
            "run {run_id} holds an unreadable account target: {e}"
        ))
    })
}

/// A finding from eight consecutive columns, starting at `at`: user_name, user_arn,
/// policy_arn, policy_name, kind, covering_groups, user_id, covering_group_ids.
fn finding_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Finding> {
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
    })
}

/// When a rollback's attach took effect, the detach it undoes points to it.
fn link_rollback(
    tx: &rusqlite::Transaction<'_>,
    action_id: i64,
    status: ActionStatus,
) -> Result<(), StoreError> {
    if matches!(
        status,
        ActionStatus::Attached | ActionStatus::AlreadyAttached
    ) {
        tx.execute(
            "UPDATE actions SET rolled_back_by = ?1
             WHERE id = (SELECT undoes FROM actions WHERE id = ?1)",
            params![action_id],
        )?;
    }
    Ok(())
}

fn write_calls(
    tx: &rusqlite::Transaction<'_>,
    run_id: i64,
    account: &AccountId,
    calls: &CallCounts,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO api_calls (run_id, account_id, operation, calls, throttled, errors)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (run_id, account_id, operation) DO UPDATE SET
             calls = excluded.calls, throttled = excluded.throttled, errors = excluded.errors",
    )?;
    for (op, c) in calls.iter() {
        stmt.execute(params![
            run_id,
            account.as_str(),
            op.as_str(),
            c.calls,
            c.throttled,
            c.errors
        ])?;
    }
    tx.execute(
        "UPDATE run_accounts SET api_calls =
             (SELECT coalesce(sum(calls), 0) FROM api_calls WHERE run_id = ?1 AND account_id = ?2)
         WHERE run_id = ?1 AND account_id = ?2",
        params![run_id, account.as_str()],
    )?;
    Ok(())
}

/// Creates the database file readable by its owner only, before SQLite opens it (SQLite gives
/// its -wal and -shm files the same mode).
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

/// SQLite's error, with what the user can do about the common ones.
fn describe(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            "the file is not an SQLite database; pass --db with a new or an iamsweep file".into()
        }
        Some(ErrorCode::ReadOnly)
        | Some(ErrorCode::CannotOpen)
        | Some(ErrorCode::PermissionDenied) => {
            format!("{e} (check that the file and its folder are writable)")
        }
        Some(ErrorCode::DiskFull) => format!("{e} (the disk is full)"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        Store::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_database_from_a_newer_iamsweep_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("newer iamsweep (schema version 99; this one knows up to 5)"),
            "{err}"
        );
    }

    #[test]
    fn another_programs_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (x TEXT)").unwrap();
        drop(conn);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("is not an iamsweep database"), "{err}");
        let conn = Connection::open(&path).unwrap();
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 1, "nothing was added to it");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(
            &path,
            "this is not a database, just some text that is long enough",
        )
        .unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("not an SQLite database"), "{err}");
    }

    #[test]
    fn reopening_keeps_the_schema_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let file =
            crate::config::parse("accounts.toml", "[[account]]\nid = \"111111111111\"\n").unwrap();
        let mut s = Store::open(&path).unwrap();
        let id = s
            .create_run(RunKind::Scan, None, &file, &file.accounts, "{}")
            .unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.run(id).unwrap().status, "running");
        assert_eq!(s.run_accounts(id).unwrap()[0].status, "pending");
    }
}
