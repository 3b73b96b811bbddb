//! The boundary between iamsweep's core and AWS: the traits the core needs, plain domain types and
//! [`AwsError`]. No SDK type crosses it; `sdk/` implements it for real, `fake.rs` in memory.

use std::fmt;
use std::future::Future;

use serde::Serialize;

use crate::config::AccountTarget;
use crate::model::{PolicyArn, UserName};

pub mod fake;
mod http;
pub mod sdk;

/// Every AWS operation iamsweep calls. The names are the API's own (as IAM policies and
/// CloudTrail spell them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Op {
    AssumeRole,
    GetCallerIdentity,
    GetAccountAuthorizationDetails,
    ListAttachedUserPolicies,
    ListGroupsForUser,
    ListAttachedGroupPolicies,
    GetGroup,
    GetPolicy,
    GetUser,
    DetachUserPolicy,
    AttachUserPolicy,
    SimulatePrincipalPolicy,
    ListRoots,
    ListOrganizationalUnitsForParent,
    ListAccountsForParent,
    BatchImportFindings,
}

/// Which iamsweep command needs an IAM operation from the role it assumes in each account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needed {
    /// `scan` (and `doctor`): every role needs it.
    Scan,
    /// `apply` and `rollback`: only the apply role needs it.
    Apply,
    /// `publish`: only a role deployed with `Publish=true` has it.
    Publish,
}

impl Op {
    pub const ALL: [Op; 16] = [
        Op::AssumeRole,
        Op::GetCallerIdentity,
        Op::GetAccountAuthorizationDetails,
        Op::ListAttachedUserPolicies,
        Op::ListGroupsForUser,
        Op::ListAttachedGroupPolicies,
        Op::GetGroup,
        Op::GetPolicy,
        Op::GetUser,
        Op::DetachUserPolicy,
        Op::AttachUserPolicy,
        Op::SimulatePrincipalPolicy,
        Op::ListRoots,
        Op::ListOrganizationalUnitsForParent,
        Op::ListAccountsForParent,
        Op::BatchImportFindings,
    ];

    /// The service's IAM action prefix: `sts`, `iam` or `organizations`.
    pub fn service(self) -> &'static str {
        match self {
            Op::AssumeRole | Op::GetCallerIdentity => "sts",
            Op::ListRoots | Op::ListOrganizationalUnitsForParent | Op::ListAccountsForParent => {
                "organizations"
            }
            Op::BatchImportFindings => "securityhub",
            _ => "iam",
        }
    }

    /// For the IAM operations made with the role in each account: which command needs them.
    /// (STS calls are made with the base credentials; Organizations calls with the management
    /// credentials.)
    pub fn needed_by_member_role(self) -> Option<Needed> {
        match self {
            Op::GetAccountAuthorizationDetails | Op::SimulatePrincipalPolicy => Some(Needed::Scan),
            Op::ListAttachedUserPolicies
            | Op::ListGroupsForUser
            | Op::ListAttachedGroupPolicies
            | Op::GetGroup
            | Op::GetPolicy
            | Op::GetUser
            | Op::DetachUserPolicy
            | Op::AttachUserPolicy => Some(Needed::Apply),
            Op::BatchImportFindings => Some(Needed::Publish),
            _ => None,
        }
    }

    /// `iam:DetachUserPolicy`, as IAM policies name it.
    pub fn action(self) -> String {
        format!("{}:{}", self.service(), self.as_str())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::AssumeRole => "AssumeRole",
            Op::GetCallerIdentity => "GetCallerIdentity",
            Op::GetAccountAuthorizationDetails => "GetAccountAuthorizationDetails",
            Op::ListAttachedUserPolicies => "ListAttachedUserPolicies",
            Op::ListGroupsForUser => "ListGroupsForUser",
            Op::ListAttachedGroupPolicies => "ListAttachedGroupPolicies",
            Op::GetGroup => "GetGroup",
            Op::GetPolicy => "GetPolicy",
            Op::GetUser => "GetUser",
            Op::DetachUserPolicy => "DetachUserPolicy",
            Op::AttachUserPolicy => "AttachUserPolicy",
            Op::SimulatePrincipalPolicy => "SimulatePrincipalPolicy",
            Op::ListRoots => "ListRoots",
            Op::ListOrganizationalUnitsForParent => "ListOrganizationalUnitsForParent",
            Op::ListAccountsForParent => "ListAccountsForParent",
            Op::BatchImportFindings => "BatchImportFindings",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// Whether the call changes anything in AWS.
    pub fn is_write(self) -> bool {
        matches!(self, Op::DetachUserPolicy | Op::AttachUserPolicy)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure an AWS call had; the core decides retries and outcomes from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was refused for rate; it did nothing and may be retried after a pause.
    Throttled,
    /// The entity named does not exist (for a detach: the attachment is already gone).
    NoSuchEntity,
    /// Not allowed (missing permission, or a role that cannot be assumed).
    AccessDenied,
    /// Network, timeout or 5xx: the request may or may not have reached AWS, so the outcome of
    /// a write is unknown (ambiguous) until a read settles it.
    Transient,
    /// Another change to the same entity was in progress; nothing was done. Retried after a
    /// fresh read.
    Conflict,
    /// A quota was reached (e.g. managed policies per user); nothing was done.
    LimitExceeded,
    /// The base credentials are missing, expired or revoked (an exported session, an expired
    /// SSO session, a CI token): every account would fail the same way, so the run stops.
    Credentials,
    /// Anything else, including the account mismatch of `assume_role = false`.
    Other,
}

/// A failed AWS call, with the service's own error code and message where it gave them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub kind: ErrorKind,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl AwsError {
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            request_id: None,
        }
    }

    pub fn throttled() -> Self {
        Self::new(ErrorKind::Throttled, "Throttling", "Rate exceeded")
    }
}

