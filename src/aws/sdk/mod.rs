//! The real AWS adapter: the only file that names `aws_config` and `aws_sdk_*`. Builds every
//! client (STS, IAM per account, Organizations) for one partition, refuses plaintext endpoints
//! off loopback whatever set them, and maps SDK errors to [`AwsError`]. It decides no retry:
//! each SDK call is one HTTP attempt.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_iam::config::IdentityCache;
use aws_sdk_iam::config::retry::RetryPartition;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::operation::RequestId;
use aws_sdk_iam::types::EntityType;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::service_config::ServiceConfigKey;

use super::{
    AttachedPolicy, AuthDetailsPage, AwsError, Connector, Decision, ErrorKind, GroupDetail,
    GroupMember, GroupPage, Iam, Op, OrgAccount, OrgReader, OrgUnit, Page, PolicyInfo, Receipt,
    UserDetail,
};
use crate::config::{Access, AccountTarget, OrgSpec};
use crate::model::{Partition, PolicyArn, UserName};

mod credentials;
mod endpoints;
mod errors;
pub mod hub;
mod iam;
mod org;

use credentials::*;
use endpoints::*;
pub use endpoints::{Resolved, Service, check_endpoint};
pub use errors::classify;
use errors::*;
pub use iam::SdkIam;
#[cfg(test)]
use iam::next;
pub use org::SdkOrg;

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
    /// `--endpoint-url`: an emulator or a proxy that takes every service's requests. A single
    /// service's endpoint (a VPC endpoint) is configured as the SDK defines it:
    /// `AWS_ENDPOINT_URL_<SERVICE>` or a `[services]` section of the AWS config file.
    pub endpoint_url: Option<String>,
    /// The partition every client is built for (from accounts.toml).
    pub partition: Partition,
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
            partition: Partition::Aws,
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

/// Connects to real AWS (or an emulator at the endpoint) with the standard credential chain,
/// every client in one partition.
#[derive(Clone, Debug)]
pub struct SdkConnector {
    base: SdkConfig,
    partition: Partition,
    /// `--endpoint-url`: every client iamsweep builds sends there, whatever the environment
    /// and config file say.
    endpoint_url: Option<String>,
    sts_region: Region,
    iam_region: Region,
    organizations_region: Region,
    caller_arn: String,
}

impl SdkConnector {
    /// Loads the base configuration (profile, SSO, env, instance role...) for the partition,
    /// checks every endpoint it would send credentials to, and checks the credentials once.
    pub async fn load(settings: &SdkSettings) -> Result<Self, SetupError> {
        let mut connector =
            Self::configure(settings, || aws_config::defaults(BehaviorVersion::latest())).await?;
        // Check the base credentials once, up front: without them every account would fail
        // the same way, so say it once and change nothing. `GetCallerIdentity` is also what
        // loads them (into the base configuration's cache, which every client built from it
        // shares): a `credential_process` runs, an MFA prompt appears, once. Its attempt
        // timeout bounds the loading too.
        if connector.base.credentials_provider().is_none() {
            return Err(SetupError("no AWS credentials are configured: set AWS_PROFILE (or pass --profile), run `aws sso login`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into()));
        }
        let hint = "set AWS_PROFILE (or pass --profile), run `aws sso login` (or `aws login`) for such a profile, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";
        connector.caller_arn = connector
            .sts()
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                let e = map_sdk_error(Op::GetCallerIdentity, e);
                SetupError(match e.kind {
                    // The chain could not produce credentials (not: AWS refused them).
                    ErrorKind::Credentials if e.code == "NoCredentials" => {
                        format!("cannot load AWS credentials: {}", e.message)
                    }
                    _ if e.code == "Timeout" => format!(
                        "loading and checking the AWS credentials took longer than {} s ({}); {hint}",
                        settings.call_timeout.as_secs_f64(),
                        e.message
                    ),
                    _ => format!("the AWS credentials do not work: {e}; {hint}"),
                })
            })?
            .arn()
            .unwrap_or_default()
            .to_owned();
        connector.check_iam_signature(settings).await?;
        Ok(connector)
    }

