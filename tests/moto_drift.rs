//! Scheduled sweeps end to end against moto: after an apply, a detached policy put back and a
//! new redundant attachment make `scan --fail-on new` exit 3 and `diff` list exactly them (the
//! rest resolved); an account that fails later is not compared; the HTML report references
//! nothing outside itself.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

const A: &str = "100000000701";
const B: &str = "100000000702";

/// Per account: `ops` grants Deploy and Reader; alice holds both directly too, carol Reader;
/// bob holds Own directly only. Returns (deploy, reader) ARNs per account.
async fn seed(account: &str) -> (String, String) {
    let s = Seeder::new(account).await;
    let deploy = s.policy("Deploy", "/team/").await;
    let reader = s.policy("Reader", "/").await;
    let own = s.policy("Own", "/").await;
    s.group("ops", &[&deploy, &reader]).await;
    s.group("dev", &[]).await;
    s.user("alice", &["ops"], &[&deploy, &reader]).await;
    s.user("carol", &["ops"], &[&reader]).await;
    s.user("bob", &["dev"], &[&own]).await;
    (deploy, reader)
}

/// `change account user policy_arn` of every item of `diff --format json`.
fn items(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|i| {
            format!(
                "{} {} {} {}",
                i["change"].as_str().unwrap(),
                i["account_id"].as_str().unwrap(),
                i["user_name"].as_str().unwrap(),
                i["policy_arn"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_policy_put_back_and_a_new_one_fail_the_scan_and_diff_lists_exactly_them() {
    let ((deploy_a, reader_a), (deploy_b, reader_b)) =
        block_on(async { (seed(A).await, seed(B).await) });
    let w = Workdir::new(&format!(
        "[[account]]\nid = \"{A}\"\nname = \"prod\"\n\n[[account]]\nid = \"{B}\"\nname = \"staging\"\n"
    ));
    let apply = w.iamsweep(&["--settle", "1s", "apply", "--yes"]);
    assert_exit(&apply, 0);
    assert!(stdout(&apply).contains("6 detached"), "{}", stdout(&apply));
    w.assert_journal_settled();

    // Terraform puts alice's Deploy back in A; someone gives carol Deploy directly in B.
    block_on(async {
        Seeder::new(A)
            .await
            .attach_user_policy("alice", &deploy_a)
            .await;
        Seeder::new(B)
            .await
            .attach_user_policy("carol", &deploy_b)
            .await;
    });
    let scan = w.iamsweep(&["scan", "--fail-on", "new"]);
    assert_exit(&scan, 3);
    assert!(
        stdout(&scan).contains("fail-on new: 2 redundant findings new or reappeared since the previous scan of their account (1 new, 1 reappeared)"),
        "{}",
        stdout(&scan)
    );
    // --fail-on any fails on the same findings; without --fail-on the scan is a success.
    assert_exit(&w.iamsweep(&["scan", "--fail-on", "any"]), 3);
    assert_exit(&w.iamsweep(&["scan"]), 0);

    // diff 1 2: the apply's findings against the scan's.
    let json = w.iamsweep(&["diff", "1", "2", "--format", "json"]);
    assert_exit(&json, 0);
    let v: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(
        items(&v),
        BTreeSet::from([
            format!("reappeared {A} alice {deploy_a}"),
            format!("new {B} carol {deploy_b}"),
            format!("resolved {A} alice {reader_a}"),
            format!("resolved {A} carol {reader_a}"),
            format!("resolved {B} alice {deploy_b}"),
            format!("resolved {B} alice {reader_b}"),
            format!("resolved {B} carol {reader_b}"),
        ])
    );
    let drift = &v[0];
    assert_eq!(drift["change"], "reappeared", "drift comes first");
    assert_eq!(drift["kind"], "redundant_direct");
    assert_eq!(drift["detached_in_run"], 1);
    let request: String = w.sql(&format!(
        "SELECT request_id FROM detaches WHERE account_id = '{A}' AND user_name = 'alice' AND policy_arn = '{deploy_a}'"
    ));
    assert!(!request.is_empty());
    assert_eq!(drift["detach_request_id"], request.as_str());
    let err = stderr(&json);
    assert!(
        err.contains("from run 1 (apply") && err.contains("to   run 2 (scan"),
        "{err}"
    );

    // The defaults pick the latest scan and the one before it with the same accounts.
    let table = w.iamsweep(&["diff"]);
    assert_exit(&table, 0);
    println!(
        "$ iamsweep diff 1 2\n{}",
        stdout(&w.iamsweep(&["diff", "1", "2"]))
    );
    assert!(stdout(&table).contains("no changes"), "{}", stdout(&table));

    // report shows the drift, as the drift view does.
    let report = w.iamsweep(&["report", "2", "--format", "json"]);
    let v: Value = serde_json::from_str(&stdout(&report)).unwrap();
    let back: Vec<&Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["reappeared"].is_null())
        .collect();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0]["user_name"], "alice");
    assert_eq!(back[0]["reappeared"]["detach_request_id"], request.as_str());
    assert_eq!(
        w.rows("SELECT run_id, account_id, user_name, detached_in_run FROM drift ORDER BY run_id"),
        [
            format!("2|{A}|alice|1"),
            format!("3|{A}|alice|1"),
            format!("4|{A}|alice|1")
        ]
    );

    // The HTML report: one file, nothing outside it, the drift and its request id in it.
    let html = w.iamsweep(&["report", "2", "--format", "html"]);
    assert_exit(&html, 0);
    let page = stdout(&html);
    assert_eq!(external_references(&page), Vec::<String>::new());
    assert!(
        page.contains("Drift: reappeared after iamsweep detached them (1)"),
        "{page}"
    );
    assert!(page.contains(&request));
    assert!(page.trim_end().ends_with("</html>"));

    // B fails from now on (base credentials of another account): not compared, exit 1, and
    // a failed account keeps --fail-on's exit code at 1.
    std::fs::write(
        w.accounts(),
        format!(
            "[[account]]\nid = \"{A}\"\nname = \"prod\"\n\n[[account]]\nid = \"{B}\"\nname = \"staging\"\nassume_role = false\n"
        ),
    )
    .unwrap();
    let failed = w.iamsweep(&["scan", "--fail-on", "any"]);
    assert_exit(&failed, 1);
    assert!(
        stdout(&failed)
            .contains("fail-on any: 1 redundant finding (exit code 1: some accounts failed)"),
        "{}",
        stdout(&failed)
    );
    let d = w.iamsweep(&["diff", "--format", "json"]);
    assert_exit(&d, 1);
    let v: Value = serde_json::from_str(&stdout(&d)).unwrap();
    assert_eq!(items(&v), BTreeSet::new(), "A unchanged, B not compared");
    assert!(
        stderr(&d).contains(&format!(
            "not compared: {B} staging: its scan failed in run 5: AccountMismatch"
        )),
        "{}",
        stderr(&d)
    );
    let t = w.iamsweep(&["diff"]);
    assert_exit(&t, 1);
    assert!(
        stdout(&t).contains("from run 4 (scan") && stdout(&t).contains("to   run 5 (scan"),
        "{}",
        stdout(&t)
    );
    assert!(stdout(&t).contains(&format!("not compared: {B} staging")));
}
