//! `rollback ID` without `--apply`: the re-attach list as a shell script to review, JSON or
//! CSV. It writes the script; it must never run it.

use std::fmt::Write as _;

use super::{csv, json};
use crate::config::{Access, AccountTarget};
use crate::model::Partition;
use crate::store::{DetachState, RollbackItem};

/// `rollback ID --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RollbackFormat {
    Sh,
    Json,
    Csv,
}

/// A string as one POSIX shell word: single-quoted unless it is plainly safe.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=,@:".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The re-attach list for a run's detaches.
pub fn rollback(
    run_id: i64,
    items: &[RollbackItem],
    targets: &[AccountTarget],
    format: RollbackFormat,
) -> String {
    match format {
        RollbackFormat::Json => json(&items),
        RollbackFormat::Csv => {
            let headers = [
                "account_id",
                "account_name",
                "user_name",
                "policy_arn",
                "policy_name",
                "detach_action_id",
                "detached_at",
                "request_id",
                "role_arn",
                "state",
            ];
            let cells: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    vec![
                        i.account_id.clone(),
                        i.account_name.clone().unwrap_or_default(),
                        i.user_name.clone(),
                        i.policy_arn.clone(),
                        i.policy_name.clone(),
                        i.action_id.to_string(),
                        i.detached_at.clone().unwrap_or_default(),
                        i.request_id.clone().unwrap_or_default(),
                        i.role_arn.clone().unwrap_or_default(),
                        i.state.as_str().to_owned(),
                    ]
                })
                .collect();
            csv(&headers, &cells)
        }
        RollbackFormat::Sh => rollback_script(run_id, items, targets),
    }
}

