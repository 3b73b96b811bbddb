//! Each account's credentials: the role assumed for it, renewed ahead of its end, and the
//! error that tells a failed renewal (that account's) from failed base credentials (the run's).

use super::*;

/// Assumed-role credentials: the first set comes from the explicit call in `connect`, later
/// ones from a fresh `AssumeRole` whenever the SDK's identity cache sees them near expiry.
#[derive(Debug)]
pub(super) struct AssumedRole {
    sts: aws_sdk_sts::Client,
    pub(super) role_arn: String,
    external_id: Option<String>,
    session_name: String,
    session_seconds: i32,
    /// The session handed out while it has more than `PROVIDER_MARGIN` left.
    current: Mutex<Option<Credentials>>,
}

impl AssumedRole {
    /// Assumes the role once, explicitly, so a refused role fails with its real code; the
    /// returned provider hands these credentials out first and re-assumes before expiry.
    pub(super) async fn start(
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
    pub(super) fn provider(self: &Arc<Self>) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(RoleProvider(self.clone()))
    }

    /// Whether the session now held ends within `margin`.
    pub(super) fn ends_within(&self, margin: Duration) -> bool {
        self.current
            .lock()
            .expect("credentials lock")
            .as_ref()
            .and_then(Credentials::expiry)
            .is_some_and(|end| end <= SystemTime::now() + margin)
    }

    /// Assumes the role again now; the clients' cache takes the new session when the one it
    /// holds nears its end, without a call of its own.
    pub(super) async fn renew(&self) -> Result<(), AwsError> {
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
pub(super) struct RoleRefreshError {
    pub(super) role_arn: String,
    pub(super) source: AwsError,
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
