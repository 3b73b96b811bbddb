//! End to end against moto: the real binary scans accounts reached by assume-role, seeded
//! through the SDK; its report and its database must equal the seeded truth. Run by
//! scripts/test.sh (`--include-ignored`), which starts moto.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

/// (account, user, policy ARN, kind, covering groups)
type Truth = BTreeSet<(String, String, String, String, Vec<String>)>;

fn truth(items: &[(&str, &str, &str, &str, &[&str])]) -> Truth {
    items
        .iter()
        .map(|(a, u, p, k, g)| {
            (
                a.to_string(),
                u.to_string(),
                p.to_string(),
                k.to_string(),
                g.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect()
}

fn reported(json: &str) -> Truth {
    let v: Value = serde_json::from_str(json).expect("report json");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|f| {
            assert!(f["action"].is_null(), "scan made an action: {f}");
            (
                f["account_id"].as_str().unwrap().to_owned(),
                f["user_name"].as_str().unwrap().to_owned(),
                f["policy_arn"].as_str().unwrap().to_owned(),
                f["kind"].as_str().unwrap().to_owned(),
                f["covering_groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn scan_of_three_accounts_equals_the_seeded_truth() {
    let (a, b, c) = ("100000000001", "100000000002", "100000000003");
    let expected = block_on(async {
        // a: paths, a user in two groups, a name with every allowed symbol, an excluded user.
        let s = Seeder::new(a).await;
        let deploy = s.policy("Deploy", "/team/").await;
        s.group("ops", &[&deploy, READ_ONLY]).await;
        s.group("dev", &[VIEW_ONLY]).await;
        s.user("alice", &["ops", "dev"], &[&deploy, READ_ONLY, VIEW_ONLY])
            .await;
        s.user("bob", &["dev"], &[READ_ONLY]).await;
        s.user("c+d=e,f.g@h-i_j", &["ops"], &[&deploy]).await;
        s.user("break-glass-1", &["ops"], &[&deploy]).await;
        // b: two covering groups; a policy of a group the user is not in; a bare user.
        let s = Seeder::new(b).await;
        s.group("ops", &[READ_ONLY]).await;
        s.group("ops2", &[READ_ONLY]).await;
        s.group("admins", &[VIEW_ONLY]).await;
        s.user("carol", &["ops2", "ops"], &[READ_ONLY, VIEW_ONLY])
            .await;
        s.user("dave", &[], &[]).await;
        // c: only direct-only attachments.
        let s = Seeder::new(c).await;
        let own = s.policy("Own", "/").await;
        s.user("erin", &[], &[&own]).await;
        truth(&[
            (a, "alice", &deploy, "redundant_direct", &["ops"]),
            (a, "alice", READ_ONLY, "redundant_direct", &["ops"]),
            (a, "alice", VIEW_ONLY, "redundant_direct", &["dev"]),
            (a, "bob", READ_ONLY, "direct_only", &[]),
            (a, "c+d=e,f.g@h-i_j", &deploy, "redundant_direct", &["ops"]),
            (b, "carol", READ_ONLY, "redundant_direct", &["ops", "ops2"]),
            (b, "carol", VIEW_ONLY, "direct_only", &[]),
            (c, "erin", &own, "direct_only", &[]),
        ])
    });
    let w = Workdir::new(&format!(
        r#"
[defaults]
exclude_users = ["break-glass-*"]

[[account]]
id = "{a}"
name = "prod"

[[account]]
id = "{b}"
exclude_users = []

[[account]]
id = "{c}"
session_name = "audit-2026"
"#
    ));
    let out = w.iamsweep(&["scan"]);
    assert_exit(&out, 0);
    let summary = stdout(&out);
    assert!(summary.contains(&format!("{a} prod")), "{summary}");
    assert!(
        summary
            .contains("run 1 (scan) completed: 3 accounts, 0 failed, 5 redundant, 3 direct-only"),
        "{summary}"
    );

    let report = w.iamsweep(&["report", "--format", "json"]);
    assert_exit(&report, 0);
    assert_eq!(reported(&stdout(&report)), expected);

    // The same numbers in the database, and exactly one AssumeRole and one page per account.
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT account_id, status, users_seen, groups_seen, users_excluded, redundant_count,
                    direct_only_count, api_calls, role_arn, session_name
             FROM run_accounts WHERE run_id = 1 ORDER BY position",
        )
        .unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| {
            Ok(format!(
                "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, String>(9)?
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        vec![
            format!("{a}|completed|4|2|1|4|1|2|arn:aws:iam::{a}:role/IamSweepRole|iamsweep"),
            format!("{b}|completed|2|3|0|1|1|2|arn:aws:iam::{b}:role/IamSweepRole|iamsweep"),
            format!("{c}|completed|1|0|0|0|1|2|arn:aws:iam::{c}:role/IamSweepRole|audit-2026"),
        ]
    );
    let per_op: i64 = w.sql(
        "SELECT count(*) FROM api_calls WHERE run_id = 1 AND calls = 1
         AND operation IN ('AssumeRole', 'GetAccountAuthorizationDetails')",
    );
    assert_eq!(per_op, 6);
    assert_eq!(w.sql::<i64>("SELECT count(*) FROM api_calls"), 6);

    // The table report shows the calls per account and operation under the findings.
    let table = stdout(&w.iamsweep(&["report"]));
    assert!(table.contains("AWS calls (6 in all):"), "{table}");
    assert!(
        table.contains(&format!("{a}  GetAccountAuthorizationDetails      1")),
        "{table}"
    );

    // Scan changed nothing in AWS.
    block_on(async {
        let s = Seeder::new(a).await;
        assert_eq!(s.user_policies("alice").await.len(), 3);
        assert_eq!(s.user_groups("alice").await.len(), 2);
    });

    // The runs listing shows it.
    let runs = w.iamsweep(&["runs", "--format", "json"]);
    assert_exit(&runs, 0);
    let v: Value = serde_json::from_str(&stdout(&runs)).unwrap();
    assert_eq!(v[0]["id"], 1);
    assert_eq!(v[0]["kind"], "scan");
    assert_eq!(v[0]["status"], "completed");
    assert!(v[0]["finished_at"].is_string());
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_failing_account_is_recorded_and_the_others_finish() {
    let (ok, wrong) = ("100000000011", "100000000012");
    block_on(async {
        let s = Seeder::new(ok).await;
        s.group("ops", &[READ_ONLY]).await;
        s.user("alice", &["ops"], &[READ_ONLY]).await;
    });
    // assume_role = false with base credentials of another account (moto's 123456789012).
    let w = Workdir::new(&format!(
        "[[account]]\nid = \"{ok}\"\n\n[[account]]\nid = \"{wrong}\"\nassume_role = false\n"
    ));
    let out = w.iamsweep(&["scan"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{wrong}: failed: AccountMismatch")),
        "{err}"
    );
    assert!(err.contains("123456789012"), "{err}");
    assert_eq!(
        w.sql::<String>(&format!(
            "SELECT status || ',' || error_code FROM run_accounts WHERE account_id = '{wrong}'"
        )),
        "failed,AccountMismatch"
    );
    assert_eq!(
        w.sql::<String>(&format!(
            "SELECT status || ',' || redundant_count FROM run_accounts WHERE account_id = '{ok}'"
        )),
        "completed,1"
    );
    assert_eq!(
        w.sql::<String>("SELECT status FROM runs WHERE id = 1"),
        "completed_with_errors"
    );
    // The database never holds a credential.
    let dump = std::fs::read(w.db()).unwrap();
    let text = String::from_utf8_lossy(&dump);
    // Neither the base key nor an assumed-role key (moto's start with ASIA, like AWS's).
    assert!(
        !text.contains("testing"),
        "a credential reached the database"
    );
    assert!(!text.contains("ASIA"), "a session key reached the database");
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn base_credentials_of_the_right_account_scan_without_assuming() {
    // moto's base credentials belong to 123456789012.
    let id = "123456789012";
    block_on(async {
        let s = Seeder::new(id).await;
        s.user("base-user-1", &[], &[READ_ONLY]).await;
    });
    let w = Workdir::new(&format!(
        "[[account]]\nid = \"{id}\"\nassume_role = false\n"
    ));
    let out = w.iamsweep(&["scan"]);
    assert_exit(&out, 0);
    assert_eq!(
        w.sql::<String>(
            "SELECT group_concat(x) FROM (SELECT operation || '=' || calls AS x FROM api_calls ORDER BY operation)"
        ),
        "GetAccountAuthorizationDetails=1,GetCallerIdentity=1"
    );
    assert!(w.sql::<i64>("SELECT count(*) FROM findings WHERE user_name = 'base-user-1'") == 1);
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn base_credentials_from_a_credential_process_are_loaded_once() {
    // A credential_process may prompt for MFA or a hardware key: it must run once a run, not
    // once for the check and again for the first call (the roles are assumed with them).
    let w = Workdir::new(&accounts_toml(&["100000000471", "100000000472"]));
    let runs = w.dir.path().join("process-runs");
    let script = w.dir.path().join("credentials.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{}'\necho '{{\"Version\": 1, \"AccessKeyId\": \"testing\", \"SecretAccessKey\": \"testing\"}}'\n",
            runs.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = format!(
        "[profile tool]\nregion = us-east-1\ncredential_process = {}\n",
        script.display()
    );
    let out = w.iamsweep_config(&["scan"], &config);
    assert_exit(&out, 0);
    let ran = std::fs::read_to_string(&runs).unwrap_or_default();
    assert_eq!(ran.lines().count(), 1, "credential_process ran {ran:?}");
}
