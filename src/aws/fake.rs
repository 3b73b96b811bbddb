//! An in-memory IAM for the tests and benchmarks moto cannot serve: pagination, throttling,
//! injected faults at call N (before or after the call took effect), latency, read lag (reads
//! see the state as of a delay ago, as in IAM), races (state changed at a chosen call) and scale.
//! Counts every call per account and operation. Never used by the binary.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    AttachedPolicy, AuthDetailsPage, AwsError, Connector, Decision, ErrorKind, GroupDetail,
    GroupMember, GroupPage, Iam, Op, Page, PolicyInfo, Receipt, UserDetail,
};
use crate::config::AccountTarget;
use crate::model::{AccountId, PolicyArn, UserName};

/// One account's IAM state.
#[derive(Clone, Debug, Default)]
pub struct FakeAccount {
    pub users: BTreeMap<String, FakeUser>,
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Each group's unique id (assigned when missing); a re-created group gets a new one.
    pub group_ids: BTreeMap<String, String>,
    /// Managed policies that can no longer be attached (deprecated AWS managed policies).
    pub not_attachable: BTreeSet<String>,
}

#[derive(Clone, Debug, Default)]
pub struct FakeUser {
    /// The principal's unique id; a re-created user gets a new one.
    pub id: String,
    pub groups: BTreeSet<String>,
    pub attached: BTreeSet<String>,
}

impl FakeAccount {
    /// The user named `name`, matched as IAM matches names (case-insensitively).
    fn user(&self, name: &str) -> Option<(&String, &FakeUser)> {
        self.users
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    fn user_mut(&mut self, name: &str) -> Option<&mut FakeUser> {
        self.users
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, u)| u)
    }
}

type Hook = Box<dyn FnMut(&mut FakeAccount) + Send>;

struct Fault {
    account: String,
    op: Op,
    nth: u64,
    error: Option<AwsError>,
    /// The call takes effect, then its answer is lost with this error.
    after: Option<AwsError>,
    hook: Option<Hook>,
}

/// An account shape generated on the fly, for organizations too big to hold in memory: user i
/// is in group `i % groups` and holds policy `P(i % 2*groups)` directly; group g grants `P(g)`.
/// So half of the users hold a redundant attachment and half a direct-only one.
#[derive(Clone, Copy, Debug)]
pub struct Synthetic {
    pub users: usize,
    pub groups: usize,
}

#[derive(Default)]
struct State {
    /// Accounts not seeded explicitly are generated from this (read-only: scans only).
    synthetic: Option<Synthetic>,
    accounts: HashMap<String, FakeAccount>,
    calls: HashMap<(String, Op), u64>,
    faults: Vec<Fault>,
    refuse_assume: HashMap<String, AwsError>,
    /// How long each role session lasts (`None`: forever).
    session: Option<Duration>,
    /// Actions the policy simulator says the role may not call.
    denied_actions: BTreeSet<String>,
    throttle_first: HashMap<(String, Op), u64>,
    /// Calls per second per account above which calls are throttled, like IAM's own limits.
    rate_limit: Option<u32>,
    /// Every `n`th IAM call of each account is throttled, whatever the pace: another workload
    /// draining the account's shared quota.
    throttle_every: Option<u64>,
    account_seq: HashMap<String, u64>,
    recent: HashMap<String, VecDeque<Instant>>,
    throttled: u64,
    request_seq: u64,
    latency: Duration,
    page_size: usize,
    /// Reads see each account as it was this long ago.
    read_lag: Duration,
    /// With a read lag: each account's states, newest last, with when they began.
    history: HashMap<String, Vec<(Instant, FakeAccount)>>,
    next_user_id: u64,
    /// From this call on (counted across the organization), `AssumeRole` fails with this error:
    /// base credentials that expired mid-run.
    assume_fails: Option<(u64, AwsError)>,
    assume_calls: u64,
    /// `AssumeRole` calls per second across the organization (one principal makes them all)
    /// above which they are throttled.
    sts_limit: Option<u32>,
    sts_recent: VecDeque<Instant>,
    sts_throttled: u64,
}

