//! Every AWS call the core makes goes through here: paced per account, counted per operation
//! (each call is one HTTP attempt: the SDK does not retry), and retried with backoff when
//! throttled. Reads also retry transient failures (network, timeout, 5xx). A detach is never
//! retried after one: its outcome is unknown and the caller settles it from live reads. An
//! attach is idempotent, so [`Metered::attach_user_policy`] retries it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::aws::{
    AuthDetailsPage, AwsError, Connector, ErrorKind, GroupMember, Iam, Op, Page, Receipt,
};
use crate::config::{Access, AccountTarget};
use crate::limiter::Observe;
use crate::model::{PolicyArn, UserName};
pub use crate::pacer::Pacer;

/// Requests made for one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCount {
    /// Every request sent, retries included.
    pub calls: u64,
    /// Requests refused for rate.
    pub throttled: u64,
    /// Requests that failed for another reason.
    pub errors: u64,
}

/// Per-operation counts for one account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallCounts(BTreeMap<Op, OpCount>);

impl CallCounts {
    pub fn iter(&self) -> impl Iterator<Item = (Op, OpCount)> + '_ {
        self.0.iter().map(|(op, c)| (*op, *c))
    }

    pub fn set(&mut self, op: Op, count: OpCount) {
        self.0.insert(op, count);
    }

    pub fn total(&self) -> u64 {
        self.0.values().map(|c| c.calls).sum()
    }
}

/// Backoff for throttled (and, for reads and attaches, transient) failures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts for a throttled call.
    pub max_attempts: u32,
    /// Attempts for a read (or an attach, which is idempotent) that failed on the network,
    /// timed out or got a 5xx.
    pub max_transient_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_transient_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff before attempt `attempt + 1`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        exp.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// Limits for one account's calls.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CallPolicy {
    pub retry: RetryPolicy,
    /// Calls per second per account; `None`: no pacing.
    pub rate: Option<f64>,
    /// The longest one call may take (the SDK enforces it): a call that was sent is known to be
    /// over, answered or not, this long after it started.
    pub call_timeout: Duration,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            rate: None,
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// A role session ending within this is renewed before a finding's work starts (proofs, the
/// detach and its re-sends take seconds; a renewal is never left to happen inside them).
pub const RENEW_MARGIN: Duration = Duration::from_secs(600);

tokio::task_local! {
    static URGENT: ();
}

/// Runs `work` with its calls leaving at once, their slots taken in the pace without waiting
/// (they push the calls after them back): the reads that prove a grant again right before a
/// detach that already waited for its slot, so the proof is as young as the reads allow.
pub async fn urgently<F: Future>(work: F) -> F::Output {
    URGENT.scope((), work).await
}

/// Calls per second to AWS Organizations, at most. Its quotas hold for the whole organization
/// (every call is made with the management account's credentials) and allow only a few requests
/// per second, so its walk is paced on its own, whatever IAM's pace; the pacer slows down while
/// it is throttled, so this is a ceiling, not a promise.
pub const ORGANIZATIONS_RATE: f64 = 10.0;

impl CallPolicy {
    /// The policy of the Organizations walk: the same retries and call timeout, at
    /// Organizations' pace (or the user's `--max-rate`, if slower).
    pub fn for_organizations(self) -> Self {
        Self {
            rate: Some(
                self.rate
                    .map_or(ORGANIZATIONS_RATE, |r| r.min(ORGANIZATIONS_RATE)),
            ),
            ..self
        }
    }
}

/// One account's metering: shared by its connect and its client.
pub struct Meter {
    counts: Mutex<CallCounts>,
    pub policy: CallPolicy,
    pacer: Pacer,
    /// STS calls of every account are made by one principal, and share its quota: one pacer
    /// for all of them.
    sts: Option<Arc<Pacer>>,
    /// Hears how long each call took (the engine's concurrency limiter).
    observer: Option<Arc<dyn Observe>>,
}

impl Meter {
    pub fn new(policy: CallPolicy) -> Arc<Self> {
        Self::resuming(policy, CallCounts::default())
    }

    /// A meter that adds to the calls an earlier attempt already made.
    pub fn resuming(policy: CallPolicy, prior: CallCounts) -> Arc<Self> {
        Self::observed(policy, prior, None)
    }