    /// With an endpoint configured for IAM (a proxy, a VPC or FIPS endpoint), one request with
    /// the base credentials, before any account: an endpoint that refuses the signature would
    /// refuse every account's the same way, so it is said once (exit 2), nothing changed. Any
    /// answer past the signature check (the user, `AccessDenied`, a validation error) will do;
    /// a network failure is left to the accounts' own calls.
    async fn check_iam_signature(&self, settings: &SdkSettings) -> Result<(), SetupError> {
        if self.endpoint_url.is_none() && configured_endpoint(&self.base, Service::Iam).is_none() {
            return Ok(());
        }
        // The base configuration's own credentials cache: filled by `GetCallerIdentity` just
        // before, so the credentials are not loaded again (a `credential_process` run twice).
        let mut conf = aws_sdk_iam::config::Builder::from(&self.base)
            .region(self.iam_region.clone())
            .retry_config(one_attempt());
        if let Some(url) = &self.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        let client = aws_sdk_iam::Client::from_conf(conf.build());
        let Err(e) = client.get_user().send().await else {
            return Ok(());
        };
        let e = map_sdk_error(Op::GetUser, e);
        if !is_signature_refusal(&e.code) {
            return Ok(());
        }
        let resolved = self.resolved(Service::Iam).await?;
        Err(SetupError(format!(
            "IAM at {} refuses the requests' signature ({}: {}); they are signed for {} in partition {}: check --partition, the IAM endpoint and what sits in front of it (a proxy must not re-sign or alter signed requests)",
            resolved.url, e.code, e.message, resolved.signing_region, settings.partition
        )))
    }

    /// Builds the configuration with the loader `defaults` gives (the real environment, or a
    /// test's), and refuses any plaintext endpoint off loopback, for every client, whatever
    /// set it. Sends nothing and resolves no credentials.
    async fn configure(
        settings: &SdkSettings,
        defaults: impl Fn() -> ConfigLoader,
    ) -> Result<Self, SetupError> {
        if let Some(url) = &settings.endpoint_url {
            check_endpoint(url).map_err(|e| SetupError(format!("--endpoint-url: {e}")))?;
        }
        let loader = |region: Region| {
            // No retry setting here: the loader hands it to the credential chain's own clients
            // (a profile's role chain, SSO, web identity, `aws login`), which keep the SDK's
            // retries; the clients iamsweep builds make one attempt each (see `one_attempt`).
            let mut loader = defaults()
                .region(region)
                .http_client(super::http::client())
                .timeout_config(timeouts(settings.call_timeout));
            if let Some(profile) = &settings.profile {
                loader = loader.profile_name(profile);
            }
            loader
        };
        let load = |region: Region| loader(region).load();
        let partition = settings.partition;
        // The credential chain's own STS client (assume role from a profile, web identity)
        // takes the loader's region: the partition's, or the configured one when the
        // environment points that chain's STS elsewhere.
        let home = Region::new(Service::CredentialChain.home_region(partition));
        let mut base = load(home.clone()).await;
        let chain_region = client_region(&base, Service::CredentialChain, partition, false);
        if chain_region != home {
            base = load(chain_region).await;
        }
        let flag = settings.endpoint_url.is_some();
        let connector = Self {
            sts_region: client_region(&base, Service::Sts, partition, flag),
            iam_region: client_region(&base, Service::Iam, partition, flag),
            organizations_region: client_region(&base, Service::Organizations, partition, flag),
            base,
            partition,
            endpoint_url: settings.endpoint_url.clone(),
            caller_arn: String::new(),
        };
        for service in Service::ALL {
            let resolved = connector.resolved(service).await?;
            check_endpoint(&resolved.url).map_err(|e| {
                SetupError(format!(
                    "{service} endpoint: {e}; it is set by --endpoint-url, AWS_ENDPOINT_URL_{}, AWS_ENDPOINT_URL, or the AWS config file (`endpoint_url`, or a [services] section)",
                    service.sdk_id().to_uppercase()
                ))
            })?;
        }
        // The SDK's own clients of the credential chain (a profile's role chain, web identity,
        // SSO, `aws login`) use the configured endpoints even when
        // AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is set; a loader given an endpoint of its own
        // reads them without that flag, as those clients do.
        let chain = loader(home)
            .endpoint_url("https://endpoint-check.invalid")
            .load()
            .await;
        for id in CHAIN_SERVICES {
            if let Some(url) = configured_endpoint_of(&chain, id) {
                check_endpoint(&url).map_err(|e| {
                    SetupError(format!(
                        "{id} endpoint of the credential chain: {e}; it is set by AWS_ENDPOINT_URL_{}, AWS_ENDPOINT_URL, or the AWS config file (`endpoint_url`, or a [services] section), and the SDK uses it even with AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
                        id.replace(' ', "_").to_uppercase()
                    ))
                })?;
            }
        }
        Ok(connector)
    }

