//! The promises held on every path, against the in-memory fake: a proof is young when the
//! detach leaves (however long the throttling and the journal took), every re-attach goes to
//! the principal that was detached, a run holding an open row is never `completed`, every detach
//! made is in its run's rollback list, a re-created group is not relied on, and a read that
//! decides an action is patient with a flaky network.

mod common;

use std::time::Duration;

use common::{FakeRig, accounts_toml, block_on, block_on_paused};
use iamsweep::aws::{AwsError, ErrorKind, Op};
use iamsweep::model::{AccountId, PolicyArn, UserName};
use iamsweep::store::{
    ActionStatus, Intent, Operation, Outcome, RunKind, RunStatus, Store, StoreError,
};

const A: &str = "111111111111";
const P1: &str = "arn:aws:iam::111111111111:policy/Deploy";

/// alice holds P1 directly and through `ops`.
fn alice_rig() -> FakeRig {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig
}

/// The same, with the SDK's real backoff: 5 throttled detaches wait at least 3.1 s in all
/// (0.2 + 0.4 + 0.8 + 1.6 + 3.2 s, each jittered down to half at most), on a paused clock.
fn throttled_rig() -> FakeRig {
    let mut rig = alice_rig();
    rig.engine.options.calls.retry = iamsweep::calls::RetryPolicy::default();
    rig.org.throttle_first(A, Op::DetachUserPolicy, 5);
    rig
}

fn transient() -> AwsError {
    AwsError::new(ErrorKind::Transient, "Timeout", "the answer never came")
}

#[test]
fn a_detach_throttled_past_the_proof_bound_is_proven_again_and_not_sent_once_the_member_left() {
    let rig = throttled_rig();
    // While the detach is being throttled (its 2nd attempt), alice leaves `ops`.
    rig.org.on_call(A, Op::DetachUserPolicy, 2, |a| {
        a.users.get_mut("alice").unwrap().groups.remove("ops");
    });
    let result = block_on_paused(rig.engine.apply(&rig.file)).unwrap();
    // The detach that finally went through would have relied on a proof ~3 s old, from before
    // she left: it is proven again first, and not sent.
    assert_eq!(rig.journal(), vec!["alice|skipped|no_longer_covered|0"]);
    assert_eq!(result.tally.detached, 0);
    assert!(rig.org.user_policies(A, "alice").unwrap().contains(P1));
    assert!(
        rig.org.calls(A, Op::DetachUserPolicy) <= 5,
        "never accepted"
    );
}

#[test]
fn a_detach_throttled_past_the_proof_bound_leaves_with_a_proof_younger_than_the_bound() {
    let rig = throttled_rig();
    let result = block_on_paused(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.tally.detached, 1);
    assert_eq!(rig.journal(), vec!["alice|detached|-|1"]);
    // The age recorded is that of the proof the accepted attempt relied on.
    let age: i64 = rig.sql("SELECT proof_age_ms FROM actions");
    assert!(age <= 1000, "sent with a proof {age} ms old (bound 1000)");
    assert!(
        rig.org.calls(A, Op::GetGroup) >= 2,
        "proven again while throttled: {} reads",
        rig.org.calls(A, Op::GetGroup)
    );
    // The bound written before the send covers the attempt that went through.
    let bound_ok: i64 = rig.sql("SELECT send_by IS NOT NULL AND send_by >= intent_at FROM actions");
    assert_eq!(bound_ok, 1);
}

