//! What changed between runs, against the in-memory IAM: `diff`'s new / resolved / reappeared,
//! the `drift` view and `report` agreeing on drift, rollbacks that are not drift, failed
//! accounts that are not compared, and what `scan --fail-on new` counts.

mod common;

use common::{FakeRig, accounts_toml, block_on};
use iamsweep::aws::{AwsError, ErrorKind};
use iamsweep::diff::{self, Diff, Gate, Why};
use iamsweep::store::{ChangeKind, Store};

const A: &str = "111111111111";
const B: &str = "222222222222";
const READ: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const DEPLOY: &str = "arn:aws:iam::111111111111:policy/team/Deploy";
const OWN: &str = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess";

/// Two accounts: alice holds READ and DEPLOY twice, carol READ twice, bob OWN directly only.
fn rig() -> FakeRig {
    let rig = FakeRig::new(&accounts_toml(&[A, B]));
    for id in [A, B] {
        rig.org.add_group(id, "ops", &[READ, DEPLOY]);
        rig.org.add_user(id, "alice", &["ops"], &[READ, DEPLOY]);
        rig.org.add_user(id, "carol", &["ops"], &[READ]);
        rig.org.add_user(id, "bob", &[], &[OWN]);
    }
    rig
}

/// Journal times have millisecond precision: runs a few ms apart keep "detached before the
/// scan read the account" unambiguous, as the settle window does against AWS.
fn tick() {
    std::thread::sleep(std::time::Duration::from_millis(3));
}

fn store(rig: &FakeRig) -> Store {
    Store::open_read_only(&rig.db()).unwrap().unwrap()
}

fn diff(rig: &FakeRig, from: Option<i64>, to: Option<i64>, unchanged: bool) -> Diff {
    diff::diff(&store(rig), from, to, unchanged).unwrap()
}

/// `change account user policy-name`, in the diff's order.
fn lines(d: &Diff) -> Vec<String> {
    d.changes
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {}",
                c.change.as_str(),
                c.account_id,
                c.user_name,
                c.policy_name
            )
        })
        .collect()
}

fn scan(rig: &FakeRig) -> i64 {
    tick();
    let id = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    tick();
    id
}

#[test]
fn a_detach_that_came_back_is_reappeared_with_its_request_id_and_the_rest_resolved() {
    let rig = rig();
    let apply = block_on(rig.engine.apply(&rig.file)).unwrap().run_id;
    tick();
    // Terraform puts alice's DEPLOY back in A; someone gives carol DEPLOY directly in B.
    rig.org.add_user(A, "alice", &[], &[DEPLOY]);
    rig.org.add_user(B, "carol", &[], &[DEPLOY]);
    let later = scan(&rig);

    let d = diff(&rig, None, None, false);
    assert_eq!(
        d.from.as_ref().unwrap().id,
        apply,
        "the run before, same accounts"
    );
    assert_eq!(d.to.id, later);
    assert_eq!(d.compared, [A, B]);
    assert!(d.not_compared.is_empty());
    assert_eq!(
        lines(&d),
        [
            "reappeared 111111111111 alice Deploy",
            "new 222222222222 carol Deploy",
            "resolved 111111111111 alice ReadOnlyAccess",
            "resolved 111111111111 carol ReadOnlyAccess",
            "resolved 222222222222 alice Deploy",
            "resolved 222222222222 alice ReadOnlyAccess",
            "resolved 222222222222 carol ReadOnlyAccess",
        ]
    );
    let drift = &d.changes[0];
    let (request, at): (String, String) = {
        let conn = rusqlite::Connection::open(rig.db()).unwrap();
        conn.query_row(
            "SELECT request_id, detached_at FROM detaches
             WHERE account_id = ?1 AND user_name = 'alice' AND policy_arn = ?2",
            [A, DEPLOY],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    assert_eq!(drift.detached_in_run, Some(apply));
    assert_eq!(drift.detach_request_id.as_deref(), Some(request.as_str()));
    assert_eq!(drift.detached_at.as_deref(), Some(at.as_str()));

    // The drift view and `report` say the same, and only of that finding.
    assert_eq!(
        rig.rows("SELECT run_id, account_id, user_name, policy_arn, detached_in_run, detach_request_id FROM drift"),
        [format!("{later}|{A}|alice|{DEPLOY}|{apply}|{request}")]
    );
    let report = store(&rig).report(later).unwrap();
    let flagged: Vec<_> = report
        .iter()
        .filter_map(|f| f.reappeared.as_ref().map(|r| (f, r)))
        .collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(
        (
            flagged[0].0.user_name.as_str(),
            flagged[0].0.policy_arn.as_str()
        ),
        ("alice", DEPLOY)
    );
    assert_eq!(
        flagged[0].1.detach_request_id.as_deref(),
        Some(request.as_str())
    );
    // The apply's own report: its findings were read before its detaches, so none is drift.
    assert!(
        store(&rig)
            .report(apply)
            .unwrap()
            .iter()
            .all(|f| f.reappeared.is_none())
    );

    // `scan --fail-on new` counts per account against its previous scan.
    assert_eq!(
        diff::gate(&store(&rig), later).unwrap(),
        Gate {
            redundant: 2,
            new: 1,
            reappeared: 1,
            excepted: 0
        }
    );
}

#[test]
fn drift_already_seen_is_not_listed_again_but_stays_drift_in_report_and_the_view() {
    let rig = rig();
    let apply = block_on(rig.engine.apply(&rig.file)).unwrap().run_id;
    tick();
    rig.org.add_user(A, "alice", &[], &[DEPLOY]);
    let first = scan(&rig);
    let second = scan(&rig);

    let d = diff(&rig, None, None, false);
    assert_eq!((d.from.as_ref().unwrap().id, d.to.id), (first, second));
    assert!(d.changes.is_empty(), "{:?}", lines(&d));
    assert_eq!(diff::gate(&store(&rig), second).unwrap().new, 0);
    assert_eq!(diff::gate(&store(&rig), second).unwrap().reappeared, 0);

    // With --unchanged: everything that is still there, the drift with its detach.
    let all = diff(&rig, None, None, true);
    let drift: Vec<_> = all
        .changes
        .iter()
        .filter(|c| c.detached_in_run.is_some())
        .collect();
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0].change, ChangeKind::Unchanged);
    assert_eq!(drift[0].detached_in_run, Some(apply));
    assert_eq!(
        rig.sql::<i64>(&format!(
            "SELECT count(*) FROM drift WHERE run_id = {second}"
        )),
        1
    );
    // Compared with the apply itself, it is reappeared again.
    let since_apply = diff(&rig, Some(apply), Some(second), false);
    assert_eq!(
        lines(&since_apply)[0],
        "reappeared 111111111111 alice Deploy"
    );
}

