//! The real AWS adapter: the only file that names `aws_config` and `aws_sdk_*`. Builds one IAM
//! client per account (own retry partition, refreshing assumed-role credentials) and maps SDK
//! errors to [`AwsError`].

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_iam::config::retry::RetryPartition;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::operation::RequestId;
use aws_sdk_iam::types::EntityType;
use aws_types::region::Region;

use super::{
    AttachedPolicy, AuthDetailsPage, AwsError, Connector, Decision, ErrorKind, GroupDetail,
    GroupMember, Iam, Op, OrgAccount, OrgReader, OrgUnit, Page, PolicyInfo, Receipt, UserDetail,
};
use crate::config::{Access, AccountTarget, OrgSpec};
use crate::model::{Partition, PolicyArn, UserName};

/// How long an assumed-role session lasts; the SDK's identity cache asks for fresh credentials
/// shortly before this runs out, so long runs never see `ExpiredToken`.
const SESSION_SECONDS: i32 = 3600;
/// One HTTP attempt per SDK call: the core is the only layer that retries, so that a write whose
/// answer was lost is never sent again blindly, and every attempt is paced and counted.
const SDK_MAX_ATTEMPTS: u32 = 1;
/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default for `--call-timeout`: a large `GetAccountAuthorizationDetails` page can take
/// seconds before its first byte.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings for reaching AWS, from the command line and environment.
#[derive(Clone, Debug)]
pub struct SdkSettings {
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    /// The longest one call may take, from sending to the last byte of its answer: bounds the
    /// time to first byte, the read and the whole operation of every STS, IAM and
    /// Organizations call.
    pub call_timeout: Duration,
}

impl Default for SdkSettings {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            profile: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// Every call of every client times out: a silent connection never hangs a run.
fn timeouts(call: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(call)
        .operation_attempt_timeout(call)
        .operation_timeout(call)
        .build()
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);

/// Refuses a plaintext endpoint unless it is on this machine: session tokens travel in headers.
pub fn check_endpoint(url: &str) -> Result<(), SetupError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| SetupError(format!("endpoint `{url}` is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(SetupError(format!(
                    "refusing plaintext endpoint `{url}`: credentials would cross the network unencrypted; use https, or http only on a loopback address (127.0.0.1, ::1, localhost)"
                )))
            }
        }
        other => Err(SetupError(format!(
            "endpoint `{url}` has scheme `{other}`; expected https (or http on loopback)"
        ))),
    }
}

/// Connects to real AWS (or an emulator at the endpoint) with the standard credential chain.
#[derive(Clone, Debug)]
pub struct SdkConnector {
    base: aws_types::SdkConfig,
    caller_arn: String,
}

impl SdkConnector {
    /// Loads the base configuration (profile, SSO, env, instance role...) and checks every
    /// endpoint it would send credentials to.
    pub async fn load(settings: &SdkSettings) -> Result<Self, SetupError> {
        if let Some(url) = &settings.endpoint_url {
            check_endpoint(url)?;
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(Partition::Aws.iam_region()))
            .retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS))
            .timeout_config(timeouts(settings.call_timeout));
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        let base = loader.load().await;
        if let Some(url) = base.endpoint_url() {
            check_endpoint(url)?;
        }
        for var in ["AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL_STS"] {
            if let Ok(url) = std::env::var(var) {
                check_endpoint(&url).map_err(|e| SetupError(format!("{var}: {e}")))?;
            }
        }
        // Resolve the base credentials once, up front: without them every account would fail
        // the same way, so say it once and change nothing.
        let provider = base.credentials_provider().ok_or_else(|| {
            SetupError("no AWS credentials are configured: set AWS_PROFILE (or pass --profile), run `aws sso login`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into())
        })?;
        let hint = "set AWS_PROFILE (or pass --profile), run `aws sso login` for an SSO profile, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";
        match tokio::time::timeout(settings.call_timeout, provider.provide_credentials()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(SetupError(format!(
                    "cannot load AWS credentials: {}; {hint}",
                    chain(&e)
                )));
            }
            Err(_) => {
                return Err(SetupError(format!(
                    "loading AWS credentials took longer than {} s; {hint}",
                    settings.call_timeout.as_secs_f64()
                )));
            }
        }
        // And check them once: expired or revoked credentials are said here, once, with
        // nothing changed, instead of failing every account.
        let caller_arn = aws_sdk_sts::Client::new(&base)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                let e = map_sdk_error(Op::GetCallerIdentity, e);
                SetupError(format!("the AWS credentials do not work: {e}; {hint}"))
            })?
            .arn()
            .unwrap_or_default()
            .to_owned();
        Ok(Self { base, caller_arn })
    }

    /// Who the base credentials are (`GetCallerIdentity`), shown with each run.
    pub fn caller_arn(&self) -> &str {
        &self.caller_arn
    }

    /// A reader of the organization, with the base credentials or through
    /// `management_role_arn`.
    pub async fn organization(&self, spec: &OrgSpec) -> Result<SdkOrg, AwsError> {
        let mut conf = aws_sdk_organizations::config::Builder::from(&self.base)
            .region(Region::new(Partition::Aws.iam_region()));
        if let Some(role_arn) = &spec.management_role_arn {
            let role = AssumedRole::start(
                self.sts(Partition::Aws),
                role_arn,
                spec.external_id.as_deref(),
                "iamsweep-organization",
            )
            .await?;
            conf = conf.credentials_provider(role);
        }
        Ok(SdkOrg {
            client: aws_sdk_organizations::Client::from_conf(conf.build()),
        })
    }

    fn sts(&self, partition: Partition) -> aws_sdk_sts::Client {
        let conf = aws_sdk_sts::config::Builder::from(&self.base)
            .region(Region::new(partition.iam_region()))
            .build();
        aws_sdk_sts::Client::from_conf(conf)
    }
}

