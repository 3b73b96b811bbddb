//! Schema version 10 stores findings by stretches. A database written by the release before it
//! (tests/fixtures/schema9, made by its make.sh with that release against moto: nine runs of
//! three accounts and a failing one, two applies of one scan, a rollback, drift, an exception, an
//! apply that scanned) is migrated by the current code, and everything a user reads of it is the
//! same as the release printed: every report, diff, rollback list, plan and history, and the
//! documented tables and views row for row.

use std::path::{Path, PathBuf};
use std::process::Command;

use iamsweep::store::Store;
use rusqlite::Connection;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema9")
}

/// Every row of what docs/schema.md documents, in a stable order.
fn documented_rows(db: &Path) -> Vec<(String, Vec<String>)> {
    let conn = Connection::open(db).unwrap();
    [
        "SELECT * FROM findings ORDER BY id",
        "SELECT * FROM drift ORDER BY finding_id",
        "SELECT * FROM open_findings ORDER BY account_id, user_name, policy_arn",
        "SELECT * FROM detaches ORDER BY action_id",
        "SELECT * FROM rollbacks ORDER BY action_id",
        "SELECT * FROM actions ORDER BY id",
        "SELECT run_id, account_id, status, users_seen, redundant_count, direct_only_count
         FROM run_accounts ORDER BY run_id, account_id",
    ]
    .into_iter()
    .map(|sql| {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (sql.to_owned(), rows)
    })
    .collect()
}

fn schema_version(db: &Path) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// What a plan file holds that is not the database's: when it was written.
fn without_creation_time(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("\"created_at\""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_database_of_the_previous_release_reads_the_same_after_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    std::fs::copy(fixture().join("f.db"), &db).unwrap();
    std::fs::copy(
        fixture().join("accounts.toml"),
        dir.path().join("accounts.toml"),
    )
    .unwrap();
    assert_eq!(schema_version(&db), 9);
    let before = documented_rows(&db);
    assert!(before[0].1.len() > 50, "the fixture holds findings");

    drop(Store::open(&db).unwrap());
    assert_eq!(schema_version(&db), 10);
    let after = documented_rows(&db);
    for ((sql, was), (_, now)) in before.iter().zip(&after) {
        assert_eq!(now, was, "{sql}");
    }
    let stretches: i64 = Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM finding_stretches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        stretches as usize,
        before[0].1.len(),
        "each finding of the old table is a stretch of its own run"
    );

    let commands = std::fs::read_to_string(fixture().join("commands.txt")).unwrap();
    let mut compared = 0;
    for (n, line) in commands.lines().filter(|l| !l.starts_with('#')).enumerate() {
        let out = Command::new(env!("CARGO_BIN_EXE_iamsweep"))
            .current_dir(dir.path())
            .args(["--db", "f.db", "--accounts", "accounts.toml"])
            .args(line.split_whitespace())
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .unwrap();
        let mut printed = String::from_utf8_lossy(&out.stdout).into_owned();
        printed.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            printed.push_str(&format!("exit {}\n", out.status.code().unwrap_or(-1)));
        }
        let expected =
            std::fs::read_to_string(fixture().join(format!("out/{:02}.txt", n + 1))).unwrap();
        assert_eq!(
            without_creation_time(&printed),
            without_creation_time(&expected),
            "`iamsweep {line}` printed something else after the migration"
        );
        compared += 1;
    }
    assert_eq!(compared, 33);

    // The next scan of an account that did not change stores no row per finding: it continues
    // the stretches the migration made of run 9's rows.
    let account = "250000000001";
    let conn = Connection::open(&db).unwrap();
    let seen_in = |run: i64| -> Vec<String> {
        let mut stmt = conn
            .prepare(
                "SELECT json_object('user_name', user_name, 'user_id', user_id,
                        'user_arn', user_arn, 'policy_arn', policy_arn,
                        'policy_name', policy_name, 'kind', kind,
                        'covering_groups', json(covering_groups),
                        'covering_group_ids', json(coalesce(covering_group_ids, '[]')),
                        'exception', json(exception), 'owner', owner)
                 FROM findings WHERE run_id = ?1 AND account_id = ?2
                 ORDER BY user_name, policy_arn",
            )
            .unwrap();
        stmt.query_map(rusqlite::params![run, account], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let last = seen_in(9);
    assert!(!last.is_empty());
    let findings: Vec<iamsweep::findings::Finding> = last
        .iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    let text = std::fs::read_to_string(dir.path().join("accounts.toml")).unwrap();
    let file = iamsweep::config::parse("accounts.toml", &text).unwrap();
    let mut store = Store::open(&db).unwrap();
    let run = store
        .create_run(
            iamsweep::store::RunKind::Scan,
            None,
            &file,
            &file.accounts,
            "{}",
        )
        .unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let stored = count("SELECT count(*) FROM finding_stretches");
    store
        .record_scan(
            run,
            &iamsweep::model::AccountId::parse(account).unwrap(),
            &iamsweep::findings::AccountFindings {
                users_seen: 5,
                groups_seen: 3,
                users_excluded: 0,
                findings,
                read_at: None,
            },
            &iamsweep::calls::CallCounts::default(),
            iamsweep::store::AccountStatus::Completed,
        )
        .unwrap();
    assert_eq!(count("SELECT count(*) FROM finding_stretches"), stored);
    assert_eq!(seen_in(run), last);
    assert_eq!(seen_in(9), last);
    let after_scan = documented_rows(&db);
    assert_eq!(after_scan[0].1[..after[0].1.len()], after[0].1[..]);
}