#[test]
fn a_proof_read_failing_four_times_on_the_network_delays_the_detach_instead_of_failing_it() {
    let rig = alice_rig();
    for nth in 1..=4 {
        rig.org
            .fail_call(A, Op::ListGroupsForUser, nth, transient());
    }
    let result = block_on_paused(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(rig.journal(), vec!["alice|detached|-|1"]);
}

#[test]
fn a_crashed_rollback_attach_is_not_sent_to_a_user_recreated_under_the_same_name() {
    let rig = alice_rig();
    let apply = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(apply.tally.detached, 1);
    // A rollback died right after committing its attach intent, before sending it.
    let file = rig.file.clone();
    let targets = rig.file.accounts.clone();
    block_on(rig.engine.store.call(move |s| {
        let run = s.create_run(RunKind::Rollback, Some(apply.run_id), &file, &targets, "{}")?;
        let item = s.rollback_items(apply.run_id, None)?.remove(0);
        s.journal_intent(&Intent {
            run_id: run,
            finding_id: item.finding_id,
            account: AccountId::parse(A).unwrap(),
            user: UserName::new(item.user_name),
            policy: PolicyArn::new(P1),
            operation: Operation::Attach,
            covering_group: None,
            undoes: Some(item.action_id),
            send_by: None,
        })?;
        s.interrupt_stale_runs()?;
        Ok(run)
    }))
    .unwrap();
    // Then alice was deleted and a new alice created: another principal.
    rig.org.recreate_user(A, "alice");
    let rollback = block_on(rig.next_process().rollback(apply.run_id)).unwrap();
    assert_eq!(
        rig.org.calls(A, Op::AttachUserPolicy),
        0,
        "the new alice got nothing"
    );
    assert_eq!(
        rig.rows(
            "SELECT status, reason FROM actions WHERE operation = 'attach' AND run_id < ?"
                .replace('?', &rollback.run_id.to_string())
                .as_str()
        ),
        vec!["skipped|user_recreated"]
    );
}

/// A scan, then an apply run of it that committed alice's detach intent; `then` writes what
/// the process did after, as it left it (given the run and the intent's id). Returns the run.
fn apply_with_alices_intent(
    rig: &FakeRig,
    then: impl FnOnce(&mut Store, i64, i64) -> Result<(), StoreError> + Send + 'static,
) -> i64 {
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    let (file, targets) = (rig.file.clone(), rig.file.accounts.clone());
    block_on(rig.engine.store.call(move |s| {
        let run = s.create_run(RunKind::Apply, Some(scan), &file, &targets, "{}")?;
        let (fid, f) = s
            .findings_to_apply(scan, run, &AccountId::parse(A).unwrap())?
            .remove(0);
        let id = s.journal_intent(&Intent {
            run_id: run,
            finding_id: Some(fid),
            account: AccountId::parse(A).unwrap(),
            user: f.user_name.clone(),
            policy: f.policy_arn.clone(),
            operation: Operation::Detach,
            covering_group: Some("ops".into()),
            undoes: None,
            send_by: None,
        })?;
        then(s, run, id)?;
        Ok(run)
    }))
    .unwrap()
}

#[test]
fn a_crashed_reattach_is_not_sent_to_a_user_recreated_under_the_same_name() {
    let rig = alice_rig();
    // An apply died in the middle of re-attaching: the post-check had found the grant gone.
    let run = apply_with_alices_intent(&rig, |s, _, id| {
        s.journal_outcome(id, &Outcome::new(ActionStatus::Detached))?;
        s.journal_reverting(id, "covering_grant_vanished")?;
        s.interrupt_stale_runs()?;
        Ok(())
    });
    rig.org.with_account(A, |a| {
        a.users.get_mut("alice").unwrap().attached.remove(P1);
        a.groups.get_mut("ops").unwrap().remove(P1);
    });
    rig.org.recreate_user(A, "alice");
    block_on(rig.next_process().settle_earlier(None)).unwrap();
    assert_eq!(
        rig.org.calls(A, Op::AttachUserPolicy),
        0,
        "the new alice got nothing"
    );
    assert_eq!(
        rig.rows(&format!(
            "SELECT status, reason FROM actions WHERE run_id = {run}"
        )),
        vec!["detached|user_recreated"]
    );
}

/// An apply of a scan whose one detach (alice's) took effect but whose answer was lost and
/// could not be read back: `unknown` / `ambiguous`, and the run ended completed_with_errors.
fn apply_left_unknown(rig: &FakeRig) -> i64 {
    let run = apply_with_alices_intent(rig, |s, run, id| {
        s.journal_outcome(id, &Outcome::because(ActionStatus::Unknown, "ambiguous"))?;
        s.finish_run(run, RunStatus::CompletedWithErrors)
    });
    rig.org.with_account(A, |a| {
        a.users.get_mut("alice").unwrap().attached.remove(P1);
    });
    run
}

#[test]
fn resume_of_a_run_holding_an_unknown_row_settles_it_before_calling_the_run_completed() {
    let rig = alice_rig();
    let run = apply_left_unknown(&rig);
    let result = block_on(rig.next_process().resume(run)).unwrap();
    assert_eq!(rig.journal(), vec!["alice|detached|confirmed_by_read|1"]);
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 0);
}