impl State {
    /// Throttling for an `AssumeRole` now, under the STS rate limit (if one is set).
    fn sts_throttle(&mut self) -> Option<AwsError> {
        let limit = self.sts_limit?;
        let now = Instant::now();
        while self
            .sts_recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.sts_recent.pop_front();
        }
        if self.sts_recent.len() >= limit as usize {
            self.sts_throttled += 1;
            Some(AwsError::throttled())
        } else {
            self.sts_recent.push_back(now);
            None
        }
    }

    /// The account as reads see it: the current state, or with a read lag the state of
    /// `read_lag` ago.
    fn read(&mut self, account: &str) -> FakeAccount {
        let current = self.accounts.entry(account.to_owned()).or_default().clone();
        if self.read_lag.is_zero() {
            return current;
        }
        let Some(seen_at) = Instant::now().checked_sub(self.read_lag) else {
            return self
                .history
                .get(account)
                .and_then(|h| h.first().map(|(_, a)| a.clone()))
                .unwrap_or(current);
        };
        match self.history.get(account) {
            Some(h) => h
                .iter()
                .rev()
                .find(|(at, _)| *at <= seen_at)
                .or(h.first())
                .map(|(_, a)| a.clone())
                .unwrap_or(current),
            None => current,
        }
    }

    /// Records the account's state after a change, for lagging reads.
    fn changed(&mut self, account: &str, before: FakeAccount) {
        if self.read_lag.is_zero() {
            return;
        }
        let now = self.accounts.get(account).cloned().unwrap_or_default();
        let h = self.history.entry(account.to_owned()).or_default();
        if h.is_empty() {
            // The state before any change was seen since the beginning of time.
            let dawn = Instant::now()
                .checked_sub(Duration::from_secs(86_400))
                .unwrap_or_else(Instant::now);
            h.push((dawn, before));
        }
        h.push((Instant::now(), now));
    }

    /// Users and groups added without an id get one, as IAM gives every entity one.
    fn assign_ids(&mut self, account: &str) {
        let Some(a) = self.accounts.get_mut(account) else {
            return;
        };
        for u in a.users.values_mut().filter(|u| u.id.is_empty()) {
            self.next_user_id += 1;
            u.id = format!("AIDAFAKE{:012}", self.next_user_id);
        }
        a.group_ids.retain(|g, _| a.groups.contains_key(g));
        for g in a.groups.keys() {
            if !a.group_ids.contains_key(g) {
                self.next_user_id += 1;
                a.group_ids
                    .insert(g.clone(), format!("AGPAFAKE{:012}", self.next_user_id));
            }
        }
    }
}

/// A whole fake organization, shared by every client it hands out.
#[derive(Clone)]
pub struct FakeOrg {
    state: Arc<Mutex<State>>,
}

impl Default for FakeOrg {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeOrg {
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                page_size: 1000,
                ..State::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake state lock")
    }

    // --- seeding -------------------------------------------------------------------------

    /// Runs `f` on an account's state (created empty on first use): seeding, or a colleague
    /// changing IAM (reads lag behind it like behind any write).
    pub fn with_account<R>(&self, account: &str, f: impl FnOnce(&mut FakeAccount) -> R) -> R {
        let mut st = self.lock();
        let before = st.accounts.entry(account.to_owned()).or_default().clone();
        let r = f(st.accounts.get_mut(account).expect("just made"));
        st.assign_ids(account);
        st.changed(account, before);
        r
    }

    /// Deletes `user` and creates a new one with the same name, groups and direct policies: a
    /// new principal (new id).
    pub fn recreate_user(&self, account: &str, user: &str) {
        self.with_account(account, |a| {
            if let Some(u) = a.users.get_mut(user) {
                u.id.clear();
            }
        });
    }

    /// Deletes `group` and creates a new one with the same name, members and policies: a new
    /// group (new id), whose grant is younger than the scan.
    pub fn recreate_group(&self, account: &str, group: &str) {
        self.with_account(account, |a| {
            a.group_ids.remove(group);
        });
    }

    /// The user's unique id.
    pub fn user_id(&self, account: &str, user: &str) -> Option<String> {
        self.with_account(account, |a| a.users.get(user).map(|u| u.id.clone()))
    }

    /// Marks a managed policy as no longer attachable (a deprecated AWS managed policy).
    pub fn deprecate_policy(&self, account: &str, policy: &str) {
        self.with_account(account, |a| {
            a.not_attachable.insert(policy.to_owned());
        });
    }

