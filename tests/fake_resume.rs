//! Resume against the in-memory fake: a process that died between intent and outcome, a
//! failed account retried alone, and Ctrl-C (the first one) in the middle of an apply.

mod common;

use std::sync::Arc;

use common::{FakeRig, accounts_toml, block_on};
use iamsweep::aws::{AwsError, ErrorKind, Op};
use iamsweep::cancel::Cancel;
use iamsweep::events::Silent;
use iamsweep::model::{AccountId, PolicyArn, UserName};
use iamsweep::run::Engine;
use iamsweep::store::{Intent, Operation, RunKind, RunStatus};

const A: &str = "111111111111";
const B: &str = "222222222222";
const P1: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const P2: &str = "arn:aws:iam::111111111111:policy/Deploy";

/// A second engine on the same fake and database, with its own stop flag: the process after.
fn next_process(rig: &FakeRig) -> Engine<iamsweep::aws::fake::FakeOrg> {
    Engine {
        connector: rig.org.clone(),
        store: rig.engine.store.clone(),
        reporter: Arc::new(Silent),
        options: rig.engine.options.clone(),
        cancel: Cancel::new(),
        caller: None,
    }
}

#[test]
fn a_death_between_intent_and_outcome_is_reconciled_both_ways() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1, P2]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig.org.add_user(A, "bob", &["ops"], &[P2]);
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap();
    // What a process killed mid-apply leaves: an apply run still `running`, and two intents
    // without outcome. alice's detach reached AWS (its answer was lost); bob's never left.
    let (file, targets) = (rig.file.clone(), rig.file.accounts.clone());
    let run = block_on(rig.engine.store.call(move |s| {
        let run = s.create_run(RunKind::Apply, Some(scan.run_id), &file, &targets, "{}")?;
        let ids: Vec<i64> = s
            .findings_to_apply(scan.run_id, run, &AccountId::parse(A).unwrap())?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for (fid, user, policy) in [(ids[0], "alice", P1), (ids[1], "bob", P2)] {
            s.journal_intent(&Intent {
                run_id: run,
                finding_id: Some(fid),
                account: AccountId::parse(A).unwrap(),
                user: UserName::new(user),
                policy: PolicyArn::new(policy),
                operation: Operation::Detach,
                covering_group: Some("ops".into()),
                undoes: None,
                send_by: None,
            })?;
        }
        Ok(run)
    }))
    .unwrap();
    rig.org.with_account(A, |a| {
        a.users.get_mut("alice").unwrap().attached.remove(P1);
    });
    assert_eq!(
        block_on(rig.engine.store.call(|s| s.interrupt_stale_runs())).unwrap(),
        vec![run]
    );

    let result = block_on(next_process(&rig).resume(run)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(
        rig.rows(&format!(
            "SELECT user_name, status, coalesce(reason, '-'), checked_at IS NOT NULL FROM actions WHERE run_id = {run} ORDER BY id"
        )),
        vec![
            "alice|detached|reconciled|1",   // gone live: it was our detach; post-checked
            "bob|interrupted|not_executed|0", // still attached: the call never happened...
            "bob|detached|-|1",               // ...so it went through verify-then-detach
        ]
    );
    // Exactly one DetachUserPolicy was sent by the resume: bob's. alice's was not repeated.
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 1);
    assert!(rig.org.user_policies(A, "alice").unwrap().is_empty());
    assert!(rig.org.user_policies(A, "bob").unwrap().is_empty());
}

#[test]
fn a_detach_whose_post_check_never_ran_is_checked_on_resume() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    // A process that died after the detach but before its post-check leaves checked_at
    // empty: make the journal say exactly that, and remove the group's grant meanwhile.
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.tally.detached, 1);
    rig.rows("UPDATE actions SET checked_at = NULL RETURNING id");
    rig.rows("UPDATE runs SET status = 'interrupted' RETURNING id");
    rig.org.with_account(A, |a| {
        a.groups.get_mut("ops").unwrap().remove(P1);
    });
    let result = block_on(next_process(&rig).resume(result.run_id)).unwrap();
    assert_eq!(result.tally.reverted, 1);
    assert!(
        rig.org.user_policies(A, "alice").unwrap().contains(P1),
        "re-attached"
    );
    assert_eq!(
        rig.rows("SELECT status, reason FROM actions"),
        vec!["reverted|covering_grant_vanished"]
    );
}