/// A managed policy attached to a user or group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedPolicy {
    pub arn: PolicyArn,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDetail {
    pub name: UserName,
    /// IAM's unique id of the principal (`AIDA...`): a user deleted and re-created under the
    /// same name gets a new one.
    pub user_id: String,
    pub arn: String,
    /// Names of the groups the user is in.
    pub groups: Vec<String>,
    /// Managed policies attached to the user directly.
    pub attached: Vec<AttachedPolicy>,
    /// The user's tags (key, value), as GetAccountAuthorizationDetails returns them.
    pub tags: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDetail {
    pub name: String,
    /// IAM's unique id of the group (`AGPA...`): a group deleted and re-created under the same
    /// name gets a new one.
    pub group_id: String,
    pub attached: Vec<AttachedPolicy>,
}

/// One page of `GetAccountAuthorizationDetails` (users and groups only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthDetailsPage {
    pub users: Vec<UserDetail>,
    pub groups: Vec<GroupDetail>,
    /// Set while the listing is truncated.
    pub next_marker: Option<String>,
}

/// One page of a list call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_marker: Option<String>,
}

/// One page of `GetGroup`: the group's unique id and some of its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPage {
    pub group_id: String,
    pub members: Vec<GroupMember>,
    pub next_marker: Option<String>,
}

/// A member of a group, as `GetGroup` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    pub name: UserName,
    pub user_id: String,
}

/// What apply needs to know of a managed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    /// False for a deprecated AWS managed policy: once detached it can never be attached again.
    pub is_attachable: bool,
}

/// The receipt of a write: what CloudTrail needs to find the call again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    pub request_id: Option<String>,
}

/// One action's result in a policy simulation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: String,
    /// `allowed`, `implicitDeny` or `explicitDeny`.
    pub decision: String,
}

/// A root or organizational unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgUnit {
    pub id: String,
    pub name: String,
}

/// A member account as AWS Organizations lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgAccount {
    pub id: String,
    pub name: String,
    /// `ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`.
    pub status: String,
}

/// Reads the organization's tree (with the management account's credentials).
pub trait OrgReader: Send + Sync {
    fn roots(&self) -> impl Future<Output = Result<Vec<OrgUnit>, AwsError>> + Send;

    fn child_units(
        &self,
        parent: &str,
        marker: Option<String>,
    ) -> impl Future<Output = Result<Page<OrgUnit>, AwsError>> + Send;

    fn accounts_in(
        &self,
        parent: &str,
        marker: Option<String>,
    ) -> impl Future<Output = Result<Page<OrgAccount>, AwsError>> + Send;
}

/// Opens an IAM client for one account: assumes its role (or checks the base credentials belong
/// to it). Failing here fails only that account.
pub trait Connector: Send + Sync + 'static {
    type Client: Iam;

    fn connect(
        &self,
        target: &AccountTarget,
    ) -> impl Future<Output = Result<Self::Client, AwsError>> + Send;
}

