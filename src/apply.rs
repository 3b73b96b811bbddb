//! Detaches one account's redundant direct attachments, user by user: a live read proves a group
//! the user is in still grants the policy; the intent is journaled (committed) before
//! `DetachUserPolicy` and the outcome after; a post-check re-attaches at once if the covering
//! grant vanished meanwhile. Never touches groups, memberships, inline policies or roles.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::StreamExt;
use serde::Serialize;

use crate::aws::{AwsError, ErrorKind, Iam};
use crate::calls::Metered;
use crate::cancel::Cancel;
use crate::config::AccountTarget;
use crate::events::{Event, Phase, Reporter};
use crate::filters::Filters;
use crate::findings::Finding;
use crate::model::{PolicyArn, UserName};
use crate::store::actor::StoreHandle;
use crate::store::{ActionStatus, Intent, OpenAction, Operation, Outcome, StoreError};

/// Apply's limits and filters from the command line.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct ApplyOptions {
    /// Circuit breaker: an account stops before its detach number N + 1.
    pub max_detaches_per_account: Option<u64>,
    /// Users verified and detached at once within one account.
    pub write_concurrency: usize,
    /// Added to each account's own filters.
    pub filters: Filters,
}

/// What happened to one account's findings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub detached: u64,
    pub already_detached: u64,
    pub skipped: u64,
    pub failed: u64,
    pub reverted: u64,
    /// The circuit breaker stopped the account with findings left.
    pub limit_reached: bool,
    /// Ctrl-C stopped the account with findings left.
    pub interrupted: bool,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.detached += o.detached;
        self.already_detached += o.already_detached;
        self.skipped += o.skipped;
        self.failed += o.failed;
        self.reverted += o.reverted;
        self.limit_reached |= o.limit_reached;
        self.interrupted |= o.interrupted;
    }

    /// Counts a rollback's outcome: attaches in `detached` (the changes made), already
    /// attached ones in `already_detached` (nothing to do).
    pub fn count_attach(&mut self, status: ActionStatus) {
        match status {
            ActionStatus::Attached => self.detached += 1,
            ActionStatus::AlreadyAttached => self.already_detached += 1,
            other => self.count(other),
        }
    }

    fn count(&mut self, status: ActionStatus) {
        match status {
            ActionStatus::Detached => self.detached += 1,
            ActionStatus::AlreadyDetached => self.already_detached += 1,
            ActionStatus::Skipped => self.skipped += 1,
            ActionStatus::Failed => self.failed += 1,
            ActionStatus::Reverted => self.reverted += 1,
            _ => {}
        }
    }
}

/// Skip and outcome reasons, as stored in `actions.reason`.
pub mod reason {
    pub const EXCLUDED: &str = "excluded";
    pub const USER_GONE: &str = "user_gone";
    pub const NO_LONGER_COVERED: &str = "no_longer_covered";
    pub const NOT_ATTACHED_AT_VERIFY: &str = "not_attached_at_verify";
    pub const NO_SUCH_ENTITY: &str = "no_such_entity";
    pub const VERIFY_FAILED: &str = "verify_failed";
    pub const CONFIRMED_BY_READ: &str = "confirmed_by_read";
    pub const GRANT_VANISHED: &str = "covering_grant_vanished";
    pub const REATTACH_FAILED: &str = "reattach_failed";
    pub const RECONCILED: &str = "reconciled";
    pub const NOT_EXECUTED: &str = "not_executed";
}

/// One account's apply.
pub struct AccountApply<'a, I> {
    pub run_id: i64,
    pub target: &'a AccountTarget,
    pub iam: &'a Metered<I>,
    pub store: &'a StoreHandle,
    pub reporter: &'a dyn Reporter,
    pub options: &'a ApplyOptions,
    pub cancel: &'a Cancel,
}

/// A detach whose effect the post-check must confirm.
struct Made {
    action_id: i64,
    finding: Finding,
    group: Option<String>,
    request_id: Option<String>,
    /// The status the journal holds for it now.
    status: ActionStatus,
}

struct Budget {
    left: AtomicU64,
    tripped: AtomicBool,
}

impl Budget {
    fn take(&self) -> bool {
        let ok = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !ok {
            self.tripped.store(true, Ordering::SeqCst);
        }
        ok
    }
}