impl Connector for SdkConnector {
    type Client = SdkIam;

    async fn connect(&self, target: &AccountTarget) -> Result<SdkIam, AwsError> {
        let sts = self.sts(target.partition);
        let credentials = match &target.access {
            Access::AssumeRole {
                role_arn,
                external_id,
                session_name,
            } => AssumedRole::start(sts, role_arn, external_id.as_deref(), session_name).await?,
            Access::BaseCredentials => {
                let out = sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| map_sdk_error(Op::GetCallerIdentity, e))?;
                let actual = out.account().unwrap_or_default();
                if actual != target.id.as_str() {
                    return Err(AwsError::new(
                        ErrorKind::Other,
                        "AccountMismatch",
                        format!(
                            "assume_role = false, but the base credentials belong to account {actual}, not {}; use credentials of that account or let iamsweep assume a role",
                            target.id
                        ),
                    ));
                }
                self.base.credentials_provider().ok_or_else(|| {
                    AwsError::new(
                        ErrorKind::Credentials,
                        "NoCredentials",
                        "no base credentials are configured",
                    )
                })?
            }
        };
        let conf = aws_sdk_iam::config::Builder::from(&self.base)
            .region(Region::new(target.partition.iam_region()))
            .credentials_provider(credentials)
            // Each account gets its own retry budget: one throttled account must not drain
            // the retries of all the others.
            .retry_partition(RetryPartition::new(format!("iamsweep-{}", target.id)))
            .build();
        Ok(SdkIam {
            client: aws_sdk_iam::Client::from_conf(conf),
        })
    }
}

/// Assumed-role credentials: the first set comes from the explicit call in `connect`, later
/// ones from a fresh `AssumeRole` whenever the SDK's identity cache sees them near expiry.
#[derive(Debug)]
struct AssumedRole {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    external_id: Option<String>,
    session_name: String,
    first: Mutex<Option<Credentials>>,
}

impl AssumedRole {
    /// Assumes the role once, explicitly, so a refused role fails with its real code; the
    /// returned provider hands these credentials out first and re-assumes before expiry.
    async fn start(
        sts: aws_sdk_sts::Client,
        role_arn: &str,
        external_id: Option<&str>,
        session_name: &str,
    ) -> Result<SharedCredentialsProvider, AwsError> {
        let role = AssumedRole {
            sts,
            role_arn: role_arn.to_owned(),
            external_id: external_id.map(str::to_owned),
            session_name: session_name.to_owned(),
            first: Mutex::new(None),
        };
        let first = role.assume().await?;
        *role.first.lock().expect("credentials lock") = Some(first);
        Ok(SharedCredentialsProvider::new(role))
    }

    async fn assume(&self) -> Result<Credentials, AwsError> {
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .set_external_id(self.external_id.clone())
            .duration_seconds(SESSION_SECONDS)
            .send()
            .await
            .map_err(|e| {
                let mut err = map_sdk_error(Op::AssumeRole, e);
                err.message = format!("cannot assume {}: {}", self.role_arn, err.message);
                err
            })?;
        let c = out.credentials().ok_or_else(|| {
            AwsError::new(
                ErrorKind::Other,
                "NoCredentials",
                format!("AssumeRole of {} returned no credentials", self.role_arn),
            )
        })?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "iamsweep-assume-role",
        ))
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let cached = self.first.lock().expect("credentials lock").take();
            if let Some(c) = cached {
                let fresh = c.expiry().is_none_or(|e| {
                    e.duration_since(SystemTime::now())
                        .is_ok_and(|left| left > Duration::from_secs(300))
                });
                if fresh {
                    return Ok(c);
                }
            }
            self.assume()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