#[test]
fn a_resumed_run_whose_unknown_row_cannot_be_read_is_not_completed() {
    let rig = alice_rig();
    let run = apply_left_unknown(&rig);
    // The account cannot be reached now.
    rig.org.refuse_assume(
        A,
        AwsError::new(ErrorKind::AccessDenied, "AccessDenied", "not authorized"),
    );
    let result = block_on(rig.next_process().resume(run)).unwrap();
    assert_ne!(result.status, RunStatus::Completed);
    assert!(result.has_failures(), "exit 1: something is left open");
    assert_eq!(rig.journal(), vec!["alice|unknown|ambiguous|0"]);
}

#[test]
fn a_detach_whose_reattach_failed_is_in_the_rollback_list_flagged() {
    let rig = alice_rig();
    // Right as the detach leaves, an admin removes P1 from `ops`: the post-check finds the
    // grant gone, and every re-attach fails (the user is at the policy quota, say).
    rig.org.on_call(A, Op::DetachUserPolicy, 1, |a| {
        a.groups.get_mut("ops").unwrap().remove(P1);
    });
    for nth in 1..=20 {
        rig.org.fail_call(
            A,
            Op::AttachUserPolicy,
            nth,
            AwsError::new(
                ErrorKind::Other,
                "LimitExceeded",
                "Cannot exceed quota for PoliciesPerUser: 10",
            ),
        );
    }
    let apply = block_on_paused(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(rig.journal(), vec!["alice|failed|reattach_failed|0"]);
    assert!(!rig.org.user_policies(A, "alice").unwrap().contains(P1));
    // She lacks the policy now because of this run: the list says so.
    let items = block_on(
        rig.engine
            .store
            .call(move |s| s.rollback_items(apply.run_id, None)),
    )
    .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].state, iamsweep::store::DetachState::ReattachFailed);
    assert_eq!(
        rig.rows(&format!(
            "SELECT user_name, status, reason FROM detaches WHERE run_id = {}",
            apply.run_id
        )),
        vec!["alice|failed|reattach_failed"]
    );
    // And a rollback gives it back once AWS accepts.
    rig.org.heal();
    let rollback = block_on(rig.next_process().rollback(apply.run_id)).unwrap();
    assert_eq!(rollback.status, RunStatus::Completed);
    assert!(rig.org.user_policies(A, "alice").unwrap().contains(P1));
}

#[test]
fn a_group_recreated_under_the_same_name_after_the_scan_is_not_relied_on() {
    let mut options = common::options();
    options.apply.settle = Duration::from_secs(15);
    let rig = FakeRig::with_options(&accounts_toml(&[A]), options);
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    let scan = block_on_paused(rig.engine.scan(&rig.file)).unwrap().run_id;
    // `ops` deleted and created again, same name, members and policy: a new grant, younger
    // than the scan, that IAM may not show everywhere yet.
    rig.org.recreate_group(A, "ops");
    let targets = rig.file.accounts.clone();
    let apply = block_on_paused(rig.next_process().apply_run(scan, &rig.file, targets)).unwrap();
    assert_eq!(apply.tally.detached, 0);
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 0);
    assert_eq!(
        rig.rows(&format!(
            "SELECT status, reason FROM actions WHERE run_id = {}",
            apply.run_id
        )),
        vec!["skipped|no_longer_covered"]
    );
    assert!(rig.org.user_policies(A, "alice").unwrap().contains(P1));
}

