//! Settles an account's journal rows that a run left open, from live reads, before anything else
//! changes AWS: an intent without outcome (the process died), a detach whose answer was lost
//! (`unknown`), a detach never post-checked, a re-attach begun or failed. A read right after a
//! write may lag it, so "still attached" is concluded only across the settle window.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::account::{AccountApply, Pass};
use super::queue::{Due, DueKind};
use super::{Applied, reason};
use crate::aws::Iam;
use crate::store::{ActionStatus, StoreError};

impl<I: Iam> AccountApply<'_, I> {
    /// Settles the open detach rows of this run in this account. A detach found not to have
    /// happened is marked `interrupted`, which leaves its finding open for the run to apply.
    pub async fn recover(&self) -> Result<Applied, StoreError> {
        let (run_id, account) = (self.run_id, self.target.id.clone());
        let open = self
            .store
            .call(move |s| s.open_actions(run_id, &account))
            .await?;
        if open.is_empty() {
            return Ok(Applied::default());
        }
        let refs: Vec<_> = open.iter().map(|a| &a.finding).collect();
        let pass = Pass::new(self, &refs, u64::MAX, false);
        let window = self.options.settle;
        // No attempt of a detach left after its `send_by` (its intent's time, for rows from
        // before iamsweep wrote it), and an attempt is over, answered or not, a call timeout
        // later; after that and the window, a read that still shows the attachment is true.
        let in_flight = self.iam.policy().call_timeout;
        for a in &open {
            let finding_id = a.finding_id;
            let (at, kind) = match a.status {
                ActionStatus::Pending => (
                    after(
                        a.send_by.as_deref().unwrap_or(&a.intent_at),
                        in_flight + window,
                    ),
                    DueKind::Ambiguous {
                        reason: reason::RECONCILED,
                        tries: 1,
                        reads: 0,
                    },
                ),
                ActionStatus::Unknown => (
                    after(a.finished_at.as_deref().unwrap_or(&a.intent_at), window),
                    DueKind::Ambiguous {
                        reason: reason::CONFIRMED_BY_READ,
                        tries: 1,
                        reads: 0,
                    },
                ),
                ActionStatus::Detached => (
                    after(a.finished_at.as_deref().unwrap_or(&a.intent_at), window),
                    DueKind::PostCheck {
                        status: ActionStatus::Detached,
                        reads: 0,
                    },
                ),
                ActionStatus::Reverting => (
                    Instant::now(),
                    DueKind::Reattach {
                        tries: 0,
                        why: if a.reason.as_deref() == Some(reason::POST_CHECK_UNREADABLE) {
                            reason::POST_CHECK_UNREADABLE
                        } else {
                            reason::GRANT_VANISHED
                        },
                    },
                ),
                _ => (
                    Instant::now(),
                    DueKind::PostCheck {
                        status: ActionStatus::Failed,
                        reads: 0,
                    },
                ),
            };
            pass.due.push(Due {
                at,
                action_id: a.action_id,
                finding_id,
                finding: a.finding.clone(),
                group: a.covering_group.clone(),
                request_id: a.request_id.clone(),
                kind,
            });
        }
        pass.drive(Vec::new()).await?;
        Ok(pass.finish())
    }
}

/// The moment `wait` after the stored time `at` (now, if that has passed or `at` is
/// unreadable). Computed once: the pass sleeps until then and decides, without looking at the
/// clock again.
fn after(at: &str, wait: Duration) -> Instant {
    let Ok(t) = humantime::parse_rfc3339_weak(at) else {
        return Instant::now();
    };
    match (t + wait).duration_since(SystemTime::now()) {
        Ok(left) => Instant::now() + left,
        Err(_) => Instant::now(),
    }
}
