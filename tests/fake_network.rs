//! A real network and a real IAM against the in-memory fake: answers lost after AWS acted,
//! requests that never arrived, concurrent changes, a role that may not write, a quota on the
//! re-attach, and base credentials that expire mid-run. Each test asserts what the journal says
//! (statuses, post-checks, the rollback list) against what really happened.

mod common;

use std::time::Duration;

use common::{FakeRig, accounts_toml, block_on, block_on_paused};
use iamsweep::aws::{AwsError, ErrorKind, Op};
use iamsweep::events::Event;
use iamsweep::run::{Halt, RunOptions};
use iamsweep::store::RunStatus;

const A: &str = "111111111111";
const B: &str = "222222222222";
const C: &str = "333333333333";
const P1: &str = "arn:aws:iam::111111111111:policy/Deploy";
const P2: &str = "arn:aws:iam::111111111111:policy/team/Audit";

fn timeout() -> AwsError {
    AwsError::new(ErrorKind::Transient, "Timeout", "the answer never came")
}

fn rollback_list(rig: &FakeRig, run: i64) -> Vec<String> {
    block_on(rig.engine.store.call(move |s| s.rollback_items(run, None)))
        .unwrap()
        .into_iter()
        .map(|i| format!("{}|{}", i.user_name, i.policy_arn))
        .collect()
}

fn with_settle(ms: u64) -> RunOptions {
    let mut options = common::options();
    options.apply.settle = Duration::from_millis(ms);
    options
}

#[test]
fn a_detach_whose_answer_was_lost_is_ours_post_checked_and_in_the_rollback_list() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig.org.add_user(A, "bob", &["ops"], &[P1]);
    // alice's detach takes effect, and its answer is lost on the way back.
    rig.org.lose_answer(A, Op::DetachUserPolicy, 1, timeout());
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(
        rig.journal(),
        vec!["alice|detached|confirmed_by_read|1", "bob|detached|-|1"]
    );
    // Sent once, never again blindly.
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 2);
    assert_eq!(
        rollback_list(&rig, result.run_id),
        vec![format!("alice|{P1}"), format!("bob|{P1}")]
    );
    // The lost answer is kept in the journal, next to the outcome the read proved.
    let code: String = rig.sql("SELECT error_code FROM actions WHERE user_name = 'alice'");
    assert_eq!(code, "Timeout");
}

#[test]
fn a_lost_request_that_never_reached_aws_is_settled_after_the_window_and_sent_again() {
    // A read right after a write may lag it: "still attached" is believed only across the
    // settle window, then the detach goes through the normal path again.
    let rig = FakeRig::with_options(&accounts_toml(&[A]), with_settle(300));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig.org.fail_call(A, Op::DetachUserPolicy, 1, timeout());
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(
        rig.journal(),
        vec!["alice|interrupted|not_executed|0", "alice|detached|-|1"]
    );
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 2);
    assert!(rig.org.user_policies(A, "alice").unwrap().is_empty());
    assert_eq!(
        rollback_list(&rig, result.run_id),
        vec![format!("alice|{P1}")]
    );
}

/// Reads of alice's attachments the meter makes for one logical read (each retried).
const ATTEMPTS_PER_READ: u64 = 4;
/// Settling reads a run makes before it leaves a row `unknown`: the one right after the lost
/// answer, then five across the window (2, 4, 8 and 16 s apart).
const SETTLING_READS: u64 = 1 + 5;

/// alice's detach takes effect and its answer is lost; the first `failing_reads` reads of her
/// attachments fail (a 200 ms settle window).
fn lost_detach_rig(failing_reads: u64) -> FakeRig {
    let rig = FakeRig::with_options(&accounts_toml(&[A]), with_settle(200));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig.org.lose_answer(A, Op::DetachUserPolicy, 1, timeout());
    for n in 1..=failing_reads {
        rig.org
            .fail_call(A, Op::ListAttachedUserPolicies, n, timeout());
    }
    rig
}

#[test]
fn an_answer_that_no_read_can_settle_stays_unknown_and_the_next_run_settles_it() {
    // Every read of alice's attachments fails, in the run and at the window's end, and each
    // time it is read again later in the run.
    let rig = lost_detach_rig(SETTLING_READS * ATTEMPTS_PER_READ);
    let first = block_on_paused(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(
        rig.org.calls(A, Op::ListAttachedUserPolicies),
        SETTLING_READS * ATTEMPTS_PER_READ
    );
    assert_eq!(first.status, RunStatus::CompletedWithErrors);
    assert!(
        first.has_failures(),
        "an unsettled write is not claimed done"
    );
    assert_eq!(first.tally.unsettled, 1);
    assert_eq!(rig.journal(), vec!["alice|unknown|ambiguous|0"]);
    // The next run that changes AWS settles it first: gone, so it was ours; post-checked; in
    // the first run's rollback list, not the new run's.
    let second = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(second.status, RunStatus::Completed);
    assert_eq!(
        rig.rows("SELECT run_id, status, coalesce(reason, '-'), checked_at IS NOT NULL FROM actions ORDER BY id"),
        vec![format!("{}|detached|confirmed_by_read|1", first.run_id)]
    );
    assert_eq!(
        rollback_list(&rig, first.run_id),
        vec![format!("alice|{P1}")]
    );
    assert!(rollback_list(&rig, second.run_id).is_empty());
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 1);
}

