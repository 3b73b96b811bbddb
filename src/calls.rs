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

/// Spaces calls at most `rate` per second, so bursts do not trip AWS's limits, and slows down
/// while the other side throttles (also when no rate is set: the first throttled call starts
/// the pacing).
#[derive(Debug)]
pub struct Pacer {
    /// The configured spacing (zero: no pacing): the pacer never goes faster.
    floor: Duration,
    /// The next free slot, and the spacing now (wider after throttling).
    state: Mutex<(Instant, Duration)>,
    /// When the spacing was last widened: the refusals of calls that were already under way
    /// say the same thing once, not once each.
    widened: Mutex<Option<Instant>>,
}

/// A throttled call widens the spacing by this factor; a call that goes through narrows it by
/// `NARROW` again, down to the configured rate: the pace settles just under what the other side
/// allows (its quota may be lower than ours, or shared with other workloads).
const WIDEN: f64 = 1.5;
const NARROW: f64 = 0.97;
/// Where an unpaced pacer starts once throttled, and below which it stops pacing again.
const NARROWEST: Duration = Duration::from_millis(1);
/// Refusals within this long of the last widening (or one spacing, if longer) are the same news.
const SAME_NEWS: Duration = Duration::from_millis(100);
/// The widest spacing a throttled endpoint pushes the pace to.
const WIDEST: Duration = Duration::from_secs(5);

impl Pacer {
    pub fn new(rate: Option<f64>) -> Self {
        let floor = rate
            .filter(|r| *r > 0.0)
            .map_or(Duration::ZERO, |r| Duration::from_secs_f64(1.0 / r));
        Self {
            floor,
            state: Mutex::new((Instant::now(), floor)),
            widened: Mutex::new(None),
        }
    }

    async fn wait(&self) {
        let slot = {
            let mut st = self.state.lock().expect("pacer lock");
            if st.1.is_zero() {
                return;
            }
            let slot = st.0.max(Instant::now());
            st.0 = slot + st.1;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// How the last call went: throttled slows the pace (once per `SAME_NEWS`), through speeds
    /// it back up.
    fn heard(&self, throttled: bool) {
        let mut st = self.state.lock().expect("pacer lock");
        st.1 = if throttled {
            let mut widened = self.widened.lock().expect("pacer lock");
            let now = Instant::now();
            if widened.is_some_and(|t| now.duration_since(t) < SAME_NEWS.max(st.1)) {
                return;
            }
            *widened = Some(now);
            st.1.max(NARROWEST)
                .mul_f64(WIDEN)
                .min(WIDEST.max(self.floor))
        } else {
            let narrower = st.1.mul_f64(NARROW);
            if narrower < NARROWEST && self.floor.is_zero() {
                Duration::ZERO
            } else {
                narrower.max(self.floor)
            }
        };
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
            let sts = self.sts.as_ref().filter(|_| op.service() == "sts");
            if let Some(p) = sts {
                p.wait().await;
            }
            self.pacer.wait().await;
            let sent = Instant::now();
            self.bump(op, |c| c.calls += 1);
            let result = f().await;
            let throttled = result
                .as_ref()
                .is_err_and(|e| e.kind == ErrorKind::Throttled);
            self.pacer.heard(throttled);
            if let Some(p) = sts {
                p.heard(throttled);
            }
            if let Some(o) = &self.observer {
                o.call(op, sent.elapsed(), throttled);
            }
            let err = match result {
                Ok(v) => return (Ok(v), sent),
                Err(e) => e,
            };
            attempt += 1;
            let retry = self.policy.retry;
            // A throttled request did nothing: any call may be sent again. A transient failure
            // may have happened after AWS acted: only reads are sent again here.
            let retryable = match err.kind {
                ErrorKind::Throttled => attempt < retry.max_attempts,
                ErrorKind::Transient => !op.is_write() && attempt < retry.max_transient_attempts,
                _ => false,
            };
            if err.kind == ErrorKind::Throttled {
                self.bump(op, |c| c.throttled += 1);
            } else {
                self.bump(op, |c| c.errors += 1);
            }
            if !retryable {
                return (Err(err), sent);
            }
            tokio::time::sleep(retry.delay(attempt - 1)).await;
        }
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

    /// A group's members (`GetGroup`, every page), or `None` once more than `max_pages` pages
    /// would be needed: then proving users one by one is cheaper.
    pub async fn group_members(
        &self,
        group: &str,
        max_pages: usize,
    ) -> Result<Option<Vec<GroupMember>>, AwsError> {
        let mut items = Vec::new();
        let mut marker = None;
        for _ in 0..max_pages.max(1) {
            let page = self
                .meter
                .call(Op::GetGroup, || {
                    self.inner.group_members(group, marker.clone())
                })
                .await?;
            items.extend(page.items);
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok(Some(items)),
            }
        }
        Ok(None)
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

    /// Detaches a policy from a user; also tells when the request was sent. Sent once: after a
    /// transient failure its outcome is unknown and only reads may settle it.
    pub async fn detach_user_policy(
        &self,
        user: &UserName,
        policy: &PolicyArn,
    ) -> (Result<Receipt, AwsError>, Instant) {
        self.meter
            .call_timed(Op::DetachUserPolicy, || {
                self.inner.detach_user_policy(user, policy)
            })
            .await
    }

    pub async fn simulate(
        &self,
        principal_arn: &str,
        actions: &[String],
    ) -> Result<Vec<crate::aws::Decision>, AwsError> {
        self.meter
            .call(Op::SimulatePrincipalPolicy, || {
                self.inner.simulate(principal_arn, actions)
            })
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpaced_pacer_starts_pacing_when_throttled_and_stops_again() {
        let p = Pacer::new(None);
        let spacing = |p: &Pacer| p.state.lock().unwrap().1;
        assert_eq!(spacing(&p), Duration::ZERO);
        p.heard(true);
        assert_eq!(spacing(&p), Duration::from_micros(1500));
        for _ in 0..20 {
            p.heard(false);
        }
        assert_eq!(spacing(&p), Duration::ZERO);
    }

    #[test]
    fn the_pace_slows_while_throttled_and_recovers_to_its_rate() {
        let p = Pacer::new(Some(10.0));
        let spacing = |p: &Pacer| p.state.lock().unwrap().1;
        let forget = |p: &Pacer| *p.widened.lock().unwrap() = None;
        assert_eq!(spacing(&p), Duration::from_millis(100));
        p.heard(true);
        // Refusals of calls already under way are the same news.
        p.heard(true);
        assert_eq!(spacing(&p), Duration::from_millis(150));
        forget(&p);
        p.heard(true);
        assert_eq!(spacing(&p), Duration::from_millis(225));
        for _ in 0..100 {
            p.heard(false);
        }
        assert_eq!(
            spacing(&p),
            Duration::from_millis(100),
            "never faster than the rate"
        );
        for _ in 0..50 {
            forget(&p);
            p.heard(true);
        }
        assert_eq!(spacing(&p), WIDEST);
    }
}
