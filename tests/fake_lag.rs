//! IAM is eventually consistent: against a fake whose reads lag its writes by 10 s (on tokio's
//! paused clock, so the windows pass at once), every decision made from a read right after a
//! write waits out the settle window. Also the detaches no read could undo: policies that can
//! never be attached again, names IAM matches whatever their case, and users re-created under
//! the same name.

mod common;

use std::time::Duration;

use common::{FakeRig, accounts_toml, block_on, block_on_paused};
use iamsweep::aws::{AwsError, ErrorKind, Op};
use iamsweep::model::{AccountId, PolicyArn};
use iamsweep::store::{Intent, Operation, RunKind, RunStatus};

const A: &str = "111111111111";
const P1: &str = "arn:aws:iam::111111111111:policy/Deploy";
const LAG: Duration = Duration::from_secs(10);

/// alice and bob, each granted P1 directly and through `ops`, seeded long ago; from now on
/// reads lag writes by 10 s. The settle window is the default 15 s. Each test then runs on one
/// paused clock.
fn lagging_rig() -> FakeRig {
    let mut options = common::options();
    options.apply.settle = Duration::from_secs(15);
    let rig = FakeRig::with_options(&accounts_toml(&[A]), options);
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig.org.add_user(A, "bob", &["ops"], &[P1]);
    rig.org.set_read_lag(LAG);
    rig
}

/// What the admin does: `ops` no longer grants P1 to alice (its policy is detached) nor to bob
/// (he leaves the group), while someone else still holds it through `ops`... nobody: both
/// users now hold P1 only directly.
fn admin_removes_the_grants(a: &mut iamsweep::aws::fake::FakeAccount) {
    a.groups.get_mut("ops").unwrap().remove(P1);
    a.users.get_mut("bob").unwrap().groups.remove("ops");
}

#[test]
fn grants_removed_while_reads_lag_are_caught_by_the_post_check_and_reattached() {
    let rig = lagging_rig();
    // The admin changes the groups at the very moment apply reads them: its reads still show
    // the old grants (10 s lag), so it detaches. The post-check, 15 s later, sees the truth.
    rig.org
        .on_call(A, Op::GetGroup, 1, admin_removes_the_grants);
    let result = block_on_paused(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.tally.reverted, 2);
    assert_eq!(
        rig.journal(),
        vec![
            "alice|reverted|covering_grant_vanished|1",
            "bob|reverted|covering_grant_vanished|1"
        ]
    );
    // Both users hold the permission: directly again.
    for u in ["alice", "bob"] {
        assert!(rig.org.user_policies(A, u).unwrap().contains(P1), "{u}");
    }
}

#[test]
fn without_the_settle_window_a_lagging_post_check_would_miss_the_race() {
    // The same race with no window: the post-check reads stale data and confirms the detach.
    // This is the loss the window exists to prevent (and why the option has a floor of sense).
    let mut rig = lagging_rig();
    rig.engine.options.apply.settle = Duration::ZERO;
    rig.org
        .on_call(A, Op::GetGroup, 1, admin_removes_the_grants);
    block_on_paused(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(
        rig.journal(),
        vec!["alice|detached|-|1", "bob|detached|-|1"]
    );
    assert!(!rig.org.user_policies(A, "alice").unwrap().contains(P1));
}

#[test]
fn grants_removed_right_after_the_scan_are_seen_before_any_detach() {
    let rig = lagging_rig();
    let result = block_on_paused(async {
        let scan = rig.engine.scan(&rig.file).await.unwrap().run_id;
        rig.org.with_account(A, admin_removes_the_grants);
        // apply starts at once, but relies on the scan's grants only once they are 15 s old:
        // by then its reads show the change, and nothing is detached.
        let targets = rig.file.accounts.clone();
        rig.engine.apply_run(scan, &rig.file, targets).await
    })
    .unwrap();
    assert_eq!(result.tally.detached, 0);
    assert_eq!(
        rig.journal(),
        vec![
            "alice|skipped|no_longer_covered|0",
            "bob|skipped|no_longer_covered|0"
        ]
    );
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 0);
}

