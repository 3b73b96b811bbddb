//! Organization-wide end to end against moto: an organization with nested OUs and a dozen
//! accounts; the filters resolve to exactly the expected accounts; a scan of the discovered
//! accounts matches the seeded truth; a resume after the organization changed keeps the list the
//! run started with.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_organizations::types::AccountStatus;
use common::*;
use serde_json::Value;

const MANAGEMENT: &str = "100000000501";

struct Org {
    client: aws_sdk_organizations::Client,
    ou: BTreeMap<&'static str, String>,
    /// account name -> id
    accounts: BTreeMap<String, String>,
}

async fn build_org() -> Org {
    // Acting as the management account, like `management_role_arn` makes iamsweep do.
    let client = organizations_for(MANAGEMENT).await;
    client
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("create organization");
    let root = client.list_roots().send().await.unwrap().roots()[0]
        .id()
        .unwrap()
        .to_owned();
    let mut ou = BTreeMap::new();
    ou.insert("root", root.clone());
    for (name, parent) in [
        ("prod", "root"),
        ("web", "prod"),
        ("dev", "root"),
        ("sandbox", "root"),
    ] {
        let id = client
            .create_organizational_unit()
            .parent_id(&ou[parent])
            .name(name)
            .send()
            .await
            .unwrap()
            .organizational_unit()
            .unwrap()
            .id()
            .unwrap()
            .to_owned();
        ou.insert(name, id);
    }
    let mut accounts = BTreeMap::new();
    for (name, place) in [
        ("r1", "root"),
        ("r2", "root"),
        ("p1", "prod"),
        ("p2", "prod"),
        ("p3", "prod"),
        ("w1", "web"),
        ("w2", "web"),
        ("w3", "web"),
        ("d1", "dev"),
        ("d2", "dev"),
        ("s1", "sandbox"),
        ("s2", "sandbox"),
    ] {
        let id = client
            .create_account()
            .account_name(name)
            .email(format!("{name}@example.test"))
            .send()
            .await
            .unwrap()
            .create_account_status()
            .unwrap()
            .account_id()
            .unwrap()
            .to_owned();
        if place != "root" {
            client
                .move_account()
                .account_id(&id)
                .source_parent_id(&root)
                .destination_parent_id(&ou[place])
                .send()
                .await
                .unwrap();
        }
        accounts.insert(name.to_owned(), id);
    }
    client
        .close_account()
        .account_id(&accounts["s2"])
        .send()
        .await
        .unwrap();
    Org {
        client,
        ou,
        accounts,
    }
}

fn resolved(w: &Workdir) -> BTreeMap<String, Value> {
    let out = w.iamsweep(&["accounts", "--format", "json"]);
    assert_exit(&out, 0);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| (a["account_id"].as_str().unwrap().to_owned(), a.clone()))
        .collect()
}