#[test]
fn a_network_down_for_seconds_after_a_lost_answer_is_read_through_within_the_run() {
    // The answer is lost and the reads fail for a while (a dozen attempts, ~10 s): the run
    // reads again later instead of leaving the row `unknown` for the next run.
    let rig = lost_detach_rig(12);
    let result = block_on_paused(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.tally.unsettled, 0);
    assert_eq!(rig.journal(), vec!["alice|detached|confirmed_by_read|1"]);
    assert_eq!(
        rollback_list(&rig, result.run_id),
        vec![format!("alice|{P1}")]
    );
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 1);
}

#[test]
fn ctrl_c_waits_for_no_backoff_of_a_settling_read() {
    // Reads fail long enough that the settling read waits 4 s for its third try; Ctrl-C just
    // after the second failed makes that try at once, and its answer settles the row.
    let failing = 3 * ATTEMPTS_PER_READ;
    let rig = lost_detach_rig(failing);
    let (cancel, org) = (rig.engine.cancel.clone(), rig.org.clone());
    let asked = std::thread::spawn(move || {
        while org.calls(A, Op::ListAttachedUserPolicies) < failing {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
        std::time::Instant::now()
    });
    block_on(rig.engine.apply(&rig.file)).unwrap();
    let waited = asked.join().unwrap().elapsed();
    assert_eq!(rig.journal(), vec!["alice|detached|confirmed_by_read|1"]);
    // Without the hurry, the third read waits until ~3.7 s after Ctrl-C.
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[test]
fn a_post_check_that_cannot_read_the_grant_retries_then_reattaches_saying_why() {
    // The group cannot be read after the detach: read again later in the run; a grant that
    // still cannot be read is not relied on, the policy goes back, and the journal says it
    // was unreadable (not that it vanished).
    let rig = FakeRig::with_options(&accounts_toml(&[A]), with_settle(200));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    // The proof before the detach reads the group once; every read after it fails.
    for n in 2..=200 {
        rig.org.fail_call(A, Op::GetGroup, n, timeout());
    }
    let result = block_on_paused(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(
        rig.journal(),
        vec!["alice|reverted|post_check_unreadable|1"]
    );
    assert_eq!(
        rig.org.user_policies(A, "alice").unwrap(),
        std::collections::BTreeSet::from([P1.to_owned()]),
        "held both ways again, as before the run"
    );
    // Tried five times (each retried by the meter), not once.
    assert_eq!(rig.org.calls(A, Op::GetGroup), 1 + 5 * ATTEMPTS_PER_READ);
    assert!(rollback_list(&rig, result.run_id).is_empty());
    let warned = rig.recorder.0.lock().unwrap().iter().any(
        |e| matches!(e, Event::Warning { message, .. } if message.contains("could not be read")),
    );
    assert!(warned, "the warning says the grant was unreadable");
}

#[test]
fn a_concurrent_modification_is_retried_after_a_fresh_proof() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig.org.fail_call(
        A,
        Op::DetachUserPolicy,
        1,
        AwsError::new(
            ErrorKind::Conflict,
            "ConcurrentModification",
            "another change is in progress",
        ),
    );
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(
        rig.journal(),
        vec![
            "alice|interrupted|concurrent_modification|0",
            "alice|detached|-|1"
        ]
    );
    // The proof, read again after the conflict, and once more by the post-check.
    assert_eq!(rig.org.calls(A, Op::GetGroup), 3);
    assert!(rig.org.user_policies(A, "alice").unwrap().is_empty());
}

#[test]
fn a_role_that_may_not_detach_stops_its_account_at_the_first_refusal() {
    let rig = FakeRig::new(&accounts_toml(&[A, B]));
    for acct in [A, B] {
        rig.org.add_group(acct, "ops", &[P1, P2]);
        for u in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            rig.org.add_user(acct, u, &["ops"], &[P1, P2]);
        }
    }
    for n in 1..=20 {
        rig.org.fail_call(
            A,
            Op::DetachUserPolicy,
            n,
            AwsError::new(
                ErrorKind::AccessDenied,
                "AccessDenied",
                "User: arn:aws:sts::111111111111:assumed-role/IamSweepRole/iamsweep is not authorized to perform: iam:DetachUserPolicy",
            ),
        );
    }
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::CompletedWithErrors);
    assert_eq!(result.accounts_failed, 1);
    // At most one refusal per worker in flight, not one per user and policy.
    let failed: i64 = rig.sql(&format!(
        "SELECT count(*) FROM actions WHERE account_id = '{A}' AND status = 'failed'"
    ));
    assert!((1..=4).contains(&failed), "{failed}");
    // The other findings stay open: no journal row, or an intent withdrawn before it was sent
    // (`interrupted` / `not_executed`, waiting for its slot when the account stopped).
    assert_eq!(
        rig.rows(&format!(
            "SELECT status, reason FROM actions WHERE account_id = '{A}' AND status <> 'failed'
             GROUP BY status, reason"
        ))
        .into_iter()
        .filter(|r| r != "interrupted|not_executed")
        .collect::<Vec<_>>(),
        Vec::<String>::new()
    );
    assert_eq!(
        rig.org.calls(A, Op::DetachUserPolicy),
        failed as u64,
        "no detach sent after the account stopped"
    );
    let (status, message): (String, String) = (
        rig.sql(&format!(
            "SELECT status FROM run_accounts WHERE account_id = '{A}'"
        )),
        rig.sql(&format!(
            "SELECT error_message FROM run_accounts WHERE account_id = '{A}'"
        )),
    );
    assert_eq!(status, "failed");
    assert!(
        message.contains("iam:DetachUserPolicy") && message.contains("Mode=apply"),
        "{message}"
    );
    // The other account is not affected.
    assert_eq!(
        rig.sql::<i64>(&format!(
            "SELECT count(*) FROM actions WHERE account_id = '{B}' AND status = 'detached'"
        )),
        12
    );
}

