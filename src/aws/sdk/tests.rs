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
            loader.credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
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
        format!("[default]\nservices = corp\n[services corp]\n{id} =\n  endpoint_url = {plain}\n")
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
        let c =
            SdkConnector::configure(&s, loader(&[], &[(CONFIG, config), (cache, token)], false))
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