    /// Who the base credentials are (`GetCallerIdentity`), shown with each run.
    pub fn caller_arn(&self) -> &str {
        &self.caller_arn
    }

    /// Where `service`'s client sends and what it signs for: the SDK resolves the endpoint and
    /// signs a request, which a probe stops before it is sent. Probe credentials, no cache:
    /// nothing of the user's is resolved.
    async fn resolved(&self, service: Service) -> Result<Resolved, SetupError> {
        let probe = Probe::default();
        let creds = SharedCredentialsProvider::new(Credentials::new(
            "AKIAIAMSWEEPPROBE",
            "probe",
            None,
            None,
            "iamsweep-probe",
        ));
        let error = match service {
            Service::CredentialChain | Service::Sts => {
                let conf = if service == Service::Sts {
                    self.sts_conf()
                } else {
                    aws_sdk_sts::config::Builder::from(&self.base)
                };
                let conf = conf
                    .credentials_provider(creds)
                    .identity_cache(IdentityCache::no_cache())
                    .interceptor(probe.clone())
                    .build();
                aws_sdk_sts::Client::from_conf(conf)
                    .get_caller_identity()
                    .send()
                    .await
                    .err()
                    .map(|e| chain(&e))
            }
            Service::Iam => {
                let conf = self
                    .iam_conf("probe", creds)
                    .identity_cache(IdentityCache::no_cache())
                    .interceptor(probe.clone())
                    .build();
                aws_sdk_iam::Client::from_conf(conf)
                    .get_user()
                    .send()
                    .await
                    .err()
                    .map(|e| chain(&e))
            }
            Service::Organizations => {
                let conf = self
                    .organizations_conf()
                    .credentials_provider(creds)
                    .identity_cache(IdentityCache::no_cache())
                    .interceptor(probe.clone())
                    .build();
                aws_sdk_organizations::Client::from_conf(conf)
                    .list_roots()
                    .send()
                    .await
                    .err()
                    .map(|e| chain(&e))
            }
        };
        let seen = probe.0.lock().expect("probe lock").take();
        seen.ok_or_else(|| {
            SetupError(format!(
                "cannot resolve the {service} endpoint: {}",
                error.unwrap_or_default()
            ))
        })
    }

    /// STS for the partition: AssumeRole into each account, GetCallerIdentity.
    fn sts_conf(&self) -> aws_sdk_sts::config::Builder {
        let mut conf = aws_sdk_sts::config::Builder::from(&self.base)
            .region(self.sts_region.clone())
            .retry_config(one_attempt());
        if let Some(url) = &self.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        conf
    }

    fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::from_conf(self.sts_conf().build())
    }

    /// IAM inside one account.
    fn iam_conf(
        &self,
        account: &str,
        credentials: SharedCredentialsProvider,
    ) -> aws_sdk_iam::config::Builder {
        let mut conf = aws_sdk_iam::config::Builder::from(&self.base)
            .region(self.iam_region.clone())
            .retry_config(one_attempt())
            .credentials_provider(credentials)
            // Each account gets its own retry budget: one throttled account must not drain
            // the retries of all the others.
            .retry_partition(RetryPartition::new(format!("iamsweep-{account}")))
            // And its own identity cache: a shared one keeps 64 identities, so with more
            // accounts it evicts some, and each eviction costs an AssumeRole (or another run
            // of a `credential_process`).
            .identity_cache(IdentityCache::lazy().build());
        if let Some(url) = &self.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        conf
    }

    /// AWS Organizations, served from one region per partition.
    fn organizations_conf(&self) -> aws_sdk_organizations::config::Builder {
        let mut conf = aws_sdk_organizations::config::Builder::from(&self.base)
            .region(self.organizations_region.clone())
            .retry_config(one_attempt())
            .identity_cache(IdentityCache::lazy().build());
        if let Some(url) = &self.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        conf
    }

    /// A reader of the organization, with the base credentials or through
    /// `management_role_arn` (assumed through the partition's STS).
    pub async fn organization(&self, spec: &OrgSpec) -> Result<SdkOrg, AwsError> {
        let mut conf = self.organizations_conf();
        if let Some(role_arn) = &spec.management_role_arn {
            let role = AssumedRole::start(
                self.sts(),
                role_arn,
                spec.external_id.as_deref(),
                "iamsweep-organization",
                SESSION_SECONDS,
            )
            .await?;
            conf = conf.credentials_provider(role.provider());
        }
        Ok(SdkOrg {
            client: aws_sdk_organizations::Client::from_conf(conf.build()),
        })
    }
}

impl SdkConnector {
    /// The credentials for one account: its role assumed (kept alive with the client), or the
    /// base credentials when they are that account's own.
    async fn account_credentials(
        &self,
        target: &AccountTarget,
    ) -> Result<(SharedCredentialsProvider, Option<Arc<AssumedRole>>), AwsError> {
        if target.partition != self.partition {
            return Err(AwsError::new(
                ErrorKind::Other,
                "PartitionMismatch",
                format!(
                    "account {} is in partition {}, but this run works in {}; run each partition with its own accounts file and credentials",
                    target.id, target.partition, self.partition
                ),
            ));
        }
        let sts = self.sts();
        let mut role = None;
        let credentials = match &target.access {
            Access::AssumeRole {
                role_arn,
                external_id,
                session_name,
                session_seconds,
            } => {
                let assumed = AssumedRole::start(
                    sts,
                    role_arn,
                    external_id.as_deref(),
                    session_name,
                    session_seconds.map_or(SESSION_SECONDS, |s| s as i32),
                )
                .await?;
                let provider = assumed.provider();
                role = Some(assumed);
                provider
            }
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
        Ok((credentials, role))
    }

    /// AWS Security Hub in one account and `region`, with that account's role: Security Hub
    /// takes a finding only from the account it is about.
    async fn hub_client(
        &self,
        target: &AccountTarget,
        region: &str,
    ) -> Result<hub::SdkHub, AwsError> {
        let (credentials, role) = self.account_credentials(target).await?;
        let mut conf = aws_sdk_securityhub::config::Builder::from(&self.base)
            .region(Region::new(region.to_owned()))
            .retry_config(one_attempt())
            .credentials_provider(credentials)
            .identity_cache(IdentityCache::lazy().build());
        if let Some(url) = &self.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        Ok(hub::SdkHub::new(
            aws_sdk_securityhub::Client::from_conf(conf.build()),
            role,
        ))
    }
}

impl super::HubConnector for SdkConnector {
    type Hub = hub::SdkHub;

    async fn hub(&self, target: &AccountTarget, region: &str) -> Result<hub::SdkHub, AwsError> {
        self.hub_client(target, region).await
    }
}

impl Connector for SdkConnector {
    type Client = SdkIam;

    async fn connect(&self, target: &AccountTarget) -> Result<SdkIam, AwsError> {
        let (credentials, role) = self.account_credentials(target).await?;
        let conf = self.iam_conf(target.id.as_str(), credentials).build();
        Ok(SdkIam {
            client: aws_sdk_iam::Client::from_conf(conf),
            role,
        })
    }
}

#[cfg(test)]
mod tests;