/// The IAM calls iamsweep makes inside one account. One call of a method is one API request;
/// paging is left to the caller so that every request is counted and paced.
pub trait Iam: Send + Sync + 'static {
    fn authorization_details(
        &self,
        marker: Option<String>,
    ) -> impl Future<Output = Result<AuthDetailsPage, AwsError>> + Send;

    fn list_attached_user_policies(
        &self,
        user: &UserName,
        marker: Option<String>,
    ) -> impl Future<Output = Result<Page<PolicyArn>, AwsError>> + Send;

    fn list_groups_for_user(
        &self,
        user: &UserName,
        marker: Option<String>,
    ) -> impl Future<Output = Result<Page<String>, AwsError>> + Send;

    fn list_attached_group_policies(
        &self,
        group: &str,
        marker: Option<String>,
    ) -> impl Future<Output = Result<Page<PolicyArn>, AwsError>> + Send;

    /// One page of a group's members, with the group's id (`GetGroup`).
    fn group_members(
        &self,
        group: &str,
        marker: Option<String>,
    ) -> impl Future<Output = Result<GroupPage, AwsError>> + Send;

    /// `GetPolicy`.
    fn policy(
        &self,
        policy: &PolicyArn,
    ) -> impl Future<Output = Result<PolicyInfo, AwsError>> + Send;

    /// The user's unique id (`GetUser`).
    fn user_id(&self, user: &UserName) -> impl Future<Output = Result<String, AwsError>> + Send;

    fn detach_user_policy(
        &self,
        user: &UserName,
        policy: &PolicyArn,
    ) -> impl Future<Output = Result<Receipt, AwsError>> + Send;

    fn attach_user_policy(
        &self,
        user: &UserName,
        policy: &PolicyArn,
    ) -> impl Future<Output = Result<Receipt, AwsError>> + Send;

    /// Whether the account's credentials (an assumed role's session) end within `margin`.
    /// Base credentials are the chain's to renew: `false`.
    fn session_ends_within(&self, margin: std::time::Duration) -> bool;

    /// Renews the account's role session now (one `AssumeRole`), before work that must not
    /// be held up by a renewal inside its own call.
    fn renew_session(&self) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Whether `principal_arn`'s policies allow `actions` (changes nothing): one page of the
    /// simulator's results, from `marker`.
    fn simulate(
        &self,
        principal_arn: &str,
        actions: &[String],
        marker: Option<String>,
    ) -> impl Future<Output = Result<Page<Decision>, AwsError>> + Send;
}

/// One finding as AWS Security Hub takes it (ASFF), built by the core; the adapter turns it
/// into the SDK's type. Kept (as JSON) with what was published, so a later publish can send it
/// again resolved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HubFinding {
    /// Stable for the same account, user (id) and policy: a later import updates it.
    pub id: String,
    pub product_arn: String,
    pub generator_id: String,
    pub account_id: String,
    pub region: String,
    pub partition: String,
    pub created_at: String,
    pub updated_at: String,
    pub title: String,
    pub description: String,
    /// `LOW`, `MEDIUM`, ...
    pub severity: String,
    pub types: Vec<String>,
    pub user_arn: String,
    pub user_name: String,
    pub user_id: Option<String>,
    /// `FAILED` while open, `PASSED` once resolved.
    pub compliance: String,
    pub related_requirements: Vec<String>,
    /// `ACTIVE`, or `ARCHIVED` once resolved.
    pub record_state: String,
    /// `NEW`, `SUPPRESSED` or `RESOLVED`.
    pub workflow: String,
    pub remediation: String,
    /// ASFF `UserDefinedFields`: the policy, the owner, the run.
    pub fields: Vec<(String, String)>,
}

/// What `BatchImportFindings` refused, by finding id: (id, error code, message).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubImported {
    pub failed: Vec<(String, String, String)>,
}

/// Reaches AWS Security Hub in each account (with the account's role).
pub trait HubConnector: Send + Sync + 'static {
    type Hub: Hub;

    fn hub(
        &self,
        target: &AccountTarget,
        region: &str,
    ) -> impl Future<Output = Result<Self::Hub, AwsError>> + Send;
}

/// AWS Security Hub in one account.
pub trait Hub: Send + Sync + 'static {
    /// One `BatchImportFindings` request (at most 100 findings).
    fn import(
        &self,
        findings: &[HubFinding],
    ) -> impl Future<Output = Result<HubImported, AwsError>> + Send;
}