#[test]
fn a_rolled_back_detach_that_is_seen_again_is_not_drift() {
    let rig = rig();
    let apply = block_on(rig.engine.apply(&rig.file)).unwrap().run_id;
    let between = scan(&rig);
    block_on(rig.engine.rollback(apply)).unwrap();
    let after = scan(&rig);

    assert_eq!(rig.sql::<i64>("SELECT count(*) FROM drift"), 0);
    assert!(
        store(&rig)
            .report(after)
            .unwrap()
            .iter()
            .all(|f| f.reappeared.is_none())
    );
    // Against the apply's findings nothing changed; against the scan in between, the
    // policies iamsweep put back are new, never reappeared.
    assert!(
        diff(&rig, Some(apply), Some(after), false)
            .changes
            .is_empty()
    );
    let d = diff(&rig, Some(between), Some(after), false);
    assert_eq!(d.count(ChangeKind::New), 6);
    assert_eq!(d.count(ChangeKind::Reappeared), 0);
}

#[test]
fn an_account_that_failed_in_either_run_is_not_compared_never_all_resolved() {
    let rig = rig();
    let first = scan(&rig);
    rig.org.refuse_assume(
        B,
        AwsError::new(ErrorKind::AccessDenied, "AccessDenied", "no trust"),
    );
    let failed = scan(&rig);
    let d = diff(&rig, None, None, false);
    assert_eq!((d.from.as_ref().unwrap().id, d.to.id), (first, failed));
    assert_eq!(d.compared, [A]);
    assert_eq!(d.not_compared.len(), 1);
    assert_eq!(d.not_compared[0].account_id, B);
    assert_eq!(
        d.not_compared[0].why.to_string(),
        format!("its scan failed in run {failed}: AccessDenied")
    );
    assert!(d.has_failures());
    assert!(
        d.changes.is_empty(),
        "nothing resolved in B: {:?}",
        lines(&d)
    );

    // Back again: the run that failed is the one before, and B is still not compared...
    rig.org.accept_assume(B);
    rig.org.add_user(B, "carol", &[], &[DEPLOY]);
    let back = scan(&rig);
    let d = diff(&rig, None, None, false);
    assert_eq!(d.from.as_ref().unwrap().id, failed);
    assert_eq!(
        d.not_compared[0].why,
        Why::NotScanned {
            run: failed,
            status: "failed".into(),
            error_code: Some("AccessDenied".into())
        }
    );
    // ...while --fail-on new compares each account with its own previous scan: B's new
    // attachment is seen against the scan before the failure.
    assert_eq!(
        diff::gate(&store(&rig), back).unwrap(),
        Gate {
            redundant: 7,
            new: 1,
            reappeared: 0,
            excepted: 0
        }
    );
    let explicit = diff(&rig, Some(first), Some(back), false);
    assert_eq!(lines(&explicit), ["new 222222222222 carol Deploy"]);
}