impl<I: Iam> AccountApply<'_, I> {
    /// Applies `findings` (redundant ones, with their ids); `already` detaches were made by
    /// this run before (a resume), and count against the circuit breaker.
    pub async fn run(
        &self,
        findings: Vec<(i64, Finding)>,
        already: u64,
    ) -> Result<Tally, StoreError> {
        let mut tally = Tally::default();
        let mut by_user: BTreeMap<UserName, Vec<(i64, Finding)>> = BTreeMap::new();
        for (id, f) in findings {
            let filters = [&self.target.filters, &self.options.filters];
            let excluded = filters.iter().any(|fl| {
                fl.user_excluded(f.user_name.as_str()) || !fl.policy_selected(f.policy_arn.as_str())
            });
            if excluded {
                self.settle(
                    id,
                    &f,
                    Outcome::because(ActionStatus::Skipped, reason::EXCLUDED),
                )
                .await?;
                tally.skipped += 1;
            } else {
                by_user
                    .entry(f.user_name.clone())
                    .or_default()
                    .push((id, f));
            }
        }
        let total = by_user.len() as u64;
        let budget = Budget {
            left: AtomicU64::new(
                self.options
                    .max_detaches_per_account
                    .map_or(u64::MAX, |max| max.saturating_sub(already)),
            ),
            tripped: AtomicBool::new(false),
        };
        self.phase(0, total);
        let mut done = 0;
        let mut users = futures::stream::iter(by_user)
            .map(|(user, items)| self.user(user, items, &budget))
            .buffer_unordered(self.options.write_concurrency.max(1));
        while let Some(result) = users.next().await {
            tally.add(&result?);
            done += 1;
            self.phase(done, total);
        }
        tally.limit_reached = budget.tripped.load(Ordering::SeqCst);
        Ok(tally)
    }

    fn phase(&self, done: u64, total: u64) {
        self.reporter.report(&Event::Phase {
            account: self.target.id.clone(),
            phase: Phase::Applying { done, total },
        });
    }

    fn intent(&self, finding_id: i64, f: &Finding, covering: Option<String>) -> Intent {
        Intent {
            run_id: self.run_id,
            finding_id: Some(finding_id),
            account: self.target.id.clone(),
            user: f.user_name.clone(),
            policy: f.policy_arn.clone(),
            operation: Operation::Detach,
            covering_group: covering,
            undoes: None,
        }
    }

    /// Journals an action that needs no AWS call.
    async fn settle(
        &self,
        finding_id: i64,
        f: &Finding,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let intent = self.intent(finding_id, f, None);
        self.store
            .call(move |s| s.journal_settled(&intent, &outcome))
            .await
            .map(drop)
    }

    async fn outcome(&self, action_id: i64, outcome: Outcome) -> Result<(), StoreError> {
        self.store
            .call(move |s| s.journal_outcome(action_id, &outcome))
            .await
    }

    fn warn(&self, message: String) {
        self.reporter.report(&Event::Warning {
            account: self.target.id.clone(),
            message,
        });
    }

    /// Verifies, detaches and post-checks one user's findings.
    async fn user(
        &self,
        user: UserName,
        items: Vec<(i64, Finding)>,
        budget: &Budget,
    ) -> Result<Tally, StoreError> {
        let mut tally = Tally::default();
        if self.cancel.is_cancelled() {
            tally.interrupted = true;
            return Ok(tally);
        }
        let live = match self.live_read(&user).await {
            Ok(live) => live,
            Err(e) => {
                let outcome = if e.kind == ErrorKind::NoSuchEntity {
                    Outcome::because(ActionStatus::Skipped, reason::USER_GONE)
                } else {
                    Outcome {
                        error: Some(e),
                        ..Outcome::because(ActionStatus::Failed, reason::VERIFY_FAILED)
                    }
                };
                for (id, f) in &items {
                    self.settle(*id, f, outcome.clone()).await?;
                    tally.count(outcome.status);
                }
                return Ok(tally);
            }
        };
        let (attached, groups) = live;
        let mut group_cache = HashMap::new();
        let mut made: Vec<Made> = Vec::new();
        for (id, f) in items {
            if !attached.contains(&f.policy_arn) {
                self.settle(
                    id,
                    &f,
                    Outcome::because(
                        ActionStatus::AlreadyDetached,
                        reason::NOT_ATTACHED_AT_VERIFY,
                    ),
                )
                .await?;
                tally.already_detached += 1;
                continue;
            }
            let covering = match self
                .find_cover(&groups, &f.covering_groups, &f.policy_arn, &mut group_cache)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    let outcome = Outcome {
                        error: Some(e),
                        ..Outcome::because(ActionStatus::Failed, reason::VERIFY_FAILED)
                    };
                    self.settle(id, &f, outcome).await?;
                    tally.failed += 1;
                    continue;
                }
            };
            let Some(group) = covering else {
                self.settle(
                    id,
                    &f,
                    Outcome::because(ActionStatus::Skipped, reason::NO_LONGER_COVERED),
                )
                .await?;
                tally.skipped += 1;
                continue;
            };
            if self.cancel.is_cancelled() {
                // Left without a journal row: the finding stays open for `resume`.
                tally.interrupted = true;
                break;
            }
            if !budget.take() {
                // Left without a journal row: the finding stays open for a later run.
                break;
            }
            let intent = self.intent(id, &f, Some(group.clone()));
            let action_id = self.store.call(move |s| s.journal_intent(&intent)).await?;
            let outcome = match self.iam.detach_user_policy(&user, &f.policy_arn).await {
                Ok(receipt) => Outcome {
                    request_id: receipt.request_id,
                    ..Outcome::new(ActionStatus::Detached)
                },
                Err(e) if e.kind == ErrorKind::NoSuchEntity => Outcome {
                    request_id: e.request_id.clone(),
                    ..Outcome::because(ActionStatus::AlreadyDetached, reason::NO_SUCH_ENTITY)
                },
                Err(e) if e.kind == ErrorKind::Transient => self.reconcile(&user, &f, e).await,
                Err(e) => Outcome {
                    request_id: e.request_id.clone(),
                    error: Some(e),
                    ..Outcome::new(ActionStatus::Failed)
                },
            };
            tally.count(outcome.status);
            let status = outcome.status;
            let request_id = outcome.request_id.clone();
            self.outcome(action_id, outcome).await?;
            if status == ActionStatus::Detached {
                made.push(Made {
                    action_id,
                    finding: f,
                    group: Some(group),
                    request_id,
                    status,
                });
            }
        }
        if !made.is_empty() {
            self.post_check(&user, made, &mut tally).await?;
        }
        Ok(tally)
    }

    /// Settles what a dead process left in the journal, before anything else: an intent
    /// without outcome is reconciled from a live read (gone: `detached`, then post-checked;
    /// still there: `interrupted`, and the finding is applied again), and detaches whose
    /// post-check never ran are checked now.
    pub async fn recover(&self) -> Result<Result<Tally, AwsError>, StoreError> {
        let (run_id, account) = (self.run_id, self.target.id.clone());
        let open = self
            .store
            .call(move |s| s.open_actions(run_id, &account))
            .await?;
        let mut by_user: BTreeMap<UserName, Vec<OpenAction>> = BTreeMap::new();
        for a in open {
            by_user
                .entry(a.finding.user_name.clone())
                .or_default()
                .push(a);
        }
        let mut tally = Tally::default();
        for (user, actions) in by_user {
            let mut to_check = Vec::new();
            let attached = if actions.iter().any(|a| a.status == ActionStatus::Pending) {
                match self.iam.attached_user_policies(&user).await {
                    Ok(list) => Some(list),
                    Err(e) if e.kind == ErrorKind::NoSuchEntity => None,
                    Err(e) => return Ok(Err(e)),
                }
            } else {
                Some(Vec::new())
            };
            for a in actions {
                let Some(attached) = &attached else {
                    // The user was deleted meanwhile: nothing is left to detach or protect.
                    let outcome = Outcome::because(ActionStatus::Skipped, reason::USER_GONE);
                    tally.count(outcome.status);
                    self.outcome(a.action_id, outcome).await?;
                    continue;
                };
                if a.status == ActionStatus::Pending {
                    if attached.contains(&a.finding.policy_arn) {
                        let outcome =
                            Outcome::because(ActionStatus::Interrupted, reason::NOT_EXECUTED);
                        self.outcome(a.action_id, outcome).await?;
                        continue;
                    }
                    let outcome = Outcome::because(ActionStatus::Detached, reason::RECONCILED);
                    tally.count(outcome.status);
                    self.outcome(a.action_id, outcome).await?;
                }
                to_check.push(Made {
                    action_id: a.action_id,
                    status: if a.status == ActionStatus::Pending {
                        ActionStatus::Detached
                    } else {
                        a.status
                    },
                    finding: a.finding,
                    group: a.covering_group,
                    request_id: a.request_id,
                });
            }
            if !to_check.is_empty() {
                self.post_check(&user, to_check, &mut tally).await?;
            }
        }
        Ok(Ok(tally))
    }

    /// The user's direct attachments and groups, read live.
    async fn live_read(
        &self,
        user: &UserName,
    ) -> Result<(HashSet<PolicyArn>, Vec<String>), AwsError> {
        let attached = self.iam.attached_user_policies(user).await?;
        let groups = self.iam.groups_for_user(user).await?;
        Ok((attached.into_iter().collect(), groups))
    }

    /// A detach whose response was lost: a live read tells whether it happened.
    async fn reconcile(&self, user: &UserName, f: &Finding, e: AwsError) -> Outcome {
        match self.iam.attached_user_policies(user).await {
            Ok(now) if !now.contains(&f.policy_arn) => {
                Outcome::because(ActionStatus::Detached, reason::CONFIRMED_BY_READ)
            }
            _ => Outcome {
                error: Some(e),
                ..Outcome::new(ActionStatus::Failed)
            },
        }
    }

    /// The first of the user's `groups` that has `policy` attached, reading groups the scan
    /// saw covering first. Each group is read at most once per `cache`.
    async fn find_cover(
        &self,
        groups: &[String],
        preferred: &[String],
        policy: &PolicyArn,
        cache: &mut HashMap<String, HashSet<PolicyArn>>,
    ) -> Result<Option<String>, AwsError> {
        let ordered = preferred
            .iter()
            .filter(|g| groups.contains(g))
            .chain(groups.iter().filter(|g| !preferred.contains(g)));
        for group in ordered {
            if !cache.contains_key(group) {
                let policies = match self.iam.attached_group_policies(group).await {
                    Ok(p) => p.into_iter().collect(),
                    Err(e) if e.kind == ErrorKind::NoSuchEntity => HashSet::new(),
                    Err(e) => return Err(e),
                };
                cache.insert(group.clone(), policies);
            }
            if cache[group].contains(policy) {
                return Ok(Some(group.clone()));
            }
        }
        Ok(None)
    }

    /// Reads again after the user's detaches; any policy no group grants any more is
    /// re-attached at once and its action marked `reverted`.
    async fn post_check(
        &self,
        user: &UserName,
        made: Vec<Made>,
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        let groups = self.iam.groups_for_user(user).await;
        let mut cache = HashMap::new();
        let mut checked = Vec::new();
        for m in made {
            let preferred: Vec<String> = m.group.iter().cloned().collect();
            let covered = match &groups {
                Ok(groups) => {
                    self.find_cover(groups, &preferred, &m.finding.policy_arn, &mut cache)
                        .await
                }
                Err(e) => Err(e.clone()),
            };
            if let Ok(Some(_)) = covered {
                if m.status != ActionStatus::Detached {
                    // A failed re-attach from an earlier attempt, now covered again.
                    let outcome = Outcome {
                        request_id: m.request_id,
                        ..Outcome::because(ActionStatus::Detached, reason::RECONCILED)
                    };
                    tally.count(ActionStatus::Detached);
                    self.outcome(m.action_id, outcome).await?;
                }
                checked.push(m.action_id);
                continue;
            }
            let f = &m.finding;
            let group = m.group.as_deref().unwrap_or("?");
            // Not provably covered (the grant vanished, or it cannot be read): put the direct
            // attachment back; holding it both ways is where the user started.
            let was_counted_detached = m.status == ActionStatus::Detached;
            let outcome = match self.iam.attach_user_policy(user, &f.policy_arn).await {
                Ok(receipt) => {
                    self.warn(format!(
                        "{user}: the grant of {} through group {group} vanished during the detach; re-attached it to the user",
                        f.policy_arn
                    ));
                    checked.push(m.action_id);
                    tally.reverted += 1;
                    Outcome {
                        request_id: m.request_id,
                        revert_request_id: receipt.request_id,
                        ..Outcome::because(ActionStatus::Reverted, reason::GRANT_VANISHED)
                    }
                }
                Err(e) => {
                    self.warn(format!(
                        "{user}: {} may no longer be granted (group {group} changed) and re-attaching it failed: {e}; `iamsweep resume` retries, or attach it by hand: aws iam attach-user-policy --user-name {user} --policy-arn {}",
                        f.policy_arn, f.policy_arn
                    ));
                    tally.failed += 1;
                    Outcome {
                        request_id: m.request_id,
                        error: Some(e),
                        ..Outcome::because(ActionStatus::Failed, reason::REATTACH_FAILED)
                    }
                }
            };
            if was_counted_detached {
                tally.detached = tally.detached.saturating_sub(1);
            }
            self.outcome(m.action_id, outcome).await?;
        }
        if !checked.is_empty() {
            self.store.call(move |s| s.mark_checked(&checked)).await?;
        }
        Ok(())
    }
}
