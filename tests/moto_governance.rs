//! Governed sweeps end to end against moto: a cap per run (`--max-detaches`), exceptions that
//! expire, and reviewed plans applied exactly.

mod common;

use std::collections::BTreeSet;

use common::*;

const USERS: usize = 10;

/// Two accounts of `USERS` users each, every user holding Grant1 and Grant2 directly and
/// through group `ops` (2 redundant) and `Own` directly only.
fn scenario(first: u64) -> (Workdir, Vec<String>) {
    let accounts: Vec<String> = (0..2).map(|i| (first + i).to_string()).collect();
    block_on(async {
        for a in &accounts {
            seed_many(a, USERS).await;
        }
    });
    let ids: Vec<&str> = accounts.iter().map(String::as_str).collect();
    (Workdir::new(&accounts_toml(&ids)), accounts)
}

/// Direct policies still held, over every user of every account.
fn direct_left(accounts: &[String]) -> usize {
    block_on(async {
        let mut n = 0;
        for a in accounts {
            let s = Seeder::new(a).await;
            for i in 0..USERS {
                n += s.user_policies(&format!("user{i:04}")).await.len();
            }
        }
        n
    })
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_capped_apply_detaches_exactly_n_and_the_printed_command_finishes() {
    let (w, accounts) = scenario(100000000801);
    let redundant = 2 * USERS * accounts.len();
    assert_exit(&w.iamsweep(&["scan"]), 0);
    let out = w.iamsweep(&[
        "--settle",
        "1s",
        "apply",
        "--run",
        "1",
        "--yes",
        "--max-detaches",
        "7",
    ]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE run_id = 2 AND status = 'detached'"),
        7
    );
    assert_eq!(
        direct_left(&accounts),
        3 * USERS * accounts.len() - 7,
        "AWS agrees"
    );
    assert_eq!(
        w.sql::<String>("SELECT status FROM runs WHERE id = 2"),
        "completed",
        "a cap is not a failure"
    );
    let left = redundant - 7;
    assert!(
        text.contains(&format!("{left} findings of run 1 are left")),
        "{text}"
    );
    // The command it prints continues: run it as printed (minus the --db path).
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("cap: "))
        .nth(1)
        .expect("the continuing command")
        .trim()
        .to_owned();
    assert!(
        line.ends_with("apply --run 1 --yes --max-detaches 7"),
        "{line}"
    );
    let mut made = 7;
    for run in 3.. {
        let out = w.iamsweep(&[
            "--settle",
            "1s",
            "apply",
            "--run",
            "1",
            "--yes",
            "--max-detaches",
            "7",
        ]);
        assert_exit(&out, 0);
        let now: i64 = w.sql(&format!(
            "SELECT count(*) FROM actions WHERE run_id = {run} AND status = 'detached'"
        ));
        assert!(now <= 7, "run {run}: {now} detached");
        made += now as usize;
        let text = stdout(&out);
        if !text.contains("cap: ") {
            assert_eq!(
                made, redundant,
                "it stopped saying so with findings left: {text}"
            );
            break;
        }
        // What is left counts what the earlier runs detached too.
        assert!(
            text.contains(&format!("{} findings of run 1 are left", redundant - made)),
            "run {run}, {made} made: {text}"
        );
        assert!(run < 10, "the cap never let the sweep finish");
    }
    assert_eq!(made, redundant, "every redundant attachment once");
    // Nothing detached twice: runs 3.. did not send again what run 2 detached.
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE status <> 'detached'"),
        0,
        "{:?}",
        w.rows("SELECT run_id || ' ' || status || ' ' || coalesce(reason, '') FROM actions WHERE status <> 'detached'")
    );
    assert_eq!(
        direct_left(&accounts),
        USERS * accounts.len(),
        "only Own is left"
    );
    let kept: BTreeSet<String> = block_on(async {
        Seeder::new(&accounts[0])
            .await
            .user_groups("user0000")
            .await
    });
    assert_eq!(kept, BTreeSet::from(["ops".to_owned()]), "membership kept");
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_live_exception_keeps_its_pair_an_expired_one_is_swept_and_fail_on_ignores_the_live_one() {
    let accounts: Vec<String> = vec!["100000000811".into(), "100000000812".into()];
    block_on(async {
        for a in &accounts {
            seed_many(a, 3).await;
        }
    });
    let (a, b) = (accounts[0].as_str(), accounts[1].as_str());
    let toml = format!(
        "{}\n[[exception]]\naccounts = [\"{a}\"]\nusers = [\"USER0001\"]\npolicies = [\"arn:aws:iam::*:policy/Grant1\"]\nreason = \"CHG-1234: the deploy pipeline still needs it\"\nowner = \"platform@example.com\"\nexpires = 2099-12-31\n\n[[exception]]\nusers = [\"user0002\"]\nreason = \"CHG-1000: ended\"\nowner = \"old-team@example.com\"\nexpires = 2020-01-31\n",
        accounts_toml(&[a, b])
    );
    let w = Workdir::new(&toml);
    // Lines: 2 accounts (2 lines each, a blank between) = 5, blank, then the tables.
    let scan = w.iamsweep(&["scan"]);
    assert_exit(&scan, 0);
    assert!(
        stderr(&scan).contains(":15: [[exception]] of old-team@example.com expired 2020-01-31"),
        "{}",
        stderr(&scan)
    );

    let report: serde_json::Value =
        serde_json::from_str(&stdout(&w.iamsweep(&["report", "1", "--format", "json"]))).unwrap();
    let excepted: Vec<&serde_json::Value> = report
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["exception"].is_null())
        .collect();
    assert_eq!(excepted.len(), 1, "only user0001's Grant1 in {a}");
    assert_eq!(excepted[0]["account_id"], a);
    assert_eq!(excepted[0]["user_name"], "user0001");
    assert_eq!(
        excepted[0]["exception"]["reason"],
        "CHG-1234: the deploy pipeline still needs it"
    );
    assert_eq!(excepted[0]["exception"]["owner"], "platform@example.com");
    assert_eq!(excepted[0]["exception"]["expires"], "2099-12-31");
    assert_eq!(excepted[0]["exception"]["line"], 7);

    let html = stdout(&w.iamsweep(&["report", "1", "--format", "html"]));
    assert!(
        html.contains(
            "exception until 2099-12-31 (platform@example.com): CHG-1234: the deploy pipeline still needs it"
        ),
        "the HTML report shows the exception"
    );
    let table = stdout(&w.iamsweep(&["report", "1"]));
    assert!(
        table
            .lines()
            .any(|l| l.contains("user0001") && l.contains("Grant1") && l.ends_with("exception")),
        "{table}"
    );

    let listing = w.iamsweep(&["exceptions"]);
    assert_exit(&listing, 0);
    eprintln!("{}", stdout(&listing));
    let rows: serde_json::Value =
        serde_json::from_str(&stdout(&w.iamsweep(&["exceptions", "--format", "json"]))).unwrap();
    assert_eq!(rows[0]["state"], "live");
    assert_eq!(rows[0]["findings"], 1);
    assert_eq!(rows[1]["state"], "expired");
    assert_eq!(
        rows[1]["findings"], 6,
        "user0002: 2 redundant + 1 direct-only, in each account"
    );

    let out = w.iamsweep(&["--settle", "1s", "apply", "--run", "1", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(
        w.rows(
            "SELECT account_id || ' ' || user_name || ' ' || status || ' ' || coalesce(reason, '')
             FROM actions WHERE status <> 'detached'"
        ),
        vec![format!("{a} user0001 skipped exception")]
    );
    let grant1 = format!("arn:aws:iam::{a}:policy/Grant1");
    block_on(async {
        let s = Seeder::new(a).await;
        assert!(
            s.user_policies("user0001").await.contains(&grant1),
            "the excepted pair is still attached"
        );
        assert!(
            !s.user_policies("user0002").await.contains(&grant1),
            "the expired exception no longer protects user0002"
        );
    });

    // Only the excepted finding is left: --fail-on any does not fail on it.
    let gate = w.iamsweep(&["scan", "--fail-on", "any"]);
    assert_exit(&gate, 0);
    assert!(
        stdout(&gate).contains("no redundant finding (1 more covered by a live [[exception]]"),
        "{}",
        stdout(&gate)
    );
    // diff carries the exception too.
    let diff: serde_json::Value = serde_json::from_str(&stdout(&w.iamsweep(&[
        "diff",
        "1",
        "3",
        "--unchanged",
        "--format",
        "json",
    ])))
    .unwrap();
    let kept: Vec<&serde_json::Value> = diff
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["user_name"] == "user0001" && c["account_id"] == a && c["kind"] == "redundant_direct"
        })
        .filter(|c| c["policy_arn"] == grant1.as_str())
        .collect();
    assert_eq!(kept.len(), 1, "{diff}");
    assert_eq!(kept[0]["change"], "unchanged");
    assert_eq!(kept[0]["exception"]["owner"], "platform@example.com");
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_reviewed_plan_with_half_its_items_deleted_detaches_exactly_that_half() {
    use sha2::Digest;
    let (w, accounts) = scenario(100000000821);
    assert_exit(&w.iamsweep(&["scan"]), 0);
    let out = w.iamsweep(&["plan", "1"]);
    assert_exit(&out, 0);
    let mut plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let items = plan["items"].as_array().unwrap().clone();
    assert_eq!(
        items.len(),
        2 * USERS * accounts.len(),
        "every redundant pair"
    );
    for key in ["finding_id", "account_id", "user_name", "policy_arn"] {
        assert!(items.iter().all(|i| !i[key].is_null()), "{key}");
    }
    // The reviewer approves every second item.
    let kept: Vec<serde_json::Value> = items.iter().step_by(2).cloned().collect();
    plan["items"] = serde_json::Value::Array(kept.clone());
    let text = serde_json::to_string_pretty(&plan).unwrap();
    let path = w.dir.path().join("reviewed.json");
    std::fs::write(&path, &text).unwrap();

    let out = w.iamsweep(&[
        "--settle",
        "1s",
        "apply",
        "--plan",
        path.to_str().unwrap(),
        "--yes",
    ]);
    assert_exit(&out, 0);
    let mut want: Vec<i64> = kept
        .iter()
        .map(|i| i["finding_id"].as_i64().unwrap())
        .collect();
    want.sort_unstable();
    let got: Vec<i64> = w
        .rows("SELECT finding_id FROM actions WHERE run_id = 2 AND status = 'detached' ORDER BY finding_id")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(got, want, "exactly the approved items");
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE run_id = 2"),
        want.len() as i64
    );
    assert_eq!(
        direct_left(&accounts),
        3 * USERS * accounts.len() - want.len(),
        "AWS agrees"
    );
    let digest = format!("{:x}", sha2::Sha256::digest(text.as_bytes()));
    assert_eq!(
        w.sql::<String>("SELECT plan_digest FROM runs WHERE id = 2"),
        digest
    );
    let runs: serde_json::Value =
        serde_json::from_str(&stdout(&w.iamsweep(&["runs", "--format", "json"]))).unwrap();
    assert_eq!(runs[1]["plan_digest"], digest.as_str());
    eprintln!(
        "plan (first item of {}):\n{}",
        items.len(),
        serde_json::to_string_pretty(&items[0]).unwrap()
    );
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_tampered_plan_or_one_from_another_database_changes_nothing_and_exits_2() {
    let (w, accounts) = scenario(100000000831);
    assert_exit(&w.iamsweep(&["scan"]), 0);
    let out = w.iamsweep(&["plan", "1", "--format", "csv"]);
    assert_exit(&out, 0);
    let csv = stdout(&out);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * USERS * accounts.len());
    let apply = |name: &str, text: &str| {
        let path = w.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        w.iamsweep(&[
            "--settle",
            "1s",
            "apply",
            "--plan",
            path.to_str().unwrap(),
            "--yes",
        ])
    };
    // An item that is no finding: user0001's row turned into bob's.
    let tampered = csv.replacen(",user0001,", ",bob,", 1);
    let out = apply("tampered.csv", &tampered);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("line ")
            && stderr(&out).contains("user bob")
            && stderr(&out).contains("is not a redundant finding of run 1")
            && stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    // The same run id from another database (another start time).
    let started: String = w.sql("SELECT started_at FROM runs WHERE id = 1");
    let foreign = csv.replace(&started, "2020-01-01T00:00:00.000Z");
    let out = apply("foreign.csv", &foreign);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("another database"),
        "{}",
        stderr(&out)
    );
    // Nothing was changed: no run, no journal row, every attachment still there.
    assert_eq!(w.sql::<i64>("SELECT count(*) FROM runs"), 1);
    assert_eq!(w.sql::<i64>("SELECT count(*) FROM actions"), 0);
    assert_eq!(direct_left(&accounts), 3 * USERS * accounts.len());

    // The untouched CSV with its first ten rows kept applies exactly those.
    let kept: String = lines[..11].join("\n") + "\n";
    let out = apply("kept.csv", &kept);
    assert_exit(&out, 0);
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE status = 'detached'"),
        10
    );
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn resume_honours_the_cap_the_interrupted_run_started_with() {
    let (w, accounts) = scenario(100000000841);
    // Paced so that Ctrl-C lands mid-run.
    let mut child = spawn_iamsweep(
        &w.db(),
        &w.accounts(),
        &[
            "--max-rate",
            "20",
            "--settle",
            "1s",
            "apply",
            "--yes",
            "--max-detaches",
            "15",
        ],
    );
    wait_until(
        &w.db(),
        "SELECT count(*) FROM actions WHERE status = 'detached'",
        |n| n >= 3,
        &mut child,
    );
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 130);
    let before: i64 = w.sql("SELECT count(*) FROM actions WHERE status = 'detached'");
    assert!(before < 15, "interrupted before the cap: {before}");

    // `resume` takes no cap flag: the run's own (kept in the database) still holds.
    let out = w.iamsweep(&["resume", "1"]);
    assert_exit(&out, 0);
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE run_id = 1 AND status = 'detached'"),
        15,
        "{before} before the interruption, the rest up to the cap after"
    );
    assert_eq!(
        direct_left(&accounts),
        3 * USERS * accounts.len() - 15,
        "AWS agrees"
    );
    assert_eq!(
        w.sql::<String>("SELECT status FROM runs WHERE id = 1"),
        "completed"
    );
}

