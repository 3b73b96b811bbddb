//! Where each client sends and what it signs for: the services, their endpoints (flag,
//! environment, config file), the regions they sign for in each partition, and the plaintext
//! check every endpoint passes before anything is sent.

use super::*;

/// The services the SDK's credential chain calls on its own (SDK service ids).
pub(super) const CHAIN_SERVICES: [&str; 4] = ["STS", "SSO", "SSO OIDC", "Signin"];

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
    pub(super) fn sdk_id(self) -> &'static str {
        match self {
            Service::CredentialChain | Service::Sts => "STS",
            Service::Iam => "IAM",
            Service::Organizations => "Organizations",
        }
    }

    /// Where the service is reached in `partition` when no endpoint is configured for it.
    pub(super) fn home_region(self, partition: Partition) -> &'static str {
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
pub(super) struct Probe(pub(super) Arc<Mutex<Option<Resolved>>>);

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
pub(super) fn configured_endpoint(base: &SdkConfig, service: Service) -> Option<String> {
    configured_endpoint_of(base, service.sdk_id())
}

/// [`configured_endpoint`] by the SDK's service id (`STS`, `SSO OIDC`, ...).
pub(super) fn configured_endpoint_of(base: &SdkConfig, sdk_id: &str) -> Option<String> {
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
pub(super) fn configured_region(base: &SdkConfig, service: Service) -> Option<String> {
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
pub(super) fn one_attempt() -> RetryConfig {
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
pub(super) fn client_region(
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