#[test]
fn resume_after_an_account_failed_retries_only_that_account() {
    let rig = FakeRig::new(&accounts_toml(&[A, B]));
    for acct in [A, B] {
        rig.org.add_group(acct, "ops", &[P1]);
        rig.org.add_user(acct, "alice", &["ops"], &[P1]);
    }
    rig.org.refuse_assume(
        B,
        AwsError::new(ErrorKind::AccessDenied, "AccessDenied", "no trust yet"),
    );
    let first = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(first.status, RunStatus::CompletedWithErrors);
    rig.org.accept_assume(B); // the role was fixed
    let again = block_on(next_process(&rig).resume(first.run_id)).unwrap();
    assert_eq!(again.status, RunStatus::Completed);
    assert_eq!(again.tally.detached, 1, "only B's finding");
    // A was neither scanned nor verified again.
    assert_eq!(rig.org.calls(A, Op::GetAccountAuthorizationDetails), 1);
    assert_eq!(
        rig.org.calls(A, Op::GetGroup),
        2,
        "the first run's proof and post-check only"
    );
    assert_eq!(rig.org.calls(A, Op::AssumeRole), 1);
    assert_eq!(
        rig.rows(
            "SELECT account_id, status, coalesce(error_code, '-') FROM run_accounts ORDER BY 1"
        ),
        vec![format!("{A}|completed|-"), format!("{B}|completed|-")]
    );
    // B's calls add up across both attempts: the refused AssumeRole and the successful one.
    assert_eq!(
        rig.sql::<i64>(&format!(
            "SELECT calls FROM api_calls WHERE account_id = '{B}' AND operation = 'AssumeRole'"
        )),
        2
    );
    assert!(rig.org.user_policies(B, "alice").unwrap().is_empty());
}

#[test]
fn failed_actions_are_retried_by_resume_and_counted_once() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1, P2]);
    rig.org.add_user(A, "alice", &["ops"], &[P1, P2]);
    rig.org.fail_call(
        A,
        Op::DetachUserPolicy,
        1,
        AwsError::new(ErrorKind::Other, "ServiceFailure", "transient outage"),
    );
    let first = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert!(first.has_failures());
    let again = block_on(next_process(&rig).resume(first.run_id)).unwrap();
    assert!(!again.has_failures());
    assert_eq!(again.status, RunStatus::Completed);
    assert!(rig.org.user_policies(A, "alice").unwrap().is_empty());
    // `runs` counts a finding's failure only while it is its latest outcome.
    let runs = block_on(rig.engine.store.call(|s| s.runs())).unwrap();
    assert_eq!(
        (runs[0].status.as_str(), runs[0].actions_failed),
        ("completed", 0)
    );
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM actions WHERE status = 'failed'"),
        1,
        "the failure stays in the history"
    );
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM actions WHERE status = 'detached'"),
        2
    );
}

