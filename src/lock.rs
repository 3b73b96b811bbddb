//! One working process per database: an OS file lock beside it (`<db>.lock`), held for the
//! run's lifetime and released by the OS when the process dies, so a stale lock from a killed
//! process is simply taken over. The file says which run and process hold it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "database {db} is in use by another iamsweep ({holder}); wait for it to finish, or stop it with Ctrl-C and continue with `iamsweep resume`"
    )]
    Busy { db: String, holder: String },
    #[error("cannot lock database {db}: {source}")]
    Io { db: String, source: std::io::Error },
}

/// Held while a run works on the database.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    /// What the lock file said when it was taken over from a dead process.
    pub taken_over: Option<String>,
}

impl RunLock {
    pub fn lock_path(db: &Path) -> PathBuf {
        let mut p = db.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Takes the lock or says who holds it.
    pub fn acquire(db: &Path) -> Result<Self, LockError> {
        let shown = db.display().to_string();
        let io = |source| LockError::Io {
            db: shown.clone(),
            source,
        };
        let path = Self::lock_path(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let mut previous = String::new();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let _ = file.read_to_string(&mut previous);
                return Err(LockError::Busy {
                    db: shown,
                    holder: describe(&previous),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let _ = file.read_to_string(&mut previous);
        let mut lock = Self {
            file,
            taken_over: (!previous.trim().is_empty()).then(|| describe(&previous)),
        };
        lock.write(None).map_err(io)?;
        Ok(lock)
    }

    /// Records the run now holding the lock, for whoever is refused next.
    pub fn set_run(&mut self, run_id: i64) {
        let _ = self.write(Some(run_id));
    }

    fn write(&mut self, run_id: Option<i64>) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        writeln!(self.file, "pid={}", std::process::id())?;
        if let Some(id) = run_id {
            writeln!(self.file, "run={id}")?;
        }
        writeln!(self.file, "since={}", crate::store::now())?;
        self.file.flush()
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // An empty file means "free"; the OS releases the lock itself when the file closes.
        let _ = self.file.set_len(0);
    }
}

/// `run 7, pid 1234, since ...` from the lock file's lines.
fn describe(text: &str) -> String {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(str::to_owned))
    };
    let mut parts = Vec::new();
    if let Some(run) = get("run=") {
        parts.push(format!("run {run}"));
    }
    if let Some(pid) = get("pid=") {
        parts.push(format!("pid {pid}"));
    }
    if let Some(since) = get("since=") {
        parts.push(format!("since {since}"));
    }
    if parts.is_empty() {
        "a process that left no details".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_run_id() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let mut first = RunLock::acquire(&db).unwrap();
        first.set_run(7);
        let err = RunLock::acquire(&db).unwrap_err().to_string();
        assert!(
            err.contains("in use by another iamsweep (run 7, pid "),
            "{err}"
        );
        drop(first);
        let again = RunLock::acquire(&db).unwrap();
        assert_eq!(
            again.taken_over, None,
            "a clean release leaves nothing to take over"
        );
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        // What a killed process leaves: details in the file, but no OS lock.
        std::fs::write(RunLock::lock_path(&db), "pid=999999\nrun=3\nsince=x\n").unwrap();
        let lock = RunLock::acquire(&db).unwrap();
        assert_eq!(
            lock.taken_over.as_deref(),
            Some("run 3, pid 999999, since x")
        );
    }
}
