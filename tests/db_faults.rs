//! Database faults end to end: a full disk and a read-only file system under the database give
//! a clear error and exit code 2, and nothing is claimed that did not happen. Uses small tmpfs
//! mounts (the tests run as root, in scripts/test.sh) and moto.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmpfs of `size` mounted on a temp folder, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "these tests need to mount a small tmpfs (run as root)"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

fn accounts_file(dir: &Path, id: &str) -> PathBuf {
    let p = dir.join("accounts.toml");
    std::fs::write(&p, accounts_toml(&[id])).unwrap();
    p
}

#[test]
#[ignore = "needs moto and root: run scripts/test.sh"]
fn a_full_disk_is_a_clear_error_and_no_account_is_claimed_done() {
    let id = "100000000201";
    block_on(async {
        let s = Seeder::new(id).await;
        s.group("ops", &[READ_ONLY, VIEW_ONLY]).await;
        for i in 0..400 {
            s.user(
                &format!("a-rather-long-user-name-to-fill-pages-{i:04}"),
                &["ops"],
                &[READ_ONLY, VIEW_ONLY],
            )
            .await;
        }
    });
    let mount = Mount::new("160k");
    let scratch = tempfile::tempdir().unwrap();
    let db = mount.path().join("audit.db");
    let out = run_iamsweep(&db, &accounts_file(scratch.path(), id), &["scan"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("disk is full"), "{err}");
    // What the database holds is true: the account is not recorded as scanned, and no
    // finding of it was half-written.
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let (status, findings): (String, i64) = conn
        .query_row(
            "SELECT a.status, (SELECT count(*) FROM findings) FROM run_accounts a",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_ne!(status, "completed");
    assert_eq!(findings, 0);
}

#[test]
#[ignore = "needs moto and root: run scripts/test.sh"]
fn a_read_only_database_is_a_clear_error_with_nothing_changed() {
    let id = "100000000211";
    block_on(async {
        let s = Seeder::new(id).await;
        s.group("ops", &[READ_ONLY]).await;
        s.user("alice", &["ops"], &[READ_ONLY]).await;
    });
    let mount = Mount::new("4m");
    let scratch = tempfile::tempdir().unwrap();
    let db = mount.path().join("audit.db");
    let accounts = accounts_file(scratch.path(), id);
    assert_exit(&run_iamsweep(&db, &accounts, &["scan"]), 0);
    mount.read_only();
    let out = run_iamsweep(&db, &accounts, &["apply", "--yes"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.to_lowercase().contains("read-only"), "{err}");
    block_on(async {
        let s = Seeder::new(id).await;
        assert_eq!(
            s.user_policies("alice").await.len(),
            1,
            "nothing was detached"
        );
    });
    // Reading still works.
    let report = run_iamsweep(&db, &accounts, &["report", "--format", "json"]);
    assert_exit(&report, 0);
    assert!(stdout(&report).contains("\"alice\""), "{}", stdout(&report));
}