fn rollback_script(run_id: i64, items: &[RollbackItem], targets: &[AccountTarget]) -> String {
    let mut out = String::new();
    let users: std::collections::BTreeSet<(&str, &str)> = items
        .iter()
        .map(|i| (i.account_id.as_str(), i.user_name.as_str()))
        .collect();
    let accounts: Vec<&str> = {
        let mut v: Vec<&str> = items.iter().map(|i| i.account_id.as_str()).collect();
        v.dedup();
        v
    };
    let _ = writeln!(out, "#!/bin/sh");
    let _ = writeln!(
        out,
        "# Re-attach what iamsweep run {run_id} detached: {} policies for {} users in {} accounts.",
        items.len(),
        users.len(),
        accounts.len()
    );
    if items.is_empty() {
        let _ = writeln!(
            out,
            "# Nothing to re-attach: the run made no detach that is not rolled back yet."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "# Review it, then run it with base credentials that may assume each account's role.\n# Or let iamsweep do it, journaled and resumable: iamsweep rollback {run_id} --apply --yes\nset -eu\n"
    );
    out.push_str(
        "# Fails the script when a policy is not attached to its user after the re-attach.\n\
check() {\n  n=$(aws iam list-attached-user-policies --user-name \"$1\" --region \"$3\" \\\n    --query \"length(AttachedPolicies[?PolicyArn=='$2'])\" --output text)\n  [ \"$n\" = 1 ] || { echo \"not attached: $2 to user $1\" >&2; exit 1; }\n}\n",
    );
    for account in accounts {
        let mine: Vec<&RollbackItem> = items.iter().filter(|i| i.account_id == account).collect();
        let name = mine[0]
            .account_name
            .as_deref()
            .map_or(String::new(), |n| format!(" ({n})"));
        let _ = writeln!(
            out,
            "\n# --- account {account}{name}: {} policies\n(",
            mine.len()
        );
        let target = targets.iter().find(|t| t.id.as_str() == account);
        // Every command names the partition's region: the AWS CLI would otherwise take the
        // profile's, or none, and reach STS and IAM of another partition.
        let region = target
            .or(targets.first())
            .map_or(Partition::Aws, |t| t.partition)
            .iam_region();
        match target.map(|t| &t.access) {
            Some(Access::AssumeRole {
                role_arn,
                external_id,
                ..
            }) => {
                let _ = writeln!(
                    out,
                    "  # Credentials for the account: the role run {run_id} used.\n  creds=$(aws sts assume-role --role-arn {} --role-session-name iamsweep-rollback{} --region {region} \\\n    --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text)\n  set -- $creds\n  export AWS_ACCESS_KEY_ID=\"$1\" AWS_SECRET_ACCESS_KEY=\"$2\" AWS_SESSION_TOKEN=\"$3\"",
                    shell_quote(role_arn),
                    external_id.as_deref().map_or(String::new(), |x| format!(
                        " --external-id {}",
                        shell_quote(x)
                    ))
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  # Credentials for the account: run {run_id} used the base credentials as they are\n  # (assume_role = false); run this part with credentials of account {account}."
                );
            }
        }
        for i in &mine {
            match i.state {
                DetachState::Detached => {}
                DetachState::ReattachFailed => {
                    let _ = writeln!(
                        out,
                        "  # the post-check found the group's grant gone and could not re-attach: the user lacks it now"
                    );
                }
                DetachState::Reverting => {
                    let _ = writeln!(
                        out,
                        "  # the post-check found the group's grant gone; its re-attach was under way (not settled)"
                    );
                }
            }
            let _ = writeln!(
                out,
                "  aws iam attach-user-policy --user-name {} --policy-arn {} --region {region}",
                shell_quote(&i.user_name),
                shell_quote(&i.policy_arn)
            );
        }
        for i in &mine {
            let _ = writeln!(
                out,
                "  check {} {} {region}",
                shell_quote(&i.user_name),
                shell_quote(&i.policy_arn)
            );
        }
        out.push_str(")\n");
    }
    let _ = writeln!(
        out,
        "\necho \"re-attached {} policies of iamsweep run {run_id}\"",
        items.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::Filters;
    use crate::model::{AccountId, Partition, PolicyArn};
    use crate::report::{ODD_POLICY, ODD_USER};

    fn item(account: &str, name: Option<&str>, user: &str, policy: &str, id: i64) -> RollbackItem {
        RollbackItem {
            account_id: account.into(),
            account_name: name.map(str::to_owned),
            user_name: user.into(),
            policy_arn: policy.into(),
            policy_name: PolicyArn::new(policy).policy_name().into(),
            action_id: id,
            run_id: 2,
            finding_id: Some(id),
            detached_at: Some("2026-11-27T22:16:06.123Z".into()),
            request_id: Some(format!("req-{id}")),
            role_arn: None,
            user_id: None,
            state: DetachState::Detached,
        }
    }

    fn targets() -> Vec<AccountTarget> {
        vec![
            AccountTarget {
                id: AccountId::parse("111111111111").unwrap(),
                name: Some("prod".into()),
                partition: Partition::Aws,
                access: Access::AssumeRole {
                    role_arn: "arn:aws:iam::111111111111:role/ops/IamSweepRole".into(),
                    external_id: Some("ext:id/7".into()),
                    session_name: "iamsweep".into(),
                    session_seconds: None,
                },
                filters: Filters::default(),
                origin: None,
                owner_tag: None,
            },
            AccountTarget {
                id: AccountId::parse("222222222222").unwrap(),
                name: None,
                partition: Partition::Aws,
                access: Access::BaseCredentials,
                filters: Filters::default(),
                origin: None,
                owner_tag: None,
            },
        ]
    }

    fn items() -> Vec<RollbackItem> {
        vec![
            item("111111111111", Some("prod"), ODD_USER, ODD_POLICY, 7),
            item(
                "111111111111",
                Some("prod"),
                "alice",
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                8,
            ),
            item(
                "222222222222",
                None,
                "bob",
                "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
                9,
            ),
        ]
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote(ODD_USER), ODD_USER);
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn rollback_script() {
        insta::assert_snapshot!(rollback(2, &items(), &targets(), RollbackFormat::Sh));
    }

    #[test]
    fn rollback_script_names_the_partitions_region() {
        let gov: Vec<AccountTarget> = targets()
            .into_iter()
            .map(|mut t| {
                t.partition = Partition::AwsUsGov;
                if let Access::AssumeRole { role_arn, .. } = &mut t.access {
                    *role_arn = role_arn.replace("arn:aws:", "arn:aws-us-gov:");
                }
                t
            })
            .collect();
        let script = rollback(2, &items(), &gov, RollbackFormat::Sh);
        let commands: Vec<&str> = script
            .lines()
            .map(str::trim)
            .filter(|l| {
                l.starts_with("creds=$(aws ") || l.starts_with("aws ") || l.starts_with("check ")
            })
            .collect();
        assert_eq!(commands.len(), 7, "{script}");
        for c in commands {
            assert!(
                c.contains("--region us-gov-west-1") || c.ends_with(" us-gov-west-1"),
                "{c}"
            );
        }
        assert!(
            script.contains("--role-arn arn:aws-us-gov:iam::111111111111:role/ops/IamSweepRole")
        );
    }

    #[test]
    fn rollback_script_with_nothing_to_do() {
        insta::assert_snapshot!(rollback(2, &[], &targets(), RollbackFormat::Sh));
    }

    #[test]
    fn rollback_csv() {
        insta::assert_snapshot!(rollback(2, &items(), &targets(), RollbackFormat::Csv));
    }
}
