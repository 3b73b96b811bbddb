//! End to end against moto: `apply` detaches exactly the redundant direct attachments and
//! nothing else, skips what changed since the scan, and refuses to act without consent.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;

/// Everything apply must leave alone or change: per user, direct policies and groups; per
/// group, its policies.
#[derive(Debug, PartialEq, Eq, Clone)]
struct State {
    user_policies: BTreeMap<String, BTreeSet<String>>,
    user_groups: BTreeMap<String, BTreeSet<String>>,
    group_policies: BTreeMap<String, BTreeSet<String>>,
}

async fn state(s: &Seeder, users: &[&str], groups: &[&str]) -> State {
    let mut st = State {
        user_policies: BTreeMap::new(),
        user_groups: BTreeMap::new(),
        group_policies: BTreeMap::new(),
    };
    for u in users {
        st.user_policies
            .insert(u.to_string(), s.user_policies(u).await);
        st.user_groups.insert(u.to_string(), s.user_groups(u).await);
    }
    for g in groups {
        st.group_policies
            .insert(g.to_string(), s.group_policies(g).await);
    }
    st
}

const USERS: &[&str] = &["alice", "bob", "carol", "svc+deploy@ci"];
const GROUPS: &[&str] = &["ops", "dev", "audit"];

/// Seeds one account; returns the redundant (user, policy) pairs.
async fn seed(s: &Seeder) -> BTreeSet<(String, String)> {
    let deploy = s.policy("Deploy", "/team/").await;
    s.group("ops", &[&deploy, READ_ONLY]).await;
    s.group("dev", &[VIEW_ONLY]).await;
    s.group("audit", &[]).await;
    s.user("alice", &["ops", "dev"], &[&deploy, READ_ONLY, VIEW_ONLY])
        .await;
    s.user("bob", &["dev", "audit"], &[READ_ONLY, &deploy])
        .await; // direct-only both
    s.user("carol", &["ops"], &[READ_ONLY]).await;
    s.user("svc+deploy@ci", &["ops"], &[&deploy]).await;
    [
        ("alice", deploy.as_str()),
        ("alice", READ_ONLY),
        ("alice", VIEW_ONLY),
        ("carol", READ_ONLY),
        ("svc+deploy@ci", deploy.as_str()),
    ]
    .iter()
    .map(|(u, p)| (u.to_string(), p.to_string()))
    .collect()
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn apply_detaches_every_redundant_attachment_and_nothing_else() {
    let ids = ["100000000021", "100000000022", "100000000023"];
    let (before, redundant) = block_on(async {
        let mut before = BTreeMap::new();
        let mut redundant = BTreeSet::new();
        for id in ids {
            let s = Seeder::new(id).await;
            for (u, p) in seed(&s).await {
                redundant.insert((id.to_owned(), u, p));
            }
            before.insert(id, state(&s, USERS, GROUPS).await);
        }
        (before, redundant)
    });
    let w = Workdir::new(&accounts_toml(&ids));
    let out = w.iamsweep(&["apply", "--yes"]);
    assert_exit(&out, 0);
    let summary = stdout(&out);
    assert!(summary.contains("15 detached"), "{summary}");

    block_on(async {
        for id in ids {
            let s = Seeder::new(id).await;
            let after = state(&s, USERS, GROUPS).await;
            let mut expected = before[id].clone();
            for (acct, u, p) in &redundant {
                if acct == id {
                    expected.user_policies.get_mut(u).unwrap().remove(p);
                }
            }
            // Direct-only attachments, memberships and group policies exactly as before.
            assert_eq!(after, expected, "account {id}");
        }
    });

    // One detached action per redundant finding, each with its AWS request id.
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT account_id, user_name, policy_arn, request_id FROM actions WHERE status = 'detached'")
        .unwrap();
    let mut journaled = BTreeSet::new();
    for row in stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .unwrap()
    {
        let (a, u, p, request_id) = row.unwrap();
        assert!(
            request_id.is_some_and(|r| !r.is_empty()),
            "no request id for {u} {p}"
        );
        assert!(journaled.insert((a, u, p)), "detached twice");
    }
    assert_eq!(journaled, redundant);
    assert_eq!(w.sql::<i64>("SELECT count(*) FROM actions"), 15);

    // report --format json shows each action's status; direct-only findings have none.
    let report = w.iamsweep(&["report", "--format", "json"]);
    assert_exit(&report, 0);
    let v: Value = serde_json::from_str(&stdout(&report)).unwrap();
    for f in v.as_array().unwrap() {
        match f["kind"].as_str().unwrap() {
            "redundant_direct" => assert_eq!(f["action"]["status"], "detached", "{f}"),
            _ => assert!(f["action"].is_null(), "{f}"),
        }
    }
    assert_eq!(v.as_array().unwrap().len(), 21);

    // A second apply finds nothing left to do.
    let again = w.iamsweep(&["apply", "--yes"]);
    assert_exit(&again, 0);
    assert_eq!(
        w.sql::<i64>("SELECT redundant_count FROM run_accounts WHERE run_id = 2 LIMIT 1"),
        0
    );
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn findings_no_longer_covered_since_the_scan_are_skipped_not_detached() {
    let id = "100000000031";
    let deploy = block_on(async {
        let s = Seeder::new(id).await;
        let deploy = s.policy("Deploy", "/").await;
        s.group("ops", &[&deploy, READ_ONLY]).await;
        s.group("dev", &[VIEW_ONLY]).await;
        s.user("alice", &["ops"], &[&deploy, READ_ONLY]).await;
        s.user("bob", &["dev"], &[VIEW_ONLY]).await;
        s.user("carol", &["ops"], &[READ_ONLY]).await;
        deploy
    });
    let w = Workdir::new(&accounts_toml(&[id]));
    assert_exit(&w.iamsweep(&["scan"]), 0);
    block_on(async {
        let s = Seeder::new(id).await;
        // Someone removes the covering policy from a group...
        s.detach_group_policy("ops", &deploy).await;
        // ...and, separately, a user from their covering group.
        s.remove_user_from_group("dev", "bob").await;
    });
    let out = w.iamsweep(&["apply", "--run", "1", "--yes"]);
    assert_exit(&out, 0);
    let rows: Vec<(String, String, String)> = {
        let conn = rusqlite::Connection::open(w.db()).unwrap();
        let mut stmt = conn
            .prepare("SELECT user_name, policy_arn, status || ':' || coalesce(reason, '') FROM actions WHERE run_id = 2 ORDER BY 1, 2")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        rows,
        vec![
            (
                "alice".into(),
                deploy.clone(),
                "skipped:no_longer_covered".into()
            ),
            ("alice".into(), READ_ONLY.into(), "detached:".into()),
            (
                "bob".into(),
                VIEW_ONLY.into(),
                "skipped:no_longer_covered".into()
            ),
            ("carol".into(), READ_ONLY.into(), "detached:".into()),
        ]
    );
    block_on(async {
        let s = Seeder::new(id).await;
        assert_eq!(
            s.user_policies("alice").await,
            BTreeSet::from([deploy.clone()])
        );
        assert_eq!(
            s.user_policies("bob").await,
            BTreeSet::from([VIEW_ONLY.to_owned()])
        );
    });
    // The report of the apply run shows the scan's findings with this run's actions.
    let report = w.iamsweep(&["report", "2", "--format", "json"]);
    let v: Value = serde_json::from_str(&stdout(&report)).unwrap();
    let skipped = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"]["status"] == "skipped")
        .count();
    assert_eq!(skipped, 2);
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn apply_without_yes_and_without_a_terminal_changes_nothing() {
    let id = "100000000041";
    block_on(async {
        let s = Seeder::new(id).await;
        s.group("ops", &[READ_ONLY]).await;
        s.user("alice", &["ops"], &[READ_ONLY]).await;
    });
    let w = Workdir::new(&accounts_toml(&[id]));
    let out = w.iamsweep(&["apply"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    block_on(async {
        let s = Seeder::new(id).await;
        assert_eq!(s.user_policies("alice").await.len(), 1);
    });
    assert!(!w.db().exists(), "nothing at all was started");
}