    /// [`Meter::resuming`], telling `observer` how long each call took.
    pub fn observed(
        policy: CallPolicy,
        prior: CallCounts,
        observer: Option<Arc<dyn Observe>>,
    ) -> Arc<Self> {
        Self::shared(policy, prior, observer, None)
    }

    /// [`Meter::observed`], with the STS pacer every account of the run shares.
    pub fn shared(
        policy: CallPolicy,
        prior: CallCounts,
        observer: Option<Arc<dyn Observe>>,
        sts: Option<Arc<Pacer>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(prior),
            policy,
            pacer: Pacer::new(policy.rate),
            sts,
            observer,
        })
    }

    pub fn counts(&self) -> CallCounts {
        self.counts.lock().expect("counts lock").clone()
    }

    fn bump(&self, op: Op, f: impl FnOnce(&mut OpCount)) {
        f(self
            .counts
            .lock()
            .expect("counts lock")
            .0
            .entry(op)
            .or_default());
    }

    /// Runs one logical call: paced, counted, retried as the policy allows.
    pub async fn call<T, Fut>(&self, op: Op, f: impl FnMut() -> Fut) -> Result<T, AwsError>
    where
        Fut: Future<Output = Result<T, AwsError>>,
    {
        self.call_timed(op, f).await.0
    }

    /// [`Meter::call`], also telling when its last attempt was sent (after pacing).
    pub async fn call_timed<T, Fut>(
        &self,
        op: Op,
        mut f: impl FnMut() -> Fut,
    ) -> (Result<T, AwsError>, Instant)
    where
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let mut attempt = 0;
        loop {
            self.pace(op).await;
            let (result, sent) = self.once(op, f()).await;
            let err = match result {
                Ok(v) => return (Ok(v), sent),
                Err(e) => e,
            };
            attempt += 1;
            match self.retry_after(op, &err, attempt) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return (Err(err), sent),
            }
        }
    }

    /// The pace `op` goes at: STS calls at the run's (one principal makes them all, and STS
    /// limits per principal), the rest at the account's (IAM limits per account).
    fn pacer_for(&self, op: Op) -> &Pacer {
        match &self.sts {
            Some(sts) if op.service() == "sts" => sts,
            _ => &self.pacer,
        }
    }

    /// Waits for the call's slot in its pace; within [`urgently`], takes it without waiting.
    pub async fn pace(&self, op: Op) {
        if URGENT.try_with(|_| ()).is_ok() {
            self.pace_now(op);
        } else {
            self.pacer_for(op).wait().await;
        }
    }

    /// Takes the call's slot without waiting for it: a call that must leave now.
    pub fn pace_now(&self, op: Op) {
        self.pacer_for(op).take_now();
    }

    /// Sends one attempt now (its slot already taken): counted, and heard by the pace and the
    /// observer. Returns its result and when it was sent.
    pub async fn once<T>(
        &self,
        op: Op,
        attempt: impl Future<Output = Result<T, AwsError>>,
    ) -> (Result<T, AwsError>, Instant) {
        let sent = Instant::now();
        self.bump(op, |c| c.calls += 1);
        let result = attempt.await;
        let throttled = result
            .as_ref()
            .is_err_and(|e| e.kind == ErrorKind::Throttled);
        self.pacer_for(op).heard(sent, throttled);
        if let Some(o) = &self.observer {
            o.call(op, sent.elapsed(), throttled);
        }
        if let Err(e) = &result {
            if e.kind == ErrorKind::Throttled {
                self.bump(op, |c| c.throttled += 1);
            } else {
                self.bump(op, |c| c.errors += 1);
            }
        }
        (result, sent)
    }

    /// After the `attempt`-th failed attempt of `op` with `err`: how long to wait before the
    /// next one, or `None` when it is not sent again. A throttled request did nothing: any call
    /// may be sent again. A transient failure may have happened after AWS acted: only reads
    /// are sent again here.
    pub fn retry_after(&self, op: Op, err: &AwsError, attempt: u32) -> Option<Duration> {
        let retry = self.policy.retry;
        let again = match err.kind {
            ErrorKind::Throttled => attempt < retry.max_attempts,
            ErrorKind::Transient => !op.is_write() && attempt < retry.max_transient_attempts,
            _ => false,
        };
        again.then(|| retry.delay(attempt - 1))
    }

    /// Opens the account's client through `connector`, counted as the call it makes.
    pub async fn connect<C: Connector>(
        self: &Arc<Self>,
        connector: &C,
        target: &AccountTarget,
    ) -> Result<Metered<C::Client>, AwsError> {
        let op = match target.access {
            Access::AssumeRole { .. } => Op::AssumeRole,
            Access::BaseCredentials => Op::GetCallerIdentity,
        };
        let client = self.call(op, || connector.connect(target)).await?;
        Ok(Metered {
            inner: client,
            meter: self.clone(),
        })
    }
}