fn toml(org: &Org, filters: &str, extra: &str) -> String {
    let _ = org;
    format!(
        "[organization]\nmanagement_role_arn = \"arn:aws:iam::{MANAGEMENT}:role/OrgReader\"\n{filters}\n{extra}"
    )
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn organization_discovery_filters_scan_and_resume() {
    let org = block_on(build_org());
    let ids = |names: &[&str]| -> BTreeSet<String> {
        names.iter().map(|n| org.accounts[*n].clone()).collect()
    };
    // The management account is a member too (moto, like AWS, lists it).
    let all_active: BTreeSet<String> = {
        let mut s = ids(&[
            "r1", "r2", "p1", "p2", "p3", "w1", "w2", "w3", "d1", "d2", "s1",
        ]);
        s.insert(MANAGEMENT.to_owned());
        s
    };

    // No filter: every ACTIVE account (s2 is closed).
    let w = Workdir::new(&toml(&org, "", ""));
    let all = resolved(&w);
    assert_eq!(all.keys().cloned().collect::<BTreeSet<_>>(), all_active);
    assert_eq!(all[&org.accounts["w2"]]["origin"], "Root/prod/web");
    assert_eq!(all[&org.accounts["w2"]]["name"], "w2");
    assert_eq!(
        all[&org.accounts["p1"]]["role_arn"],
        format!("arn:aws:iam::{}:role/IamSweepRole", org.accounts["p1"])
    );

    // An OU takes its children along; exclusions win.
    let w = Workdir::new(&toml(
        &org,
        &format!("include_ous = [\"{}\"]", org.ou["prod"]),
        "",
    ));
    assert_eq!(
        resolved(&w).keys().cloned().collect::<BTreeSet<_>>(),
        ids(&["p1", "p2", "p3", "w1", "w2", "w3"])
    );
    let w = Workdir::new(&toml(
        &org,
        &format!(
            "include_ous = [\"{}\"]\nexclude_ous = [\"{}\"]\nexclude_accounts = [\"{}\"]",
            org.ou["prod"], org.ou["web"], org.accounts["p3"]
        ),
        "",
    ));
    assert_eq!(
        resolved(&w).keys().cloned().collect::<BTreeSet<_>>(),
        ids(&["p1", "p2"])
    );
    let w = Workdir::new(&toml(&org, "include_inactive = true", ""));
    assert!(resolved(&w).contains_key(&org.accounts["s2"]));

    // Scan the web OU plus an explicit override: seed the truth first.
    let web = ids(&["w1", "w2", "w3"]);
    let truth: BTreeSet<(String, String, String)> = block_on(async {
        let mut t = BTreeSet::new();
        for id in &web {
            let s = Seeder::new(id).await;
            s.group("ops", &[READ_ONLY]).await;
            s.user("alice", &["ops"], &[READ_ONLY]).await;
            s.user("bob", &[], &[READ_ONLY]).await;
            t.insert((id.clone(), "alice".into(), "redundant_direct".into()));
            t.insert((id.clone(), "bob".into(), "direct_only".into()));
        }
        t
    });
    let w = Workdir::new(&toml(
        &org,
        &format!("include_ous = [\"{}\"]", org.ou["web"]),
        &format!(
            "[[account]]\nid = \"{}\"\nname = \"web-two\"\nsession_name = \"audit\"\n",
            org.accounts["w2"]
        ),
    ));
    let listed_now = resolved(&w);
    assert_eq!(
        listed_now.keys().cloned().collect::<BTreeSet<_>>(),
        web,
        "{listed_now:?}"
    );
    // Paced to one call a second, one account at a time, so the kill lands mid-run.
    let mut child = spawn_iamsweep(
        &w.db(),
        &w.accounts(),
        &["--max-rate", "1", "--concurrency", "1", "scan"],
    );
    wait_until(
        &w.db(),
        "SELECT count(*) FROM run_accounts WHERE status = 'completed'",
        |n| n >= 1,
        &mut child,
    );
    signal(&child, "-KILL");
    let _ = child.wait();
    assert_eq!(
        w.sql::<String>("SELECT status FROM runs WHERE id = 1"),
        "running",
        "killed mid-run: {}",
        w.sql::<String>("SELECT group_concat(account_id || ':' || status) FROM run_accounts")
    );

    // The organization changes meanwhile: w3 leaves the OU, d1 joins it.
    block_on(async {
        org.client
            .move_account()
            .account_id(&org.accounts["w3"])
            .source_parent_id(&org.ou["web"])
            .destination_parent_id(&org.ou["dev"])
            .send()
            .await
            .unwrap();
        org.client
            .move_account()
            .account_id(&org.accounts["d1"])
            .source_parent_id(&org.ou["dev"])
            .destination_parent_id(&org.ou["web"])
            .send()
            .await
            .unwrap();
    });
    let out = w.iamsweep(&["resume"]);
    assert_exit(&out, 0);
    // The run kept its own list: the three accounts it started with.
    let conn = rusqlite::Connection::open(w.db()).unwrap();
    let listed: BTreeSet<(String, String, String)> = conn
        .prepare("SELECT account_id, coalesce(origin, '-'), coalesce(session_name, '-') FROM run_accounts WHERE run_id = 1")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: BTreeSet<(String, String, String)> = web
        .iter()
        .map(|id| {
            let session = if *id == org.accounts["w2"] {
                "audit"
            } else {
                "iamsweep"
            };
            (id.clone(), "Root/prod/web".to_owned(), session.to_owned())
        })
        .collect();
    assert_eq!(listed, expected);
    // And the scan matches the seeded truth.
    let report = w.iamsweep(&["report", "1", "--format", "json"]);
    let v: Value = serde_json::from_str(&stdout(&report)).unwrap();
    let got: BTreeSet<(String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["account_origin"], "Root/prod/web");
            (
                f["account_id"].as_str().unwrap().to_owned(),
                f["user_name"].as_str().unwrap().to_owned(),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, truth);
    // A new `accounts` now sees the changed organization.
    let now = resolved(&w);
    assert!(now.contains_key(&org.accounts["d1"]) && !now.contains_key(&org.accounts["w3"]));
    let _ = AccountStatus::Active;
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn doctor_checks_every_account_and_changes_nothing() {
    let (good, mismatch) = ("100000000601", "100000000602");
    block_on(async {
        let s = Seeder::new(good).await;
        s.group("ops", &[READ_ONLY]).await;
        s.user("alice", &["ops"], &[READ_ONLY]).await;
    });
    let w = Workdir::new(&format!(
        "[[account]]\nid = \"{good}\"\nname = \"prod\"\n\n[[account]]\nid = \"{mismatch}\"\nassume_role = false\n"
    ));
    let out = w.iamsweep(&["doctor"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("ok    {good} (prod): role ok, scan read ok")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "FAIL  {mismatch}: cannot use the role: AccountMismatch"
        )),
        "{text}"
    );
    assert!(
        text.contains("2 accounts checked, 1 with problems"),
        "{text}"
    );
    // --apply asks the policy simulator; moto does not implement it, and doctor says so
    // instead of probing with a real detach.
    let out = w.iamsweep(&["doctor", "--apply"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("apply: could not check"),
        "{}",
        stdout(&out)
    );
    block_on(async {
        let s = Seeder::new(good).await;
        assert_eq!(
            s.user_policies("alice").await.len(),
            1,
            "doctor changed nothing"
        );
    });
    assert!(!w.db().exists(), "doctor writes no database");
}

/// The Organizations actions of a walk, as the proxy names them.
const WALK: [&str; 3] = [
    "ListRoots",
    "ListOrganizationalUnitsForParent",
    "ListAccountsForParent",
];

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_throttled_organization_walk_is_paced_retried_and_counted() {
    use common::proxy::{Fault, Proxy};
    use std::time::Duration;

    // An organization of its own: the management account, one in the root, two in an OU.
    let management = "100000000721";
    let members: BTreeSet<String> = block_on(async {
        let client = organizations_for(management).await;
        client
            .create_organization()
            .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
            .send()
            .await
            .expect("create organization");
        let root = client.list_roots().send().await.unwrap().roots()[0]
            .id()
            .unwrap()
            .to_owned();
        let ou = client
            .create_organizational_unit()
            .parent_id(&root)
            .name("prod")
            .send()
            .await
            .unwrap()
            .organizational_unit()
            .unwrap()
            .id()
            .unwrap()
            .to_owned();
        let mut ids = BTreeSet::from([management.to_owned()]);
        for (i, name) in ["t1", "t2", "t3"].into_iter().enumerate() {
            let id = client
                .create_account()
                .account_name(name)
                .email(format!("{name}@throttle.example.test"))
                .send()
                .await
                .unwrap()
                .create_account_status()
                .unwrap()
                .account_id()
                .unwrap()
                .to_owned();
            if i > 0 {
                client
                    .move_account()
                    .account_id(&id)
                    .source_parent_id(&root)
                    .destination_parent_id(&ou)
                    .send()
                    .await
                    .unwrap();
            }
            ids.insert(id);
        }
        ids
    });
    let w = Workdir::new(&format!(
        "[organization]\nmanagement_role_arn = \"arn:aws:iam::{management}:role/OrgReader\"\n"
    ));

    // Organizations refuses every other request, as AWS refuses a burst.
    let proxy = Proxy::start(&moto_url());
    proxy.set_schedule(|seen| {
        (WALK.contains(&seen.action.as_str()) && seen.nth % 2 == 1).then_some(Fault::Throttle)
    });
    let (out, took) = w.iamsweep_via(
        &proxy.url,
        &["accounts", "--format", "json"],
        Duration::from_secs(120),
    );
    assert_exit(&out, 0);
    let listed: BTreeSet<String> = serde_json::from_str::<Value>(&stdout(&out))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, members, "the throttled walk found every account");
    // What iamsweep says it sent is what reached the network, throttled requests included.
    let received = proxy.received();
    let sent = |action: &str| received.get(action).copied().unwrap_or(0);
    let throttled: u64 = proxy.faults().values().sum();
    let walk_calls: u64 = WALK.iter().map(|a| sent(a)).sum();
    assert_eq!(throttled * 2, walk_calls, "{received:?}");
    let line = format!(
        "organization: {} AWS calls (AssumeRole 1, ListRoots {}, ListOrganizationalUnitsForParent {}, ListAccountsForParent {}); {throttled} throttled, 0 failed",
        walk_calls + 1,
        sent("ListRoots"),
        sent("ListOrganizationalUnitsForParent"),
        sent("ListAccountsForParent"),
    );
    assert!(stderr(&out).contains(&line), "{line}\n{}", stderr(&out));
    // Paced at Organizations' rate (4 a second), throttled retries included.
    assert!(
        took >= Duration::from_secs_f64((walk_calls - 1) as f64 / 4.0),
        "{walk_calls} calls in {took:?}"
    );

    // A walk that keeps failing ends the command with exit 1 and the error; no run starts.
    proxy.reset_counts();
    proxy.set_schedule(|seen| (seen.action == "ListAccountsForParent").then_some(Fault::Error500));
    let (out, _) = w.iamsweep_via(&proxy.url, &["scan"], Duration::from_secs(120));
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("error: cannot list the organization's accounts: InternalFailure: injected"),
        "{err}"
    );
    // Retried as a read (4 attempts), then given up.
    assert_eq!(proxy.received()["ListAccountsForParent"], 4);
    assert!(
        err.contains("ListAccountsForParent 4); 0 throttled, 4 failed"),
        "{err}"
    );
    assert_eq!(w.sql::<i64>("SELECT count(*) FROM runs"), 0);
}
