//! End to end against moto through a network that fails the way real ones do (a proxy of our
//! own, loopback only): 500s, unknown 5xx, connections reset before forwarding, answers dropped
//! after moto acted, calls that never answer, and an IAM whose reads lag its writes. Every test
//! compares what the journal says (rollback list, statuses, post-checks, API call counts) with
//! what really happened in moto.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::proxy::{Fault, Proxy};
use common::*;
use serde_json::Value;

type Triple = (String, String, String);

const USERS: usize = 24;

/// Per account: every user's direct policies, every user's groups, every group's policies.
async fn state(accounts: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for a in accounts {
        let s = Seeder::new(a).await;
        let mut lines = Vec::new();
        for i in 0..USERS {
            let u = format!("user{i:03}");
            lines.push(format!("{u} policies {:?}", s.user_policies(&u).await));
            lines.push(format!("{u} groups {:?}", s.user_groups(&u).await));
        }
        for g in ["ops", "dev"] {
            lines.push(format!("{g} policies {:?}", s.group_policies(g).await));
        }
        out.insert(a.to_string(), lines);
    }
    out
}

/// Users in `ops` (grants Deploy and ReadOnly) and `dev` (grants Audit); each holds two
/// redundant attachments and one direct-only. Returns the redundant (account, user, policy).
async fn seed(account: &str) -> BTreeSet<Triple> {
    let s = Seeder::new(account).await;
    let deploy = s.policy("Deploy", "/").await;
    let audit = s.policy("Audit", "/").await;
    let own = s.policy("Own", "/").await;
    s.group("ops", &[&deploy, READ_ONLY]).await;
    s.group("dev", &[&audit]).await;
    let mut redundant = BTreeSet::new();
    for i in 0..USERS {
        let u = format!("user{i:03}");
        let (group, grant) = if i % 2 == 0 {
            ("ops", deploy.as_str())
        } else {
            ("dev", audit.as_str())
        };
        s.user(&u, &[group], &[grant, READ_ONLY, &own]).await;
        redundant.insert((account.to_owned(), u.clone(), grant.to_owned()));
        if group == "ops" {
            redundant.insert((account.to_owned(), u, READ_ONLY.to_owned()));
        }
    }
    redundant
}