    pub fn add_group(&self, account: &str, group: &str, policies: &[&str]) {
        self.with_account(account, |a| {
            a.groups
                .entry(group.to_owned())
                .or_default()
                .extend(policies.iter().map(|p| p.to_string()));
        });
    }

    pub fn add_user(&self, account: &str, user: &str, groups: &[&str], policies: &[&str]) {
        self.with_account(account, |a| {
            let u = a.users.entry(user.to_owned()).or_default();
            u.groups.extend(groups.iter().map(|g| g.to_string()));
            u.attached.extend(policies.iter().map(|p| p.to_string()));
        });
    }

    /// The policies attached directly to a user, or `None` if the user does not exist.
    pub fn user_policies(&self, account: &str, user: &str) -> Option<BTreeSet<String>> {
        self.with_account(account, |a| a.users.get(user).map(|u| u.attached.clone()))
    }

    // --- behaviour -----------------------------------------------------------------------

    /// Entities per `GetAccountAuthorizationDetails` page and items per list page.
    pub fn set_page_size(&self, n: usize) {
        self.lock().page_size = n.max(1);
    }

    /// Accounts not seeded explicitly answer `GetAccountAuthorizationDetails` with a generated
    /// shape, without being stored.
    pub fn set_synthetic(&self, shape: Option<Synthetic>) {
        self.lock().synthetic = shape;
    }

    /// Every call waits this long (outside any lock), like a real round trip.
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// Reads see every account as it was `lag` ago; writes are acknowledged at once. IAM is
    /// eventually consistent like this (seconds, usually).
    pub fn set_read_lag(&self, lag: Duration) {
        self.lock().read_lag = lag;
    }

    /// From the `nth` `AssumeRole` on (counted across the organization), assuming any role fails
    /// with `error`: base credentials that expired mid-run and cannot be refreshed.
    pub fn fail_assume_from(&self, nth: u64, error: AwsError) {
        self.lock().assume_fails = Some((nth, error));
    }

    /// `AssumeRole` calls above `per_second` in any one second, across all accounts, are
    /// throttled, as STS limits the one principal that makes them.
    pub fn set_sts_rate_limit(&self, per_second: Option<u32>) {
        self.lock().sts_limit = per_second;
    }

    /// `AssumeRole` calls refused for rate.
    pub fn sts_throttled(&self) -> u64 {
        self.lock().sts_throttled
    }

    /// The base credentials work again (renewed).
    pub fn renew_credentials(&self) {
        self.lock().assume_fails = None;
    }

