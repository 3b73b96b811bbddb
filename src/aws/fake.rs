//! An in-memory IAM for the tests and benchmarks moto cannot serve: pagination, throttling,
//! injected faults at call N, latency, races (state changed at a chosen call) and scale. Counts
//! every call per account and operation. Never used by the binary.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    AttachedPolicy, AuthDetailsPage, AwsError, Connector, Decision, ErrorKind, GroupDetail, Iam,
    Op, Page, Receipt, UserDetail,
};
use crate::config::AccountTarget;
use crate::model::{AccountId, PolicyArn, UserName};

/// One account's IAM state.
#[derive(Clone, Debug, Default)]
pub struct FakeAccount {
    pub users: BTreeMap<String, FakeUser>,
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Clone, Debug, Default)]
pub struct FakeUser {
    pub groups: BTreeSet<String>,
    pub attached: BTreeSet<String>,
}

type Hook = Box<dyn FnMut(&mut FakeAccount) + Send>;

struct Fault {
    account: String,
    op: Op,
    nth: u64,
    error: Option<AwsError>,
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
    throttle_first: HashMap<(String, Op), u64>,
    /// Calls per second per account above which calls are throttled, like IAM's own limits.
    rate_limit: Option<u32>,
    recent: HashMap<String, VecDeque<Instant>>,
    throttled: u64,
    request_seq: u64,
    latency: Duration,
    page_size: usize,
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

    /// Runs `f` on an account's state (created empty on first use).
    pub fn with_account<R>(&self, account: &str, f: impl FnOnce(&mut FakeAccount) -> R) -> R {
        f(self.lock().accounts.entry(account.to_owned()).or_default())
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

    /// Calls above `per_second` in any one-second window of an account are throttled.
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        self.lock().rate_limit = per_second;
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
            hook: None,
        });
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
        if let Some(left) = st.throttle_first.get_mut(&key)
            && *left > 0
        {
            *left -= 1;
            st.throttled += 1;
            return Err(AwsError::throttled());
        }
        let mut failure = None;
        let mut hooks = Vec::new();
        st.faults.retain_mut(|f| {
            if f.account == account && f.op == op && f.nth == nth {
                if let Some(e) = f.error.take() {
                    failure = Some(e);
                }
                if let Some(h) = f.hook.take() {
                    hooks.push(h);
                }
                false
            } else {
                true
            }
        });
        for mut h in hooks {
            h(st.accounts.entry(account.to_owned()).or_default());
        }
        if let Some(e) = failure {
            return Err(e);
        }
        st.request_seq += 1;
        f(&mut st)
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
                name: UserName::new(name),
                groups: vec![format!("group{:04}", i % shape.groups)],
                attached: vec![policy(i % (2 * shape.groups))],
            });
        } else {
            let g = i - shape.users;
            page.groups.push(GroupDetail {
                name: format!("group{g:04}"),
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
        let refusal = self.lock().refuse_assume.get(&account).cloned();
        self.serve(&account, op, |_| refusal.map_or(Ok(()), Err))
            .await?;
        Ok(FakeIam {
            org: self.clone(),
            account: target.id.clone(),
        })
    }
}

/// A client for one account of a [`FakeOrg`].
#[derive(Clone)]
pub struct FakeIam {
    org: FakeOrg,
    account: AccountId,
}

impl FakeIam {
    fn account(&self) -> &str {
        self.account.as_str()
    }
}

impl Iam for FakeIam {
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
                let a = st.accounts.entry(account.clone()).or_default();
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
                        arn: format!("arn:aws:iam::{account}:user/{name}"),
                        groups: u.groups.iter().cloned().collect(),
                        attached: attached(&u.attached),
                    });
                }
                let g_start = start.saturating_sub(a.users.len());
                let g_end = end.saturating_sub(a.users.len());
                for (name, policies) in a.groups.iter().skip(g_start).take(g_end - g_start) {
                    page.groups.push(GroupDetail {
                        name: name.clone(),
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
                let a = st.accounts.entry(account).or_default();
                let u = a
                    .users
                    .get(user.as_str())
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
                let a = st.accounts.entry(account).or_default();
                let u = a
                    .users
                    .get(user.as_str())
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
                let a = st.accounts.entry(account).or_default();
                let policies = a.groups.get(group).ok_or_else(|| {
                    AwsError::new(
                        ErrorKind::NoSuchEntity,
                        "NoSuchEntity",
                        format!("The group with name {group} cannot be found."),
                    )
                })?;
                let items: Vec<PolicyArn> = policies.iter().cloned().map(PolicyArn::new).collect();
                Ok(page_of(&items, marker, size))
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
                    .users
                    .get_mut(user.as_str())
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
                let u = a
                    .users
                    .get_mut(user.as_str())
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
    ) -> Result<Vec<Decision>, AwsError> {
        self.org
            .serve(self.account(), Op::SimulatePrincipalPolicy, |_| {
                Ok(actions
                    .iter()
                    .map(|a| Decision {
                        action: a.clone(),
                        decision: "allowed".into(),
                    })
                    .collect())
            })
            .await
    }
}
