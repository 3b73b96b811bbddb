//! `report --format ocsf` end to end against moto: every event validates with the OCSF models
//! Prowler uses (py-ocsf-models, pinned in the test venv), statuses follow what apply did, and a
//! finding keeps its uid from run to run.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use serde_json::Value;

/// The test venv's python (scripts/moto.sh installs py-ocsf-models beside moto).
fn venv_python() -> String {
    let venv = std::env::var("IAMSWEEP_VENV")
        .unwrap_or_else(|_| format!("{}/.venv", env!("CARGO_MANIFEST_DIR")));
    format!("{venv}/bin/python")
}

/// Validates every event with py-ocsf-models' DetectionFinding; returns how many.
fn validate(w: &Workdir, events: &str) -> usize {
    let path = w.dir.path().join("events.json");
    std::fs::write(&path, events).unwrap();
    let out = Command::new(venv_python())
        .args([
            "-c",
            "import json,sys\n\
             from py_ocsf_models.events.findings.detection_finding import DetectionFinding\n\
             evs = json.load(open(sys.argv[1]))\n\
             for e in evs:\n    DetectionFinding.model_validate(e)\n\
             print(len(evs))",
            path.to_str().unwrap(),
        ])
        .output()
        .expect("run the venv's python (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "py-ocsf-models refused an event: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn ocsf(w: &Workdir, run: &str) -> (String, Vec<Value>) {
    let out = w.iamsweep(&["report", run, "--format", "ocsf"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let events: Vec<Value> = serde_json::from_str(&text).unwrap();
    (text, events)
}

/// (user, policy name) -> the event.
fn by_pair(events: &[Value]) -> BTreeMap<(String, String), Value> {
    events
        .iter()
        .map(|e| {
            let user = e["resources"][0]["name"].as_str().unwrap().to_owned();
            let policy = e["resources"][1]["name"].as_str().unwrap().to_owned();
            ((user, policy), e.clone())
        })
        .collect()
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn ocsf_events_validate_follow_apply_and_keep_their_uid_across_runs() {
    let account = "100000000901";
    block_on(seed_many(account, 3));
    let toml = format!(
        "[[account]]\nid = \"{account}\"\nname = \"ocsf-test\"\nexclude_policies = [\"*/Grant2\"]\n"
    );
    let w = Workdir::new(&toml);
    assert_exit(&w.iamsweep(&["scan"]), 0);
    let (text, scan) = ocsf(&w, "1");
    assert_eq!(scan.len(), 9, "3 users x (Grant1, Grant2, Own)");
    assert_eq!(validate(&w, &text), 9);
    for e in &scan {
        assert_eq!(e["class_uid"], 2004);
        assert_eq!(e["activity_id"], 1);
        assert_eq!(e["type_uid"], 200401);
        assert_eq!(e["category_uid"], 2);
        assert_eq!(e["cloud"]["provider"], "AWS");
        assert_eq!(e["cloud"]["account"]["uid"], account);
        assert_eq!(e["cloud"]["region"], "us-east-1");
        assert_eq!(e["resources"][0]["type"], "AWS::IAM::User");
        assert!(
            e["resources"][0]["uid"]
                .as_str()
                .unwrap()
                .starts_with(&format!("arn:aws:iam::{account}:user/"))
        );
        assert!(
            e["resources"][1]["uid"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:iam::")
        );
        assert_eq!(e["metadata"]["product"]["name"], "iamsweep");
        assert_eq!(e["metadata"]["version"], "1.5.0");
        assert_eq!(
            e["unmapped"]["compliance"]["CIS-AWS-Foundations-Benchmark"][0],
            "1.15"
        );
        assert_eq!(
            e["unmapped"]["compliance"]["AWS-Foundational-Security-Best-Practices"][0],
            "IAM.2"
        );
        assert!(
            e["finding_info"]["title"]
                .as_str()
                .unwrap()
                .contains("user")
        );
        assert!(
            e["time"].as_u64().unwrap() > 1_700_000_000_000,
            "milliseconds"
        );
        assert_eq!(
            e["status_id"], 1,
            "a scan changed nothing: every finding is open"
        );
    }

    assert_exit(
        &w.iamsweep(&["--settle", "1s", "apply", "--run", "1", "--yes"]),
        0,
    );
    let (text, applied) = ocsf(&w, "2");
    assert_eq!(validate(&w, &text), 9);
    let pairs = by_pair(&applied);
    for u in ["user0000", "user0001", "user0002"] {
        let at = |p: &str| &pairs[&(u.to_owned(), p.to_owned())];
        assert_eq!(at("Grant1")["status_id"], 4, "detached: resolved");
        assert!(
            at("Grant1")["status_detail"]
                .as_str()
                .unwrap()
                .contains("detached")
        );
        assert_eq!(at("Grant2")["status_id"], 3, "excluded: suppressed");
        assert!(
            at("Grant2")["status_detail"]
                .as_str()
                .unwrap()
                .contains("excluded")
        );
        assert_eq!(at("Own")["status_id"], 1, "direct-only: open");
        assert_eq!(at("Own")["severity_id"], 3);
        assert_eq!(at("Grant1")["severity_id"], 2);
    }

    // The next scan: what is still there keeps its uid.
    assert_exit(&w.iamsweep(&["scan"]), 0);
    let (text, later) = ocsf(&w, "3");
    assert_eq!(later.len(), 6, "Grant1 is gone");
    assert_eq!(validate(&w, &text), 6);
    let first = by_pair(&scan);
    for (pair, e) in by_pair(&later) {
        assert_eq!(
            e["finding_info"]["uid"], first[&pair]["finding_info"]["uid"],
            "{pair:?}: same account, user and policy, same uid"
        );
    }
    // Keyed by IAM's id of the user, not its name: a user re-created under the name is another.
    let e = &later[0];
    let user_id: String = w.sql(&format!(
        "SELECT user_id FROM findings WHERE id = {}",
        e["unmapped"]["iamsweep"]["finding_id"]
    ));
    assert_eq!(
        e["finding_info"]["uid"],
        format!(
            "iamsweep/{account}/{user_id}/{}",
            e["resources"][1]["uid"].as_str().unwrap()
        )
    );
    eprintln!(
        "one event:\n{}",
        serde_json::to_string_pretty(&applied[0]).unwrap()
    );
}

/// `owner_tag`: the value of each user's tag reaches every output, so a finding reaches the
/// person who can answer for it.
#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn the_owner_tag_reaches_json_csv_html_and_ocsf() {
    let account = "100000000911";
    block_on(async {
        seed_many(account, 2).await;
        let s = Seeder::new(account).await;
        s.iam
            .tag_user()
            .user_name("user0000")
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key("Owner")
                    .value("payments-team@example.com")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
    let w = Workdir::new(&format!(
        "[defaults]\nowner_tag = \"Owner\"\n\n[[account]]\nid = \"{account}\"\n"
    ));
    assert_exit(&w.iamsweep(&["scan"]), 0);
    let owner = "payments-team@example.com";
    let json: Vec<Value> =
        serde_json::from_str(&stdout(&w.iamsweep(&["report", "1", "--format", "json"]))).unwrap();
    for f in &json {
        let want = (f["user_name"] == "user0000").then_some(owner);
        assert_eq!(f["owner"].as_str(), want, "{f}");
    }
    let csv = stdout(&w.iamsweep(&["report", "1", "--format", "csv"]));
    assert!(csv.lines().next().unwrap().ends_with(",owner"), "{csv}");
    assert_eq!(
        csv.lines()
            .filter(|l| l.ends_with(&format!(",{owner}")))
            .count(),
        3,
        "user0000's three findings"
    );
    let html = stdout(&w.iamsweep(&["report", "1", "--format", "html"]));
    assert_eq!(html.matches(&format!("data-owner=\"{owner}\"")).count(), 3);
    assert!(html.contains("id=\"f-owner\""), "the owner filter");
    let (text, events) = ocsf(&w, "1");
    assert_eq!(validate(&w, &text), 6);
    let tagged: Vec<&Value> = events
        .iter()
        .filter(|e| e["resources"][0]["data"]["owner"] == owner)
        .collect();
    assert_eq!(tagged.len(), 3);
    assert_eq!(
        tagged[0]["resources"][0]["labels"][0],
        format!("owner:{owner}")
    );
}
