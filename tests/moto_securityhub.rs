//! `publish` end to end against moto's Security Hub (read back with boto3 from each account):
//! every redundant pair becomes an active finding in its own account's hub with the ASFF
//! required fields; after apply the same findings (same Id, no duplicates) are resolved; and an
//! account whose scan failed has nothing resolved.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use serde_json::Value;

fn venv_python() -> String {
    let venv = std::env::var("IAMSWEEP_VENV")
        .unwrap_or_else(|_| format!("{}/.venv", env!("CARGO_MANIFEST_DIR")));
    format!("{venv}/bin/python")
}

/// Every finding in `account`'s Security Hub (us-east-1), read as that account with boto3.
fn hub_findings(account: &str) -> Vec<Value> {
    let script = r#"
import boto3, json, sys
url, account = sys.argv[1], sys.argv[2]
keys = dict(aws_access_key_id="testing", aws_secret_access_key="testing")
sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1", **keys)
c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/reader", RoleSessionName="test")["Credentials"]
hub = boto3.client("securityhub", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                   aws_session_token=c["SessionToken"])
out, token = [], None
while True:
    kw = {"MaxResults": 100}
    if token:
        kw["NextToken"] = token
    page = hub.get_findings(**kw)
    out += page["Findings"]
    token = page.get("NextToken")
    if not token:
        break
print(json.dumps(out, default=str))
"#;
    let out = Command::new(venv_python())
        .args(["-c", script, &moto_url(), account])
        .output()
        .expect("the venv's python (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (user, policy name) -> (RecordState, Compliance.Status), and no Id twice.
fn states(findings: &[Value]) -> BTreeMap<(String, String), (String, String)> {
    let mut ids: Vec<&str> = findings.iter().map(|f| f["Id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "no finding twice");
    findings
        .iter()
        .map(|f| {
            let user = f["Resources"][0]["Details"]["AwsIamUser"]["UserName"]
                .as_str()
                .unwrap()
                .to_owned();
            let policy = f["UserDefinedFields"]["iamsweep_policy_arn"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            (
                (user, policy),
                (
                    f["RecordState"].as_str().unwrap().to_owned(),
                    f["Compliance"]["Status"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn publish_keeps_security_hub_in_step_and_never_resolves_in_an_account_that_failed() {
    let (a, b) = ("100000000921", "100000000922");
    block_on(async {
        for acct in [a, b] {
            seed_many(acct, 3).await;
        }
    });
    let w = Workdir::new(&accounts_toml(&[a, b]));
    assert_exit(&w.iamsweep(&["scan"]), 0);
    let out = w.iamsweep(&["publish"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("published run 1 to AWS Security Hub: 18 new, 0 updated, 0 resolved, 0 failed, in 2 accounts (0 with errors)"),
        "{}",
        stdout(&out)
    );
    for acct in [a, b] {
        let found = hub_findings(acct);
        assert_eq!(found.len(), 9, "{acct}: 6 redundant + 3 direct-only");
        for f in &found {
            for key in [
                "SchemaVersion",
                "Id",
                "ProductArn",
                "GeneratorId",
                "AwsAccountId",
                "CreatedAt",
                "UpdatedAt",
                "Title",
                "Description",
            ] {
                assert!(f[key].as_str().is_some_and(|v| !v.is_empty()), "{key}: {f}");
            }
            assert_eq!(f["SchemaVersion"], "2018-10-08");
            assert_eq!(f["AwsAccountId"], acct, "in the finding's own account");
            assert_eq!(
                f["ProductArn"],
                format!("arn:aws:securityhub:us-east-1:{acct}:product/{acct}/default")
            );
            assert!(f["Severity"]["Label"].as_str().is_some());
            assert!(!f["Types"].as_array().unwrap().is_empty());
            assert_eq!(f["Resources"][0]["Type"], "AwsIamUser");
            assert!(
                f["Resources"][0]["Id"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("arn:aws:iam::{acct}:user/user000"))
            );
            assert_eq!(f["RecordState"], "ACTIVE");
            assert_eq!(f["Compliance"]["Status"], "FAILED");
        }
    }

    // Apply, publish the apply run: its detached pairs resolved, same Ids, nothing added.
    assert_exit(
        &w.iamsweep(&["--settle", "1s", "apply", "--run", "1", "--yes"]),
        0,
    );
    let out = w.iamsweep(&["publish", "2"]);
    assert_exit(&out, 0);
    eprintln!("publish 2:\n{}", stdout(&out));
    assert!(
        stdout(&out).contains("0 new, 6 updated, 12 resolved, 0 failed"),
        "{}",
        stdout(&out)
    );
    for acct in [a, b] {
        let st = states(&hub_findings(acct));
        assert_eq!(st.len(), 9, "{acct}: the same findings, updated in place");
        for u in ["user0000", "user0001", "user0002"] {
            for p in ["Grant1", "Grant2"] {
                assert_eq!(
                    st[&(u.to_owned(), p.to_owned())],
                    ("ARCHIVED".to_owned(), "PASSED".to_owned()),
                    "{acct} {u} {p}: detached"
                );
            }
            assert_eq!(
                st[&(u.to_owned(), "Own".to_owned())],
                ("ACTIVE".to_owned(), "FAILED".to_owned()),
                "{acct} {u}: direct-only stays open"
            );
        }
    }

    // user0000's direct-only policy goes in both accounts, outside iamsweep; then B's scan
    // fails (its base credentials are not B's). A's is resolved; B's stays as it was.
    block_on(async {
        for acct in [a, b] {
            let s = Seeder::new(acct).await;
            s.iam
                .detach_user_policy()
                .user_name("user0000")
                .policy_arn(format!("arn:aws:iam::{acct}:policy/Own"))
                .send()
                .await
                .unwrap();
        }
    });
    std::fs::write(
        w.accounts(),
        format!("[[account]]\nid = \"{a}\"\n\n[[account]]\nid = \"{b}\"\nassume_role = false\n"),
    )
    .unwrap();
    assert_exit(&w.iamsweep(&["scan"]), 1);
    let out = w.iamsweep(&["publish", "3"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with(b) && l.contains("its scan failed in run 3")),
        "{text}"
    );
    let st = states(&hub_findings(a));
    assert_eq!(
        st[&("user0000".to_owned(), "Own".to_owned())],
        ("ARCHIVED".to_owned(), "PASSED".to_owned()),
        "{a}: no longer found by a scan that read the account: resolved"
    );
    let st = states(&hub_findings(b));
    assert_eq!(
        st[&("user0000".to_owned(), "Own".to_owned())],
        ("ACTIVE".to_owned(), "FAILED".to_owned()),
        "{b}: its scan failed: nothing resolved"
    );
    assert_eq!(
        w.sql::<i64>(&format!(
            "SELECT count(*) FROM published WHERE account_id = '{b}' AND state = 'active'"
        )),
        3
    );
    eprintln!("{text}");
    // Run 1 is older than run 3, already published: sending it would reopen in A's hub what
    // run 3 resolved. Refused, exit 2, nothing sent.
    let out = w.iamsweep(&["publish", "1"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("older than run 3, already published"),
        "{}",
        stderr(&out)
    );
    let st = states(&hub_findings(a));
    assert_eq!(
        st[&("user0000".to_owned(), "Own".to_owned())],
        ("ARCHIVED".to_owned(), "PASSED".to_owned()),
        "{a}: still resolved"
    );
    let one = hub_findings(a)
        .into_iter()
        .find(|f| f["Resources"][0]["Details"]["AwsIamUser"]["UserName"] == "user0001")
        .unwrap();
    eprintln!(
        "one ASFF finding:\n{}",
        serde_json::to_string_pretty(&one).unwrap()
    );
}

/// A hub that refuses the call (a role without `securityhub:BatchImportFindings`) is an error
/// per account in the summary and exit code 1, never "0 sent" in silence; `apply --publish`
/// publishes the run it just made.
#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_refused_import_is_an_error_per_account_and_apply_publish_resolves_what_it_detached() {
    let (c, d) = ("100000000931", "100000000932");
    block_on(async {
        for acct in [c, d] {
            seed_many(acct, 1).await;
        }
    });
    let w = Workdir::new(&accounts_toml(&[c, d]));
    let proxy = common::proxy::Proxy::start(&moto_url());
    // Security Hub's REST calls carry no Action: the only such calls here are its imports.
    proxy.set_schedule(|s| {
        (s.action == "?").then_some(common::proxy::Fault::Refuse("AccessDeniedException"))
    });
    let (out, _) = w.iamsweep_via(
        &proxy.url,
        &["scan", "--publish"],
        std::time::Duration::from_secs(120),
    );
    assert_exit(&out, 1);
    let text = stdout(&out);
    let published = &text[text.find("published run").expect("the publish summary")..];
    for acct in [c, d] {
        let line = published
            .lines()
            .find(|l| l.starts_with(acct))
            .unwrap_or_else(|| panic!("{acct} in the summary: {text}"));
        assert!(
            line.contains("403") || line.contains("AccessDenied"),
            "{line}"
        );
    }
    assert!(
        text.contains("0 new, 0 updated, 0 resolved, 6 failed, in 2 accounts (2 with errors)"),
        "{text}"
    );
    assert!(hub_findings(c).is_empty(), "nothing was taken");
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM published"),
        0,
        "nothing recorded as sent"
    );

    // A partial refusal: Security Hub answers 200 with FailedFindings.
    proxy.set_schedule(|s| {
        (s.action == "?").then_some(common::proxy::Fault::JsonOk(
            r#"{"FailedCount":1,"SuccessCount":2,"FailedFindings":[{"Id":"iamsweep/refused","ErrorCode":"InvalidInput","ErrorMessage":"injected by the test proxy"}]}"#,
        ))
    });
    let (out, _) = w.iamsweep_via(
        &proxy.url,
        &["publish", "1"],
        std::time::Duration::from_secs(120),
    );
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("Security Hub refused 1 findings, e.g. iamsweep/refused: InvalidInput injected by the test proxy"),
        "{text}"
    );
    assert!(
        text.contains("0 new, 0 updated, 0 resolved, 6 failed, in 2 accounts (2 with errors)"),
        "an answer naming a finding the request did not hold: its batch counts as not sent: {text}"
    );
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM published"),
        0,
        "nothing of such a batch is recorded as sent"
    );
    // The proxy answered in the hub's place (nothing reached it): forget what it "took".
    rusqlite::Connection::open(w.db())
        .unwrap()
        .execute("DELETE FROM published", [])
        .unwrap();

    let out = w.iamsweep(&["--settle", "1s", "apply", "--yes", "--publish"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("2 new, 0 updated, 4 resolved, 0 failed"),
        "{}",
        stdout(&out)
    );
    let st = states(&hub_findings(c));
    assert_eq!(
        st[&("user0000".to_owned(), "Grant1".to_owned())],
        ("ARCHIVED".to_owned(), "PASSED".to_owned())
    );
    assert_eq!(
        st[&("user0000".to_owned(), "Own".to_owned())],
        ("ACTIVE".to_owned(), "FAILED".to_owned())
    );
}