#[test]
fn a_lost_answer_is_settled_across_the_window_not_by_the_first_lagging_read() {
    let rig = lagging_rig();
    rig.org.lose_answer(
        A,
        Op::DetachUserPolicy,
        1,
        AwsError::new(ErrorKind::Transient, "Timeout", "no answer"),
    );
    let result = block_on_paused(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    // The read right after still showed alice's attachment (lag): not concluded "not done",
    // but re-read after the window: gone, so it was ours, post-checked and undoable.
    assert_eq!(
        rig.journal(),
        vec!["alice|detached|confirmed_by_read|1", "bob|detached|-|1"]
    );
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 2);
    let items = block_on(
        rig.engine
            .store
            .call(move |s| s.rollback_items(result.run_id, None)),
    )
    .unwrap();
    assert_eq!(items.len(), 2);
}

#[test]
fn recovery_of_a_crashed_intent_rereads_across_the_window() {
    let rig = lagging_rig();
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    // A process died right after sending alice's detach (it took effect) and before bob's.
    let (file, targets) = (rig.file.clone(), rig.file.accounts.clone());
    let run = block_on(rig.engine.store.call(move |s| {
        let run = s.create_run(RunKind::Apply, Some(scan), &file, &targets, "{}")?;
        let found = s.findings_to_apply(scan, run, &AccountId::parse(A).unwrap())?;
        for (fid, f) in found {
            s.journal_intent(&Intent {
                run_id: run,
                finding_id: Some(fid),
                account: AccountId::parse(A).unwrap(),
                user: f.user_name.clone(),
                policy: PolicyArn::new(P1),
                operation: Operation::Detach,
                covering_group: Some("ops".into()),
                undoes: None,
                send_by: None,
            })?;
        }
        s.interrupt_stale_runs()?;
        Ok(run)
    }))
    .unwrap();
    rig.org.with_account(A, |a| {
        a.users.get_mut("alice").unwrap().attached.remove(P1);
    });
    let engine = iamsweep::run::Engine {
        connector: rig.org.clone(),
        store: rig.engine.store.clone(),
        reporter: std::sync::Arc::new(iamsweep::events::Silent),
        options: rig.engine.options.clone(),
        cancel: iamsweep::cancel::Cancel::new(),
        caller: None,
    };
    let result = block_on_paused(engine.resume(run)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    // A read right away would still show alice's policy attached (lag) and call the detach
    // "not done"; across the window it is seen gone: ours, kept and post-checked.
    assert_eq!(
        rig.journal(),
        vec![
            "alice|detached|reconciled|1",
            "bob|interrupted|not_executed|0",
            "bob|detached|-|1"
        ]
    );
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 1, "only bob's");
}

#[test]
fn a_rollback_right_after_the_apply_restores_everything_despite_lagging_reads() {
    let rig = lagging_rig();
    let (apply, rollback) = block_on_paused(async {
        let apply = rig.engine.apply(&rig.file).await.unwrap();
        // At once: reads still show the policies attached, but a rollback attaches anyway.
        let rollback = rig.engine.rollback(apply.run_id).await.unwrap();
        (apply, rollback)
    });
    assert_eq!(apply.tally.detached, 2);
    assert_eq!(rollback.status, RunStatus::Completed);
    assert_eq!(rig.org.calls(A, Op::AttachUserPolicy), 2);
    for u in ["alice", "bob"] {
        assert!(rig.org.user_policies(A, u).unwrap().contains(P1), "{u}");
    }
    assert_eq!(
        rig.sql::<i64>(
            "SELECT count(*) FROM actions WHERE operation = 'detach' AND rolled_back_by IS NULL"
        ),
        0
    );
}

