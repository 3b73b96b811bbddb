//! `report` of runs larger than one batch of streamed rows: every finding once, in report order,
//! each with the action taken on it; a writer that fails stops the stream with its error.

mod common;

use common::{FakeRig, accounts_toml, block_on};
use iamsweep::store::{FindingRow, Store};

const ACCOUNTS: [&str; 3] = ["333333333333", "111111111111", "222222222222"];
const USERS: usize = 1200;
const GRANTED: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const DIRECT: &str = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess";

/// Every user holds GRANTED twice (directly and through `ops`) and DIRECT only directly:
/// 2 findings per user, 7,200 in all, several batches of the stream.
fn rig() -> FakeRig {
    let mut options = common::options();
    options.apply.filters.exclude_users =
        iamsweep::filters::Patterns::new(vec!["*7".into()]).unwrap();
    let rig = FakeRig::with_options(&accounts_toml(&ACCOUNTS), options);
    for a in ACCOUNTS {
        rig.org.add_group(a, "ops", &[GRANTED]);
        for u in 0..USERS {
            rig.org
                .add_user(a, &format!("user{u:05}"), &["ops"], &[GRANTED, DIRECT]);
        }
    }
    rig
}

fn report(rig: &FakeRig, run: i64) -> Vec<FindingRow> {
    Store::open_read_only(&rig.db())
        .unwrap()
        .unwrap()
        .report(run)
        .unwrap()
}

/// The rows' keys in the order the report gave them, and that order sorted.
fn keys(rows: &[FindingRow]) -> (Vec<String>, Vec<String>) {
    let got: Vec<String> = rows
        .iter()
        .map(|r| format!("{}|{}|{}", r.account_id, r.user_name, r.policy_arn))
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    (got, sorted)
}

/// What a user expects to read for a finding after the apply: its status and reason.
fn expected(row: &FindingRow) -> Option<(&'static str, Option<&'static str>)> {
    match (row.policy_arn.as_str(), row.user_name.ends_with('7')) {
        (DIRECT, _) => None,
        (_, true) => Some(("skipped", Some("excluded"))),
        (_, false) => Some(("detached", None)),
    }
}

fn actions(rows: &[FindingRow]) -> Vec<Option<(&str, Option<&str>)>> {
    rows.iter()
        .map(|r| {
            r.action
                .as_ref()
                .map(|a| (a.status.as_str(), a.reason.as_deref()))
        })
        .collect()
}

#[test]
fn a_report_larger_than_a_batch_has_every_finding_once_in_order_with_its_action() {
    let rig = rig();
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    let before = report(&rig, scan);
    assert_eq!(before.len(), ACCOUNTS.len() * USERS * 2);
    let (got, sorted) = keys(&before);
    assert_eq!(got, sorted, "sorted by account, user, policy; none twice");
    assert!(
        before.iter().all(|r| r.action.is_none()),
        "nothing applied yet"
    );
    let redundant = before.iter().filter(|r| r.kind == "redundant_direct");
    assert!(redundant.clone().all(|r| r.covering_groups == ["ops"]));
    assert_eq!(redundant.count(), ACCOUNTS.len() * USERS);

    let apply = block_on(
        rig.engine
            .apply_run(scan, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap()
    .run_id;
    let want: Vec<_> = before.iter().map(expected).collect();
    // The apply's own report, and the scan's (which shows the latest action of any run).
    for run in [apply, scan] {
        let rows = report(&rig, run);
        assert_eq!(
            keys(&rows).0,
            got,
            "run {run}: the same findings in the same order"
        );
        assert_eq!(actions(&rows), want, "run {run}: each finding's action");
    }
    // And what was reported is what happened in AWS.
    let still: usize = ACCOUNTS
        .iter()
        .map(|a| {
            (0..USERS)
                .filter(|u| {
                    rig.org
                        .user_policies(a, &format!("user{u:05}"))
                        .unwrap()
                        .contains(GRANTED)
                })
                .count()
        })
        .sum();
    assert_eq!(
        still,
        ACCOUNTS.len() * USERS / 10,
        "only the excluded users keep it"
    );
}

#[test]
fn each_run_reports_its_own_action_and_the_scan_the_latest() {
    let mut rig = rig();
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    let targets = rig.file.accounts.clone();
    let first = block_on(rig.engine.apply_run(scan, &rig.file, targets.clone()))
        .unwrap()
        .run_id;
    // Again without the exclusion: the excluded users' attachments go now, the rest are gone.
    rig.engine.options.apply.filters.exclude_users = Default::default();
    let second = block_on(rig.engine.apply_run(scan, &rig.file, targets))
        .unwrap()
        .run_id;
    let rows = report(&rig, scan);
    let first_want: Vec<_> = rows.iter().map(expected).collect();
    let second_want: Vec<_> = rows
        .iter()
        .map(|r| match expected(r) {
            Some(("skipped", _)) => Some(("detached", None)),
            // Detached by the first apply of this scan: not tried again, no call repeated.
            _ => None,
        })
        .collect();
    let latest_want: Vec<_> = rows
        .iter()
        .map(|r| match expected(r) {
            Some(("skipped", _)) => Some(("detached", None)),
            other => other,
        })
        .collect();
    assert_eq!(actions(&report(&rig, first)), first_want);
    assert_eq!(actions(&report(&rig, second)), second_want);
    assert_eq!(
        actions(&rows),
        latest_want,
        "the scan shows the latest action of any run"
    );
    assert!(rows.iter().all(|r| match (&r.action, expected(r)) {
        (Some(a), Some(("skipped", _))) => a.run_id == second,
        (Some(a), _) => a.run_id == first,
        (None, _) => true,
    }));
}

#[test]
fn a_writer_that_fails_stops_the_report_with_its_error() {
    let rig = rig();
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    let store = Store::open_read_only(&rig.db()).unwrap().unwrap();
    let mut written = 0;
    let err = store
        .report_each(scan, |_| {
            if written == 3000 {
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
            }
            written += 1;
            Ok(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("cannot write the report"), "{err}");
    assert_eq!(written, 3000, "nothing is written after the failure");
    // The database is untouched and readable again at once.
    assert_eq!(report(&rig, scan).len(), ACCOUNTS.len() * USERS * 2);
}

#[test]
fn a_report_piped_into_a_reader_that_stops_early_ends_quietly() {
    use std::io::BufRead;
    let rig = rig();
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    for format in ["csv", "json"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_iamsweep"))
            .arg("--db")
            .arg(rig.db())
            .args(["report", &scan.to_string(), "--format", format])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Like `| head -n 1`: one line, then the pipe is closed with ~1 MB still to come.
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(
            first.starts_with("account_id,") || first == "[\n",
            "{first:?}"
        );
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{format}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "{format}: no error shown"
        );
    }
}
