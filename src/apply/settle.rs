//! What happens once IAM's settle window has passed after a write: the post-check of a detach
//! (re-read the covering grant; if it vanished, re-attach at once, journaled like any write and
//! retried until it succeeds or fails for good) and the settling of a detach whose answer was
//! lost (gone: it was ours, post-check it; still there after the window: it did not happen).
//! Due items wait in a queue; one loop per account takes every item due at once, so the groups
//! they rely on are read once per pass, and the wait overlaps the detaches still being made.

use tokio::time::Instant;

use super::account::Pass;
use super::proof::{Coverage, Fresh};
use super::queue::{Due, DueKind};
use super::reason;
use crate::aws::{AwsError, ErrorKind, Iam};
use crate::calls::{READ_TRIES, worth_reading_again};
use crate::findings::Finding;
use crate::store::{ActionStatus, Outcome, StoreError};

/// How many times a re-attach that keeps failing on the network is tried in a run.
const REATTACH_TRIES: u32 = 5;
impl<I: Iam> Pass<'_, '_, I> {
    /// Works the queue until it is closed and empty.
    pub(super) async fn settle_loop(&self) -> Result<(), StoreError> {
        while let Some(batch) = self.due.next_batch(|| self.stopping()).await {
            // A read sent after an item's due time is late enough for it: one read of a group
            // serves every item of the batch.
            let since = batch
                .iter()
                .map(|d| d.at)
                .max()
                .unwrap_or_else(Instant::now);
            let mut checks = Vec::new();
            for item in batch {
                match item.kind {
                    DueKind::Ambiguous {
                        reason,
                        tries,
                        reads,
                    } => {
                        if let Some(check) = self
                            .settle_ambiguous(item.clone(), reason, tries, reads)
                            .await?
                        {
                            checks.push(check);
                        }
                    }
                    DueKind::PostCheck { .. } => checks.push(item),
                    DueKind::Reattach { tries, why } => self.reattach(item, tries, why).await?,
                }
            }
            let mut confirmed = Vec::new();
            for item in checks {
                if let Some(id) = self.post_check(item, since).await? {
                    confirmed.push(id);
                }
            }
            if !confirmed.is_empty() {
                self.app
                    .store
                    .call(move |s| s.mark_checked(&confirmed))
                    .await?;
            }
        }
        Ok(())
    }