/// IAM inside one account.
#[derive(Clone, Debug)]
pub struct SdkIam {
    client: aws_sdk_iam::Client,
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

fn next(truncated: bool, marker: Option<&str>) -> Option<String> {
    if truncated {
        marker.map(str::to_owned)
    } else {
        None
    }
}

impl Iam for SdkIam {
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
                })
            })
            .collect();
        let groups = out
            .group_detail_list()
            .iter()
            .filter_map(|g| {
                Some(GroupDetail {
                    name: g.group_name()?.to_owned(),
                    attached: attached(g.attached_managed_policies()),
                })
            })
            .collect();
        Ok(AuthDetailsPage {
            users,
            groups,
            next_marker: next(out.is_truncated(), out.marker()),
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
            next_marker: next(out.is_truncated(), out.marker()),
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
            next_marker: next(out.is_truncated(), out.marker()),
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
            next_marker: next(out.is_truncated(), out.marker()),
        })
    }

    async fn group_members(
        &self,
        group: &str,
        marker: Option<String>,
    ) -> Result<Page<GroupMember>, AwsError> {
        let out = self
            .client
            .get_group()
            .group_name(group)
            .max_items(1000)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::GetGroup, e))?;
        Ok(Page {
            items: out
                .users()
                .iter()
                .map(|u| GroupMember {
                    name: UserName::new(u.user_name()),
                    user_id: u.user_id().to_owned(),
                })
                .collect(),
            next_marker: next(out.is_truncated(), out.marker()),
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
    ) -> Result<Vec<Decision>, AwsError> {
        let out = self
            .client
            .simulate_principal_policy()
            .policy_source_arn(principal_arn)
            .set_action_names(Some(actions.to_vec()))
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::SimulatePrincipalPolicy, e))?;
        Ok(out
            .evaluation_results()
            .iter()
            .map(|r| Decision {
                action: r.eval_action_name().to_owned(),
                decision: r.eval_decision().as_str().to_owned(),
            })
            .collect())
    }
}

/// AWS Organizations, read with the management account's credentials.
#[derive(Clone, Debug)]
pub struct SdkOrg {
    client: aws_sdk_organizations::Client,
}

impl OrgReader for SdkOrg {
    async fn roots(&self) -> Result<Vec<OrgUnit>, AwsError> {
        let mut roots = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_roots()
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map_sdk_error(Op::ListRoots, e))?;
            roots.extend(out.roots().iter().filter_map(|r| {
                Some(OrgUnit {
                    id: r.id()?.to_owned(),
                    name: r.name().unwrap_or("Root").to_owned(),
                })
            }));
            match out.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(roots),
            }
        }
    }

    async fn child_units(
        &self,
        parent: &str,
        marker: Option<String>,
    ) -> Result<Page<OrgUnit>, AwsError> {
        let out = self
            .client
            .list_organizational_units_for_parent()
            .parent_id(parent)
            .set_next_token(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::ListOrganizationalUnitsForParent, e))?;
        Ok(Page {
            items: out
                .organizational_units()
                .iter()
                .filter_map(|u| {
                    Some(OrgUnit {
                        id: u.id()?.to_owned(),
                        name: u.name().unwrap_or_default().to_owned(),
                    })
                })
                .collect(),
            next_marker: out.next_token().map(str::to_owned),
        })
    }

    async fn accounts_in(
        &self,
        parent: &str,
        marker: Option<String>,
    ) -> Result<Page<OrgAccount>, AwsError> {
        let out = self
            .client
            .list_accounts_for_parent()
            .parent_id(parent)
            .set_next_token(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::ListAccountsForParent, e))?;
        Ok(Page {
            items: out
                .accounts()
                .iter()
                .filter_map(|a| {
                    #[allow(deprecated)]
                    let status = a
                        .status()
                        .map(|s| s.as_str().to_owned())
                        .or_else(|| a.state().map(|s| s.as_str().to_owned()))
                        .unwrap_or_default();
                    Some(OrgAccount {
                        id: a.id()?.to_owned(),
                        name: a.name().unwrap_or_default().to_owned(),
                        status,
                    })
                })
                .collect(),
            next_marker: out.next_token().map(str::to_owned),
        })
    }
}

/// Classifies an AWS error code (or, when the service gave none, the HTTP status).
pub fn classify(code: &str, status: Option<u16>) -> ErrorKind {
    match code {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "SlowDown" => ErrorKind::Throttled,
        "NoSuchEntity" | "NoSuchEntityException" => ErrorKind::NoSuchEntity,
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            ErrorKind::AccessDenied
        }
        "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "TokenRefreshRequired"
        | "RequestExpired" => ErrorKind::Credentials,
        "ConcurrentModification" | "ConcurrentModificationException" => ErrorKind::Conflict,
        "LimitExceeded" | "LimitExceededException" => ErrorKind::LimitExceeded,
        "ServiceFailure" | "ServiceUnavailable" | "InternalFailure" | "RequestTimeout" => {
            ErrorKind::Transient
        }
        _ => match status {
            Some(429) => ErrorKind::Throttled,
            // An unknown code with a 5xx: the server failed, and may have acted.
            Some(s) if s >= 500 => ErrorKind::Transient,
            _ if !code.is_empty() => ErrorKind::Other,
            Some(401 | 403) => ErrorKind::AccessDenied,
            Some(404) => ErrorKind::NoSuchEntity,
            _ => ErrorKind::Other,
        },
    }
}

