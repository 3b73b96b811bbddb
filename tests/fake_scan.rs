//! Scan orchestration against the in-memory fake: what moto cannot show (pagination,
//! throttling, failures at call N) and the per-account call counts recorded in SQLite.

mod common;

use common::{FakeRig, accounts_toml, block_on};
use iamsweep::aws::{AwsError, ErrorKind, Op};
use iamsweep::store::RunStatus;

const P1: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const P2: &str = "arn:aws:iam::111111111111:policy/team/Deploy";

#[test]
fn pagination_over_several_pages_sees_every_entity() {
    let rig = FakeRig::new(&accounts_toml(&["111111111111"]));
    let a = "111111111111";
    rig.org.add_group(a, "ops", &[P1]);
    rig.org.add_group(a, "dev", &[P2]);
    for i in 0..10 {
        let groups: &[&str] = if i % 2 == 0 { &["ops"] } else { &["dev"] };
        rig.org
            .add_user(a, &format!("user{i:02}"), groups, &[P1, P2]);
    }
    // 12 entities, 5 per page: 3 pages, and users spill over page boundaries.
    rig.org.set_page_size(5);
    let result = block_on(rig.engine.scan(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(rig.org.calls(a, Op::GetAccountAuthorizationDetails), 3);
    assert_eq!(
        rig.rows(
            "SELECT users_seen, groups_seen, redundant_count, direct_only_count FROM run_accounts"
        ),
        vec!["10|2|10|10"]
    );
    assert_eq!(
        rig.rows(
            "SELECT operation, calls FROM api_calls WHERE account_id = '111111111111' ORDER BY operation"
        ),
        vec!["AssumeRole|1", "GetAccountAuthorizationDetails|3"]
    );
    // Even users (ops) are covered for P1 only; odd users (dev) for P2 only.
    assert_eq!(
        rig.rows(
            "SELECT user_name, policy_name, kind, covering_groups FROM findings WHERE user_name IN ('user00', 'user01') ORDER BY 1, 2"
        ),
        vec![
            "user00|Deploy|direct_only|[]",
            "user00|ReadOnlyAccess|redundant_direct|[\"ops\"]",
            "user01|Deploy|redundant_direct|[\"dev\"]",
            "user01|ReadOnlyAccess|direct_only|[]",
        ]
    );
}

#[test]
fn throttling_then_success_completes_and_counts_the_retries() {
    let rig = FakeRig::new(&accounts_toml(&["111111111111"]));
    let a = "111111111111";
    rig.org.add_group(a, "ops", &[P1]);
    rig.org.add_user(a, "alice", &["ops"], &[P1]);
    rig.org
        .throttle_first(a, Op::GetAccountAuthorizationDetails, 3);
    rig.org.throttle_first(a, Op::AssumeRole, 1);
    let result = block_on(rig.engine.scan(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert!(!result.has_failures());
    assert_eq!(
        rig.rows("SELECT operation, calls, throttled, errors FROM api_calls ORDER BY operation"),
        vec!["AssumeRole|2|1|0", "GetAccountAuthorizationDetails|4|3|0"]
    );
    assert_eq!(
        rig.sql::<i64>("SELECT redundant_count FROM run_accounts"),
        1
    );
}

#[test]
fn one_failing_account_does_not_stop_the_others() {
    let ids = ["111111111111", "222222222222", "333333333333"];
    let rig = FakeRig::new(&accounts_toml(&ids));
    for id in ids {
        rig.org.add_group(id, "ops", &[P1]);
        rig.org.add_user(id, "alice", &["ops"], &[P1]);
    }
    rig.org.refuse_assume(
        "222222222222",
        AwsError::new(
            ErrorKind::AccessDenied,
            "AccessDenied",
            "User is not authorized to perform: sts:AssumeRole",
        ),
    );
    // A non-retryable failure in the middle of the third account's paging.
    rig.org.set_page_size(1);
    rig.org.fail_call(
        "333333333333",
        Op::GetAccountAuthorizationDetails,
        2,
        AwsError::new(ErrorKind::Other, "ServiceFailure", "boom at call 2"),
    );
    let result = block_on(rig.engine.scan(&rig.file)).unwrap();
    assert_eq!(result.status, RunStatus::CompletedWithErrors);
    assert_eq!(result.accounts_failed, 2);
    assert!(result.has_failures());
    assert_eq!(
        rig.rows("SELECT account_id, status, error_code, redundant_count FROM run_accounts ORDER BY account_id"),
        vec![
            "111111111111|completed|NULL|1",
            "222222222222|failed|AccessDenied|NULL",
            "333333333333|failed|ServiceFailure|NULL",
        ]
    );
    // Nothing half-recorded for the failed accounts.
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM findings WHERE account_id <> '111111111111'"),
        0
    );
    let msg: String =
        rig.sql("SELECT error_message FROM run_accounts WHERE account_id = '222222222222'");
    assert!(msg.contains("sts:AssumeRole"), "{msg}");
}

#[test]
fn recorded_call_counts_equal_the_calls_made() {
    let ids = ["111111111111", "222222222222"];
    let rig = FakeRig::new(&accounts_toml(&ids));
    for (n, id) in ids.iter().enumerate() {
        for u in 0..(250 * (n + 1)) {
            rig.org.add_user(id, &format!("u{u}"), &[], &[P1]);
        }
    }
    rig.org.set_page_size(100);
    block_on(rig.engine.scan(&rig.file)).unwrap();
    for id in ids {
        let recorded: i64 = rig.sql(&format!(
            "SELECT api_calls FROM run_accounts WHERE account_id = '{id}'"
        ));
        assert_eq!(recorded as u64, rig.org.total_calls(id), "account {id}");
    }
    // 250 users: 3 pages; 500 users: 5 pages; plus one AssumeRole each.
    assert_eq!(
        rig.rows("SELECT account_id, api_calls FROM run_accounts ORDER BY account_id"),
        vec!["111111111111|4", "222222222222|6"]
    );
}

#[test]
fn thousands_of_assume_roles_from_one_principal_are_paced_and_retried_when_sts_throttles() {
    // 500 accounts, default flags (adaptive concurrency), and an STS that allows the one
    // principal 100 AssumeRole calls a second.
    let ids: Vec<String> = (0..500)
        .map(|i| format!("{:012}", 600_000_000_000u64 + i))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut options = common::options();
    options.adaptive = true;
    options.concurrency = iamsweep::run::CONCURRENCY_CEILING;
    let mut rig = FakeRig::with_options(&accounts_toml(&refs), options);
    // Real backoff: this test is about pacing.
    rig.engine.options.calls.retry = iamsweep::calls::RetryPolicy::default();
    rig.org.set_synthetic(Some(iamsweep::aws::fake::Synthetic {
        users: 10,
        groups: 2,
    }));
    rig.org.set_latency(std::time::Duration::from_millis(20));
    rig.org.set_sts_rate_limit(Some(100));
    let result = block_on(rig.engine.scan(&rig.file)).unwrap();
    assert_eq!(result.status, iamsweep::store::RunStatus::Completed);
    assert_eq!(
        result.accounts_failed, 0,
        "every throttled AssumeRole was retried"
    );
    let calls: i64 = rig.sql("SELECT sum(calls) FROM api_calls WHERE operation = 'AssumeRole'");
    let throttled = rig.org.sts_throttled() as i64;
    assert!(throttled > 0, "the test must hit the limit");
    assert_eq!(
        rig.sql::<i64>("SELECT sum(throttled) FROM api_calls WHERE operation = 'AssumeRole'"),
        throttled,
        "every refusal recorded"
    );
    // Paced, not hammered: most calls go through the first time.
    assert!(
        throttled * 2 < calls,
        "{throttled} of {calls} AssumeRole calls throttled"
    );
    eprintln!("{throttled} of {calls} AssumeRole calls throttled");
}