    /// Calls above `per_second` in any one-second window of an account are throttled.
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        self.lock().rate_limit = per_second;
    }

    /// Role sessions assumed from now on last `length` (`None`: forever), and are renewed
    /// (`AssumeRole` again, refused as [`FakeOrg::refuse_assume`] says) when they near their end.
    pub fn set_session_length(&self, length: Option<Duration>) {
        self.lock().session = length;
    }

    /// The policy simulator answers `implicitDeny` for `action` (`iam:DetachUserPolicy`).
    pub fn deny_action(&self, action: &str) {
        self.lock().denied_actions.insert(action.to_owned());
    }

    /// Every `n`th IAM call of each account is throttled whatever the pace (`None`: never).
    pub fn set_throttle_every(&self, n: Option<u64>) {
        self.lock().throttle_every = n;
    }

    /// `AssumeRole` into this account fails with `error`.
    pub fn refuse_assume(&self, account: &str, error: AwsError) {
        self.lock().refuse_assume.insert(account.to_owned(), error);
    }

    /// `AssumeRole` into this account works again.
    pub fn accept_assume(&self, account: &str) {
        self.lock().refuse_assume.remove(account);
    }

    /// The first `count` calls of `op` in `account` are throttled.
    pub fn throttle_first(&self, account: &str, op: Op, count: u64) {
        self.lock()
            .throttle_first
            .insert((account.to_owned(), op), count);
    }

    /// The `nth` call (1-based) of `op` in `account` fails with `error`, without effect.
    pub fn fail_call(&self, account: &str, op: Op, nth: u64, error: AwsError) {
        self.lock().faults.push(Fault {
            account: account.to_owned(),
            op,
            nth,
            error: Some(error),
            after: None,
            hook: None,
        });
    }

    /// The `nth` call of `op` in `account` takes effect, but its answer is lost: the caller gets
    /// `error` (a timeout, a reset connection, a 5xx).
    pub fn lose_answer(&self, account: &str, op: Op, nth: u64, error: AwsError) {
        self.lock().faults.push(Fault {
            account: account.to_owned(),
            op,
            nth,
            error: None,
            after: Some(error),
            hook: None,
        });
    }

    /// Forgets every fault not yet met: AWS accepts again.
    pub fn heal(&self) {
        self.lock().faults.clear();
    }

    /// Just before the `nth` call of `op` in `account` is served, `hook` changes the state: a
    /// colleague editing IAM at the worst moment.
    pub fn on_call(
        &self,
        account: &str,
        op: Op,
        nth: u64,
        hook: impl FnMut(&mut FakeAccount) + Send + 'static,
    ) {
        self.lock().faults.push(Fault {
            account: account.to_owned(),
            op,
            nth,
            error: None,
            after: None,
            hook: Some(Box::new(hook)),
        });
    }

    // --- observation ---------------------------------------------------------------------

    pub fn calls(&self, account: &str, op: Op) -> u64 {
        self.lock()
            .calls
            .get(&(account.to_owned(), op))
            .copied()
            .unwrap_or(0)
    }

    pub fn total_calls(&self, account: &str) -> u64 {
        Op::ALL.iter().map(|op| self.calls(account, *op)).sum()
    }

    /// Calls refused for rate, across the organization.
    pub fn throttled_calls(&self) -> u64 {
        self.lock().throttled
    }

    /// Counts the call, applies latency, throttling and faults, then serves it under the lock.
    async fn serve<R>(
        &self,
        account: &str,
        op: Op,
        f: impl FnOnce(&mut State) -> Result<R, AwsError>,
    ) -> Result<R, AwsError> {
        let latency = self.lock().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut st = self.lock();
        let key = (account.to_owned(), op);
        let nth = {
            let n = st.calls.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        // The colleague's edit happens as the call arrives, whether it is then served or
        // throttled.
        let mut hooks = Vec::new();
        for f in st.faults.iter_mut() {
            if f.account == account && f.op == op && f.nth == nth {
                hooks.extend(f.hook.take());
            }
        }
        st.faults
            .retain(|f| f.hook.is_some() || f.error.is_some() || f.after.is_some());
        if !hooks.is_empty() {
            let before = st.accounts.entry(account.to_owned()).or_default().clone();
            for mut h in hooks {
                h(st.accounts.entry(account.to_owned()).or_default());
            }
            st.assign_ids(account);
            st.changed(account, before);
        }
        if let Some(limit) = st.rate_limit {
            let now = Instant::now();
            let window = st.recent.entry(account.to_owned()).or_default();
            while window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                window.pop_front();
            }
            if window.len() >= limit as usize {
                st.throttled += 1;
                return Err(AwsError::throttled());
            }
            window.push_back(now);
        }
        if let Some(n) = st.throttle_every.filter(|n| *n > 0) {
            let seq = st.account_seq.entry(account.to_owned()).or_insert(0);
            *seq += 1;
            if seq.is_multiple_of(n) {
                st.throttled += 1;
                return Err(AwsError::throttled());
            }
        }
        if let Some(left) = st.throttle_first.get_mut(&key)
            && *left > 0
        {
            *left -= 1;
            st.throttled += 1;
            return Err(AwsError::throttled());
        }
        let mut failure = None;
        let mut lost = None;
        st.faults.retain_mut(|f| {
            if f.account == account && f.op == op && f.nth == nth {
                if let Some(e) = f.error.take() {
                    failure = Some(e);
                }
                if let Some(e) = f.after.take() {
                    lost = Some(e);
                }
                false
            } else {
                true
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        st.request_seq += 1;
        let before = st.accounts.get(account).cloned();
        let result = f(&mut st);
        if op.is_write()
            && let Some(before) = before
        {
            st.changed(account, before);
        }
        match lost {
            Some(e) => Err(e),
            None => result,
        }
    }
}

fn synthetic_page(
    account: &str,
    shape: Synthetic,
    marker: Option<String>,
    size: usize,
) -> AuthDetailsPage {
    let total = shape.users + shape.groups;
    let start: usize = marker.and_then(|m| m.parse().ok()).unwrap_or(0);
    let end = (start + size).min(total);
    let policy = |n: usize| {
        let arn = PolicyArn::new(format!("arn:aws:iam::{account}:policy/P{n:04}"));
        AttachedPolicy {
            name: arn.policy_name().to_owned(),
            arn,
        }
    };
    let mut page = AuthDetailsPage {
        next_marker: (end < total).then(|| end.to_string()),
        ..AuthDetailsPage::default()
    };
    for i in start..end {
        if i < shape.users {
            let name = format!("user{i:05}");
            page.users.push(UserDetail {
                arn: format!("arn:aws:iam::{account}:user/{name}"),
                user_id: format!("AIDASYN{i:012}"),
                name: UserName::new(name),
                groups: vec![format!("group{:04}", i % shape.groups)],
                attached: vec![policy(i % (2 * shape.groups))],
                tags: Vec::new(),
            });
        } else {
            let g = i - shape.users;
            page.groups.push(GroupDetail {
                name: format!("group{g:04}"),
                group_id: format!("AGPASYN{g:012}"),
                attached: vec![policy(g)],
            });
        }
    }
    page
}

fn no_such_user(user: &str) -> AwsError {
    AwsError::new(
        ErrorKind::NoSuchEntity,
        "NoSuchEntity",
        format!("The user with name {user} cannot be found."),
    )
}

fn page_of<T: Clone>(items: &[T], marker: Option<String>, size: usize) -> Page<T> {
    let start: usize = marker.and_then(|m| m.parse().ok()).unwrap_or(0);
    let end = (start + size).min(items.len());
    Page {
        items: items[start.min(end)..end].to_vec(),
        next_marker: (end < items.len()).then(|| end.to_string()),
    }
}

fn attached(arns: &BTreeSet<String>) -> Vec<AttachedPolicy> {
    arns.iter()
        .map(|a| {
            let arn = PolicyArn::new(a.clone());
            AttachedPolicy {
                name: arn.policy_name().to_owned(),
                arn,
            }
        })
        .collect()
}

impl Connector for FakeOrg {
    type Client = FakeIam;

    async fn connect(&self, target: &AccountTarget) -> Result<FakeIam, AwsError> {
        let account = target.id.to_string();
        let op = match target.access {
            crate::config::Access::AssumeRole { .. } => Op::AssumeRole,
            crate::config::Access::BaseCredentials => Op::GetCallerIdentity,
        };
        let refusal = {
            let mut st = self.lock();
            st.assume_calls += 1;
            st.sts_throttle().or_else(|| {
                let expired = st
                    .assume_fails
                    .as_ref()
                    .filter(|(from, _)| st.assume_calls >= *from)
                    .map(|(_, e)| e.clone());
                expired.or_else(|| st.refuse_assume.get(&account).cloned())
            })
        };
        self.serve(&account, op, |_| refusal.map_or(Ok(()), Err))
            .await?;
        let session = self.lock().session;
        Ok(FakeIam {
            org: self.clone(),
            account: target.id.clone(),
            session_ends: Arc::new(Mutex::new(session.map(|s| Instant::now() + s))),
        })
    }
}

/// A client for one account of a [`FakeOrg`].
#[derive(Clone)]
pub struct FakeIam {
    org: FakeOrg,
    account: AccountId,
    /// When the role session ends (`None`: never, the default).
    session_ends: Arc<Mutex<Option<Instant>>>,
}

impl FakeIam {
    fn account(&self) -> &str {
        self.account.as_str()
    }
}

impl Iam for FakeIam {
    fn session_ends_within(&self, margin: Duration) -> bool {
        self.session_ends
            .lock()
            .expect("session")
            .is_some_and(|end| end <= Instant::now() + margin)
    }

    async fn renew_session(&self) -> Result<(), AwsError> {
        let account = self.account().to_owned();
        let refusal = {
            let mut st = self.org.lock();
            st.sts_throttle()
                .or_else(|| st.refuse_assume.get(&account).cloned())
        };
        self.org
            .serve(&account, Op::AssumeRole, |_| refusal.map_or(Ok(()), Err))
            .await?;
        let length = self.org.lock().session;
        *self.session_ends.lock().expect("session") = length.map(|s| Instant::now() + s);
        Ok(())
    }

    async fn authorization_details(
        &self,
        marker: Option<String>,
    ) -> Result<AuthDetailsPage, AwsError> {
        let account = self.account().to_owned();
        self.org
            .serve(self.account(), Op::GetAccountAuthorizationDetails, |st| {
                let size = st.page_size;
                if let (Some(shape), false) = (st.synthetic, st.accounts.contains_key(&account)) {
                    return Ok(synthetic_page(&account, shape, marker, size));
                }
                let a = st.read(&account);
                let start: usize = marker.and_then(|m| m.parse().ok()).unwrap_or(0);
                let total = a.users.len() + a.groups.len();
                let end = (start + size).min(total);
                let mut page = AuthDetailsPage {
                    next_marker: (end < total).then(|| end.to_string()),
                    ..AuthDetailsPage::default()
                };
                // Users first, then groups, as one sequence of entities.
                for (name, u) in a.users.iter().skip(start).take(end.saturating_sub(start)) {
                    page.users.push(UserDetail {
                        name: UserName::new(name.clone()),
                        user_id: u.id.clone(),
                        arn: format!("arn:aws:iam::{account}:user/{name}"),
                        groups: u.groups.iter().cloned().collect(),
                        attached: attached(&u.attached),
                        tags: Vec::new(),
                    });
                }
                let g_start = start.saturating_sub(a.users.len());
                let g_end = end.saturating_sub(a.users.len());
                for (name, policies) in a.groups.iter().skip(g_start).take(g_end - g_start) {
                    page.groups.push(GroupDetail {
                        name: name.clone(),
                        group_id: a.group_ids.get(name).cloned().unwrap_or_default(),
                        attached: attached(policies),
                    });
                }
                Ok(page)
            })
            .await
    }

    async fn list_attached_user_policies(
        &self,
        user: &UserName,
        marker: Option<String>,
    ) -> Result<Page<PolicyArn>, AwsError> {
        let account = self.account().to_owned();
        self.org
            .serve(self.account(), Op::ListAttachedUserPolicies, |st| {
                let size = st.page_size;
                let a = st.read(&account);
                let (_, u) = a
                    .user(user.as_str())
                    .ok_or_else(|| no_such_user(user.as_str()))?;
                let items: Vec<PolicyArn> =
                    u.attached.iter().cloned().map(PolicyArn::new).collect();
                Ok(page_of(&items, marker, size))
            })
            .await
    }

    async fn list_groups_for_user(
        &self,
        user: &UserName,
        marker: Option<String>,
    ) -> Result<Page<String>, AwsError> {
        let account = self.account().to_owned();
        self.org
            .serve(self.account(), Op::ListGroupsForUser, |st| {
                let size = st.page_size;
                let a = st.read(&account);
                let (_, u) = a
                    .user(user.as_str())
                    .ok_or_else(|| no_such_user(user.as_str()))?;
                let items: Vec<String> = u.groups.iter().cloned().collect();
                Ok(page_of(&items, marker, size))
            })
            .await
    }

    async fn list_attached_group_policies(
        &self,
        group: &str,
        marker: Option<String>,
    ) -> Result<Page<PolicyArn>, AwsError> {
        let account = self.account().to_owned();
        self.org
            .serve(self.account(), Op::ListAttachedGroupPolicies, |st| {
                let size = st.page_size;
                let a = st.read(&account);
                let policies = group_of(&a, group)?;
                let items: Vec<PolicyArn> = policies.iter().cloned().map(PolicyArn::new).collect();
                Ok(page_of(&items, marker, size))
            })
            .await
    }

    async fn group_members(
        &self,
        group: &str,
        marker: Option<String>,
    ) -> Result<GroupPage, AwsError> {
        let account = self.account().to_owned();
        self.org
            .serve(self.account(), Op::GetGroup, |st| {
                let size = st.page_size;
                let a = st.read(&account);
                group_of(&a, group)?;
                let group_id = a
                    .group_ids
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(group))
                    .map(|(_, id)| id.clone())
                    .unwrap_or_default();
                let items: Vec<GroupMember> = a
                    .users
                    .iter()
                    .filter(|(_, u)| u.groups.iter().any(|g| g.eq_ignore_ascii_case(group)))
                    .map(|(name, u)| GroupMember {
                        name: UserName::new(name.clone()),
                        user_id: u.id.clone(),
                    })
                    .collect();
                let page = page_of(&items, marker, size);
                Ok(GroupPage {
                    group_id,
                    members: page.items,
                    next_marker: page.next_marker,
                })
            })
            .await
    }

    async fn policy(&self, policy: &PolicyArn) -> Result<PolicyInfo, AwsError> {
        let account = self.account().to_owned();
        self.org
            .serve(self.account(), Op::GetPolicy, |st| {
                let a = st.read(&account);
                Ok(PolicyInfo {
                    is_attachable: !a.not_attachable.contains(policy.as_str()),
                })
            })
            .await
    }

    async fn user_id(&self, user: &UserName) -> Result<String, AwsError> {
        let account = self.account().to_owned();
        self.org
            .serve(self.account(), Op::GetUser, |st| {
                let a = st.read(&account);
                let (_, u) = a
                    .user(user.as_str())
                    .ok_or_else(|| no_such_user(user.as_str()))?;
                Ok(u.id.clone())
            })
            .await
    }

    async fn detach_user_policy(
        &self,
        user: &UserName,
        policy: &PolicyArn,
    ) -> Result<Receipt, AwsError> {
        let account = self.account().to_owned();
        self.org
            .serve(self.account(), Op::DetachUserPolicy, |st| {
                let seq = st.request_seq;
                let a = st.accounts.entry(account).or_default();
                let u = a
                    .user_mut(user.as_str())
                    .ok_or_else(|| no_such_user(user.as_str()))?;
                if !u.attached.remove(policy.as_str()) {
                    return Err(AwsError::new(
                        ErrorKind::NoSuchEntity,
                        "NoSuchEntity",
                        format!("Policy {policy} was not found."),
                    ));
                }
                Ok(Receipt {
                    request_id: Some(format!("fake-{seq:08}")),
                })
            })
            .await
    }

    async fn attach_user_policy(
        &self,
        user: &UserName,
        policy: &PolicyArn,
    ) -> Result<Receipt, AwsError> {
        let account = self.account().to_owned();
        self.org
            .serve(self.account(), Op::AttachUserPolicy, |st| {
                let seq = st.request_seq;
                let a = st.accounts.entry(account).or_default();
                if a.not_attachable.contains(policy.as_str()) {
                    return Err(AwsError::new(
                        ErrorKind::Other,
                        "InvalidInput",
                        format!("Policy {policy} is not attachable."),
                    ));
                }
                let u = a
                    .user_mut(user.as_str())
                    .ok_or_else(|| no_such_user(user.as_str()))?;
                u.attached.insert(policy.to_string());
                Ok(Receipt {
                    request_id: Some(format!("fake-{seq:08}")),
                })
            })
            .await
    }

    async fn simulate(
        &self,
        _principal_arn: &str,
        actions: &[String],
        marker: Option<String>,
    ) -> Result<Page<Decision>, AwsError> {
        self.org
            .serve(self.account(), Op::SimulatePrincipalPolicy, |st| {
                let start: usize = marker.and_then(|m| m.parse().ok()).unwrap_or(0);
                let end = (start + st.page_size).min(actions.len());
                Ok(Page {
                    items: actions[start.min(end)..end]
                        .iter()
                        .map(|a| Decision {
                            action: a.clone(),
                            decision: if st.denied_actions.contains(a) {
                                "implicitDeny".into()
                            } else {
                                "allowed".into()
                            },
                        })
                        .collect(),
                    next_marker: (end < actions.len()).then(|| end.to_string()),
                })
            })
            .await
    }
}

/// A group's policies, matched as IAM matches names (case-insensitively).
fn group_of<'a>(a: &'a FakeAccount, group: &str) -> Result<&'a BTreeSet<String>, AwsError> {
    a.groups
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(group))
        .map(|(_, p)| p)
        .ok_or_else(|| {
            AwsError::new(
                ErrorKind::NoSuchEntity,
                "NoSuchEntity",
                format!("The group with name {group} cannot be found."),
            )
        })
}
