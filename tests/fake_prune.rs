//! `prune`: scan runs that changed nothing are forgotten, every run that tells something is
//! kept, and the reports, diffs and gates of the runs kept read the same afterwards.

mod common;

use common::{FakeRig, accounts_toml, block_on};
use iamsweep::aws::{AwsError, ErrorKind};
use iamsweep::diff::{diff, gate};
use iamsweep::store::Store;

const A: &str = "111111111111";
const B: &str = "222222222222";
const P1: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

/// Everything a user reads of run `id`, and of the diffs and gates over the runs in `runs`.
fn readings(rig: &FakeRig, runs: &[i64]) -> Vec<String> {
    let store = Store::open_read_only(&rig.db()).unwrap().unwrap();
    let mut out = Vec::new();
    for &id in runs {
        out.push(serde_json::to_string(&store.report(id).unwrap()).unwrap());
        out.push(format!("{:?}", gate(&store, id).unwrap()));
    }
    for pair in runs.windows(2) {
        out.push(format!(
            "{:?}",
            diff(&store, Some(pair[0]), Some(pair[1]), true).unwrap()
        ));
    }
    out
}

#[test]
fn prune_forgets_only_scans_that_changed_nothing_and_every_reading_stays() {
    let rig = FakeRig::new(&accounts_toml(&[A, B]));
    for acct in [A, B] {
        rig.org.add_group(acct, "ops", &[P1]);
        rig.org.add_user(acct, "alice", &["ops"], &[P1]);
        rig.org.add_user(acct, "bob", &["ops"], &[P1]);
    }
    let scan = || block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    let (s1, s2, s3) = (scan(), scan(), scan());
    rig.org.add_user(A, "carol", &["ops"], &[P1]);
    let s4 = scan(); // carol is new in A
    let s5 = scan();
    let applied = block_on(
        rig.engine
            .apply_run(s5, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(applied.tally.detached, 5);
    let s7 = scan(); // nothing left to find
    let s8 = scan(); // the newest: kept
    assert_eq!(
        (s1, s2, s3, s4, s5, applied.run_id, s7, s8),
        (1, 2, 3, 4, 5, 6, 7, 8)
    );
    let kept = [1, 4, 5, 7, 8];
    let before = readings(&rig, &kept);
    let findings_before: i64 = rig.sql("SELECT count(*) FROM findings");

    let mut store = Store::open(&rig.db()).unwrap();
    let dry = store.prune("2999-01-01T00:00:00.000Z", true).unwrap();
    assert_eq!(dry.runs, vec![2, 3], "{dry:?}");
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM runs"),
        8,
        "a dry run changes nothing"
    );
    // Nothing started before run 3 is forgotten when the date says so.
    let third: String = rig.sql("SELECT started_at FROM runs WHERE id = 3");
    assert_eq!(store.prune(&third, true).unwrap().runs, vec![2]);

    let pruned = store.prune("2999-01-01T00:00:00.000Z", false).unwrap();
    assert_eq!(pruned.runs, vec![2, 3]);
    assert_eq!(pruned.findings, 8, "4 findings in each of runs 2 and 3");
    assert_eq!(
        pruned.kept, 5,
        "1 (the first), 4 (carol), 5 (applied), 7 (changed), 8 (the newest)"
    );
    assert_eq!(
        rig.rows("SELECT id FROM runs ORDER BY id"),
        vec!["1", "4", "5", "6", "7", "8"]
    );
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM findings"),
        findings_before - 8
    );
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM run_accounts WHERE run_id IN (2, 3)"),
        0
    );
    assert_eq!(
        readings(&rig, &kept),
        before,
        "every reading of the runs kept is the same"
    );
    // The default diff (the latest scan against the one before it) and the rollback list of
    // the apply are untouched.
    let store = Store::open_read_only(&rig.db()).unwrap().unwrap();
    assert_eq!(store.rollback_items(6, None).unwrap().len(), 5);
    // Pruning again finds nothing more.
    let mut store = Store::open(&rig.db()).unwrap();
    assert!(
        store
            .prune("2999-01-01T00:00:00.000Z", false)
            .unwrap()
            .runs
            .is_empty()
    );
}

