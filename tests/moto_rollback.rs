//! Rollback end to end against moto: the lists name exactly the run's detaches, the shell script
//! (run for real by sh, against a recording `aws`) attaches the same set, and `rollback --apply`
//! restores exactly the seeded state, once.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::Value;

type Triple = (String, String, String);

async fn direct_policies(account: &str, users: &[&str]) -> BTreeSet<Triple> {
    let s = Seeder::new(account).await;
    let mut out = BTreeSet::new();
    for u in users {
        for p in s.user_policies(u).await {
            out.insert((account.to_owned(), u.to_string(), p));
        }
    }
    out
}

const USERS: &[&str] = &["alice", "svc+deploy=ci,ops.bot@corp-x_y", "bob"];

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn rollback_lists_and_restores_exactly_what_apply_detached() {
    let ids = ["100000000301", "100000000302"];
    let before = block_on(async {
        let mut all = BTreeSet::new();
        for id in ids {
            let s = Seeder::new(id).await;
            let deploy = s.policy("Deploy", "/team/").await;
            s.group("ops", &[&deploy, READ_ONLY]).await;
            s.user("alice", &["ops"], &[&deploy, READ_ONLY, VIEW_ONLY])
                .await;
            s.user(USERS[1], &["ops"], &[&deploy]).await;
            s.user("bob", &[], &[READ_ONLY]).await;
            all.extend(direct_policies(id, USERS).await);
        }
        all
    });
    let w = Workdir::new(&format!(
        "[[account]]\nid = \"{}\"\nname = \"prod\"\n\n[[account]]\nid = \"{}\"\nexternal_id = \"ext-42\"\n",
        ids[0], ids[1]
    ));
    assert_exit(&w.iamsweep(&["apply", "--yes"]), 0);
    let detached: BTreeSet<Triple> = {
        let conn = rusqlite::Connection::open(w.db()).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT account_id, user_name, policy_arn FROM actions WHERE status = 'detached'",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(detached.len(), 6, "3 redundant per account");

    // JSON and CSV list exactly the run's detaches.
    let json = w.iamsweep(&["rollback", "1", "--format", "json"]);
    assert_exit(&json, 0);
    let v: Value = serde_json::from_str(&stdout(&json)).unwrap();
    let listed: BTreeSet<Triple> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["account_id"].as_str().unwrap().to_owned(),
                i["user_name"].as_str().unwrap().to_owned(),
                i["policy_arn"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, detached);
    let csv = w.iamsweep(&["rollback", "1", "--format", "csv"]);
    assert_exit(&csv, 0);
    let text = stdout(&csv);
    assert_eq!(
        text.lines().count(),
        7,
        "a header and one line per detach:\n{text}"
    );
    assert!(
        text.contains(&format!("\"{}\"", USERS[1])),
        "the name with commas is quoted:\n{text}"
    );

    // The sh script, run by sh against a recording `aws`, attaches the same set with the
    // credentials of each account's role.
    let script = w.iamsweep(&["rollback", "1"]);
    assert_exit(&script, 0);
    let shim = tempfile::tempdir().unwrap();
    let log = shim.path().join("calls.log");
    let aws = shim.path().join("aws");
    std::fs::write(
        &aws,
        "#!/bin/sh\n\
         for a in \"$@\"; do printf '%s\\037' \"$a\" >> \"$AWS_SHIM_LOG\"; done\n\
         printf 'key=%s\\n' \"${AWS_ACCESS_KEY_ID:-}\" >> \"$AWS_SHIM_LOG\"\n\
         case \"$1 $2\" in\n\
           'sts assume-role') echo 'AKIAROLLBACK SECRET TOKEN' ;;\n\
           'iam list-attached-user-policies') echo 1 ;;\n\
         esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&aws, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script_path = shim.path().join("rollback.sh");
    std::fs::write(&script_path, stdout(&script)).unwrap();
    let ran = std::process::Command::new("sh")
        .arg(&script_path)
        .env(
            "PATH",
            format!(
                "{}:{}",
                shim.path().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .env("AWS_SHIM_LOG", &log)
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .unwrap();
    assert_exit(&ran, 0);
    let calls = std::fs::read_to_string(&log).unwrap();
    let mut attached = BTreeSet::new();
    let mut assumed = Vec::new();
    let account_of_role = |arn: &str| arn.split(':').nth(4).unwrap().to_owned();
    let mut current = String::new();
    for line in calls.lines() {
        let (args, key) = line.rsplit_once("key=").unwrap();
        let args: Vec<&str> = args.split('\u{1f}').filter(|a| !a.is_empty()).collect();
        // Every call names the partition's region, whatever the profile's is.
        assert!(
            args.windows(2).any(|w| w == ["--region", "us-east-1"]),
            "{args:?}"
        );
        match &args[..2] {
            ["sts", "assume-role"] => {
                current = account_of_role(args[3]);
                assumed.push(args.join(" "));
            }
            ["iam", "attach-user-policy"] => {
                assert_eq!(key, "AKIAROLLBACK", "attached with the role's credentials");
                assert_eq!((args[2], args[4]), ("--user-name", "--policy-arn"));
                attached.insert((current.clone(), args[3].to_owned(), args[5].to_owned()));
            }
            _ => {}
        }
    }
    assert_eq!(attached, detached);
    assert_eq!(assumed.len(), 2);
    assert!(assumed[1].contains("--external-id ext-42"), "{assumed:?}");

    // rollback --apply restores the seeded state exactly, as a new run.
    let out = w.iamsweep(&["rollback", "1", "--apply", "--yes"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("6 re-attached"), "{}", stdout(&out));
    let after = block_on(async {
        let mut all = BTreeSet::new();
        for id in ids {
            all.extend(direct_policies(id, USERS).await);
        }
        all
    });
    assert_eq!(after, before);
    assert_eq!(
        w.sql::<i64>(
            "SELECT count(*) FROM actions d JOIN actions a ON a.id = d.rolled_back_by
             WHERE d.status = 'detached' AND a.operation = 'attach' AND a.status = 'attached'
               AND a.request_id IS NOT NULL AND a.undoes = d.id"
        ),
        6
    );
    assert_eq!(
        w.sql::<String>(
            "SELECT kind || ':' || status || ':' || source_run_id FROM runs WHERE id = 2"
        ),
        "rollback:completed:1"
    );

    // Twice is harmless: nothing is left to undo.
    let again = w.iamsweep(&["rollback", "1", "--apply", "--yes"]);
    assert_exit(&again, 0);
    assert!(
        stdout(&again).contains("nothing to roll back"),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        stdout(&w.iamsweep(&["rollback", "1", "--format", "json"])).trim(),
        "[]"
    );

    // history shows both directions; --user and --since filter.
    let h = w.iamsweep(&[
        "history",
        "--format",
        "json",
        "--user",
        "alice",
        "--since",
        "2000-01-01",
    ]);
    assert_exit(&h, 0);
    let v: Value = serde_json::from_str(&stdout(&h)).unwrap();
    let ops: BTreeSet<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, BTreeSet::from(["attach", "detach"]));
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|r| r["user_name"] == "alice")
    );
    assert_exit(&w.iamsweep(&["history", "--since", "yesterday"]), 2);
    let future = w.iamsweep(&["history", "--since", "2999-01-01", "--format", "json"]);
    assert_eq!(stdout(&future).trim(), "[]");
}
