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

/// The services the SDK's credential chain calls on its own (SDK service ids).
const CHAIN_SERVICES: [&str; 4] = ["STS", "SSO", "SSO OIDC", "Signin"];

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

/// The clients iamsweep builds, named as the SDK reads their endpoint settings
/// (`AWS_ENDPOINT_URL_<ID>`, `[services]` sections of the AWS config file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// STS as the base credential chain reaches it (`source_profile`, web identity): the SDK
    /// builds that client itself, from the environment and the config file only, so
    /// `--endpoint-url` does not apply to it.
    CredentialChain,
    Sts,
    Iam,
    Organizations,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::CredentialChain,
        Service::Sts,
        Service::Iam,
        Service::Organizations,
    ];

    /// The SDK's service id: `AWS_ENDPOINT_URL_STS`, `[services x] sts = ...`.
    fn sdk_id(self) -> &'static str {
        match self {
            Service::CredentialChain | Service::Sts => "STS",
            Service::Iam => "IAM",
            Service::Organizations => "Organizations",
        }
    }

    /// Where the service is reached in `partition` when no endpoint is configured for it.
    fn home_region(self, partition: Partition) -> &'static str {
        match self {
            Service::Organizations => partition.organizations_region(),
            _ => partition.iam_region(),
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Service::CredentialChain => f.write_str("STS (base credential chain)"),
            other => f.write_str(other.sdk_id()),
        }
    }
}

/// Where a client sends its requests and the region it signs them for, as the SDK resolved
/// them for a request it was stopped from sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub url: String,
    pub signing_region: String,
}

/// Records the first request a client is about to send, then stops it: the SDK's own endpoint
/// resolution and signing, without a byte on the network.
#[derive(Clone, Debug, Default)]
struct Probe(Arc<Mutex<Option<Resolved>>>);

impl Intercept for Probe {
    fn name(&self) -> &'static str {
        "iamsweep-endpoint-probe"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        // `AWS4-HMAC-SHA256 Credential=AKID/20260101/us-gov-west-1/iam/aws4_request, ...`
        let signing_region = request
            .headers()
            .get("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|scope| scope.split('/').nth(2))
            .unwrap_or_default()
            .to_owned();
        *self.0.lock().expect("probe lock") = Some(Resolved {
            url: request.uri().trim_end_matches('/').to_owned(),
            signing_region,
        });
        Err("stopped by iamsweep's endpoint probe before sending".into())
    }
}

/// The endpoint the environment or the AWS config file sets for `service`, looked up the way
/// the SDK's clients look it up (`AWS_ENDPOINT_URL_<ID>`, `AWS_ENDPOINT_URL`, the profile's
/// `[services]` section, its `endpoint_url`).
fn configured_endpoint(base: &SdkConfig, service: Service) -> Option<String> {
    configured_endpoint_of(base, service.sdk_id())
}

/// [`configured_endpoint`] by the SDK's service id (`STS`, `SSO OIDC`, ...).
fn configured_endpoint_of(base: &SdkConfig, sdk_id: &str) -> Option<String> {
    let key = ServiceConfigKey::builder()
        .service_id(sdk_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    base.service_config()?.load_config(key)
}

/// The region the user configured (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's
/// `region`), read from the same environment and config file as the SDK. The instance
/// metadata service is not asked: that costs a timeout off EC2.
fn configured_region(base: &SdkConfig, service: Service) -> Option<String> {
    let conf = base.service_config()?;
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find_map(|env| {
            let key = ServiceConfigKey::builder()
                .service_id(service.sdk_id())
                .env(env)
                .profile("region")
                .build()
                .ok()?;
            conf.load_config(key).filter(|r| !r.is_empty())
        })
}

/// The retries of every client iamsweep builds: none in the SDK (one HTTP attempt per call), so
/// that every attempt is paced, counted and decided by the meter (`src/calls.rs`).
fn one_attempt() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS)
}

