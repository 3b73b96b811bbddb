//! Apply against the in-memory fake: races, NoSuchEntity, throttling storms, the circuit breaker,
//! failures isolated per account, and the calls a user costs.

mod common;

use common::{FakeRig, accounts_toml, block_on};
use iamsweep::aws::{AwsError, ErrorKind, Op};
use iamsweep::events::Event;
use iamsweep::store::RunStatus;

const A: &str = "111111111111";
const P1: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const P2: &str = "arn:aws:iam::111111111111:policy/Deploy";
const P3: &str = "arn:aws:iam::111111111111:policy/team/Audit";

fn statuses(rig: &FakeRig) -> Vec<String> {
    rig.rows(
        "SELECT user_name, policy_arn, status, coalesce(reason, '-') FROM actions ORDER BY user_name, policy_arn",
    )
}

#[test]
fn the_post_check_reattaches_when_the_grant_vanishes_during_the_detach() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    // A colleague detaches the group's policy right after iamsweep verified it.
    rig.org.on_call(A, Op::DetachUserPolicy, 1, |a| {
        a.groups.get_mut("ops").unwrap().remove(P1);
    });
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.tally.reverted, 1);
    assert_eq!(result.tally.detached, 0);
    // The user holds the policy again, directly.
    assert!(rig.org.user_policies(A, "alice").unwrap().contains(P1));
    assert_eq!(
        statuses(&rig),
        vec![format!("alice|{P1}|reverted|covering_grant_vanished")]
    );
    let ids: String = rig.sql("SELECT request_id || ',' || revert_request_id FROM actions");
    assert!(ids.starts_with("fake-") && ids.contains(",fake-"), "{ids}");
    let warned =
        rig.recorder.0.lock().unwrap().iter().any(
            |e| matches!(e, Event::Warning { message, .. } if message.contains("re-attached")),
        );
    assert!(warned, "the user is told about the revert");
}

#[test]
fn no_such_entity_on_detach_is_already_detached_not_an_error() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    rig.org.on_call(A, Op::DetachUserPolicy, 1, |a| {
        a.users.get_mut("alice").unwrap().attached.remove(P1);
    });
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert!(!result.has_failures());
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(
        statuses(&rig),
        vec![format!("alice|{P1}|already_detached|no_such_entity")]
    );
}

#[test]
fn verify_skips_what_changed_since_the_scan() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1, P2]);
    rig.org.add_group(A, "dev", &[P3]);
    rig.org.add_user(A, "alice", &["ops"], &[P1, P2]);
    rig.org.add_user(A, "bob", &["dev"], &[P3]);
    rig.org.add_user(A, "carol", &["ops"], &[P1]);
    rig.org.add_user(A, "dave", &["ops"], &[P2]);
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap();
    rig.org.with_account(A, |a| {
        a.groups.get_mut("ops").unwrap().remove(P2); // alice's and dave's P2 lose cover
        a.users.get_mut("bob").unwrap().groups.clear(); // bob leaves dev
        a.users.remove("carol"); // carol is deleted
    });
    let targets = rig.file.accounts.clone();
    let result = block_on(rig.engine.apply_run(scan.run_id, &rig.file, targets)).unwrap();
    assert_eq!(result.tally.detached, 1);
    assert_eq!(
        statuses(&rig),
        vec![
            format!("alice|{P2}|skipped|no_longer_covered"),
            format!("alice|{P1}|detached|-"),
            format!("bob|{P3}|skipped|no_longer_covered"),
            format!("carol|{P1}|skipped|user_gone"),
            format!("dave|{P2}|skipped|no_longer_covered"),
        ]
    );
    let alice = rig.org.user_policies(A, "alice").unwrap();
    assert!(alice.contains(P2) && !alice.contains(P1));
    assert!(rig.org.user_policies(A, "bob").unwrap().contains(P3));
    // The actions point at the scan's findings.
    assert_eq!(
        rig.sql::<i64>(&format!(
            "SELECT count(*) FROM actions x JOIN findings f ON f.id = x.finding_id WHERE f.run_id = {}",
            scan.run_id
        )),
        5
    );
}

