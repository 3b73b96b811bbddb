//! Findings stored by stretches (schema version 10): what each scan writes, and that every run
//! still reads exactly the findings it saw: unchanged scans, changes, a failed account between
//! two scans, and an old run that records an account after a newer one did (a resumed scan).

mod common;

use common::accounts_toml;
use iamsweep::calls::CallCounts;
use iamsweep::findings::{AccountFindings, Finding, FindingKind};
use iamsweep::model::{AccountId, PolicyArn, UserName};
use iamsweep::store::{AccountStatus, RunKind, RunStatus, Store};
use rusqlite::Connection;

const A: &str = "111111111111";
const B: &str = "222222222222";

fn finding(account: &str, user: &str, policy: &str, groups: &[&str]) -> Finding {
    Finding {
        user_name: UserName::new(user.to_owned()),
        user_id: Some(format!("AIDA{user}")),
        user_arn: format!("arn:aws:iam::{account}:user/{user}"),
        policy_arn: PolicyArn::new(format!("arn:aws:iam::{account}:policy/{policy}")),
        policy_name: policy.to_owned(),
        kind: if groups.is_empty() {
            FindingKind::DirectOnly
        } else {
            FindingKind::RedundantDirect
        },
        covering_groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        covering_group_ids: groups.iter().map(|g| format!("AGPA{g}")).collect(),
        exception: None,
        owner: None,
    }
}

fn seen(findings: Vec<Finding>) -> AccountFindings {
    AccountFindings {
        users_seen: 3,
        groups_seen: 1,
        users_excluded: 0,
        findings,
        read_at: Some("2026-12-01T00:00:00.000Z".into()),
    }
}

struct Db {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Store,
    file: iamsweep::config::AccountsFile,
}