/// The region a client of `service` is built with, which is also the region its requests are
/// signed for when an endpoint is configured (the SDK signs a custom endpoint's requests for
/// the client's region). IAM and Organizations are global: AWS accepts only the partition's
/// home region in their credential scope, whichever endpoint a request goes through (a VPC
/// endpoint, `iam-fips`, a proxy in front of AWS), so they always take it. STS is regional:
/// without a configured endpoint it takes the partition's home region (the SDK then resolves
/// STS's own endpoint in the right partition); with one, the region the user configured, if it
/// is in the partition (a regional or VPC endpoint of STS signs for its own region).
fn client_region(
    base: &SdkConfig,
    service: Service,
    partition: Partition,
    endpoint_flag: bool,
) -> Region {
    let home = service.home_region(partition);
    if matches!(service, Service::Iam | Service::Organizations) {
        return Region::new(home);
    }
    let overridden = (endpoint_flag && service != Service::CredentialChain)
        || configured_endpoint(base, service).is_some();
    let region = configured_region(base, service)
        .filter(|r| overridden && Partition::of_region(r) == Some(partition))
        .unwrap_or_else(|| home.to_owned());
    Region::new(region)
}

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

impl Connector for SdkConnector {
    type Client = SdkIam;

    async fn connect(&self, target: &AccountTarget) -> Result<SdkIam, AwsError> {
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
        let conf = self.iam_conf(target.id.as_str(), credentials).build();
        Ok(SdkIam {
            client: aws_sdk_iam::Client::from_conf(conf),
            role,
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
    session_seconds: i32,
    /// The session handed out while it has more than `PROVIDER_MARGIN` left.
    current: Mutex<Option<Credentials>>,
}

impl AssumedRole {
    /// Assumes the role once, explicitly, so a refused role fails with its real code; the
    /// returned provider hands these credentials out first and re-assumes before expiry.
    async fn start(
        sts: aws_sdk_sts::Client,
        role_arn: &str,
        external_id: Option<&str>,
        session_name: &str,
        session_seconds: i32,
    ) -> Result<Arc<AssumedRole>, AwsError> {
        let role = AssumedRole {
            sts,
            role_arn: role_arn.to_owned(),
            external_id: external_id.map(str::to_owned),
            session_name: session_name.to_owned(),
            session_seconds,
            current: Mutex::new(None),
        };
        let first = role.assume().await?;
        *role.current.lock().expect("credentials lock") = Some(first);
        Ok(Arc::new(role))
    }

    /// The provider the account's clients take credentials from.
    fn provider(self: &Arc<Self>) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(RoleProvider(self.clone()))
    }

    /// Whether the session now held ends within `margin`.
    fn ends_within(&self, margin: Duration) -> bool {
        self.current
            .lock()
            .expect("credentials lock")
            .as_ref()
            .and_then(Credentials::expiry)
            .is_some_and(|end| end <= SystemTime::now() + margin)
    }

    /// Assumes the role again now; the clients' cache takes the new session when the one it
    /// holds nears its end, without a call of its own.
    async fn renew(&self) -> Result<(), AwsError> {
        let fresh = self.assume().await?;
        *self.current.lock().expect("credentials lock") = Some(fresh);
        Ok(())
    }

    async fn assume(&self) -> Result<Credentials, AwsError> {
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .set_external_id(self.external_id.clone())
            .duration_seconds(self.session_seconds)
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

/// An assumed role as the clients' credentials provider.
#[derive(Debug)]
struct RoleProvider(Arc<AssumedRole>);

/// A session with less than this left is not handed out: renewed first.
const PROVIDER_MARGIN: Duration = Duration::from_secs(300);

impl ProvideCredentials for RoleProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let role = &self.0;
            if !role.ends_within(PROVIDER_MARGIN)
                && let Some(c) = role.current.lock().expect("credentials lock").clone()
            {
                return Ok(c);
            }
            // Not renewed ahead (an account that only reads for an hour): inside this call.
            role.renew().await.map_err(|source| {
                CredentialsError::provider_error(RoleRefreshError {
                    role_arn: role.role_arn.clone(),
                    source,
                })
            })?;
            let c = role.current.lock().expect("credentials lock").clone();
            c.ok_or_else(|| CredentialsError::not_loaded("no session"))
        })
    }
}

