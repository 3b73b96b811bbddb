//! The audit database: opening, migrating and every SQL statement of iamsweep. One [`Store`]
//! owns the connection; async code reaches it through [`actor::StoreHandle`].

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

pub mod actor;
mod diff;
mod journal;
mod prune;
mod published;
mod reports;
mod rollback;
mod rows;
mod runs;
mod scan;
mod stream;
mod stretches;
mod tally;

pub use diff::*;
pub use prune::Pruned;
pub use published::Published;
pub use rows::*;
pub use tally::Tally;

use crate::aws::AwsError;
use crate::calls::CallCounts;
use crate::config::{AccountTarget, AccountsFile};
use crate::findings::{AccountFindings, Finding, FindingKind};
use crate::model::{AccountId, PolicyArn, UserName};

/// A detach row that still needs attention: its intent has no outcome, its answer was lost, its
/// post-check never ran, or a re-attach was begun or failed.
pub(super) const OPEN_DETACH: &str = "(x.status IN ('pending', 'unknown', 'reverting')
      OR (x.status = 'detached' AND x.checked_at IS NULL)
      OR (x.status = 'failed' AND x.reason = 'reattach_failed' AND x.rolled_back_by IS NULL))";

/// A detach iamsweep made, whatever happened after: done, its post-check's re-attach under way,
/// or that re-attach failed (the user lacks the policy now). What a rollback undoes.
pub(super) const MADE_DETACH: &str = "(x.status IN ('detached', 'reverting')
      OR (x.status = 'failed' AND x.reason = 'reattach_failed'))";

/// Joins `f`, the finding action `x` acted on, recorded by run `run` (an SQL expression: the
/// scan an apply applied, or the apply itself when it scanned). `f` has the `findings` view's
/// columns but `id` and `run_id` (`x.finding_id` and `run`). Read from the tables, not the view:
/// a finding is looked up by the primary key of its stretch (account, user, policy), and its id
/// checked.
pub(super) fn finding_of_action(join: &str, run: &str) -> String {
    format!(
        "{join} run_account_rows fa ON fa.run_id = {run} AND fa.account_id = x.account_id
         {join} finding_stretches f ON f.account_id = x.account_id
             AND f.user_name = x.user_name AND f.policy_arn = x.policy_arn
             AND f.first_run <= fa.run_id AND (f.last_run IS NULL OR f.last_run >= fa.run_id)
             AND fa.finding_base + f.slot = x.finding_id"
    )
}

/// Finding `f` was detached by an apply other than run ?2 of the same scan (a capped run
/// continued, say) and not rolled back: nothing left to do, and no call to repeat.
pub(super) const DETACHED_BY_ANOTHER_APPLY: &str = "EXISTS (SELECT 1 FROM actions z
      WHERE z.finding_id = f.id AND z.run_id <> ?2
        AND z.status = 'detached' AND z.rolled_back_by IS NULL)";

/// `PRAGMA application_id` of an iamsweep database ("iams").
const APPLICATION_ID: i32 = 0x6961_6d73;

/// Every migration, embedded at build time, in order. Never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_history_views.sql"),
    include_str!("../../migrations/0003_truthful_journal.sql"),
    include_str!("../../migrations/0004_drift.sql"),
    include_str!("../../migrations/0005_send_bounds.sql"),
    include_str!("../../migrations/0006_exceptions.sql"),
    include_str!("../../migrations/0007_plans.sql"),
    include_str!("../../migrations/0008_owners.sql"),
    include_str!("../../migrations/0009_published.sql"),
    include_str!("../../migrations/0010_finding_stretches.sql"),
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
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn set_busy_timeout(&self, wait: std::time::Duration) -> Result<(), StoreError> {
        Ok(self.conn.busy_timeout(wait)?)
    }

    // --- runs ----------------------------------------------------------------------------
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
            err.contains("newer iamsweep (schema version 99; this one knows up to 10)"),
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
