//! scripts/iamsweep-role.yaml is valid YAML whose policy documents follow IAM's JSON policy
//! grammar and allow exactly the IAM actions iamsweep calls with the role: collected from the
//! adapter's own list of operations, so the two cannot drift.

use std::collections::BTreeSet;

use iamsweep::aws::{Needed, Op};
use serde_json::Value;

fn template() -> Value {
    let text = std::fs::read_to_string("scripts/iamsweep-role.yaml").unwrap();
    let yaml: serde_norway::Value = serde_norway::from_str(&text).expect("the template is YAML");
    serde_json::to_value(yaml).unwrap()
}

/// A policy document in IAM's grammar; returns its actions.
fn policy_actions(doc: &Value) -> BTreeSet<String> {
    assert_eq!(doc["Version"], "2012-10-17", "{doc}");
    let statements = doc["Statement"].as_array().expect("Statement is a list");
    let mut actions = BTreeSet::new();
    for st in statements {
        let keys: BTreeSet<&str> = st.as_object().unwrap().keys().map(String::as_str).collect();
        let allowed: BTreeSet<&str> = [
            "Sid",
            "Effect",
            "Action",
            "Resource",
            "Condition",
            "Principal",
        ]
        .into();
        assert!(keys.is_subset(&allowed), "unknown statement keys {keys:?}");
        assert!(
            matches!(st["Effect"].as_str(), Some("Allow" | "Deny")),
            "{st}"
        );
        if let Some(sid) = st["Sid"].as_str() {
            assert!(sid.chars().all(|c| c.is_ascii_alphanumeric()), "Sid {sid}");
        }
        let list = match &st["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
            other => panic!("Action must be a string or a list: {other}"),
        };
        for a in list {
            let (service, name) = a.split_once(':').expect("service:Action");
            assert!(
                !service.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "{a}"
            );
            actions.insert(a);
        }
        assert!(
            st.get("Resource").is_some() || st.get("Principal").is_some(),
            "a statement names its resource: {st}"
        );
    }
    actions
}

fn needed(which: Needed) -> BTreeSet<String> {
    Op::ALL
        .iter()
        .filter(|op| op.needed_by_member_role() == Some(which))
        .map(|op| op.action())
        .collect()
}

#[test]
fn the_role_allows_exactly_the_calls_iamsweep_makes() {
    let t = template();
    let role = &t["Resources"]["IamSweepRole"]["Properties"];
    let policies = role["Policies"].as_array().unwrap();
    let scan = &policies[0];
    assert_eq!(scan["PolicyName"], "iamsweep-scan");
    assert_eq!(
        policy_actions(&scan["PolicyDocument"]),
        needed(Needed::Scan)
    );
    // The apply policy sits behind the Mode=apply condition.
    let apply = &policies[1]["Fn::If"];
    assert_eq!(apply[0], "ApplyMode");
    assert_eq!(apply[1]["PolicyName"], "iamsweep-apply");
    assert_eq!(
        policy_actions(&apply[1]["PolicyDocument"]),
        needed(Needed::Apply)
    );
    // Publishing sits behind Publish=true, on the account's own default product only.
    let publish = &policies[2]["Fn::If"];
    assert_eq!(publish[0], "PublishAllowed");
    assert_eq!(
        policy_actions(&publish[1]["PolicyDocument"]),
        needed(Needed::Publish)
    );
    assert!(
        publish[1]["PolicyDocument"]["Statement"][0]["Resource"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .ends_with(":product/${AWS::AccountId}/default")
    );
    // Writes only on users.
    let statements = apply[1]["PolicyDocument"]["Statement"].as_array().unwrap();
    let writes = statements
        .iter()
        .find(|s| s["Action"].to_string().contains("DetachUserPolicy"))
        .unwrap();
    assert!(
        writes["Resource"]["Fn::Sub"]
            .as_str()
            .unwrap()
            .ends_with(":user/*")
    );
    // Trust: one principal, sts:AssumeRole only.
    let trust = &role["AssumeRolePolicyDocument"];
    assert_eq!(
        policy_actions(trust),
        BTreeSet::from(["sts:AssumeRole".to_owned()])
    );
}

#[test]
fn every_member_role_operation_is_in_the_template() {
    // A new IAM call in the adapter without a template change fails here.
    let all: BTreeSet<String> = Op::ALL
        .iter()
        .filter(|op| op.service() == "iam")
        .map(|op| op.action())
        .collect();
    let t = template();
    let policies = t["Resources"]["IamSweepRole"]["Properties"]["Policies"]
        .as_array()
        .unwrap();
    let mut granted = policy_actions(&policies[0]["PolicyDocument"]);
    granted.extend(policy_actions(&policies[1]["Fn::If"][1]["PolicyDocument"]));
    assert_eq!(granted, all);
}
