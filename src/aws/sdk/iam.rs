//! The IAM adapter: one account's IAM through the SDK, as the `Iam` trait.

use super::*;

/// IAM inside one account.
#[derive(Clone, Debug)]
pub struct SdkIam {
    pub(super) client: aws_sdk_iam::Client,
    /// The account's role session (`None`: the base credentials).
    pub(super) role: Option<Arc<AssumedRole>>,
}

fn attached(list: &[aws_sdk_iam::types::AttachedPolicy]) -> Vec<AttachedPolicy> {
    list.iter()
        .filter_map(|p| {
            let arn = PolicyArn::new(p.policy_arn()?);
            let name = p
                .policy_name()
                .map_or_else(|| arn.policy_name().to_owned(), str::to_owned);
            Some(AttachedPolicy { arn, name })
        })
        .collect()
}

pub(super) fn next(
    op: Op,
    truncated: bool,
    marker: Option<&str>,
) -> Result<Option<String>, AwsError> {
    match (truncated, marker) {
        (false, _) => Ok(None),
        (true, Some(m)) if !m.is_empty() => Ok(Some(m.to_owned())),
        // A list that says there is more but not where: stopping there would take a part for
        // the whole (a user's missing group, a denied action on the next page).
        (true, _) => Err(AwsError::new(
            ErrorKind::Other,
            "TruncatedWithoutMarker",
            format!(
                "{op}: the answer says the list goes on (IsTruncated) but gives no Marker to read the rest"
            ),
        )),
    }
}

impl Iam for SdkIam {
    fn session_ends_within(&self, margin: Duration) -> bool {
        self.role.as_ref().is_some_and(|r| r.ends_within(margin))
    }

    async fn renew_session(&self) -> Result<(), AwsError> {
        match &self.role {
            Some(r) => r.renew().await,
            None => Ok(()),
        }
    }

