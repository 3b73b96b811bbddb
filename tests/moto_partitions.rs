//! GovCloud and China end to end against moto, which keeps each partition's IAM apart and picks
//! the partition from the region a request is signed for: a client signed for us-east-1 would
//! see an empty account. Scan, apply and the rollback script in each partition.

mod common;

use std::collections::BTreeSet;

use aws_credential_types::Credentials;
use aws_sdk_iam::config::{BehaviorVersion, Region};
use common::*;
use serde_json::Value;

/// An IAM client inside `account`, signed for `region` (and so in its partition, for moto).
async fn iam_in(account: &str, partition: &str, region: &str) -> aws_sdk_iam::Client {
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(moto_url())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "t"))
            .build(),
    );
    let out = sts
        .assume_role()
        .role_arn(format!("arn:{partition}:iam::{account}:role/seed"))
        .role_session_name("seed")
        .send()
        .await
        .expect("assume role in moto");
    let c = out.credentials().expect("credentials");
    let creds = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "seed",
    );
    aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(moto_url())
            .credentials_provider(creds)
            .build(),
    )
}

/// alice holds Grant directly and through group ops; bob holds it directly only.
async fn seed(iam: &aws_sdk_iam::Client) -> String {
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#;
    let arn = iam
        .create_policy()
        .policy_name("Grant")
        .policy_document(doc)
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    iam.create_group().group_name("ops").send().await.unwrap();
    iam.attach_group_policy()
        .group_name("ops")
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    for user in ["alice", "bob"] {
        iam.create_user().user_name(user).send().await.unwrap();
        iam.attach_user_policy()
            .user_name(user)
            .policy_arn(&arn)
            .send()
            .await
            .unwrap();
    }
    iam.add_user_to_group()
        .group_name("ops")
        .user_name("alice")
        .send()
        .await
        .unwrap();
    arn
}

async fn direct(iam: &aws_sdk_iam::Client, user: &str) -> BTreeSet<String> {
    iam.list_attached_user_policies()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_owned))
        .collect()
}

fn partition_end_to_end(account: &str, partition: &str, region: &str) {
    let (iam, arn) = block_on(async {
        let iam = iam_in(account, partition, region).await;
        let arn = seed(&iam).await;
        (iam, arn)
    });
    assert!(arn.starts_with(&format!("arn:{partition}:iam::{account}:policy/")));
    let w = Workdir::new(&format!(
        "[defaults]\npartition = \"{partition}\"\n\n[[account]]\nid = \"{account}\"\n"
    ));

    let out = w.iamsweep(&["scan"]);
    assert_exit(&out, 0);
    let report = w.iamsweep(&["report", "1", "--format", "json"]);
    let found: BTreeSet<(String, String, String)> = serde_json::from_str::<Value>(&stdout(&report))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["user_name"].as_str().unwrap().to_owned(),
                f["policy_arn"].as_str().unwrap().to_owned(),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        found,
        BTreeSet::from([
            ("alice".into(), arn.clone(), "redundant_direct".into()),
            ("bob".into(), arn.clone(), "direct_only".into()),
        ]),
        "the scan read the account in {partition}"
    );
    assert_eq!(
        w.sql::<String>("SELECT role_arn FROM run_accounts WHERE run_id = 1"),
        format!("arn:{partition}:iam::{account}:role/IamSweepRole")
    );

    let out = w.iamsweep(&["--settle", "1s", "apply", "--yes"]);
    assert_exit(&out, 0);
    // The journal says what happened: alice's detach, settled and post-checked, and exactly
    // that in the rollback list.
    w.assert_journal_settled();
    assert_eq!(
        w.rows("SELECT user_name, policy_arn, status FROM actions WHERE run_id = 2"),
        vec![format!("alice|{arn}|detached")]
    );
    block_on(async {
        assert!(
            direct(&iam, "alice").await.is_empty(),
            "alice's direct attachment is gone"
        );
        assert_eq!(direct(&iam, "bob").await, BTreeSet::from([arn.clone()]));
    });

    let script = stdout(&w.iamsweep(&["rollback", "2"]));
    assert!(
        script.contains(&format!(
            "aws sts assume-role --role-arn arn:{partition}:iam::{account}:role/IamSweepRole --role-session-name iamsweep-rollback --region {region}"
        )),
        "{script}"
    );
    assert!(
        script.contains(&format!(
            "aws iam attach-user-policy --user-name alice --policy-arn {arn} --region {region}"
        )),
        "{script}"
    );
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn govcloud_scan_apply_and_rollback_script() {
    partition_end_to_end("100000000811", "aws-us-gov", "us-gov-west-1");
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn china_scan_apply_and_rollback_script() {
    partition_end_to_end("100000000812", "aws-cn", "cn-north-1");
}