#[test]
fn a_throttling_storm_is_paced_and_retried_until_everything_is_done() {
    // Enough attempts that even one call absorbing the whole storm gets through: the test is
    // about nothing being lost or failed, whatever the interleaving.
    let mut options = common::options();
    options.calls.retry.max_attempts = 40;
    let rig = FakeRig::with_options(&accounts_toml(&[A]), options);
    rig.org.add_group(A, "ops", &[P1, P2, P3]);
    for i in 0..20 {
        rig.org
            .add_user(A, &format!("u{i:02}"), &["ops"], &[P1, P2, P3]);
    }
    rig.org.throttle_first(A, Op::DetachUserPolicy, 25);
    rig.org.throttle_first(A, Op::GetGroup, 10);
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(result.tally.detached, 60);
    assert!(!result.has_failures());
    assert_eq!(rig.org.throttled_calls(), 35);
    assert_eq!(
        rig.sql::<i64>("SELECT throttled FROM api_calls WHERE operation = 'DetachUserPolicy'"),
        25
    );
    for i in 0..20 {
        assert!(
            rig.org
                .user_policies(A, &format!("u{i:02}"))
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn the_circuit_breaker_stops_the_account_and_leaves_the_rest_open() {
    let mut options = common::options();
    options.apply.max_detaches_per_account = Some(2);
    options.apply.write_concurrency = 1;
    let rig = FakeRig::with_options(&accounts_toml(&[A, "222222222222"]), options);
    for acct in [A, "222222222222"] {
        rig.org.add_group(acct, "ops", &[P1, P2]);
        rig.org.add_user(acct, "alice", &["ops"], &[P1, P2]);
        rig.org.add_user(acct, "bob", &["ops"], &[P1]);
    }
    rig.org.with_account("222222222222", |a| {
        a.users.get_mut("alice").unwrap().attached.remove(P2);
    });
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert!(result.has_failures());
    assert!(result.tally.limit_reached);
    assert_eq!(
        result.status,
        RunStatus::CompletedWithErrors,
        "stopped, not interrupted"
    );
    assert_eq!(
        rig.rows("SELECT account_id, status, coalesce(error_code, '-') FROM run_accounts ORDER BY account_id"),
        vec![
            format!("{A}|stopped|MaxDetachesReached"),
            "222222222222|completed|-".to_owned(),
        ]
    );
    assert_eq!(
        rig.sql::<i64>(&format!(
            "SELECT count(*) FROM actions WHERE account_id = '{A}' AND status = 'detached'"
        )),
        2
    );
    // The third redundant attachment is untouched and has no journal row: open for a later run.
    assert_eq!(
        rig.sql::<i64>(&format!(
            "SELECT count(*) FROM actions WHERE account_id = '{A}'"
        )),
        2
    );
    assert_eq!(rig.org.user_policies(A, "bob").unwrap().len(), 1);
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 2);
}

#[test]
fn a_failed_detach_is_recorded_and_the_other_accounts_finish() {
    let rig = FakeRig::new(&accounts_toml(&[A, "222222222222", "333333333333"]));
    for acct in [A, "222222222222", "333333333333"] {
        rig.org.add_group(acct, "ops", &[P1]);
        rig.org.add_user(acct, "alice", &["ops"], &[P1]);
    }
    rig.org.fail_call(
        A,
        Op::DetachUserPolicy,
        1,
        AwsError::new(
            ErrorKind::AccessDenied,
            "AccessDenied",
            "not authorized to perform: iam:DetachUserPolicy",
        ),
    );
    rig.org.refuse_assume(
        "222222222222",
        AwsError::new(ErrorKind::AccessDenied, "AccessDenied", "no trust"),
    );
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    // Exit code 1 comes from this (app::run maps has_failures to 1).
    assert!(result.has_failures());
    assert_eq!(result.status, RunStatus::CompletedWithErrors);
    assert_eq!(
        rig.rows(
            "SELECT account_id, status, coalesce(error_code, '-') FROM actions ORDER BY account_id"
        ),
        vec![
            format!("{A}|failed|AccessDenied"),
            "333333333333|detached|-".to_owned()
        ]
    );
    // A role that may not detach stops its account at the first refusal, with one clear
    // message, instead of failing every user's detach.
    assert_eq!(
        rig.rows("SELECT account_id, status, coalesce(error_code, '-') FROM run_accounts ORDER BY account_id"),
        vec![
            format!("{A}|failed|AccessDenied"),
            "222222222222|failed|AccessDenied".to_owned(),
            "333333333333|completed|-".to_owned()
        ]
    );
    let message: String = rig.sql(&format!(
        "SELECT error_message FROM run_accounts WHERE account_id = '{A}'"
    ));
    assert!(message.contains("deploy it with Mode=apply"), "{message}");
    assert!(rig.org.user_policies(A, "alice").unwrap().contains(P1));
    assert!(
        rig.org
            .user_policies("333333333333", "alice")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_user_with_k_redundant_policies_costs_one_group_proof_k_detaches_and_one_post_check() {
    // A settle window, as in real use: the post-checks due together read the group once.
    let mut options = common::options();
    options.apply.settle = std::time::Duration::from_secs(1);
    let rig = FakeRig::with_options(&accounts_toml(&[A]), options);
    rig.org.add_group(A, "ops", &[P1, P2, P3]);
    rig.org.add_group(A, "other", &[]);
    rig.org
        .add_user(A, "alice", &["ops", "other"], &[P1, P2, P3]);
    block_on(rig.engine.apply(&rig.file)).unwrap();
    let calls: Vec<(Op, u64)> = [
        Op::GetPolicy,
        Op::GetGroup,
        Op::ListAttachedGroupPolicies,
        Op::ListAttachedUserPolicies,
        Op::ListGroupsForUser,
        Op::DetachUserPolicy,
        Op::AttachUserPolicy,
    ]
    .iter()
    .map(|op| (*op, rig.org.calls(A, *op)))
    .collect();
    // Whether the one AWS managed policy can be attached again; the proof of "ops" (members
    // and policies: "other" grants none of them and is never read); 3 detaches; the
    // post-check reads "ops" once more. No per-user read at all.
    assert_eq!(
        calls,
        vec![
            (Op::GetPolicy, 1),
            (Op::GetGroup, 2),
            (Op::ListAttachedGroupPolicies, 2),
            (Op::ListAttachedUserPolicies, 0),
            (Op::ListGroupsForUser, 0),
            (Op::DetachUserPolicy, 3),
            (Op::AttachUserPolicy, 0),
        ]
    );
}

#[test]
fn excluded_users_and_policies_are_skipped_and_recorded() {
    let toml =
        format!("[defaults]\nexclude_policies = [\"*/Deploy\"]\n\n[[account]]\nid = \"{A}\"\n");
    let mut options = common::options();
    options.apply.filters.exclude_users =
        iamsweep::filters::Patterns::new(vec!["svc-*".into()]).unwrap();
    let rig = FakeRig::with_options(&toml, options);
    rig.org.add_group(A, "ops", &[P1, P2]);
    rig.org.add_user(A, "alice", &["ops"], &[P1, P2]);
    rig.org.add_user(A, "svc-ci", &["ops"], &[P1]);
    block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(
        statuses(&rig),
        vec![
            format!("alice|{P2}|skipped|excluded"),
            format!("alice|{P1}|detached|-"),
            format!("svc-ci|{P1}|skipped|excluded"),
        ]
    );
    assert!(rig.org.user_policies(A, "svc-ci").unwrap().contains(P1));
}

#[test]
fn direct_only_attachments_are_never_touched() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1, P2]);
    rig.org.add_user(A, "bob", &[], &[P1, P3]);
    block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(
        rig.org
            .user_policies(A, "alice")
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![P2]
    );
    assert_eq!(rig.org.user_policies(A, "bob").unwrap().len(), 2);
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 1);
    // bob has nothing redundant: not even read. Only alice's group is, before and after.
    assert_eq!(rig.org.calls(A, Op::GetUser), 0);
    assert_eq!(rig.org.calls(A, Op::ListAttachedUserPolicies), 0);
    assert_eq!(rig.org.calls(A, Op::GetGroup), 2);
}

