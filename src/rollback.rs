//! Undoes a run's detaches in one account: re-attaches each policy directly to its user, as a
//! journaled rollback run (intent committed before `AttachUserPolicy`, outcome after), and marks
//! each original detach as rolled back. Attaching what is already attached is recorded as
//! `already_attached` without a call, so running a rollback twice is harmless.

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;

use crate::apply::{Tally, reason};
use crate::aws::{AwsError, ErrorKind, Iam};
use crate::calls::Metered;
use crate::cancel::Cancel;
use crate::config::AccountTarget;
use crate::events::{Event, Phase, Reporter};
use crate::model::{PolicyArn, UserName};
use crate::store::actor::StoreHandle;
use crate::store::{ActionStatus, Intent, Operation, Outcome, RollbackItem, StoreError};

/// One account's rollback within rollback run `run_id` of run `source`.
pub struct AccountRollback<'a, I> {
    pub run_id: i64,
    pub source: i64,
    pub target: &'a AccountTarget,
    pub iam: &'a Metered<I>,
    pub store: &'a StoreHandle,
    pub reporter: &'a dyn Reporter,
    pub write_concurrency: usize,
    pub cancel: &'a Cancel,
}

impl<I: Iam> AccountRollback<'_, I> {
    /// Settles intents a dead process left, then re-attaches what is left to undo.
    pub async fn run(&self) -> Result<Result<Tally, AwsError>, StoreError> {
        let mut tally = Tally::default();
        let (run_id, source, account) = (self.run_id, self.source, self.target.id.clone());
        let open = self
            .store
            .call(move |s| s.open_attaches(run_id, &account))
            .await?;
        for a in open {
            // Attached now: it was our call. Not attached: it never happened; retried below.
            let status = match self.iam.attached_user_policies(&a.user).await {
                Ok(list) if list.contains(&a.policy) => {
                    Outcome::because(ActionStatus::Attached, reason::RECONCILED)
                }
                Ok(_) => Outcome::because(ActionStatus::Interrupted, reason::NOT_EXECUTED),
                Err(e) if e.kind == ErrorKind::NoSuchEntity => {
                    Outcome::because(ActionStatus::Skipped, reason::USER_GONE)
                }
                Err(e) => return Ok(Err(e)),
            };
            tally.count_attach(status.status);
            let id = a.action_id;
            self.store
                .call(move |s| s.journal_outcome(id, &status))
                .await?;
        }
        let account = self.target.id.clone();
        let items = self
            .store
            .call(move |s| s.rollback_items(source, Some(&account)))
            .await?;
        let mut by_user: BTreeMap<String, Vec<RollbackItem>> = BTreeMap::new();
        for item in items {
            by_user
                .entry(item.user_name.clone())
                .or_default()
                .push(item);
        }
        let total = by_user.len() as u64;
        let mut done = 0;
        let mut users = futures::stream::iter(by_user)
            .map(|(user, items)| self.user(UserName::new(user), items))
            .buffer_unordered(self.write_concurrency.max(1));
        while let Some(result) = users.next().await {
            tally.add(&result?);
            done += 1;
            self.reporter.report(&Event::Phase {
                account: self.target.id.clone(),
                phase: Phase::Applying { done, total },
            });
        }
        Ok(Ok(tally))
    }

    async fn user(&self, user: UserName, items: Vec<RollbackItem>) -> Result<Tally, StoreError> {
        let mut tally = Tally::default();
        if self.cancel.is_cancelled() {
            tally.interrupted = true;
            return Ok(tally);
        }
        let attached: Result<HashSet<PolicyArn>, AwsError> = self
            .iam
            .attached_user_policies(&user)
            .await
            .map(|l| l.into_iter().collect());
        for item in items {
            let policy = PolicyArn::new(item.policy_arn.clone());
            let intent = Intent {
                run_id: self.run_id,
                finding_id: item.finding_id,
                account: self.target.id.clone(),
                user: user.clone(),
                policy: policy.clone(),
                operation: Operation::Attach,
                covering_group: None,
                undoes: Some(item.action_id),
            };
            let settled = match &attached {
                Err(e) if e.kind == ErrorKind::NoSuchEntity => {
                    Some(Outcome::because(ActionStatus::Skipped, reason::USER_GONE))
                }
                Err(e) => Some(Outcome {
                    error: Some(e.clone()),
                    ..Outcome::because(ActionStatus::Failed, reason::VERIFY_FAILED)
                }),
                Ok(list) if list.contains(&policy) => {
                    Some(Outcome::new(ActionStatus::AlreadyAttached))
                }
                Ok(_) => None,
            };
            if let Some(outcome) = settled {
                tally.count_attach(outcome.status);
                self.store
                    .call(move |s| s.journal_settled(&intent, &outcome))
                    .await?;
                continue;
            }
            if self.cancel.is_cancelled() {
                tally.interrupted = true;
                break;
            }
            let action_id = self.store.call(move |s| s.journal_intent(&intent)).await?;
            let outcome = match self.iam.attach_user_policy(&user, &policy).await {
                Ok(receipt) => Outcome {
                    request_id: receipt.request_id,
                    ..Outcome::new(ActionStatus::Attached)
                },
                Err(e) if e.kind == ErrorKind::NoSuchEntity => Outcome {
                    request_id: e.request_id.clone(),
                    error: Some(e),
                    ..Outcome::because(ActionStatus::Skipped, reason::NO_SUCH_ENTITY)
                },
                Err(e) => Outcome {
                    request_id: e.request_id.clone(),
                    error: Some(e),
                    ..Outcome::new(ActionStatus::Failed)
                },
            };
            tally.count_attach(outcome.status);
            self.store
                .call(move |s| s.journal_outcome(action_id, &outcome))
                .await?;
        }
        Ok(tally)
    }
}