fn map_sdk_error<E>(op: Op, err: SdkError<E, aws_smithy_runtime_api::http::Response>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let request_id = err.request_id().map(str::to_owned);
    let (kind, code, message) = match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or_default().to_owned();
            let kind = classify(&code, Some(status));
            // moto's auth-mode refusals carry no code, only the status: name them anyway.
            let code = if code.is_empty() {
                match kind {
                    ErrorKind::AccessDenied => "AccessDenied".to_owned(),
                    ErrorKind::Throttled => "Throttling".to_owned(),
                    _ => format!("HTTP{status}"),
                }
            } else {
                code
            };
            let message = service
                .err()
                .message()
                .map_or_else(|| format!("{op} failed with HTTP {status}"), str::to_owned);
            (kind, code, message)
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Transient,
            "Timeout".to_owned(),
            format!("{op} timed out: {}", chain(&err)),
        ),
        SdkError::DispatchFailure(_) if chain(&err).contains("credentials") => (
            ErrorKind::Credentials,
            "NoCredentials".to_owned(),
            format!("{op}: {}", chain(&err)),
        ),
        SdkError::DispatchFailure(d) if !d.is_user() => (
            ErrorKind::Transient,
            "NetworkError".to_owned(),
            format!("{op}: {}", chain(&err)),
        ),
        SdkError::ResponseError(_) => (
            ErrorKind::Transient,
            "ResponseError".to_owned(),
            format!("{op}: {}", chain(&err)),
        ),
        _ => {
            let text = chain(&err);
            if text.contains("credentials") || text.contains("Credentials") {
                (
                    ErrorKind::Credentials,
                    "NoCredentials".to_owned(),
                    format!(
                        "{op}: no usable base credentials ({text}); set AWS_PROFILE, run `aws sso login`, or pass --profile"
                    ),
                )
            } else {
                (
                    ErrorKind::Other,
                    "ClientError".to_owned(),
                    format!("{op}: {text}"),
                )
            }
        }
    };
    AwsError {
        kind,
        code,
        message,
        request_id,
    }
}

/// An error and its sources as one line ("dispatch failure: io error: connection refused"),
/// without the Debug dump the SDK's own display adds.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_endpoints_only_on_loopback() {
        assert!(check_endpoint("http://127.0.0.1:5000").is_ok());
        assert!(check_endpoint("http://127.3.4.5:5000").is_ok());
        assert!(check_endpoint("http://localhost:5000").is_ok());
        assert!(check_endpoint("http://[::1]:5000").is_ok());
        assert!(check_endpoint("https://iam.example.test").is_ok());
        let e = check_endpoint("http://10.0.0.5:5000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("refusing plaintext endpoint `http://10.0.0.5:5000`"),
            "{e}"
        );
        assert!(check_endpoint("http://localhost.evil.test").is_err());
        assert!(check_endpoint("ftp://127.0.0.1").is_err());
        assert!(check_endpoint("not a url").is_err());
    }

    #[test]
    fn codes_and_statuses_classify() {
        assert_eq!(classify("Throttling", Some(400)), ErrorKind::Throttled);
        assert_eq!(classify("NoSuchEntity", Some(404)), ErrorKind::NoSuchEntity);
        assert_eq!(classify("AccessDenied", Some(403)), ErrorKind::AccessDenied);
        assert_eq!(classify("", Some(403)), ErrorKind::AccessDenied);
        assert_eq!(classify("", Some(503)), ErrorKind::Transient);
        assert_eq!(
            classify("LimitExceeded", Some(409)),
            ErrorKind::LimitExceeded
        );
        assert_eq!(
            classify("ConcurrentModification", Some(409)),
            ErrorKind::Conflict
        );
        assert_eq!(classify("ExpiredToken", Some(400)), ErrorKind::Credentials);
        assert_eq!(
            classify("InvalidClientTokenId", Some(403)),
            ErrorKind::Credentials
        );
        // Codes AWS may add tomorrow: a 5xx is the server's failure, whatever it is called.
        assert_eq!(classify("SomethingNew", Some(502)), ErrorKind::Transient);
        assert_eq!(classify("SomethingNew", Some(400)), ErrorKind::Other);
    }
}