/// An account's IAM client behind its meter, with paging done here.
pub struct Metered<I> {
    inner: I,
    meter: Arc<Meter>,
}

impl<I: Iam> Metered<I> {
    pub fn policy(&self) -> &CallPolicy {
        &self.meter.policy
    }

    pub async fn authorization_details(
        &self,
        marker: Option<String>,
    ) -> Result<AuthDetailsPage, AwsError> {
        self.meter
            .call(Op::GetAccountAuthorizationDetails, || {
                self.inner.authorization_details(marker.clone())
            })
            .await
    }

    async fn all_pages<T, Fut>(
        &self,
        op: Op,
        mut f: impl FnMut(Option<String>) -> Fut,
    ) -> Result<Vec<T>, AwsError>
    where
        Fut: Future<Output = Result<Page<T>, AwsError>>,
    {
        let mut items = Vec::new();
        let mut marker = None;
        loop {
            let page = self.meter.call(op, || f(marker.clone())).await?;
            items.extend(page.items);
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok(items),
            }
        }
    }

    pub async fn attached_user_policies(
        &self,
        user: &UserName,
    ) -> Result<Vec<PolicyArn>, AwsError> {
        self.all_pages(Op::ListAttachedUserPolicies, |m| {
            self.inner.list_attached_user_policies(user, m)
        })
        .await
    }

    pub async fn groups_for_user(&self, user: &UserName) -> Result<Vec<String>, AwsError> {
        self.all_pages(Op::ListGroupsForUser, |m| {
            self.inner.list_groups_for_user(user, m)
        })
        .await
    }

    pub async fn attached_group_policies(&self, group: &str) -> Result<Vec<PolicyArn>, AwsError> {
        self.all_pages(Op::ListAttachedGroupPolicies, |m| {
            self.inner.list_attached_group_policies(group, m)
        })
        .await
    }

    /// A group's id and members (`GetGroup`, every page); the members are `None` once more
    /// than `max_pages` pages would be needed: then proving users one by one is cheaper.
    pub async fn group_members(
        &self,
        group: &str,
        max_pages: usize,
    ) -> Result<(String, Option<Vec<GroupMember>>), AwsError> {
        let mut items = Vec::new();
        let mut marker = None;
        let mut group_id = String::new();
        for _ in 0..max_pages.max(1) {
            let page = self
                .meter
                .call(Op::GetGroup, || {
                    self.inner.group_members(group, marker.clone())
                })
                .await?;
            items.extend(page.members);
            group_id = page.group_id;
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok((group_id, Some(items))),
            }
        }
        Ok((group_id, None))
    }

    /// Whether a managed policy can be attached again once detached (`GetPolicy`).
    pub async fn policy_attachable(&self, policy: &PolicyArn) -> Result<bool, AwsError> {
        self.meter
            .call(Op::GetPolicy, || self.inner.policy(policy))
            .await
            .map(|p| p.is_attachable)
    }

    /// The user's unique id (`GetUser`).
    pub async fn user_id(&self, user: &UserName) -> Result<String, AwsError> {
        self.meter
            .call(Op::GetUser, || self.inner.user_id(user))
            .await
    }

    /// Waits for the next detach's slot in the account's pace; with `now`, takes it without
    /// waiting (the detach right after a fresh proof must not wait for it to age).
    pub async fn pace_detach(&self, now: bool) {
        if now {
            self.meter.pace_now(Op::DetachUserPolicy);
        } else {
            self.meter.pace(Op::DetachUserPolicy).await;
        }
    }

    /// Sends one `DetachUserPolicy` attempt now, its slot taken by [`Metered::pace_detach`];
    /// also tells when it was sent. The caller decides whether to send another after a
    /// throttled one ([`Metered::retry_after`]); after a transient failure its outcome is
    /// unknown and only reads may settle it.
    pub async fn detach_once(
        &self,
        user: &UserName,
        policy: &PolicyArn,
    ) -> (Result<Receipt, AwsError>, Instant) {
        self.meter
            .once(
                Op::DetachUserPolicy,
                self.inner.detach_user_policy(user, policy),
            )
            .await
    }

    /// See [`Meter::retry_after`].
    pub fn retry_after(&self, op: Op, err: &AwsError, attempt: u32) -> Option<Duration> {
        self.meter.retry_after(op, err, attempt)
    }

    /// Renews the account's role session when it ends within [`RENEW_MARGIN`]: one
    /// `AssumeRole`, paced with the run's others and counted, before work that must not be
    /// held up (or failed) by a renewal inside its own call.
    pub async fn renew_session_if_ending(&self) -> Result<(), AwsError> {
        if !self.inner.session_ends_within(RENEW_MARGIN) {
            return Ok(());
        }
        self.meter
            .call(Op::AssumeRole, || self.inner.renew_session())
            .await
    }

    /// Every page of the simulator's results (a denied action may be on any page).
    pub async fn simulate(
        &self,
        principal_arn: &str,
        actions: &[String],
    ) -> Result<Vec<crate::aws::Decision>, AwsError> {
        let mut all = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .meter
                .call(Op::SimulatePrincipalPolicy, || {
                    self.inner.simulate(principal_arn, actions, marker.clone())
                })
                .await?;
            all.extend(page.items);
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok(all),
            }
        }
    }

    /// Attaches a policy to a user. Attaching is idempotent (attaching what is attached
    /// changes nothing), so unlike a detach it is sent again after a transient failure.
    pub async fn attach_user_policy(
        &self,
        user: &UserName,
        policy: &PolicyArn,
    ) -> Result<Receipt, AwsError> {
        let retry = self.meter.policy.retry;
        let mut attempt = 0;
        loop {
            let result = self
                .meter
                .call(Op::AttachUserPolicy, || {
                    self.inner.attach_user_policy(user, policy)
                })
                .await;
            attempt += 1;
            match result {
                Err(e)
                    if e.kind == ErrorKind::Transient && attempt < retry.max_transient_attempts =>
                {
                    tokio::time::sleep(retry.delay(attempt - 1)).await;
                }
                other => return other,
            }
        }
    }
}

