//! Pure: one account's users and groups in, its direct attachments classified out. A direct
//! attachment is `redundant_direct` when a group the user is in has the same policy ARN attached.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::aws::{GroupDetail, UserDetail};
use crate::filters::Filters;
use crate::model::{PolicyArn, UserName};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Also granted through at least one of the user's groups: safe to detach.
    RedundantDirect,
    /// Granted only directly: reported, never detached.
    DirectOnly,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RedundantDirect => "redundant_direct",
            Self::DirectOnly => "direct_only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "redundant_direct" => Some(Self::RedundantDirect),
            "direct_only" => Some(Self::DirectOnly),
            _ => None,
        }
    }
}

/// One managed policy attached directly to one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub user_name: UserName,
    /// IAM's unique id of the user (`None` in findings recorded before iamsweep kept it).
    #[serde(default)]
    pub user_id: Option<String>,
    pub user_arn: String,
    pub policy_arn: PolicyArn,
    pub policy_name: String,
    pub kind: FindingKind,
    /// The user's groups that have the same policy ARN attached, sorted.
    pub covering_groups: Vec<String>,
    /// The IAM GroupId of each of `covering_groups`, in the same order (empty in findings
    /// recorded before iamsweep kept them): a group re-created under the same name is another
    /// grant.
    #[serde(default)]
    pub covering_group_ids: Vec<String>,
    /// The live `[[exception]]` that covered it when the scan saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<crate::exceptions::ExceptionMark>,
    /// The value of the user's `owner_tag` tag, when the scan saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl Finding {
    /// The GroupId the scan saw for covering group `name` (matched as IAM matches names).
    pub fn covering_group_id(&self, name: &str) -> Option<&str> {
        self.covering_groups
            .iter()
            .position(|g| g.eq_ignore_ascii_case(name))
            .and_then(|i| self.covering_group_ids.get(i))
            .map(String::as_str)
            .filter(|id| !id.is_empty())
    }
}

/// A finding in words for a reader of another tool (OCSF, Security Hub): title, description and
/// what to do.
pub fn describe(
    kind: &str,
    user_name: &str,
    user_arn: &str,
    policy_name: &str,
    policy_arn: &str,
    groups: &[String],
) -> (String, String, &'static str) {
    if kind == FindingKind::RedundantDirect.as_str() {
        (
            format!(
                "IAM user {user_name} holds {policy_name} both directly and through group {}",
                groups.join(", ")
            ),
            format!(
                "The managed policy {policy_arn} is attached directly to IAM user {user_arn} and also granted by the user's group(s) {}. The direct attachment is redundant: iamsweep can detach it (DetachUserPolicy) while a group still grants the policy, so the user keeps every permission.",
                groups.join(", ")
            ),
            "Detach the direct attachment while the group still grants the policy: `iamsweep apply` (verified live, journaled, reversible with `iamsweep rollback`). Never remove it in the console, which also removes the user from the group.",
        )
    } else {
        (
            format!("IAM user {user_name} holds {policy_name} directly, through no group"),
            format!(
                "The managed policy {policy_arn} is attached directly to IAM user {user_arn} and granted by none of the user's groups. Grant it through a group, then detach it from the user; iamsweep never removes it on its own."
            ),
            "Grant the policy through a group the user belongs to, then detach it from the user.",
        )
    }
}

/// Everything a scan learns about one account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountFindings {
    pub users_seen: u64,
    pub groups_seen: u64,
    pub users_excluded: u64,
    pub findings: Vec<Finding>,
    /// When the reads behind these findings were answered (the last page), as stored: a grant
    /// they show existed then.
    pub read_at: Option<String>,
}

impl AccountFindings {
    pub fn count(&self, kind: FindingKind) -> u64 {
        self.findings.iter().filter(|f| f.kind == kind).count() as u64
    }
}