fn triples(json: &str) -> BTreeSet<Triple> {
    let v: Value = serde_json::from_str(json).expect("json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|i| {
            (
                i["account_id"].as_str().unwrap().to_owned(),
                i["user_name"].as_str().unwrap().to_owned(),
                i["policy_arn"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The proxy's count of each action against the run's `api_calls`: every HTTP attempt is
/// counted, retries and lost answers included.
fn assert_calls_match(w: &Workdir, run: i64, proxy: &Proxy) {
    let recorded: BTreeMap<String, u64> = w
        .rows(&format!(
            "SELECT operation, sum(calls) FROM api_calls WHERE run_id = {run} GROUP BY operation"
        ))
        .into_iter()
        .map(|r| {
            let (op, n) = r.split_once('|').unwrap();
            (op.to_owned(), n.parse().unwrap())
        })
        .collect();
    let mut seen = proxy.received();
    // The checks at start (the base credentials, IAM's acceptance of the signature through the
    // configured endpoint) are the process's, not an account's.
    assert_eq!(seen.remove("GetCallerIdentity"), Some(1));
    let users = seen.remove("GetUser").expect("the start check's GetUser") - 1;
    if users > 0 {
        seen.insert("GetUser".to_owned(), users);
    }
    assert_eq!(recorded, seen, "api_calls against what the proxy received");
}

/// The faults of a real network, by the proxy's count of each action: hung calls (when
/// `hangs`), answers lost after moto acted, requests that never reached it, 500s and an
/// unknown 503.
fn faulty(hangs: bool) -> impl Fn(&common::proxy::Seen) -> Option<Fault> + Send + Sync {
    move |s| match (s.action.as_str(), s.nth) {
        // Two calls that never answer: one detach (moto acted), one read.
        ("DetachUserPolicy", 7 | 41) if hangs => Some(Fault::HangAfter),
        ("GetGroup", 5) if hangs => Some(Fault::HangAfter),
        ("DetachUserPolicy", n) if n % 9 == 0 => Some(Fault::DropAfter),
        ("DetachUserPolicy", n) if n % 13 == 0 => Some(Fault::Error500),
        ("DetachUserPolicy", n) if n % 17 == 0 => Some(Fault::ResetBefore),
        ("DetachUserPolicy", n) if n % 19 == 0 => Some(Fault::Bare503),
        // Reads of every kind fail now and then.
        (_, n) if n % 7 == 0 => Some(Fault::Error500),
        (_, n) if n % 11 == 0 => Some(Fault::ResetBefore),
        _ => None,
    }
}

/// Seeds `ids`, applies through a faulty network and checks that AWS and the journal agree.
/// Returns the workdir, the proxy, the seeded state and how long the apply took.
fn apply_through_faults(
    ids: &[&str],
    hangs: bool,
) -> (Workdir, Proxy, BTreeMap<String, Vec<String>>, Duration) {
    let (before, redundant) = block_on(async {
        let mut redundant = BTreeSet::new();
        for id in ids {
            redundant.extend(seed(id).await);
        }
        (state(ids).await, redundant)
    });
    let proxy = Proxy::start(&moto_url());
    proxy.set_schedule(faulty(hangs));
    let w = Workdir::new(&accounts_toml(ids));
    let (out, took) = w.iamsweep_via(
        &proxy.url,
        &["--call-timeout", "3s", "--settle", "2s", "apply", "--yes"],
        Duration::from_secs(240),
    );
    eprintln!(
        "apply through the faulty network (hung calls: {hangs}): {took:?}; faults: {:?}",
        proxy.faults()
    );
    assert_exit(&out, 0);
    assert!(
        proxy.faults().values().sum::<u64>() > 20,
        "{:?}",
        proxy.faults()
    );

    // AWS: exactly the redundant attachments are gone; nothing else changed.
    let gone: BTreeSet<Triple> = block_on(async {
        let mut gone = BTreeSet::new();
        for id in ids {
            let s = Seeder::new(id).await;
            for i in 0..USERS {
                let u = format!("user{i:03}");
                let now = s.user_policies(&u).await;
                for (a, user, p) in &redundant {
                    if a == id && *user == u && !now.contains(p) {
                        gone.insert((a.clone(), user.clone(), p.clone()));
                    }
                }
            }
        }
        gone
    });
    assert_eq!(gone, redundant, "every redundant attachment detached");
    let after = block_on(state(ids));
    for (a, lines) in &after {
        for (l, was) in lines.iter().zip(&before[a]) {
            if !l.contains(" policies ") || l.starts_with("ops") || l.starts_with("dev") {
                assert_eq!(l, was, "memberships and group policies unchanged");
            }
        }
    }

    // The journal: the rollback list is exactly the detaches that happened (lost answers
    // included), each post-checked, nothing left pending or unknown, and every HTTP attempt
    // counted.
    let list = w.iamsweep(&["rollback", "1", "--format", "json"]);
    assert_exit(&list, 0);
    assert_eq!(triples(&stdout(&list)), redundant);
    w.assert_journal_settled();
    assert!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE reason = 'confirmed_by_read'") >= 3,
        "the lost answers are recorded as iamsweep's own detaches"
    );
    assert_calls_match(&w, 1, &proxy);
    (w, proxy, before, took)
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_faulty_network_changes_nothing_twice_and_the_journal_tells_the_truth() {
    let (_, _, _, without) =
        apply_through_faults(&["100000000404", "100000000405", "100000000406"], false);
    let ids = ["100000000401", "100000000402", "100000000403"];
    let (w, proxy, before, with) = apply_through_faults(&ids, true);
    eprintln!("apply wall time: {without:?} without hung calls, {with:?} with two");

    // Undo it all through the same network: the seeded state, exactly.
    proxy.reset_counts();
    proxy.set_schedule(|s| match (s.action.as_str(), s.nth) {
        ("AttachUserPolicy", 3) => Some(Fault::HangAfter),
        ("AttachUserPolicy", n) if n % 5 == 0 => Some(Fault::DropAfter),
        ("AttachUserPolicy", n) if n % 7 == 0 => Some(Fault::Error500),
        (_, n) if n % 6 == 0 => Some(Fault::ResetBefore),
        _ => None,
    });
    let (out, took) = w.iamsweep_via(
        &proxy.url,
        &["--call-timeout", "3s", "rollback", "1", "--apply", "--yes"],
        Duration::from_secs(240),
    );
    eprintln!(
        "rollback through the faulty network: {took:?}; faults: {:?}",
        proxy.faults()
    );
    assert_exit(&out, 0);
    assert_eq!(block_on(state(&ids)), before, "the seeded state, exactly");
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE operation = 'detach' AND status = 'detached' AND rolled_back_by IS NULL"),
        0
    );
    assert_calls_match(&w, 2, &proxy);
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn ctrl_c_waits_no_longer_than_the_call_timeout_and_the_settle_window() {
    let ids = ["100000000421"];
    block_on(seed(ids[0]));
    let proxy = Proxy::start(&moto_url());
    // Every detach is acted on by moto and never answered.
    proxy.set_schedule(|s| (s.action == "DetachUserPolicy").then_some(Fault::HangAfter));
    let w = Workdir::new(&accounts_toml(&ids));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_iamsweep"));
    cmd.arg("--db")
        .arg(w.db())
        .arg("--accounts")
        .arg(w.accounts())
        .args(["--call-timeout", "4s", "--settle", "2s", "apply", "--yes"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    wait_until(
        &w.db(),
        "SELECT count(*) FROM actions WHERE status = 'pending'",
        |n| n >= 1,
        &mut child,
    );
    let asked = std::time::Instant::now();
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let waited = asked.elapsed();
    eprintln!("Ctrl-C with detaches hung: exited {waited:?} after it");
    assert_exit(&out, 130);
    // The calls in flight ended at their timeout (4 s); the detaches they made were settled by
    // a read and post-checked after the window (2 s). Generous margin for a loaded machine.
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    // The detaches made are settled and post-checked before it exits.
    w.assert_journal_settled();
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn with_reads_lagging_writes_a_grant_removed_during_apply_is_restored() {
    // An IAM whose reads lag its writes by 10 s. An admin removes two users' covering grants
    // (a group policy detached, a user taken out of a group) just as apply starts; apply's reads
    // still show the grants and it detaches; the post-check, once the settle window has passed,
    // sees the truth and re-attaches.
    let id = "100000000411";
    let deploy = block_on(async {
        let s = Seeder::new(id).await;
        let deploy = s.policy("Deploy", "/").await;
        let audit = s.policy("Audit", "/").await;
        s.group("ops", &[&deploy]).await;
        s.group("dev", &[&audit]).await;
        s.user("alice", &["ops"], &[&deploy]).await;
        s.user("bob", &["dev"], &[&audit]).await;
        s.user("carol", &["ops"], &[&deploy]).await;
        deploy
    });
    let w = Workdir::new(&accounts_toml(&[id]));
    assert_exit(&w.iamsweep(&["scan"]), 0);
    // The scan is older than the settle window when apply starts: its grants may be relied on.
    std::thread::sleep(Duration::from_secs(12));
    let proxy = Proxy::start(&moto_url());
    let writes = [
        "DetachUserPolicy",
        "AttachUserPolicy",
        "DetachGroupPolicy",
        "RemoveUserFromGroup",
    ];
    proxy.set_write_lag(Some(Duration::from_secs(10)), &writes);
    block_on(async {
        let admin = Seeder::via(id, &proxy.url).await;
        admin.detach_group_policy("ops", &deploy).await;
        admin.remove_user_from_group("dev", "bob").await;
    });
    let (out, took) = w.iamsweep_via(
        &proxy.url,
        &["--settle", "12s", "apply", "--run", "1", "--yes"],
        Duration::from_secs(120),
    );
    assert_exit(&out, 0);
    eprintln!("apply with lagging reads: {took:?}");
    // Wait out the lag, then look: everyone still holds the permission.
    std::thread::sleep(Duration::from_secs(11));
    let _ = &proxy;
    block_on(async {
        let s = Seeder::new(id).await;
        assert!(s.user_policies("alice").await.contains(&deploy));
        assert!(s.user_policies("carol").await.contains(&deploy));
        assert_eq!(s.user_policies("bob").await.len(), 1);
    });
    // The journal says so, in report and history.
    assert_eq!(
        w.rows("SELECT user_name, status, coalesce(reason, '-') FROM actions ORDER BY user_name"),
        vec![
            "alice|reverted|covering_grant_vanished",
            "bob|reverted|covering_grant_vanished",
            "carol|reverted|covering_grant_vanished"
        ]
    );
    let history = w.iamsweep(&["history", "--format", "csv"]);
    assert_exit(&history, 0);
    assert_eq!(
        stdout(&history).matches("reverted").count(),
        3,
        "{}",
        stdout(&history)
    );
    let report = w.iamsweep(&["report", "2", "--format", "json"]);
    let v: Value = serde_json::from_str(&stdout(&report)).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "redundant_direct")
            .all(|f| f["action"]["status"] == "reverted"),
        "{v}"
    );
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn an_iam_endpoint_that_refuses_the_signature_is_one_setup_error_not_every_account_failing() {
    // A proxy in front of IAM that breaks the signature (or an IAM that wants another
    // credential scope): every account would fail the same way. Said once, exit 2, before
    // any account is touched.
    let proxy = Proxy::start(&moto_url());
    proxy.set_schedule(|s| {
        (s.action == "GetUser").then_some(Fault::Refuse("SignatureDoesNotMatch"))
    });
    let w = Workdir::new(&accounts_toml(&["100000000461", "100000000462"]));
    let (out, _) = w.iamsweep_via(&proxy.url, &["apply", "--yes"], Duration::from_secs(60));
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("SignatureDoesNotMatch") && err.contains("signed for us-east-1"),
        "{err}"
    );
    assert_eq!(proxy.received().get("GetUser"), Some(&1));
    assert_eq!(proxy.received().get("AssumeRole"), None);
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn base_credentials_that_do_not_work_are_said_once_at_start_with_nothing_changed() {
    let proxy = Proxy::start(&moto_url());
    proxy.set_schedule(|s| {
        (s.action == "GetCallerIdentity").then_some(Fault::Refuse("InvalidClientTokenId"))
    });
    let w = Workdir::new(&accounts_toml(&["100000000431", "100000000432"]));
    let (out, _) = w.iamsweep_via(&proxy.url, &["apply", "--yes"], Duration::from_secs(60));
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("the AWS credentials do not work") && err.contains("InvalidClientTokenId"),
        "{err}"
    );
    // Checked once, before any account was touched.
    assert_eq!(proxy.received().get("GetCallerIdentity"), Some(&1));
    assert_eq!(proxy.received().get("AssumeRole"), None);
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn throttling_that_slowing_down_does_not_ease_slows_an_apply_but_never_stalls_it() {
    // Another workload drains the accounts' shared IAM quota: every 4th request is throttled,
    // however fast or slow iamsweep goes. The same apply unthrottled, for comparison.
    let seed_all = |ids: &[&str]| {
        block_on(async {
            let mut redundant = BTreeSet::new();
            for id in ids {
                redundant.extend(seed(id).await);
            }
            redundant
        })
    };
    let args = ["--settle", "2s", "apply", "--yes"];
    let clean_ids = ["100000000441", "100000000442"];
    seed_all(&clean_ids);
    let clean = Proxy::start(&moto_url());
    let cw = Workdir::new(&accounts_toml(&clean_ids));
    let (out, unthrottled) = cw.iamsweep_via(&clean.url, &args, Duration::from_secs(240));
    assert_exit(&out, 0);

    let ids = ["100000000443", "100000000444"];
    let redundant = seed_all(&ids);
    let proxy = Proxy::start(&moto_url());
    proxy.set_schedule(|s| {
        (s.seq.is_multiple_of(4) && s.action != "GetCallerIdentity").then_some(Fault::Throttle)
    });
    let w = Workdir::new(&accounts_toml(&ids));
    let (out, throttled) = w.iamsweep_via(&proxy.url, &args, Duration::from_secs(240));
    let refused: u64 = proxy.faults().values().sum();
    eprintln!(
        "apply of {} detaches: {unthrottled:?} unthrottled ({} requests), {throttled:?} with every 4th request throttled ({} requests, {refused} throttled): {:.2}x",
        redundant.len(),
        clean.total_received(),
        proxy.total_received(),
        throttled.as_secs_f64() / unthrottled.as_secs_f64()
    );
    assert_exit(&out, 0);
    assert!(refused > 30, "the test must throttle: {refused}");
    // Every redundant attachment detached, each once, post-checked; every refusal retried and
    // recorded.
    let list = w.iamsweep(&["rollback", "1", "--format", "json"]);
    assert_exit(&list, 0);
    assert_eq!(triples(&stdout(&list)), redundant);
    w.assert_journal_settled();
    assert_eq!(
        w.sql::<i64>("SELECT sum(throttled) FROM api_calls WHERE run_id = 1") as u64,
        refused,
        "every throttled request recorded"
    );
    assert_calls_match(&w, 1, &proxy);
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_plaintext_proxy_named_by_the_environment_never_sees_a_request() {
    // A proxy off the machine would read every signed request, session token and the secrets
    // AssumeRole returns if plaintext went through it: iamsweep sends `http://` (loopback
    // only) straight to its host, whatever HTTP_PROXY and ALL_PROXY say.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let id = "100000000451";
    block_on(seed(id));
    let w = Workdir::new(&accounts_toml(&[id]));
    let env = [
        ("HTTP_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("ALL_PROXY", proxy.as_str()),
    ];
    let out = w.iamsweep_env(&["--call-timeout", "3s", "scan"], &env);
    let mut reached = 0;
    while listener.accept().is_ok() {
        reached += 1;
    }
    assert_eq!(reached, 0, "requests sent to the plaintext proxy");
    assert_exit(&out, 0);
    assert!(w.sql::<i64>("SELECT count(*) FROM findings") > 0);
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn global_services_are_signed_for_their_home_region_whatever_region_the_user_works_in() {
    // A user in us-west-2 sends everything through a proxy (moto accepts any signature; AWS
    // accepts only `us-east-1/iam` for IAM and answers anything else SignatureDoesNotMatch).
    // What the proxy recorded is what AWS would have checked.
    let id = "100000000481";
    block_on(seed(id));
    let proxy = Proxy::start(&moto_url());
    let w = Workdir::new(&accounts_toml(&[id]));
    let (out, _) = w.iamsweep_via_env(
        &proxy.url,
        &["scan"],
        &[("AWS_REGION", "us-west-2")],
        Duration::from_secs(60),
    );
    assert_exit(&out, 0);
    let scopes = proxy.scopes();
    for (action, want) in [
        ("GetAccountAuthorizationDetails", "us-east-1/iam"),
        ("GetUser", "us-east-1/iam"),
        // STS is regional: a regional endpoint signs for its own region.
        ("AssumeRole", "us-west-2/sts"),
        ("GetCallerIdentity", "us-west-2/sts"),
    ] {
        let got: Vec<&String> = scopes
            .get(action)
            .map(|s| s.iter().collect())
            .unwrap_or_default();
        assert_eq!(got, vec![want], "{action}: {scopes:?}");
    }
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn the_credential_chain_retries_its_own_calls_as_the_sdk_does() {
    // Web identity (EKS, CI OIDC): the chain's own AssumeRoleWithWebIdentity meets one 500
    // (a refresh on a bad second). The SDK's standard retries, which iamsweep's own clients
    // turn off for themselves, must stay on there: the run goes on.
    let id = "100000000491";
    block_on(seed(id));
    let proxy = Proxy::start(&moto_url());
    proxy.set_schedule(|s| {
        (s.action == "AssumeRoleWithWebIdentity" && s.nth == 1).then_some(Fault::Error500)
    });
    let w = Workdir::new(&accounts_toml(&[id]));
    let token = w.dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJjaSJ9.").unwrap();
    let token = token.display().to_string();
    let (out, _) = w.iamsweep_via_env(
        &proxy.url,
        &["scan"],
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.as_str()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ci"),
            ("AWS_ROLE_SESSION_NAME", "ci"),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        proxy.received().get("AssumeRoleWithWebIdentity"),
        Some(&2),
        "{}",
        stderr(&out)
    );
    assert_exit(&out, 0);
}