/// An account's role could not be assumed again when its session neared expiry (inside one of
/// that account's calls). Found in the call's error chain by its type, so that it fails that
/// account with the real code (`AccessDenied`: the trust policy changed; `Throttling`: retried)
/// instead of passing for missing base credentials, which stop every account.
#[derive(Debug)]
struct RoleRefreshError {
    role_arn: String,
    source: AwsError,
}

impl std::fmt::Display for RoleRefreshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refreshing the session of {}: {}",
            self.role_arn, self.source
        )
    }
}

impl std::error::Error for RoleRefreshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// An error code meaning the endpoint refused the request's signature or key: every account's
/// requests through it would be refused the same way.
fn is_signature_refusal(code: &str) -> bool {
    matches!(
        code,
        "SignatureDoesNotMatch" | "IncompleteSignature" | "InvalidClientTokenId"
    )
}

/// The first error of type `T` in `err`'s chain of sources.
fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        next = e.source();
    }
    None
}

/// IAM inside one account.
#[derive(Clone, Debug)]
pub struct SdkIam {
    client: aws_sdk_iam::Client,
    /// The account's role session (`None`: the base credentials).
    role: Option<Arc<AssumedRole>>,
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

fn next(op: Op, truncated: bool, marker: Option<&str>) -> Result<Option<String>, AwsError> {
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
    if let Some(r) = find_in_chain::<RoleRefreshError>(&err) {
        // The account's own role, not the base credentials: that account's error, with its
        // real kind and code (base credentials that failed under it stay `Credentials`).
        return AwsError {
            message: format!("{op}: {r}"),
            ..r.source.clone()
        };
    }
    if find_in_chain::<CredentialsError>(&err).is_some() {
        // Any other provider: the base credentials' chain.
        return AwsError::new(
            ErrorKind::Credentials,
            "NoCredentials",
            format!(
                "{op}: no usable base credentials ({}); set AWS_PROFILE, run `aws sso login`, or pass --profile",
                chain(&err)
            ),
        );
    }
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_types::os_shim_internal::{Env, Fs};

    const HOME: &str = "/home/tester";
    const CONFIG: &str = "/home/tester/.aws/config";

    /// A loader that sees only `env` and, as `~/.aws/config`, `config`: never the
    /// developer's own AWS setup. With `static_credentials`, the credential chain is not built.
    fn loader(
        env: &[(&str, &str)],
        files: &[(&str, &str)],
        static_credentials: bool,
    ) -> impl Fn() -> ConfigLoader {
        let mut vars = vec![("HOME", HOME), ("AWS_EC2_METADATA_DISABLED", "true")];
        vars.extend_from_slice(env);
        let env = Env::from_slice(&vars);
        let fs = Fs::from_slice(files);
        move || {
            let loader = aws_config::defaults(BehaviorVersion::latest())
                .env(env.clone())
                .fs(fs.clone());
            if static_credentials {
                loader.credentials_provider(Credentials::new(
                    "AKIDTEST", "secret", None, None, "test",
                ))
            } else {
                loader
            }
        }
    }

    fn settings(partition: Partition, endpoint_url: Option<&str>) -> SdkSettings {
        SdkSettings {
            endpoint_url: endpoint_url.map(str::to_owned),
            partition,
            ..SdkSettings::default()
        }
    }

    async fn connector(
        settings: &SdkSettings,
        env: &[(&str, &str)],
        config: &str,
    ) -> Result<SdkConnector, SetupError> {
        SdkConnector::configure(settings, loader(env, &[(CONFIG, config)], true)).await
    }

    /// (url, signing region) of every client, in [`Service::ALL`] order.
    async fn endpoints(c: &SdkConnector) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for service in Service::ALL {
            let r = c.resolved(service).await.unwrap();
            out.push((r.url, r.signing_region));
        }
        out
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(u, r)| (u.to_string(), r.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn every_client_of_every_partition_reaches_that_partition() {
        // The user's own region (of any partition) does not move the global services.
        let env = [("AWS_REGION", "eu-west-1")];
        for (partition, expected) in [
            (
                Partition::Aws,
                [
                    ("https://sts.us-east-1.amazonaws.com", "us-east-1"),
                    ("https://sts.us-east-1.amazonaws.com", "us-east-1"),
                    ("https://iam.amazonaws.com", "us-east-1"),
                    ("https://organizations.us-east-1.amazonaws.com", "us-east-1"),
                ],
            ),
            (
                Partition::AwsUsGov,
                [
                    ("https://sts.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
                    ("https://sts.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
                    ("https://iam.us-gov.amazonaws.com", "us-gov-west-1"),
                    (
                        "https://organizations.us-gov-west-1.amazonaws.com",
                        "us-gov-west-1",
                    ),
                ],
            ),
            (
                Partition::AwsCn,
                [
                    ("https://sts.cn-north-1.amazonaws.com.cn", "cn-north-1"),
                    ("https://sts.cn-north-1.amazonaws.com.cn", "cn-north-1"),
                    ("https://iam.cn-north-1.amazonaws.com.cn", "cn-north-1"),
                    (
                        "https://organizations.cn-northwest-1.amazonaws.com.cn",
                        "cn-northwest-1",
                    ),
                ],
            ),
        ] {
            let c = connector(&settings(partition, None), &env, "")
                .await
                .unwrap();
            assert_eq!(endpoints(&c).await, pairs(&expected), "{partition}");
        }
    }

    #[tokio::test]
    async fn a_configured_endpoint_signs_for_the_configured_region() {
        let vpce = "https://vpce-0abc.sts.us-gov-east-1.vpce.amazonaws.com";
        let iam = ("https://iam.us-gov.amazonaws.com", "us-gov-west-1");
        let orgs = (
            "https://organizations.us-gov-west-1.amazonaws.com",
            "us-gov-west-1",
        );
        // STS through a VPC endpoint in the region the user works in.
        let c = connector(
            &settings(Partition::AwsUsGov, None),
            &[
                ("AWS_ENDPOINT_URL_STS", vpce),
                ("AWS_REGION", "us-gov-east-1"),
            ],
            "",
        )
        .await
        .unwrap();
        let sts = (vpce, "us-gov-east-1");
        assert_eq!(endpoints(&c).await, pairs(&[sts, sts, iam, orgs]));
        // The same from the config file: a [services] section and the profile's region.
        let c = connector(
            &settings(Partition::AwsUsGov, None),
            &[],
            &format!("[default]\nregion = us-gov-east-1\nservices = corp\n[services corp]\nsts =\n  endpoint_url = {vpce}\n"),
        )
        .await
        .unwrap();
        assert_eq!(endpoints(&c).await, pairs(&[sts, sts, iam, orgs]));
        // A region of another partition is never signed for: the partition's own is.
        let c = connector(
            &settings(Partition::AwsUsGov, None),
            &[("AWS_ENDPOINT_URL_STS", vpce), ("AWS_REGION", "us-east-1")],
            "",
        )
        .await
        .unwrap();
        let sts = (vpce, "us-gov-west-1");
        assert_eq!(endpoints(&c).await, pairs(&[sts, sts, iam, orgs]));
    }

    #[test]
    fn a_page_truncated_without_a_marker_is_an_error_not_the_end() {
        assert_eq!(next(Op::GetGroup, false, None).unwrap(), None);
        assert_eq!(
            next(Op::GetGroup, true, Some("m1")).unwrap(),
            Some("m1".to_owned())
        );
        for marker in [None, Some("")] {
            let e = next(Op::GetGroup, true, marker).unwrap_err();
            assert_eq!(e.code, "TruncatedWithoutMarker");
        }
    }

    #[test]
    fn a_role_that_cannot_be_assumed_again_fails_its_account_not_the_run() {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let refresh = |source: AwsError| {
            let e = CredentialsError::provider_error(RoleRefreshError {
                role_arn: "arn:aws:iam::222222222222:role/IamSweepRole".into(),
                source,
            });
            let err: SdkError<aws_sdk_iam::operation::get_group::GetGroupError, _> =
                SdkError::dispatch_failure(ConnectorError::other(Box::new(e), None));
            map_sdk_error(Op::GetGroup, err)
        };
        // The trust policy changed: that account is refused, with the real code.
        let e = refresh(AwsError::new(
            ErrorKind::AccessDenied,
            "AccessDenied",
            "not authorized to perform sts:AssumeRole",
        ));
        assert_eq!(
            (e.kind, e.code.as_str()),
            (ErrorKind::AccessDenied, "AccessDenied")
        );
        assert!(e.message.contains("222222222222"), "{}", e.message);
        // STS throttled the refresh: the call did nothing and is retried.
        let e = refresh(AwsError::throttled());
        assert_eq!(e.kind, ErrorKind::Throttled);
        // Any other credentials error is still the base credentials': the run stops.
        let other: SdkError<aws_sdk_iam::operation::get_group::GetGroupError, _> =
            SdkError::dispatch_failure(ConnectorError::other(
                Box::new(CredentialsError::not_loaded("no profile")),
                None,
            ));
        assert_eq!(
            map_sdk_error(Op::GetGroup, other).kind,
            ErrorKind::Credentials
        );
    }

    #[tokio::test]
    async fn the_credential_chain_keeps_the_sdks_retries_and_our_clients_make_one_attempt() {
        // The loader's retry setting reaches the chain's own clients (a profile's role chain,
        // SSO, web identity): one throttled `GetRoleCredentials` at a refresh must be retried
        // there, as the SDK does, not stop the run.
        let c = connector(&settings(Partition::Aws, None), &[], "")
            .await
            .unwrap();
        let chain = c.base.retry_config().expect("retry config");
        assert!(chain.max_attempts() >= 3, "{chain:?}");
        let creds = SharedCredentialsProvider::new(Credentials::for_tests());
        let ours = [
            c.sts_conf()
                .build()
                .retry_config()
                .map(|r| r.max_attempts()),
            c.iam_conf("111111111111", creds)
                .build()
                .retry_config()
                .map(|r| r.max_attempts()),
            c.organizations_conf()
                .build()
                .retry_config()
                .map(|r| r.max_attempts()),
        ];
        assert_eq!(ours, [Some(1), Some(1), Some(1)]);
    }

    #[tokio::test]
    async fn global_services_sign_for_their_home_region_through_any_endpoint() {
        // A user in us-west-2 sends IAM and Organizations through a proxy (or `iam-fips`, a VPC
        // endpoint): AWS accepts only `iam/us-east-1` in their credential scope and answers
        // anything else `SignatureDoesNotMatch`. STS, regional, signs for the user's region.
        let iam = "https://iam-fips.amazonaws.com";
        let orgs = "https://orgs-proxy.example.test";
        let c = connector(
            &settings(Partition::Aws, None),
            &[
                ("AWS_REGION", "us-west-2"),
                ("AWS_ENDPOINT_URL_IAM", iam),
                ("AWS_ENDPOINT_URL_ORGANIZATIONS", orgs),
            ],
            "",
        )
        .await
        .unwrap();
        let found = endpoints(&c).await;
        assert_eq!(found[2], (iam.to_owned(), "us-east-1".to_owned()));
        assert_eq!(found[3], (orgs.to_owned(), "us-east-1".to_owned()));
        // And with --endpoint-url: every client but the chain's through it; STS signs for
        // us-west-2, IAM and Organizations for us-east-1.
        let proxy = "https://proxy.example.test";
        let c = connector(
            &settings(Partition::Aws, Some(proxy)),
            &[("AWS_REGION", "us-west-2")],
            "",
        )
        .await
        .unwrap();
        let found = endpoints(&c).await;
        assert_eq!(
            found[1..],
            pairs(&[
                (proxy, "us-west-2"),
                (proxy, "us-east-1"),
                (proxy, "us-east-1")
            ])[..]
        );
    }

    #[tokio::test]
    async fn endpoint_url_flag_takes_every_client_but_the_credential_chain() {
        let proxy = "https://proxy.example.test:8443";
        let c = connector(
            &settings(Partition::AwsCn, Some(proxy)),
            &[
                ("AWS_ENDPOINT_URL_IAM", "https://iam-vpce.example.test"),
                ("AWS_REGION", "cn-northwest-1"),
            ],
            "",
        )
        .await
        .unwrap();
        assert_eq!(
            endpoints(&c).await,
            pairs(&[
                // The SDK builds the chain's STS client itself, from the environment only.
                ("https://sts.cn-north-1.amazonaws.com.cn", "cn-north-1"),
                // STS is regional: the configured region. IAM and Organizations are global:
                // their partition's home region, whatever the endpoint (AWS refuses any other
                // credential scope).
                (proxy, "cn-northwest-1"),
                (proxy, "cn-north-1"),
                (proxy, "cn-northwest-1"),
            ])
        );
    }

    #[tokio::test]
    async fn plaintext_is_refused_whatever_set_it() {
        let plain = "http://10.0.0.5:5000";
        let services = |id: &str| {
            format!(
                "[default]\nservices = corp\n[services corp]\n{id} =\n  endpoint_url = {plain}\n"
            )
        };
        let profile = format!(
            "[profile other]\nservices = corp\n[services corp]\niam =\n  endpoint_url = {plain}\n"
        );
        for (how, flag, env, config, profile_name, refused) in [
            (
                "--endpoint-url",
                Some(plain),
                vec![],
                String::new(),
                None,
                "--endpoint-url",
            ),
            (
                "AWS_ENDPOINT_URL",
                None,
                vec![("AWS_ENDPOINT_URL", plain)],
                String::new(),
                None,
                "STS (base credential chain) endpoint",
            ),
            (
                "AWS_ENDPOINT_URL_STS",
                None,
                vec![("AWS_ENDPOINT_URL_STS", plain)],
                String::new(),
                None,
                "STS (base credential chain) endpoint",
            ),
            (
                "AWS_ENDPOINT_URL_IAM",
                None,
                vec![("AWS_ENDPOINT_URL_IAM", plain)],
                String::new(),
                None,
                "IAM endpoint",
            ),
            (
                "AWS_ENDPOINT_URL_ORGANIZATIONS",
                None,
                vec![("AWS_ENDPOINT_URL_ORGANIZATIONS", plain)],
                String::new(),
                None,
                "Organizations endpoint",
            ),
            (
                "profile endpoint_url",
                None,
                vec![],
                format!("[default]\nendpoint_url = {plain}\n"),
                None,
                "STS (base credential chain) endpoint",
            ),
            (
                "[services] sts",
                None,
                vec![],
                services("sts"),
                None,
                "STS (base credential chain) endpoint",
            ),
            (
                "[services] iam",
                None,
                vec![],
                services("iam"),
                None,
                "IAM endpoint",
            ),
            (
                "[services] organizations",
                None,
                vec![],
                services("organizations"),
                None,
                "Organizations endpoint",
            ),
            (
                "--profile's [services] iam",
                None,
                vec![],
                profile.clone(),
                Some("other"),
                "IAM endpoint",
            ),
        ] {
            let mut s = settings(Partition::Aws, flag);
            s.profile = profile_name.map(str::to_owned);
            let e = connector(&s, &env, &config)
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(refused), "{how}: {e}");
            assert!(
                e.contains(&format!("refusing plaintext endpoint `{plain}")),
                "{how}: {e}"
            );
        }
        // On loopback, plaintext is fine (an emulator), however it is set.
        let local = "http://127.0.0.1:5000";
        let c = connector(
            &settings(Partition::Aws, None),
            &[("AWS_ENDPOINT_URL_IAM", local)],
            &format!("[default]\nservices = corp\n[services corp]\norganizations =\n  endpoint_url = {local}\n"),
        )
        .await
        .unwrap();
        assert_eq!(c.resolved(Service::Iam).await.unwrap().url, local);
        assert_eq!(c.resolved(Service::Organizations).await.unwrap().url, local);
        // Turned off as the SDK defines it: the configured endpoint is not used, so not refused.
        let c = connector(
            &settings(Partition::Aws, None),
            &[
                ("AWS_ENDPOINT_URL_IAM", plain),
                ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
            ],
            "",
        )
        .await
        .unwrap();
        assert_eq!(
            c.resolved(Service::Iam).await.unwrap().url,
            "https://iam.amazonaws.com"
        );
        // Except for the credential chain's own clients, which use configured endpoints
        // whatever that flag says: still refused.
        for (var, id) in [
            ("AWS_ENDPOINT_URL_STS", "STS"),
            ("AWS_ENDPOINT_URL_SSO_OIDC", "SSO OIDC"),
            ("AWS_ENDPOINT_URL_SIGNIN", "Signin"),
        ] {
            let e = connector(
                &settings(Partition::Aws, None),
                &[
                    (var, plain),
                    ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
                ],
                "",
            )
            .await
            .err()
            .unwrap_or_else(|| panic!("{var} with the ignore flag was accepted"))
            .to_string();
            assert!(
                e.contains(&format!("{id} endpoint of the credential chain")) && e.contains(var),
                "{var}: {e}"
            );
        }
    }

    /// Credentials that count how often they are asked for.
    #[derive(Debug, Default, Clone)]
    struct Counting(Arc<AtomicUsize>);

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                "AKIDCOUNT",
                "secret",
                None,
                None,
                "counting",
            )))
        }
    }

    #[tokio::test]
    async fn more_than_64_accounts_assume_each_role_once() {
        let c = connector(&settings(Partition::Aws, None), &[], "")
            .await
            .unwrap();
        let asked = Counting::default();
        let clients: Vec<aws_sdk_iam::Client> = (0..100)
            .map(|n| {
                let conf = c
                    .iam_conf(
                        &format!("{n:012}"),
                        SharedCredentialsProvider::new(asked.clone()),
                    )
                    .interceptor(Probe::default())
                    .build();
                aws_sdk_iam::Client::from_conf(conf)
            })
            .collect();
        for _ in 0..2 {
            for client in &clients {
                let _ = client.get_user().send().await;
            }
        }
        // A shared cache keeps 64: the other 36 accounts would be asked again (a new
        // AssumeRole each, or another run of a credential_process).
        assert_eq!(asked.0.load(Ordering::SeqCst), 100);
    }

    #[tokio::test]
    async fn aws_login_and_credential_process_profiles_give_credentials() {
        // A session cached by `aws login` (the SDK's own test fixture: a key valid until 2199).
        let cache = "/home/tester/.aws/login/cache/36db1d138ff460920374e4c3d8e01f53f9f73537e89c88d639f68393df0e2726.json";
        let token = r#"{"accessToken":{"accessKeyId":"AKIALOGINEXAMPLE","secretAccessKey":"s","sessionToken":"t","accountId":"012345678901","expiresAt":"2199-12-25T21:30:00Z"},"tokenType":"aws_sigv4","refreshToken":"r","identityToken":"i","clientId":"aws:signin:::cli/same-device","dpopKey":"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIFDZHUzOG1Pzq+6F0mjMlOSp1syN9LRPBuHMoCFXTcXhoAoGCCqGSM49\nAwEHoUQDQgAE9qhj+KtcdHj1kVgwxWWWw++tqoh7H7UHs7oXh8jBbgF47rrYGC+t\ndjiIaHK3dBvvdE7MGj5HsepzLm3Kj91bqA==\n-----END EC PRIVATE KEY-----\n"}"#;
        let config = "[profile console]\nlogin_session = arn:aws:iam::0123456789012:user/Admin\n\n[profile tool]\ncredential_process = printf '{\"Version\":1,\"AccessKeyId\":\"AKIAPROCESSEXAMPLE\",\"SecretAccessKey\":\"s\"}'\n";
        for (profile, key) in [
            ("console", "AKIALOGINEXAMPLE"),
            ("tool", "AKIAPROCESSEXAMPLE"),
        ] {
            let s = SdkSettings {
                profile: Some(profile.to_owned()),
                ..SdkSettings::default()
            };
            let c = SdkConnector::configure(
                &s,
                loader(&[], &[(CONFIG, config), (cache, token)], false),
            )
            .await
            .unwrap();
            let creds = c
                .base
                .credentials_provider()
                .unwrap()
                .provide_credentials()
                .await
                .unwrap_or_else(|e| panic!("{profile}: {}", chain(&e)));
            assert_eq!(creds.access_key_id(), key);
        }
    }

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