/// How many times a read that decides or settles an action is tried in a run while it fails on
/// the network or is throttled (each try already retried by the meter): a network that fails
/// for seconds delays the run instead of failing its items.
pub const READ_TRIES: u32 = 5;

/// The wait before try `tries + 1` of such a read: 2, 4, 8, 16 s.
pub fn read_backoff(tries: u32) -> Duration {
    Duration::from_secs(2u64 << tries.min(4))
}

/// Whether a read that failed with `e` is worth trying again later.
pub fn worth_reading_again(e: &AwsError) -> bool {
    matches!(e.kind, ErrorKind::Transient | ErrorKind::Throttled)
}

/// Runs a read that decides an action up to [`READ_TRIES`] times, [`read_backoff`] apart,
/// while it fails on the network or is throttled; a stop (`stopping`, looked at every 250 ms)
/// cuts the waiting short and returns the last error.
pub async fn patiently<T, Fut>(
    stopping: impl Fn() -> bool,
    mut read: impl FnMut() -> Fut,
) -> Result<T, AwsError>
where
    Fut: Future<Output = Result<T, AwsError>>,
{
    let mut tries = 0;
    loop {
        let err = match read().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        tries += 1;
        if !worth_reading_again(&err) || tries >= READ_TRIES || stopping() {
            return Err(err);
        }
        let until = Instant::now() + read_backoff(tries - 1);
        while Instant::now() < until {
            if stopping() {
                return Err(err);
            }
            tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(250))).await;
        }
    }
}