    /// A detach whose outcome is unknown, read once the window has passed: gone means it was
    /// ours (a post-check follows, now); still there means it never happened (tried again in
    /// a live run); unreadable is read again later in the run, and after [`READ_TRIES`] (or
    /// once the run is stopping) left `unknown` for the next run.
    async fn settle_ambiguous(
        &self,
        item: Due,
        why: &'static str,
        tries: u32,
        reads: u32,
    ) -> Result<Option<Due>, StoreError> {
        let f = &item.finding;
        let outcome = match self.app.iam.attached_user_policies(&f.user_name).await {
            Ok(list) if !list.contains(&f.policy_arn) => Outcome {
                request_id: item.request_id.clone(),
                ..Outcome::because(ActionStatus::Detached, why)
            },
            Ok(_) => Outcome::because(ActionStatus::Interrupted, reason::NOT_EXECUTED),
            Err(e) if e.kind == ErrorKind::NoSuchEntity => {
                Outcome::because(ActionStatus::Skipped, reason::USER_GONE)
            }
            Err(e) if self.read_again(&e, reads) => {
                let kind = DueKind::Ambiguous {
                    reason: why,
                    tries,
                    reads: reads + 1,
                };
                self.due.retry(item, reads, kind);
                return Ok(None);
            }
            Err(e) => {
                if e.kind == ErrorKind::Credentials {
                    self.halt(e.clone());
                }
                self.record(
                    item.action_id,
                    Outcome {
                        error: Some(e),
                        ..Outcome::because(ActionStatus::Unknown, reason::AMBIGUOUS)
                    },
                )
                .await?;
                return Ok(None);
            }
        };
        let status = outcome.status;
        self.record(item.action_id, outcome).await?;
        match status {
            ActionStatus::Detached => Ok(Some(Due {
                kind: DueKind::PostCheck {
                    status: ActionStatus::Detached,
                    reads: 0,
                },
                ..item
            })),
            ActionStatus::Interrupted => {
                // Not made: it counts against neither limit (a resumed run counted it when it
                // started). Tried again here in a live apply, while new detaches may start;
                // otherwise the finding stays open for a later pass.
                self.give_back();
                if self.retry_not_executed && self.may_retry() {
                    self.attempt(item.finding_id, item.finding, tries + 1)
                        .await?;
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Re-reads the covering grant once the window has passed since the detach (reads made at
    /// or after `since`). Returns the action id when it is confirmed; otherwise re-attaches.
    async fn post_check(&self, item: Due, since: Instant) -> Result<Option<i64>, StoreError> {
        let DueKind::PostCheck { status, reads } = item.kind else {
            return Ok(None);
        };
        let covered = self
            .proofs
            .coverage(&item.finding, Fresh::Since(since))
            .await;
        match covered {
            Ok(Coverage::Covered { .. }) => {
                if status != ActionStatus::Detached {
                    // A re-attach failed earlier; a group grants it again: the detach holds.
                    self.record(
                        item.action_id,
                        Outcome {
                            request_id: item.request_id.clone(),
                            ..Outcome::because(ActionStatus::Detached, reason::RECONCILED)
                        },
                    )
                    .await?;
                }
                Ok(Some(item.action_id))
            }
            // The user the policy was detached from no longer exists: nothing to protect, and
            // a new user of that name must not be given it.
            Ok(Coverage::UserGone | Coverage::Recreated) => Ok(Some(item.action_id)),
            Err(e) if e.kind == ErrorKind::Credentials => {
                // Nothing can be read or written now; the next run settles it.
                self.halt(e);
                Ok(None)
            }
            // Unreadable for now: read again later in the run (the detach holds meanwhile,
            // as it would while the window passes).
            Err(e) if self.read_again(&e, reads) => {
                let kind = DueKind::PostCheck {
                    status,
                    reads: reads + 1,
                };
                self.due.retry(item, reads, kind);
                Ok(None)
            }
            // Not provably covered (the grant vanished, or it still cannot be read): put the
            // direct attachment back; holding it both ways is where the user started.
            Ok(Coverage::NotCovered) => {
                self.reattach(item, 0, reason::GRANT_VANISHED).await?;
                Ok(None)
            }
            Err(_) => {
                self.reattach(item, 0, reason::POST_CHECK_UNREADABLE)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Whether a settling read that failed is tried again later in the run: on the network
    /// (or throttled), fewer than [`READ_TRIES`] times, and while the run is not stopping
    /// (Ctrl-C waits no longer than the window; the next run settles what is left).
    fn read_again(&self, e: &AwsError, reads: u32) -> bool {
        worth_reading_again(e) && reads + 1 < READ_TRIES && !self.stopping()
    }

    /// Attaches the policy back to the user: `reverting` committed first, then the call
    /// (idempotent, so retried), then the outcome. Network failures are tried again later in
    /// the run; a refusal (quota, permission) is final and said at once.
    async fn reattach(&self, item: Due, tries: u32, why: &'static str) -> Result<(), StoreError> {
        let f = &item.finding;
        let action_id = item.action_id;
        self.app
            .store
            .call(move |s| s.journal_reverting(action_id, why))
            .await?;
        let group = item.group.as_deref().unwrap_or("?");
        // Only to the principal the detach was made on: a user deleted and re-created under the
        // same name meanwhile is another one (checked right before each attach).
        let attached = match self.app.iam.user_id(&f.user_name).await {
            Ok(id) if f.user_id.as_ref().is_some_and(|want| *want != id) => {
                self.warn(format!(
                    "{}: re-created since the detach (another principal); {} was not attached to it",
                    f.user_name, f.policy_arn
                ));
                return self.ended_without_user(&item, reason::USER_RECREATED).await;
            }
            Ok(_) => {
                self.app
                    .iam
                    .attach_user_policy(&f.user_name, &f.policy_arn)
                    .await
            }
            Err(e) => Err(e),
        };
        let outcome = match attached {
            Ok(receipt) => {
                self.warn(if why == reason::POST_CHECK_UNREADABLE {
                    format!(
                        "{}: the grant of {} through group {group} could not be read after the detach; re-attached it to the user (held both ways, as before)",
                        f.user_name, f.policy_arn
                    )
                } else {
                    format!(
                        "{}: the grant of {} through group {group} vanished after the detach; re-attached it to the user",
                        f.user_name, f.policy_arn
                    )
                });
                Outcome {
                    request_id: item.request_id.clone(),
                    revert_request_id: receipt.request_id,
                    ..Outcome::because(ActionStatus::Reverted, why)
                }
            }
            Err(e) if e.kind == ErrorKind::NoSuchEntity => {
                // The user was deleted meanwhile: no one is left to lose the permission.
                return self.ended_without_user(&item, reason::USER_GONE).await;
            }
            Err(e) => {
                let again = matches!(e.kind, ErrorKind::Transient | ErrorKind::Throttled)
                    && tries + 1 < REATTACH_TRIES
                    && !self.halted_for_good();
                if e.kind == ErrorKind::Credentials {
                    self.halt(e.clone());
                }
                if again {
                    let kind = DueKind::Reattach {
                        tries: tries + 1,
                        why,
                    };
                    self.due.retry(item.clone(), tries, kind);
                } else {
                    self.warn(reattach_failed_message(f, group, &e));
                }
                Outcome {
                    request_id: item.request_id.clone(),
                    error: Some(explain_attach_error(e)),
                    ..Outcome::because(ActionStatus::Failed, reason::REATTACH_FAILED)
                }
            }
        };
        let reverted = outcome.status == ActionStatus::Reverted;
        self.record(action_id, outcome).await?;
        if reverted {
            self.app
                .store
                .call(move |s| s.mark_checked(&[action_id]))
                .await?;
        }
        Ok(())
    }
}

impl<I: Iam> Pass<'_, '_, I> {
    /// A detach whose user is gone (deleted, or re-created as another principal) since: it
    /// stays a detach iamsweep made, and there is nobody left to lose the permission.
    async fn ended_without_user(&self, item: &Due, why: &'static str) -> Result<(), StoreError> {
        let id = item.action_id;
        self.record(
            id,
            Outcome {
                request_id: item.request_id.clone(),
                ..Outcome::because(ActionStatus::Detached, why)
            },
        )
        .await?;
        self.app.store.call(move |s| s.mark_checked(&[id])).await
    }
}

/// A re-attach error with what a user can do about it (a quota names the quota).
pub(crate) fn explain_attach_error(mut e: AwsError) -> AwsError {
    if e.kind == ErrorKind::LimitExceeded {
        e.message = format!(
            "{}; the user has as many managed policies attached as IAM allows (quota \"Managed policies per user\": 10 by default, up to 20 on request)",
            e.message
        );
    }
    e
}

fn reattach_failed_message(f: &Finding, group: &str, e: &AwsError) -> String {
    format!(
        "{}: {} may no longer be granted (group {group} changed) and re-attaching it failed: {e}; `iamsweep resume` retries, or attach it by hand: aws iam attach-user-policy --user-name {} --policy-arn {}",
        f.user_name, f.policy_arn, f.user_name, f.policy_arn
    )
}