#[test]
fn a_policy_that_can_never_be_attached_again_is_not_detached_unless_allowed() {
    const OLD: &str = "arn:aws:iam::aws:policy/AmazonDeprecatedAccess";
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[OLD, P1]);
    rig.org.add_user(A, "alice", &["ops"], &[OLD, P1]);
    rig.org.deprecate_policy(A, OLD);
    let first = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(first.status, RunStatus::Completed);
    assert_eq!(
        rig.rows(
            "SELECT policy_arn, status, coalesce(reason, '-') FROM actions ORDER BY policy_arn"
        ),
        vec![
            format!("{P1}|detached|-"),
            format!("{OLD}|skipped|not_reattachable")
        ]
    );
    assert!(rig.org.user_policies(A, "alice").unwrap().contains(OLD));
    // Only when asked for, knowing neither the post-check nor a rollback could restore it.
    let mut options = rig.engine.options.clone();
    options.apply.allow_non_reattachable = true;
    let engine = iamsweep::run::Engine {
        connector: rig.org.clone(),
        store: rig.engine.store.clone(),
        reporter: std::sync::Arc::new(iamsweep::events::Silent),
        options,
        cancel: iamsweep::cancel::Cancel::new(),
        caller: None,
    };
    block_on(engine.apply(&rig.file)).unwrap();
    assert!(!rig.org.user_policies(A, "alice").unwrap().contains(OLD));
}

#[test]
fn exclusions_match_user_names_as_iam_does_whatever_their_case() {
    let toml =
        format!("[defaults]\nexclude_users = [\"break-glass-*\"]\n\n[[account]]\nid = \"{A}\"\n");
    let rig = FakeRig::new(&toml);
    rig.org.add_group(A, "Admins", &[P1]);
    rig.org.add_user(A, "Break-Glass-Ops", &["Admins"], &[P1]);
    rig.org.add_user(A, "alice", &["Admins"], &[P1]);
    block_on(rig.engine.apply(&rig.file)).unwrap();
    assert!(
        rig.org
            .user_policies(A, "Break-Glass-Ops")
            .unwrap()
            .contains(P1)
    );
    assert!(rig.org.user_policies(A, "alice").unwrap().is_empty());
    assert_eq!(rig.sql::<i64>("SELECT users_excluded FROM run_accounts"), 1);
}

#[test]
fn a_user_recreated_under_the_same_name_is_another_principal() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig.org.add_user(A, "bob", &["ops"], &[P1]);
    // apply: bob's detach happens; alice is deleted and re-created before apply reaches her.
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    rig.org.recreate_user(A, "alice");
    let targets = rig.file.accounts.clone();
    let apply = block_on(rig.engine.apply_run(scan, &rig.file, targets)).unwrap();
    assert_eq!(
        rig.journal(),
        vec!["alice|skipped|user_recreated|0", "bob|detached|-|1"]
    );
    assert!(rig.org.user_policies(A, "alice").unwrap().contains(P1));
    // bob is re-created too before the rollback: the new bob is not given the old one's policy.
    rig.org.with_account(A, |a| {
        a.users.get_mut("bob").unwrap().groups.clear();
    });
    rig.org.recreate_user(A, "bob");
    let rollback = block_on(rig.engine.rollback(apply.run_id)).unwrap();
    assert_eq!(rollback.status, RunStatus::Completed);
    assert_eq!(rig.org.calls(A, Op::AttachUserPolicy), 0);
    assert_eq!(
        rig.rows("SELECT status, reason FROM actions WHERE operation = 'attach'"),
        vec!["skipped|user_recreated"]
    );
    assert!(!rig.org.user_policies(A, "bob").unwrap().contains(P1));
}

#[test]
fn history_finds_a_user_whatever_the_case_typed() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "Alice", &["ops"], &[P1]);
    block_on(rig.engine.apply(&rig.file)).unwrap();
    let rows = block_on(rig.engine.store.call(|s| {
        s.history(&iamsweep::store::HistoryFilter {
            user: Some("alice".into()),
            ..Default::default()
        })
    }))
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_name, "Alice");
}