impl Db {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = Store::open(&path).unwrap();
        let file = iamsweep::config::parse("accounts.toml", &accounts_toml(&[A, B])).unwrap();
        Self {
            _dir: dir,
            path,
            store,
            file,
        }
    }

    fn run(&mut self) -> i64 {
        self.store
            .create_run(RunKind::Scan, None, &self.file, &self.file.accounts, "{}")
            .unwrap()
    }

    fn record(&mut self, run: i64, account: &str, findings: Vec<Finding>) {
        self.store
            .record_scan(
                run,
                &AccountId::parse(account).unwrap(),
                &seen(findings),
                &CallCounts::default(),
                AccountStatus::Completed,
            )
            .unwrap();
    }

    /// A completed scan run that saw A and B as `a_findings` and `b_findings`.
    fn scan_as_before(&mut self) -> i64 {
        let run = self.run();
        self.record(run, A, a_findings());
        self.record(run, B, b_findings());
        self.finish(run);
        run
    }

    fn finish(&mut self, run: i64) {
        self.store.finish_run(run, RunStatus::Completed).unwrap();
    }

    fn count(&self, sql: &str) -> i64 {
        Connection::open(&self.path)
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    /// Run `run`'s findings as the `findings` view gives them: account, user, policy, kind,
    /// covering groups.
    fn findings(&self, run: i64) -> Vec<String> {
        let conn = Connection::open(&self.path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT account_id || ' ' || user_name || ' ' || policy_name || ' ' || kind
                        || ' ' || covering_groups
                 FROM findings WHERE run_id = ?1 ORDER BY account_id, user_name, policy_name",
            )
            .unwrap();
        stmt.query_map([run], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn ids(&self, run: i64) -> Vec<i64> {
        let conn = Connection::open(&self.path).unwrap();
        let mut stmt = conn
            .prepare("SELECT id FROM findings WHERE run_id = ?1 ORDER BY id")
            .unwrap();
        stmt.query_map([run], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn a_findings() -> Vec<Finding> {
    vec![
        finding(A, "alice", "Deploy", &["ops"]),
        finding(A, "alice", "Audit", &[]),
        finding(A, "bob", "Deploy", &["ops"]),
    ]
}

fn b_findings() -> Vec<Finding> {
    vec![
        finding(B, "carol", "Deploy", &["ops"]),
        finding(B, "dan", "Audit", &[]),
    ]
}

#[test]
fn unchanged_scans_store_no_row_per_finding_and_a_change_starts_a_stretch() {
    let mut db = Db::new();
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(db.scan_as_before());
    }
    assert_eq!(
        db.count("SELECT count(*) FROM finding_stretches"),
        5,
        "three scans of the same 5 findings store 5 rows"
    );
    let first = db.findings(runs[0]);
    assert_eq!(first.len(), 5);
    for &r in &runs {
        assert_eq!(db.findings(r), first, "run {r}");
    }
    // Every run has ids of its own: a journal row names one run's finding.
    let mut all: Vec<i64> = runs.iter().flat_map(|&r| db.ids(r)).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 15);

    // Run 4: bob's Deploy is no longer covered (direct-only now), erin is new, alice's Audit is
    // gone; B unchanged.
    let r4 = db.run();
    db.record(
        r4,
        A,
        vec![
            finding(A, "alice", "Deploy", &["ops"]),
            finding(A, "bob", "Deploy", &[]),
            finding(A, "erin", "Deploy", &["ops"]),
        ],
    );
    db.record(r4, B, b_findings());
    db.finish(r4);
    assert_eq!(
        db.count("SELECT count(*) FROM finding_stretches"),
        7,
        "two stretches begun (bob's new kind, erin); two ended (bob's old kind, alice's Audit)"
    );
    assert_eq!(
        db.findings(r4),
        vec![
            format!("{A} alice Deploy redundant_direct [\"ops\"]"),
            format!("{A} bob Deploy direct_only []"),
            format!("{A} erin Deploy redundant_direct [\"ops\"]"),
            format!("{B} carol Deploy redundant_direct [\"ops\"]"),
            format!("{B} dan Audit direct_only []"),
        ]
    );
    for &r in &runs {
        assert_eq!(db.findings(r), first, "run {r} still reads what it saw");
    }
    // alice's Audit comes back in run 5: a new stretch, and runs 1-4 are unchanged.
    let r5 = db.run();
    let mut back = a_findings();
    back[2] = finding(A, "bob", "Deploy", &[]);
    back.push(finding(A, "erin", "Deploy", &["ops"]));
    db.record(r5, A, back);
    db.record(r5, B, b_findings());
    db.finish(r5);
    assert_eq!(db.count("SELECT count(*) FROM finding_stretches"), 8);
    assert_eq!(db.findings(r5).len(), 6);
    assert_eq!(db.findings(r4).len(), 5);
    assert_eq!(db.findings(runs[2]), first);
}

#[test]
fn an_account_that_failed_in_between_has_no_findings_in_that_run_and_nothing_is_resolved() {
    let mut db = Db::new();
    let r1 = db.scan_as_before();
    // Run 2: B failed (its scan was never recorded).
    let r2 = db.run();
    db.record(r2, A, a_findings());
    db.store
        .finish_run(r2, RunStatus::CompletedWithErrors)
        .unwrap();
    let r3 = db.scan_as_before();
    assert_eq!(db.count("SELECT count(*) FROM finding_stretches"), 5);
    assert_eq!(db.findings(r1).len(), 5);
    assert_eq!(
        db.findings(r2),
        db.findings(r1)[..3].to_vec(),
        "run 2 saw A only"
    );
    assert_eq!(db.findings(r3), db.findings(r1));
    assert_eq!(
        db.count("SELECT count(*) FROM findings WHERE run_id = 2 AND account_id = '222222222222'"),
        0
    );
}

#[test]
fn an_old_run_that_records_an_account_after_a_newer_one_reads_what_it_saw() {
    let mut db = Db::new();
    let r1 = db.scan_as_before();
    // Run 2 stops before B (interrupted); run 3 scans both.
    let r2 = db.run();
    db.record(r2, A, a_findings());
    let r3 = db.scan_as_before();
    let before: Vec<Vec<String>> = [r1, r3].iter().map(|&r| db.findings(r)).collect();
    let ids_before: Vec<Vec<i64>> = [r1, r3].iter().map(|&r| db.ids(r)).collect();
    assert_eq!(db.count("SELECT count(*) FROM finding_stretches"), 5);
    // Run 2 is resumed: B has changed since (dan gone, carol covered by two groups). B's
    // stretches ran from run 1 on: they are cut around run 2.
    let changed = vec![finding(B, "carol", "Deploy", &["ops", "admins"])];
    db.record(r2, B, changed);
    db.finish(r2);
    assert_eq!(
        db.findings(r2),
        vec![
            format!("{A} alice Audit direct_only []"),
            format!("{A} alice Deploy redundant_direct [\"ops\"]"),
            format!("{A} bob Deploy redundant_direct [\"ops\"]"),
            format!("{B} carol Deploy redundant_direct [\"ops\",\"admins\"]"),
        ]
    );
    let after: Vec<Vec<String>> = [r1, r3].iter().map(|&r| db.findings(r)).collect();
    assert_eq!(after, before, "the runs around it read what they saw");
    let ids_after: Vec<Vec<i64>> = [r1, r3].iter().map(|&r| db.ids(r)).collect();
    assert_eq!(ids_after, ids_before, "and keep their ids");
    assert_eq!(
        db.count("SELECT count(*) FROM finding_stretches WHERE account_id = '222222222222'"),
        2 + 2 + 1,
        "B: two stretches cut in two, and run 2's own"
    );
    // A scan after all of it continues from run 3, the newest.
    let r4 = db.scan_as_before();
    assert_eq!(db.findings(r4), before[1]);
    // A run records an account once.
    let again = db.store.record_scan(
        r4,
        &AccountId::parse(A).unwrap(),
        &seen(a_findings()),
        &CallCounts::default(),
        AccountStatus::Completed,
    );
    assert!(again.is_err());
}