#[test]
fn the_first_ctrl_c_stops_new_work_and_resume_finishes_it_without_repeats() {
    let rig = FakeRig::new(&accounts_toml(&[A, B]));
    for acct in [A, B] {
        rig.org.add_group(acct, "ops", &[P1]);
        for i in 0..10 {
            rig.org.add_user(acct, &format!("u{i}"), &["ops"], &[P1]);
        }
    }
    let cancel = rig.engine.cancel.clone();
    rig.org
        .on_call(A, Op::DetachUserPolicy, 3, move |_| cancel.cancel());
    let first = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(first.status, RunStatus::Interrupted);
    assert!(first.tally.interrupted);
    // The call in flight when Ctrl-C came finished and was journaled; nothing pending.
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM actions WHERE status = 'pending'"),
        0
    );
    let done_before: i64 = rig.sql("SELECT count(*) FROM actions WHERE status = 'detached'");
    assert!((3..20).contains(&done_before), "{done_before}");
    assert_eq!(rig.sql::<String>("SELECT status FROM runs"), "interrupted");

    let again = block_on(next_process(&rig).resume(first.run_id)).unwrap();
    assert_eq!(again.status, RunStatus::Completed);
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM actions WHERE status = 'detached'"),
        20
    );
    // Intents whose detach was waiting for its slot when Ctrl-C came were withdrawn, unsent
    // (`interrupted` / `not_executed`); resume acted on those findings once.
    assert_eq!(
        rig.sql::<i64>(
            "SELECT count(*) FROM (SELECT finding_id FROM actions WHERE status <> 'interrupted'
             GROUP BY finding_id HAVING count(*) > 1)"
        ),
        0,
        "no finding acted on twice"
    );
    assert_eq!(
        rig.rows("SELECT DISTINCT reason FROM actions WHERE status = 'interrupted'")
            .into_iter()
            .filter(|r| r != "not_executed")
            .collect::<Vec<_>>(),
        Vec::<String>::new()
    );
    assert_eq!(
        rig.org.calls(A, Op::DetachUserPolicy) + rig.org.calls(B, Op::DetachUserPolicy),
        20
    );
}

#[test]
fn an_interrupted_rollback_resumes_without_attaching_twice() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1, P2]);
    rig.org.add_user(A, "alice", &["ops"], &[P1, P2]);
    rig.org.add_user(A, "bob", &["ops"], &[P1]);
    let apply = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(apply.tally.detached, 3);
    // Ctrl-C during the rollback, at its second AttachUserPolicy.
    let cancel = rig.engine.cancel.clone();
    rig.org
        .on_call(A, Op::AttachUserPolicy, 2, move |_| cancel.cancel());
    let first = block_on(rig.engine.rollback(apply.run_id)).unwrap();
    assert_eq!(first.status, RunStatus::Interrupted);
    let again = block_on(next_process(&rig).resume(first.run_id)).unwrap();
    assert_eq!(again.status, RunStatus::Completed);
    assert_eq!(
        rig.org.calls(A, Op::AttachUserPolicy),
        3,
        "each policy attached once"
    );
    assert_eq!(rig.org.user_policies(A, "alice").unwrap().len(), 2);
    assert_eq!(rig.org.user_policies(A, "bob").unwrap().len(), 1);
    assert_eq!(
        rig.sql::<i64>(
            "SELECT count(*) FROM actions WHERE operation = 'detach' AND rolled_back_by IS NULL"
        ),
        0
    );
}

/// `--max-detaches` across a crash: a detach whose answer was lost counts against the cap the
/// resume honours (it may have been made), and one the resume finds never happened is given
/// back. Four redundant pairs, a cap of 2, a process killed with two intents open: alice's
/// detach reached AWS, bob's never left. The resume may send exactly one more detach.
#[test]
fn a_resumed_capped_run_counts_the_detaches_its_crash_left_unanswered() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    for user in ["alice", "bob", "carol", "dave"] {
        rig.org.add_user(A, user, &["ops"], &[P1]);
    }
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap();
    let (file, targets) = (rig.file.clone(), rig.file.accounts.clone());
    let run = block_on(rig.engine.store.call(move |s| {
        let run = s.create_run(RunKind::Apply, Some(scan.run_id), &file, &targets, "{}")?;
        let open = s.findings_to_apply(scan.run_id, run, &AccountId::parse(A).unwrap())?;
        for (fid, f) in open.iter().take(2) {
            s.journal_intent(&Intent {
                run_id: run,
                finding_id: Some(*fid),
                account: AccountId::parse(A).unwrap(),
                user: f.user_name.clone(),
                policy: PolicyArn::new(P1),
                operation: Operation::Detach,
                covering_group: Some("ops".into()),
                undoes: None,
                send_by: None,
            })?;
        }
        Ok(run)
    }))
    .unwrap();
    rig.org.with_account(A, |a| {
        a.users.get_mut("alice").unwrap().attached.remove(P1);
    });
    block_on(rig.engine.store.call(|s| s.interrupt_stale_runs())).unwrap();

    let mut resumed = next_process(&rig);
    resumed.options.apply.max_detaches = Some(2);
    let result = block_on(resumed.resume(run)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(
        rig.org.calls(A, Op::DetachUserPolicy),
        1,
        "alice's lost answer counts; bob's unsent intent does not"
    );
    let attached: Vec<&str> = ["alice", "bob", "carol", "dave"]
        .into_iter()
        .filter(|u| rig.org.user_policies(A, u).unwrap().contains(P1))
        .collect();
    assert_eq!(attached.len(), 2, "2 of 4 detached in all: {attached:?}");
    assert_eq!(
        rig.sql::<i64>(&format!(
            "SELECT count(*) FROM actions WHERE run_id = {run} AND status = 'detached'"
        )),
        2,
        "{:?}",
        rig.journal()
    );
    assert_eq!(
        rig.sql::<i64>(&format!(
            "SELECT count(*) FROM actions WHERE run_id = {run} AND status IN ('pending', 'unknown')"
        )),
        0
    );
}