#[test]
fn a_reattach_refused_for_the_quota_is_a_clear_failure_naming_it() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig.org.on_call(A, Op::DetachUserPolicy, 1, |a| {
        a.groups.get_mut("ops").unwrap().remove(P1);
    });
    rig.org.fail_call(
        A,
        Op::AttachUserPolicy,
        1,
        AwsError::new(
            ErrorKind::LimitExceeded,
            "LimitExceeded",
            "Cannot exceed quota for PoliciesPerUser: 10",
        ),
    );
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert!(result.has_failures());
    assert_eq!(rig.journal(), vec!["alice|failed|reattach_failed|0"]);
    let message: String = rig.sql("SELECT error_message FROM actions");
    assert!(message.contains("Managed policies per user"), "{message}");
    let warned = rig.recorder.0.lock().unwrap().iter().any(|e| {
        matches!(e, Event::Warning { message, .. } if message.contains("attach-user-policy --user-name alice"))
    });
    assert!(warned, "the user is told how to restore it by hand");
}

#[test]
fn a_reattach_that_fails_on_the_network_is_retried_in_the_run_until_it_succeeds() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig.org.on_call(A, Op::DetachUserPolicy, 1, |a| {
        a.groups.get_mut("ops").unwrap().remove(P1);
    });
    // More failures than one call's retries: the re-attach is queued again, later.
    for n in 1..=5 {
        rig.org.fail_call(A, Op::AttachUserPolicy, n, timeout());
    }
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.tally.reverted, 1);
    assert_eq!(
        rig.journal(),
        vec!["alice|reverted|covering_grant_vanished|1"]
    );
    assert!(rig.org.user_policies(A, "alice").unwrap().contains(P1));
    assert_eq!(rig.org.calls(A, Op::AttachUserPolicy), 6);
}

#[test]
fn base_credentials_that_expire_mid_run_interrupt_it_with_the_real_error() {
    let mut options = common::options();
    options.concurrency = 1;
    let rig = FakeRig::with_options(&accounts_toml(&[A, B, C]), options);
    for acct in [A, B, C] {
        rig.org.add_group(acct, "ops", &[P1]);
        rig.org.add_user(acct, "alice", &["ops"], &[P1]);
    }
    rig.org.fail_assume_from(
        2,
        AwsError::new(
            ErrorKind::Credentials,
            "ExpiredToken",
            "The security token included in the request is expired",
        ),
    );
    let first = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(first.status, RunStatus::Interrupted);
    match &first.halted {
        Some(Halt::Credentials(m)) => assert!(m.contains("ExpiredToken"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Not hundreds of failures: the accounts not done are left for resume, not failed.
    assert_eq!(
        rig.rows("SELECT account_id, status FROM run_accounts ORDER BY account_id"),
        vec![
            format!("{A}|completed"),
            format!("{B}|pending"),
            format!("{C}|pending")
        ]
    );
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM actions WHERE status = 'failed'"),
        0
    );
    rig.org.renew_credentials();
    let engine = iamsweep::run::Engine {
        connector: rig.org.clone(),
        store: rig.engine.store.clone(),
        reporter: std::sync::Arc::new(iamsweep::events::Silent),
        options: rig.engine.options.clone(),
        cancel: iamsweep::cancel::Cancel::new(),
        caller: None,
    };
    let again = block_on(engine.resume(first.run_id)).unwrap();
    assert_eq!(again.status, RunStatus::Completed);
    for acct in [A, B, C] {
        assert!(rig.org.user_policies(acct, "alice").unwrap().is_empty());
    }
}