/// Classifies every direct attachment of every user not excluded by `filters.exclude_users`.
pub fn classify(
    users: &[UserDetail],
    groups: &[GroupDetail],
    filters: &Filters,
) -> AccountFindings {
    let group_policies: HashMap<&str, HashSet<&str>> = groups
        .iter()
        .map(|g| {
            (
                g.name.as_str(),
                g.attached.iter().map(|p| p.arn.as_str()).collect(),
            )
        })
        .collect();
    let group_ids: HashMap<&str, &str> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.group_id.as_str()))
        .collect();
    let mut out = AccountFindings {
        users_seen: users.len() as u64,
        groups_seen: groups.len() as u64,
        ..AccountFindings::default()
    };
    for user in users {
        if filters.user_excluded(user.name.as_str()) {
            out.users_excluded += 1;
            continue;
        }
        for policy in &user.attached {
            let mut covering: Vec<String> = user
                .groups
                .iter()
                .filter(|g| {
                    group_policies
                        .get(g.as_str())
                        .is_some_and(|ps| ps.contains(policy.arn.as_str()))
                })
                .cloned()
                .collect();
            covering.sort();
            covering.dedup();
            let ids: Vec<String> = covering
                .iter()
                .map(|g| {
                    group_ids
                        .get(g.as_str())
                        .copied()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            out.findings.push(Finding {
                user_name: user.name.clone(),
                user_id: (!user.user_id.is_empty()).then(|| user.user_id.clone()),
                user_arn: user.arn.clone(),
                policy_arn: policy.arn.clone(),
                policy_name: policy.name.clone(),
                kind: if covering.is_empty() {
                    FindingKind::DirectOnly
                } else {
                    FindingKind::RedundantDirect
                },
                covering_groups: covering,
                covering_group_ids: if ids.iter().all(String::is_empty) {
                    Vec::new()
                } else {
                    ids
                },
                exception: None,
                owner: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AttachedPolicy;
    use crate::filters::Patterns;

    const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
    const VIEW_ONLY: &str = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess";
    const CUSTOM: &str = "arn:aws:iam::111111111111:policy/team/a+b=c,d.e@f-g_h";

    fn pol(arn: &str) -> AttachedPolicy {
        let arn = PolicyArn::new(arn);
        AttachedPolicy {
            name: arn.policy_name().to_owned(),
            arn,
        }
    }

    fn user(name: &str, groups: &[&str], policies: &[&str]) -> UserDetail {
        UserDetail {
            name: UserName::new(name),
            user_id: format!("AIDA{name}"),
            arn: format!("arn:aws:iam::111111111111:user/{name}"),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            attached: policies.iter().map(|p| pol(p)).collect(),
            tags: Vec::new(),
        }
    }

    fn group(name: &str, policies: &[&str]) -> GroupDetail {
        GroupDetail {
            name: name.into(),
            group_id: format!("AGPA{name}"),
            attached: policies.iter().map(|p| pol(p)).collect(),
        }
    }

    fn kinds(f: &AccountFindings) -> Vec<(&str, &str, FindingKind, Vec<String>)> {
        f.findings
            .iter()
            .map(|f| {
                (
                    f.user_name.as_str(),
                    f.policy_arn.as_str(),
                    f.kind,
                    f.covering_groups.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn user_in_two_covering_groups_lists_both_sorted() {
        let f = classify(
            &[user("alice", &["ops", "admins"], &[READ_ONLY])],
            &[group("admins", &[READ_ONLY]), group("ops", &[READ_ONLY])],
            &Filters::default(),
        );
        assert_eq!(
            kinds(&f),
            vec![(
                "alice",
                READ_ONLY,
                FindingKind::RedundantDirect,
                vec!["admins".to_string(), "ops".to_string()]
            )]
        );
    }

    #[test]
    fn policy_in_a_group_the_user_is_not_in_is_direct_only() {
        let f = classify(
            &[user("bob", &["dev"], &[READ_ONLY])],
            &[group("dev", &[VIEW_ONLY]), group("ops", &[READ_ONLY])],
            &Filters::default(),
        );
        assert_eq!(
            kinds(&f),
            vec![("bob", READ_ONLY, FindingKind::DirectOnly, vec![])]
        );
    }

    #[test]
    fn customer_managed_and_pathed_arns_compare_exactly() {
        // Same name, different account or path: not the same policy.
        let other_account = "arn:aws:iam::222222222222:policy/team/a+b=c,d.e@f-g_h";
        let f = classify(
            &[user("c+d=e,f.g@h-i_j", &["g1"], &[CUSTOM, VIEW_ONLY])],
            &[group("g1", &[other_account, VIEW_ONLY])],
            &Filters::default(),
        );
        assert_eq!(
            kinds(&f),
            vec![
                ("c+d=e,f.g@h-i_j", CUSTOM, FindingKind::DirectOnly, vec![]),
                (
                    "c+d=e,f.g@h-i_j",
                    VIEW_ONLY,
                    FindingKind::RedundantDirect,
                    vec!["g1".to_string()]
                ),
            ]
        );
        assert_eq!(f.findings[0].policy_name, "a+b=c,d.e@f-g_h");
        assert_eq!(f.findings[1].policy_name, "ViewOnlyAccess");
    }

    #[test]
    fn excluded_users_are_counted_not_reported() {
        let filters = Filters {
            exclude_users: Patterns::new(vec!["break-glass-*".into()]).unwrap(),
            ..Filters::default()
        };
        let f = classify(
            &[
                user("break-glass-1", &["ops"], &[READ_ONLY]),
                user("dave", &[], &[]),
                user("erin", &["ghost"], &[READ_ONLY]),
            ],
            &[group("ops", &[READ_ONLY])],
            &filters,
        );
        assert_eq!((f.users_seen, f.groups_seen, f.users_excluded), (3, 1, 1));
        // erin's group is not in the snapshot: nothing proves coverage.
        assert_eq!(
            kinds(&f),
            vec![("erin", READ_ONLY, FindingKind::DirectOnly, vec![])]
        );
        assert_eq!(f.count(FindingKind::DirectOnly), 1);
        assert_eq!(f.count(FindingKind::RedundantDirect), 0);
    }
}
