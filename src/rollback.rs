//! Undoes a run's detaches in one account: re-attaches each policy directly to its user, as a
//! journaled rollback run (intent committed before `AttachUserPolicy`, outcome after), and marks
//! each original detach as rolled back. Attaching is idempotent, so a rollback always calls
//! AWS (a read right after the apply may lag it) and an attach whose answer was lost is simply
//! sent again. A user deleted and re-created under the same name is another principal: it is
//! never given the old user's policy.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;

use crate::apply::{Applied, Tally, reason};
use crate::aws::{AwsError, ErrorKind, Iam};
use crate::calls::{self, Metered};
use crate::cancel::Cancel;
use crate::config::AccountTarget;
use crate::events::{Event, Phase, Reporter};
use crate::model::{PolicyArn, UserName};
use crate::store::actor::StoreHandle;
use crate::store::{ActionStatus, Intent, Operation, Outcome, RollbackItem, StoreError};

/// Further rounds of attach attempts after one call's own retries failed on the network.
const ATTACH_ROUNDS: u32 = 2;

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
    /// Settles attaches a dead process left, then re-attaches what is left to undo.
    pub async fn run(&self) -> Result<Applied, StoreError> {
        let stop = Mutex::new(None);
        self.settle_open(&stop).await?;
        self.undo(stop).await
    }

    /// Settles the attach intents left without outcome (by a process that died).
    pub async fn settle(&self) -> Result<Applied, StoreError> {
        let stop = Mutex::new(None);
        self.settle_open(&stop).await?;
        Ok(Applied {
            tally: Tally::default(),
            stop: stop.into_inner().expect("stop"),
        })
    }

    async fn settle_open(&self, stop: &Mutex<Option<AwsError>>) -> Result<(), StoreError> {
        let (run_id, account) = (self.run_id, self.target.id.clone());
        let open = self
            .store
            .call(move |s| s.open_attaches(run_id, &account))
            .await?;
        for a in open {
            // The intent was committed; whether the call was made is unknown. Attaching again
            // is harmless, and settles it, if the user is still the one the detach was made on.
            let outcome = match self.same_user(&a.user, a.user_id.as_deref(), stop).await {
                // Unreadable now: left open for the next run.
                Err(outcome) if outcome.status == ActionStatus::Pending => continue,
                Err(outcome) => outcome,
                Ok(()) => {
                    let outcome = self.attach(&a.user, &a.policy, stop).await;
                    match outcome.status {
                        ActionStatus::Attached => Outcome {
                            reason: Some(reason::RECONCILED.to_owned()),
                            ..outcome
                        },
                        _ => outcome,
                    }
                }
            };
            let id = a.action_id;
            self.store
                .call(move |s| s.journal_outcome(id, &outcome))
                .await?;
        }
        Ok(())
    }

    /// Re-attaches what run `source` detached in this account and is not rolled back yet.
    async fn undo(&self, stop: Mutex<Option<AwsError>>) -> Result<Applied, StoreError> {
        let account = self.target.id.clone();
        let source = self.source;
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
        let mut tally = Tally::default();
        let mut first_error = None;
        let mut users = futures::stream::iter(by_user)
            .map(|(user, items)| self.user(UserName::new(user), items, &stop))
            .buffer_unordered(self.write_concurrency.max(1));
        while let Some(result) = users.next().await {
            match result {
                Ok(t) => tally.add(&t),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            done += 1;
            self.reporter.report(&Event::Phase {
                account: self.target.id.clone(),
                phase: Phase::Applying { done, total },
            });
        }
        drop(users);
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(Applied {
            tally,
            stop: stop.into_inner().expect("stop"),
        })
    }

    fn halted(&self, stop: &Mutex<Option<AwsError>>) -> bool {
        self.cancel.is_cancelled() || stop.lock().expect("stop").is_some()
    }

    async fn user(
        &self,
        user: UserName,
        items: Vec<RollbackItem>,
        stop: &Mutex<Option<AwsError>>,
    ) -> Result<Tally, StoreError> {
        let mut tally = Tally::default();
        if self.halted(stop) {
            tally.interrupted = true;
            return Ok(tally);
        }
        // A role session near its end is renewed first, not inside an attach; a role that
        // cannot be assumed again stops this account with the real code.
        if let Err(e) = self.iam.renew_session_if_ending().await {
            stop.lock().expect("stop").get_or_insert(e);
            tally.interrupted = true;
            return Ok(tally);
        }
        // The same principal the detach was made on, or nobody.
        let identity =
            match calls::patiently(|| self.halted(stop), || self.iam.user_id(&user)).await {
                Ok(id) => Ok(id),
                Err(e) if e.kind == ErrorKind::NoSuchEntity => {
                    Err(Outcome::because(ActionStatus::Skipped, reason::USER_GONE))
                }
                Err(e) => {
                    if matches!(e.kind, ErrorKind::Credentials | ErrorKind::AccessDenied) {
                        stop.lock().expect("stop").get_or_insert(e);
                        tally.interrupted = true;
                        return Ok(tally);
                    }
                    Err(Outcome {
                        error: Some(e),
                        ..Outcome::because(ActionStatus::Failed, reason::VERIFY_FAILED)
                    })
                }
            };
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
                send_by: None,
            };
            let settled = match &identity {
                Err(outcome) => Some(outcome.clone()),
                Ok(id) if item.user_id.as_ref().is_some_and(|want| want != id) => Some(
                    Outcome::because(ActionStatus::Skipped, reason::USER_RECREATED),
                ),
                Ok(_) => None,
            };
            if let Some(outcome) = settled {
                tally.count_attach(outcome.status);
                self.store
                    .call(move |s| s.journal_settled(&intent, &outcome))
                    .await?;
                continue;
            }
            if self.halted(stop) {
                tally.interrupted = true;
                break;
            }
            let action_id = self.store.call(move |s| s.journal_intent(&intent)).await?;
            let outcome = self.attach(&user, &policy, stop).await;
            tally.count_attach(outcome.status);
            self.store
                .call(move |s| s.journal_outcome(action_id, &outcome))
                .await?;
        }
        Ok(tally)
    }

    /// Whether `user` is still the principal with unique id `want` (read now, patiently):
    /// `Err` with the outcome to record when it is not (gone, re-created, unreadable).
    async fn same_user(
        &self,
        user: &UserName,
        want: Option<&str>,
        stop: &Mutex<Option<AwsError>>,
    ) -> Result<(), Outcome> {
        match calls::patiently(|| self.halted(stop), || self.iam.user_id(user)).await {
            Ok(id) if want.is_some_and(|w| w != id) => Err(Outcome::because(
                ActionStatus::Skipped,
                reason::USER_RECREATED,
            )),
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::NoSuchEntity => {
                Err(Outcome::because(ActionStatus::Skipped, reason::USER_GONE))
            }
            Err(e) => {
                let interrupted =
                    matches!(e.kind, ErrorKind::Credentials | ErrorKind::AccessDenied);
                if interrupted {
                    stop.lock().expect("stop").get_or_insert(e.clone());
                }
                // Still open: the next run settles it (an attach intent stays `pending`).
                Err(Outcome {
                    error: Some(e),
                    ..Outcome::because(ActionStatus::Pending, reason::VERIFY_FAILED)
                })
            }
        }
    }

    /// One attach and what the journal says of it. Attaching is idempotent: through a flaky
    /// network it is tried again, a few rounds apart, before it is called failed.
    async fn attach(
        &self,
        user: &UserName,
        policy: &PolicyArn,
        stop: &Mutex<Option<AwsError>>,
    ) -> Outcome {
        let mut result = self.iam.attach_user_policy(user, policy).await;
        for round in 1..=ATTACH_ROUNDS {
            match &result {
                Err(e) if matches!(e.kind, ErrorKind::Transient | ErrorKind::Throttled) => {
                    tokio::time::sleep(Duration::from_secs(round as u64)).await;
                    result = self.iam.attach_user_policy(user, policy).await;
                }
                _ => break,
            }
        }
        match result {
            Ok(receipt) => Outcome {
                request_id: receipt.request_id,
                ..Outcome::new(ActionStatus::Attached)
            },
            Err(e) if e.kind == ErrorKind::NoSuchEntity => Outcome {
                request_id: e.request_id.clone(),
                error: Some(e),
                ..Outcome::because(ActionStatus::Skipped, reason::USER_GONE)
            },
            Err(e) if e.kind == ErrorKind::Credentials => {
                stop.lock().expect("stop").get_or_insert(e.clone());
                Outcome {
                    error: Some(e),
                    ..Outcome::because(ActionStatus::Interrupted, reason::NOT_EXECUTED)
                }
            }
            Err(e) => {
                if e.kind == ErrorKind::AccessDenied {
                    stop.lock().expect("stop").get_or_insert(AwsError {
                        message: format!(
                            "{}; the role may not attach policies: deploy it with Mode=apply (scripts/iamsweep-role.yaml), then `iamsweep resume`",
                            e.message
                        ),
                        ..e.clone()
                    });
                }
                Outcome {
                    request_id: e.request_id.clone(),
                    error: Some(crate::apply::explain_attach_error(e)),
                    ..Outcome::new(ActionStatus::Failed)
                }
            }
        }
    }
}