/// A capped apply of a reviewed plan says how to continue with the same plan, never with the
/// whole scan: what the reviewers deleted stays attached however often the command is run.
#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_capped_plan_continues_with_the_plan_and_never_detaches_what_review_removed() {
    let (w, accounts) = scenario(100000000851);
    assert_exit(&w.iamsweep(&["scan"]), 0);
    let mut plan: serde_json::Value =
        serde_json::from_str(&stdout(&w.iamsweep(&["plan", "1"]))).unwrap();
    let kept: Vec<serde_json::Value> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .step_by(4)
        .cloned()
        .collect();
    plan["items"] = serde_json::Value::Array(kept.clone());
    let path = w.dir.path().join("reviewed.json");
    std::fs::write(&path, serde_json::to_string(&plan).unwrap()).unwrap();
    let args = [
        "--settle",
        "1s",
        "apply",
        "--plan",
        path.to_str().unwrap(),
        "--yes",
        "--max-detaches",
        "4",
    ];
    let out = w.iamsweep(&args);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let left = kept.len() - 4;
    assert!(
        text.contains(&format!("{left} findings of run 1 are left")),
        "{text}"
    );
    assert!(
        text.contains("apply --plan "),
        "continues with the plan: {text}"
    );
    for _ in 0..5 {
        let out = w.iamsweep(&args);
        assert_exit(&out, 0);
        if !stdout(&out).contains("cap: ") {
            break;
        }
    }
    let mut want: Vec<i64> = kept
        .iter()
        .map(|i| i["finding_id"].as_i64().unwrap())
        .collect();
    want.sort_unstable();
    let got: Vec<i64> = w
        .rows("SELECT finding_id FROM actions WHERE status = 'detached' ORDER BY finding_id")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        got, want,
        "exactly the approved items, over every continuation"
    );
    assert_eq!(
        direct_left(&accounts),
        3 * USERS * accounts.len() - want.len()
    );
}