#[test]
fn a_proof_older_than_its_bound_is_read_again_before_a_detach_relies_on_it() {
    // Four users of one group, one detach at a time. With a bound of zero every proof is
    // already too old by the time a detach may leave (its intent is committed first), so the
    // group is read again right before each one (after the read that found the first finding
    // worth an intent); with an hour, one proof serves them all. Either way each detach records
    // how old its proof was.
    for (bound, reads) in [
        (std::time::Duration::ZERO, 5),
        (std::time::Duration::from_secs(3600), 1),
    ] {
        let mut options = common::options();
        options.apply.proof_max_age = bound;
        options.apply.write_concurrency = 1;
        // A settle window, so that the post-checks due together read the group once.
        options.apply.settle = std::time::Duration::from_secs(1);
        let rig = FakeRig::with_options(&accounts_toml(&[A]), options);
        rig.org.add_group(A, "ops", &[P2]);
        for u in ["u1", "u2", "u3", "u4"] {
            rig.org.add_user(A, u, &["ops"], &[P2]);
        }
        block_on(rig.engine.apply(&rig.file)).unwrap();
        assert_eq!(
            rig.sql::<i64>("SELECT count(*) FROM actions WHERE status = 'detached' AND proof_age_ms IS NOT NULL"),
            4
        );
        // The proofs the detaches relied on, and one for the post-check.
        assert_eq!(rig.org.calls(A, Op::GetGroup), reads + 1, "bound {bound:?}");
        assert_eq!(rig.org.calls(A, Op::ListAttachedGroupPolicies), reads + 1);
    }
}