#[test]
fn a_store_error_in_the_settle_loop_stops_new_detaches_at_once() {
    let mut options = common::options();
    options.apply.write_concurrency = 1;
    let rig = FakeRig::with_options(&accounts_toml(&[A]), options);
    rig.org.add_group(A, "ops", &[P1]);
    for i in 0..10 {
        rig.org.add_user(A, &format!("u{i}"), &["ops"], &[P1]);
    }
    // The database refuses the post-checks' records (and only those): the settle loop fails
    // while the workers could still journal intents.
    let conn = rusqlite::Connection::open(rig.db()).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_checks BEFORE UPDATE OF checked_at ON actions
         BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;",
    )
    .unwrap();
    let first = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(first.status, RunStatus::Interrupted);
    // No detach started after the failure: only the few whose intents the store thread served
    // before the failing write (one worker; before the fix, all ten went on, unchecked).
    let sent = rig.org.calls(A, Op::DetachUserPolicy);
    assert!(
        sent <= 4,
        "{sent} detaches, most after the post-checks stopped"
    );
    conn.execute_batch("DROP TRIGGER refuse_checks").unwrap();
    // What was sent is post-checked by the next run, and the rest detached.
    block_on(rig.engine.store.call(|s| s.interrupt_stale_runs())).unwrap();
    let again = block_on(rig.next_process().resume(first.run_id)).unwrap();
    assert_eq!(again.status, RunStatus::Completed);
    assert_eq!(
        rig.sql::<i64>(
            "SELECT count(*) FROM actions WHERE status = 'detached' AND checked_at IS NOT NULL"
        ),
        10
    );
    assert_eq!(
        rig.org.calls(A, Op::DetachUserPolicy),
        10,
        "none sent twice"
    );
}

#[test]
fn a_role_session_that_cannot_be_renewed_stops_its_account_and_the_others_complete() {
    const B: &str = "222222222222";
    let rig = FakeRig::new(&accounts_toml(&[A, B]));
    for account in [A, B] {
        let p = format!("arn:aws:iam::{account}:policy/Deploy");
        rig.org.add_group(account, "ops", &[&p]);
        rig.org.add_user(account, "alice", &["ops"], &[&p]);
        rig.org.add_user(account, "bob", &["ops"], &[&p]);
    }
    // Sessions of 5 minutes: every finding's work starts with a renewal (margin 10 minutes),
    // made before the detach, paced and counted as AssumeRole.
    rig.org.set_session_length(Some(Duration::from_secs(300)));
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    // Then B's trust policy changes: the apply's connect still assumes the role (call 2),
    // the first renewal (call 3) is refused.
    rig.org.fail_call(
        B,
        Op::AssumeRole,
        3,
        AwsError::new(
            ErrorKind::AccessDenied,
            "AccessDenied",
            "not authorized to perform sts:AssumeRole",
        ),
    );
    let targets = rig.file.accounts.clone();
    let apply = block_on(rig.next_process().apply_run(scan, &rig.file, targets));
    // B stopped with the real code before any detach; A done; the run went on.
    let apply = apply.unwrap();
    assert_eq!(apply.accounts_failed, 1);
    assert_eq!(
        rig.rows(&format!(
            "SELECT account_id, status, coalesce(error_code, '-') FROM run_accounts WHERE run_id = {} ORDER BY account_id",
            apply.run_id
        )),
        vec![
            format!("{A}|completed|-"),
            format!("{B}|failed|AccessDenied")
        ]
    );
    assert_eq!(rig.org.calls(B, Op::DetachUserPolicy), 0);
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 2);
    // A's renewals happened before its detaches, one per finding, and are in api_calls.
    let assumed: i64 = rig.sql(&format!(
        "SELECT sum(calls) FROM api_calls WHERE run_id = {} AND account_id = '{A}' AND operation = 'AssumeRole'",
        apply.run_id
    ));
    assert_eq!(assumed, 1 + 2, "the connect, then one renewal per finding");
}