#[test]
fn a_scan_with_a_failed_account_or_another_account_set_is_kept() {
    let rig = FakeRig::new(&accounts_toml(&[A, B]));
    for acct in [A, B] {
        rig.org.add_group(acct, "ops", &[P1]);
        rig.org.add_user(acct, "alice", &["ops"], &[P1]);
    }
    let scan = || block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    scan();
    rig.org.refuse_assume(
        B,
        AwsError::new(ErrorKind::AccessDenied, "AccessDenied", "no trust"),
    );
    let failed = scan();
    rig.org.accept_assume(B);
    let only_a = {
        let file = iamsweep::config::parse("accounts.toml", &accounts_toml(&[A])).unwrap();
        block_on(rig.engine.scan(&file)).unwrap().run_id
    };
    let after_a = scan();
    let repeat = scan();
    let newest = scan();
    let all: Vec<i64> = (1..=newest).collect();
    let before = readings(&rig, &all[..]);
    let mut store = Store::open(&rig.db()).unwrap();
    let pruned = store.prune("2999-01-01T00:00:00.000Z", false).unwrap();
    assert_eq!(
        pruned.runs,
        vec![repeat],
        "kept: {failed} (an account failed), {only_a} (another list than the run before), \
         {after_a} (likewise), {newest} (the latest); forgotten: {repeat}, as {after_a}"
    );
    // The report and gate of every run kept (the newest's gate now compares with the run
    // before the forgotten one, and counts the same).
    let kept: Vec<i64> = all.iter().copied().filter(|&r| r != repeat).collect();
    let want: Vec<String> = all
        .iter()
        .zip(before.chunks(2))
        .filter(|(r, _)| **r != repeat)
        .flat_map(|(_, two)| two.to_vec())
        .collect();
    assert_eq!(readings(&rig, &kept)[..want.len()], want[..]);
}

/// The command: what it says, its dry run, and a bad date (exit 2, nothing changed).
#[test]
fn the_prune_command_says_what_it_forgot_and_refuses_a_bad_date() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    for _ in 0..4 {
        block_on(rig.engine.scan(&rig.file)).unwrap();
    }
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_iamsweep"))
            .arg("--db")
            .arg(rig.db())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["prune", "--before", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--before `yesterday-ish`"));
    let out = run(&["prune", "--before", "2999-01-01", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("would forget 2 scan runs that changed nothing (2 findings): 2, 3;"),
        "{text}"
    );
    assert_eq!(rig.sql::<i64>("SELECT count(*) FROM runs"), 4);
    let out = run(&["prune", "--before", "2999-01-01"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("forgot 2 scan runs that changed nothing (2 findings): 2, 3;"),
        "{text}"
    );
    assert_eq!(rig.rows("SELECT id FROM runs ORDER BY id"), vec!["1", "4"]);
}

/// A scan after a detach that did not hold (re-attached outside iamsweep) shows the same
/// findings as the scan before the detach, but it is where the drift shows: kept.
#[test]
fn a_scan_across_a_detach_is_kept_even_when_its_findings_look_the_same() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    let scan = || block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    let first = scan();
    let applied = block_on(
        rig.engine
            .apply_run(first, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(applied.tally.detached, 1);
    rig.org.with_account(A, |a| {
        a.users
            .get_mut("alice")
            .unwrap()
            .attached
            .insert(P1.to_owned());
    });
    let drifted = scan();
    let again = scan();
    let newest = scan();
    let before = readings(&rig, &[first, drifted, newest]);
    let mut store = Store::open(&rig.db()).unwrap();
    let pruned = store.prune("2999-01-01T00:00:00.000Z", false).unwrap();
    assert_eq!(
        pruned.runs,
        vec![again],
        "{drifted} is where alice's detach did not hold"
    );
    assert_eq!(readings(&rig, &[first, drifted, newest]), before);
}