/// `plan ID` of an apply run plans the scan it applied, without what it already detached, and
/// `apply --plan` takes that plan (a plan naming the apply run was refused as "from another
/// database"); `apply --run ID` of that apply run continues the same scan.
#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_plan_of_an_apply_run_plans_its_scan_and_applies() {
    let (w, accounts) = scenario(100000000861);
    let redundant = 2 * USERS * accounts.len();
    assert_exit(&w.iamsweep(&["scan"]), 0);
    let capped = ["--settle", "1s", "apply", "--run", "1", "--yes"];
    assert_exit(
        &w.iamsweep(&[&capped[..], &["--max-detaches", "3"]].concat()),
        0,
    );
    let out = w.iamsweep(&["plan", "2"]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("run 2 applied the findings of run 1"),
        "{}",
        stderr(&out)
    );
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["run_id"], 1);
    assert_eq!(
        plan["items"].as_array().unwrap().len(),
        redundant - 3,
        "what run 2 detached is not planned again"
    );
    let path = w.dir.path().join("plan.json");
    std::fs::write(&path, stdout(&out)).unwrap();
    let out = w.iamsweep(&[
        "--settle",
        "1s",
        "apply",
        "--plan",
        path.to_str().unwrap(),
        "--yes",
        "--max-detaches",
        "4",
    ]);
    assert_exit(&out, 0);
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE run_id = 3 AND status = 'detached'"),
        4
    );
    // `apply --run 3` (an apply run) continues scan 1.
    let out = w.iamsweep(&["--settle", "1s", "apply", "--run", "3", "--yes"]);
    assert_exit(&out, 0);
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE run_id = 4 AND status = 'detached'"),
        (redundant - 7) as i64
    );
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE status <> 'detached'"),
        0
    );
    assert_eq!(
        direct_left(&accounts),
        USERS * accounts.len(),
        "only Own is left"
    );
}
