//! One working process per database: an OS lock (`flock`) on the database file itself, held for
//! the run's lifetime and released by the OS when the process dies, so the same database reached
//! through a symlink or another path is still one lock, and a stale lock from a killed process is
//! simply taken over. A note beside the database (`<db>.lock`, by its canonical path) says which
//! run and process hold it; deleting that note loses the details, never the lock. A database on
//! a network file system, where SQLite's locks and WAL are not safe, is refused.

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
    #[error(
        "database {db} is on a network file system ({fs}), where SQLite's locks and write-ahead log are not safe and two machines could both write it; keep it on a local disk (--db) and copy it elsewhere between runs"
    )]
    NetworkFs { db: String, fs: &'static str },
}

/// Held while a run works on the database. Release it only after the database connection is
/// closed: closing any descriptor of the file drops the process's SQLite locks on it.
#[derive(Debug)]
pub struct RunLock {
    /// The database file, `flock`ed.
    _db: File,
    /// The note saying who holds the lock.
    note: File,
    /// What the note said when the lock was taken over from a dead process.
    pub taken_over: Option<String>,
}

impl RunLock {
    /// Where the note about the holder lives: beside the database, by its canonical path.
    pub fn lock_path(db: &Path) -> PathBuf {
        let mut p = canonical(db).into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Takes the lock or says who holds it. Creates the database file (mode 0600) if needed.
    pub fn acquire(db: &Path) -> Result<Self, LockError> {
        let shown = db.display().to_string();
        let io = |source| LockError::Io {
            db: shown.clone(),
            source,
        };
        if let Some(fs) = network_fs(db) {
            return Err(LockError::NetworkFs { db: shown, fs });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)
            .map_err(io)?;
        let mut note = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(Self::lock_path(db))
            .map_err(io)?;
        let mut previous = String::new();
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let _ = note.read_to_string(&mut previous);
                return Err(LockError::Busy {
                    db: shown,
                    holder: describe(&previous),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let _ = note.read_to_string(&mut previous);
        let mut lock = Self {
            _db: file,
            note,
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
        self.note.set_len(0)?;
        self.note.seek(SeekFrom::Start(0))?;
        writeln!(self.note, "pid={}", std::process::id())?;
        if let Some(id) = run_id {
            writeln!(self.note, "run={id}")?;
        }
        writeln!(self.note, "since={}", crate::store::now())?;
        self.note.flush()
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // An empty note means "free"; the OS releases the lock itself when the file closes.
        let _ = self.note.set_len(0);
    }
}

/// The path with symlinks resolved (its folder's, if the file does not exist yet).
fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (dir.canonicalize(), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => path.to_owned(),
    }
}

/// The kind of network file system the database's folder is on, if it is on one.
fn network_fs(db: &Path) -> Option<&'static str> {
    let dir = canonical(db);
    let dir = dir.parent()?;
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a properly sized, writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    network_fs_name(st.f_type as i64)
}

/// File systems SQLite documents as unsafe for its locking (magic numbers from statfs(2)).
fn network_fs_name(magic: i64) -> Option<&'static str> {
    match magic {
        0x6969 => Some("nfs"),
        0x517b => Some("smb"),
        0xff53_4d42 => Some("cifs"),
        0xfe53_4d42 => Some("smb2"),
        0x00c3_6400 => Some("ceph"),
        0x5346_414f => Some("afs"),
        0x0102_1997 => Some("9p"),
        _ => None,
    }
}

/// `run 7, pid 1234, since ...` from the note's lines.
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
    fn the_same_database_by_another_path_is_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let mut first = RunLock::acquire(&db).unwrap();
        first.set_run(3);
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let err = RunLock::acquire(&link).unwrap_err().to_string();
        assert!(err.contains("(run 3, pid "), "{err}");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let dotted = sub.join("../a.db");
        assert!(RunLock::acquire(&dotted).is_err());
    }

    #[test]
    fn deleting_the_note_loses_the_details_not_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let _first = RunLock::acquire(&db).unwrap();
        std::fs::remove_file(RunLock::lock_path(&db)).unwrap();
        let err = RunLock::acquire(&db).unwrap_err().to_string();
        assert!(err.contains("in use by another iamsweep"), "{err}");
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        // What a killed process leaves: details in the note, but no OS lock.
        std::fs::write(RunLock::lock_path(&db), "pid=999999\nrun=3\nsince=x\n").unwrap();
        let lock = RunLock::acquire(&db).unwrap();
        assert_eq!(
            lock.taken_over.as_deref(),
            Some("run 3, pid 999999, since x")
        );
    }

    #[test]
    fn network_file_systems_are_named() {
        assert_eq!(network_fs_name(0x6969), Some("nfs"));
        assert_eq!(network_fs_name(0xff53_4d42), Some("cifs"));
        // ext4, tmpfs, xfs, btrfs, overlayfs: local.
        for local in [0xef53, 0x0102_1994, 0x5846_5342, 0x9123_683e, 0x794c_7630] {
            assert_eq!(network_fs_name(local), None);
        }
    }
}