#[test]
fn a_member_removed_between_the_proof_and_the_detach_is_caught_by_the_post_check() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P2]);
    rig.org.add_user(A, "alice", &["ops"], &[P2]);
    rig.org.add_user(A, "bob", &["ops"], &[P2]);
    // alice leaves the group just as her detach is sent: the proof was right when read.
    rig.org.on_call(A, Op::DetachUserPolicy, 1, |a| {
        a.users.get_mut("alice").unwrap().groups.clear();
    });
    let result = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(
        statuses(&rig),
        vec![
            format!("alice|{P2}|reverted|covering_grant_vanished"),
            format!("bob|{P2}|detached|-"),
        ]
    );
    assert_eq!(result.tally.reverted, 1);
    assert!(rig.org.user_policies(A, "alice").unwrap().contains(P2));
    assert!(rig.org.user_policies(A, "bob").unwrap().is_empty());
}

#[test]
fn a_group_with_more_members_than_one_page_is_proven_across_its_pages() {
    // A settle window, so that the post-checks due together read the group once.
    let mut options = common::options();
    options.apply.settle = std::time::Duration::from_secs(1);
    let rig = FakeRig::with_options(&accounts_toml(&[A]), options);
    rig.org.set_page_size(2);
    rig.org.add_group(A, "ops", &[P2]);
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        rig.org.add_user(A, u, &["ops"], &[P2]);
    }
    block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM actions WHERE status = 'detached'"),
        5
    );
    // Three pages of members, before and after.
    assert_eq!(rig.org.calls(A, Op::GetGroup), 6);
    assert_eq!(rig.org.calls(A, Op::GetUser), 0);
}

#[test]
fn a_group_too_large_for_its_few_findings_is_proven_user_by_user() {
    // One redundant user in a group of many members: reading every page of the group would
    // cost more than proving the user alone.
    let mut options = common::options();
    options.apply.settle = std::time::Duration::from_secs(1);
    let rig = FakeRig::with_options(&accounts_toml(&[A]), options);
    rig.org.set_page_size(2);
    rig.org.add_group(A, "everyone", &[P2]);
    rig.org.add_user(A, "alice", &["everyone"], &[P2]);
    for i in 0..7 {
        rig.org
            .add_user(A, &format!("staff{i}"), &["everyone"], &[]);
    }
    block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(statuses(&rig), vec![format!("alice|{P2}|detached|-")]);
    let calls: Vec<(Op, u64)> = [
        Op::GetGroup,
        Op::GetUser,
        Op::ListGroupsForUser,
        Op::ListAttachedGroupPolicies,
    ]
    .iter()
    .map(|op| (*op, rig.org.calls(A, *op)))
    .collect();
    // One page of the group shows it is large; then alice alone, before and after.
    assert_eq!(
        calls,
        vec![
            (Op::GetGroup, 1),
            (Op::GetUser, 2),
            (Op::ListGroupsForUser, 2),
            (Op::ListAttachedGroupPolicies, 2),
        ]
    );
}