/// A detach AWS refused was not made: it does not use up the cap, and the run says it was the
/// cap that left findings only when the cap held one back.
#[test]
fn a_refused_detach_gives_its_cap_slot_back_and_only_a_cap_that_held_back_is_reported() {
    let mut rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    for user in ["alice", "bob", "carol", "dave"] {
        rig.org.add_user(A, user, &["ops"], &[P1]);
    }
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap();
    rig.org.fail_call(
        A,
        Op::DetachUserPolicy,
        1,
        AwsError::new(ErrorKind::LimitExceeded, "ServiceFailure", "refused"),
    );
    rig.engine.options.apply.max_detaches = Some(2);
    let capped = block_on(
        rig.engine
            .apply_run(scan.run_id, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(
        (capped.tally.detached, capped.tally.failed),
        (2, 1),
        "the refused call left both slots for two detaches: {:?}",
        rig.journal()
    );
    assert!(capped.capped, "the cap held the fourth back");
    rig.engine.options.apply.max_detaches = Some(100);
    let rest = block_on(
        rig.engine
            .apply_run(scan.run_id, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(rest.tally.detached, 2);
    assert!(!rest.capped, "100 was never reached");
}

/// A detach that failed on the network and is found not made gives its slot back; the run
/// still sends at most N detaches that took effect, and what it left is left for a later run
/// (with a row that says the call never happened), never lost.
#[test]
fn a_capped_run_whose_detach_failed_on_the_network_makes_exactly_n() {
    let mut rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        rig.org.add_user(A, user, &["ops"], &[P1]);
    }
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap();
    rig.org.fail_call(
        A,
        Op::DetachUserPolicy,
        1,
        AwsError::new(ErrorKind::Transient, "RequestTimeout", "lost on the way"),
    );
    rig.engine.options.apply.max_detaches = Some(2);
    let run = block_on(
        rig.engine
            .apply_run(scan.run_id, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(run.tally.detached, 2, "{:?}", rig.journal());
    assert!(run.capped);
    let held: usize = ["alice", "bob", "carol", "dave", "erin"]
        .iter()
        .filter(|u| rig.org.user_policies(A, u).unwrap().contains(P1))
        .count();
    assert_eq!(held, 3, "AWS agrees: 2 of 5 detached");
    assert_eq!(
        rig.sql::<i64>(
            "SELECT count(*) FROM actions WHERE status IN ('pending', 'unknown', 'reverting')"
        ),
        0
    );
    // A later run takes the three left, the one that failed on the network included.
    rig.engine.options.apply.max_detaches = None;
    let rest = block_on(
        rig.engine
            .apply_run(scan.run_id, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(rest.tally.detached, 3, "{:?}", rig.journal());
    assert!(
        ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .all(|u| !rig.org.user_policies(A, u).unwrap().contains(P1))
    );
}