    async fn authorization_details(
        &self,
        marker: Option<String>,
    ) -> Result<AuthDetailsPage, AwsError> {
        let out = self
            .client
            .get_account_authorization_details()
            .filter(EntityType::User)
            .filter(EntityType::Group)
            .max_items(1000)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::GetAccountAuthorizationDetails, e))?;
        let users = out
            .user_detail_list()
            .iter()
            .filter_map(|u| {
                Some(UserDetail {
                    name: UserName::new(u.user_name()?),
                    user_id: u.user_id().unwrap_or_default().to_owned(),
                    arn: u.arn().unwrap_or_default().to_owned(),
                    groups: u.group_list().to_vec(),
                    attached: attached(u.attached_managed_policies()),
                    tags: u
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_owned(), t.value().to_owned()))
                        .collect(),
                })
            })
            .collect();
        let groups = out
            .group_detail_list()
            .iter()
            .filter_map(|g| {
                Some(GroupDetail {
                    name: g.group_name()?.to_owned(),
                    group_id: g.group_id().unwrap_or_default().to_owned(),
                    attached: attached(g.attached_managed_policies()),
                })
            })
            .collect();
        Ok(AuthDetailsPage {
            users,
            groups,
            next_marker: next(
                Op::GetAccountAuthorizationDetails,
                out.is_truncated(),
                out.marker(),
            )?,
        })
    }

    async fn list_attached_user_policies(
        &self,
        user: &UserName,
        marker: Option<String>,
    ) -> Result<Page<PolicyArn>, AwsError> {
        let out = self
            .client
            .list_attached_user_policies()
            .user_name(user.as_str())
            .max_items(1000)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::ListAttachedUserPolicies, e))?;
        Ok(Page {
            items: attached(out.attached_policies())
                .into_iter()
                .map(|p| p.arn)
                .collect(),
            next_marker: next(
                Op::ListAttachedUserPolicies,
                out.is_truncated(),
                out.marker(),
            )?,
        })
    }

    async fn list_groups_for_user(
        &self,
        user: &UserName,
        marker: Option<String>,
    ) -> Result<Page<String>, AwsError> {
        let out = self
            .client
            .list_groups_for_user()
            .user_name(user.as_str())
            .max_items(1000)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::ListGroupsForUser, e))?;
        Ok(Page {
            items: out
                .groups()
                .iter()
                .map(|g| g.group_name().to_owned())
                .collect(),
            next_marker: next(Op::ListGroupsForUser, out.is_truncated(), out.marker())?,
        })
    }

    async fn list_attached_group_policies(
        &self,
        group: &str,
        marker: Option<String>,
    ) -> Result<Page<PolicyArn>, AwsError> {
        let out = self
            .client
            .list_attached_group_policies()
            .group_name(group)
            .max_items(1000)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::ListAttachedGroupPolicies, e))?;
        Ok(Page {
            items: attached(out.attached_policies())
                .into_iter()
                .map(|p| p.arn)
                .collect(),
            next_marker: next(
                Op::ListAttachedGroupPolicies,
                out.is_truncated(),
                out.marker(),
            )?,
        })
    }

    async fn group_members(
        &self,
        group: &str,
        marker: Option<String>,
    ) -> Result<GroupPage, AwsError> {
        let out = self
            .client
            .get_group()
            .group_name(group)
            .max_items(1000)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::GetGroup, e))?;
        Ok(GroupPage {
            group_id: out
                .group()
                .map(|g| g.group_id().to_owned())
                .unwrap_or_default(),
            members: out
                .users()
                .iter()
                .map(|u| GroupMember {
                    name: UserName::new(u.user_name()),
                    user_id: u.user_id().to_owned(),
                })
                .collect(),
            next_marker: next(Op::GetGroup, out.is_truncated(), out.marker())?,
        })
    }

    async fn policy(&self, policy: &PolicyArn) -> Result<PolicyInfo, AwsError> {
        let out = self
            .client
            .get_policy()
            .policy_arn(policy.as_str())
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::GetPolicy, e))?;
        Ok(PolicyInfo {
            is_attachable: out.policy().is_none_or(|p| p.is_attachable()),
        })
    }

    async fn user_id(&self, user: &UserName) -> Result<String, AwsError> {
        let out = self
            .client
            .get_user()
            .user_name(user.as_str())
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::GetUser, e))?;
        Ok(out
            .user()
            .map(|u| u.user_id().to_owned())
            .unwrap_or_default())
    }

    async fn detach_user_policy(
        &self,
        user: &UserName,
        policy: &PolicyArn,
    ) -> Result<Receipt, AwsError> {
        let out = self
            .client
            .detach_user_policy()
            .user_name(user.as_str())
            .policy_arn(policy.as_str())
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::DetachUserPolicy, e))?;
        Ok(Receipt {
            request_id: out.request_id().map(str::to_owned),
        })
    }

    async fn attach_user_policy(
        &self,
        user: &UserName,
        policy: &PolicyArn,
    ) -> Result<Receipt, AwsError> {
        let out = self
            .client
            .attach_user_policy()
            .user_name(user.as_str())
            .policy_arn(policy.as_str())
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::AttachUserPolicy, e))?;
        Ok(Receipt {
            request_id: out.request_id().map(str::to_owned),
        })
    }

    async fn simulate(
        &self,
        principal_arn: &str,
        actions: &[String],
        marker: Option<String>,
    ) -> Result<Page<Decision>, AwsError> {
        let out = self
            .client
            .simulate_principal_policy()
            .policy_source_arn(principal_arn)
            .set_action_names(Some(actions.to_vec()))
            .max_items(1000)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::SimulatePrincipalPolicy, e))?;
        Ok(Page {
            items: out
                .evaluation_results()
                .iter()
                .map(|r| Decision {
                    action: r.eval_action_name().to_owned(),
                    decision: r.eval_decision().as_str().to_owned(),
                })
                .collect(),
            next_marker: next(
                Op::SimulatePrincipalPolicy,
                out.is_truncated(),
                out.marker(),
            )?,
        })
    }
}