#[test]
fn a_finding_whose_kind_changed_is_the_old_kind_resolved_and_the_new_kind_new() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[READ]);
    rig.org.add_group(A, "dev", &[]);
    rig.org.add_user(A, "alice", &["ops"], &[READ]);
    rig.org.add_user(A, "bob", &["dev"], &[OWN]);
    let first = scan(&rig);
    // The first scan of an account: everything redundant is new to `--fail-on new`.
    assert_eq!(
        diff::gate(&store(&rig), first).unwrap(),
        Gate {
            redundant: 1,
            new: 1,
            reappeared: 0,
            excepted: 0
        }
    );
    // A colleague takes alice out of ops and grants OWN to dev.
    rig.org.with_account(A, |a| {
        a.users.get_mut("alice").unwrap().groups.clear();
        a.groups.get_mut("dev").unwrap().insert(OWN.into());
    });
    let second = scan(&rig);
    let d = diff(&rig, None, None, false);
    let kinds: Vec<String> = d
        .changes
        .iter()
        .map(|c| format!("{} {} {}", c.change.as_str(), c.user_name, c.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            "new alice direct_only",
            "new bob redundant_direct",
            "resolved alice redundant_direct",
            "resolved bob direct_only",
        ]
    );
    assert_eq!(diff::gate(&store(&rig), second).unwrap().new, 1);
}

#[test]
fn diff_refuses_runs_it_cannot_compare_and_says_which_to_pass() {
    let rig = rig();
    let err = |from: Option<i64>, to: Option<i64>| {
        diff::diff(&store(&rig), from, to, false)
            .err()
            .unwrap()
            .to_string()
    };
    drop(Store::open(&rig.db()).unwrap());
    assert!(err(None, None).contains("no run has recorded a scan yet"));
    let first = scan(&rig);
    let only = diff(&rig, None, None, false);
    assert!(only.from.is_none(), "nothing to compare with: all new");
    assert_eq!(only.count(ChangeKind::New), 8);
    let apply = block_on(
        rig.engine
            .apply_run(first, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap()
    .run_id;
    assert!(
        err(Some(apply), None).contains(&format!(
            "it applied the findings of run {first}; pass {first}"
        )),
        "{}",
        err(Some(apply), None)
    );
    assert!(err(Some(first), None).contains("nothing after it"));
    let second = scan(&rig);
    assert!(err(Some(second), Some(first)).contains("pass the earlier run first"));
    assert!(err(Some(second), Some(second)).contains("FROM and TO are the same run"));
    assert!(err(Some(99), None).contains("no run 99"));
}

#[test]
fn a_scan_still_running_is_not_the_default_but_can_be_named() {
    let rig = rig();
    let first = scan(&rig);
    let second = scan(&rig);
    let third = scan(&rig);
    // As a scheduled scan looks while it is still recording accounts.
    rusqlite::Connection::open(rig.db())
        .unwrap()
        .execute(
            "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?1",
            [third],
        )
        .unwrap();
    let d = diff(&rig, None, None, false);
    assert_eq!(d.to.id, second);
    assert_eq!(d.from.as_ref().map(|r| r.id), Some(first));
    let named = diff(&rig, Some(second), Some(third), false);
    assert_eq!(named.to.id, third);
}

/// Findings stored by stretches: when a detach came back before the next scan, that scan sees
/// exactly what the scan before the apply saw (the finding's stretch simply goes on), and diff
/// still says reappeared: an unchanged stretch is not "nothing changed" when iamsweep acted in
/// the account in between.
#[test]
fn a_detach_that_came_back_before_the_next_scan_is_reappeared_though_the_findings_are_the_same() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[DEPLOY]);
    rig.org.add_user(A, "alice", &["ops"], &[DEPLOY]);
    let before = scan(&rig);
    let applied = block_on(
        rig.engine
            .apply_run(before, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(applied.tally.detached, 1);
    tick();
    rig.org.add_user(A, "alice", &[], &[DEPLOY]);
    let after = scan(&rig);
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM finding_stretches"),
        1,
        "the same finding: one stretch for both scans"
    );
    let d = diff(&rig, Some(before), Some(after), false);
    assert_eq!(lines(&d), ["reappeared 111111111111 alice Deploy"]);
    // A scan after it, with nothing done in between: nothing changed.
    let again = scan(&rig);
    assert!(
        diff(&rig, Some(after), Some(again), false)
            .changes
            .is_empty()
    );
}
