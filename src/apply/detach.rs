//! One finding's detach: proven live, journaled, sent while the proof is young, and its
//! answer recorded. A method of the account's [`Pass`], which its workers share.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::account::Pass;
use super::proof::{Coverage, Fresh};
use super::queue::{Due, DueKind};
use super::{reason, role_cannot};
use crate::aws::{AwsError, ErrorKind, Iam, Op};
use crate::calls;
use crate::findings::Finding;
use crate::store::{ActionStatus, Intent, Outcome, StoreError};

/// Attempts at one finding when a detach met a concurrent change or did not happen.
const MAX_TRIES: u32 = 3;
/// How long after its intent a detach's attempts may leave before the journal's bound on them
/// (`send_by`) must be moved later: the pacer's slot, and no throttled re-send.
const SEND_SLACK: Duration = Duration::from_secs(3);
/// Proofs read again in a row that were too old by the time the detach could leave: then the
/// reads are too slow for `--proof-max-age`, and the detach is not sent.
const STALE_ROUNDS: u32 = 3;

/// What became of a journaled detach's sending.
enum Sent {
    /// AWS answered the last attempt (sent at `sent`, relying on the proof read at
    /// `proof_read`); earlier attempts, if any, were throttled (they did nothing).
    Answered {
        result: Result<crate::aws::Receipt, AwsError>,
        sent: Instant,
        proof_read: Instant,
    },
    /// Nothing was sent (or only throttled attempts): the intent ends with `outcome`, and
    /// with `again` the finding is tried again under a new intent.
    Withdrawn { outcome: Outcome, again: bool },
}

impl Sent {
    fn withdrawn(outcome: Outcome) -> Self {
        Sent::Withdrawn {
            outcome,
            again: false,
        }
    }
}

/// The outcome for a finding no group of the scan's grants to its user any more.
fn not_covered(c: &Coverage) -> Outcome {
    let why = match c {
        Coverage::UserGone => reason::USER_GONE,
        Coverage::Recreated => reason::USER_RECREATED,
        _ => reason::NO_LONGER_COVERED,
    };
    Outcome::because(ActionStatus::Skipped, why)
}

impl<I: Iam> Pass<'_, '_, I> {
    /// Proves, journals and detaches one finding. `tries`: the attempts made at it so far,
    /// this one included.
    pub(super) async fn attempt(
        &self,
        id: i64,
        f: Finding,
        mut tries: u32,
    ) -> Result<(), StoreError> {
        // A role session near its end is renewed first, not inside a detach's attempt. If the
        // role cannot be assumed again (its trust policy changed), this account stops with the
        // real code; the finding stays open, without a journal row.
        if let Err(e) = self.app.iam.renew_session_if_ending().await {
            self.halt(e);
            self.interrupted.store(true, Ordering::SeqCst);
            return Ok(());
        }
        // Whether the finding is worth an intent: any proof this pass read will tell (the
        // detach checks its age right before it leaves). After a concurrent change, only a
        // proof read after it will do.
        let mut want = Fresh::Cached;
        loop {
            let (group, proof_read) = match self.prove(&f, want).await {
                Ok(Coverage::Covered { group, read_at }) => (group, read_at),
                Ok(other) => {
                    return self.settle(id, &f, not_covered(&other)).await;
                }
                Err(e) => return self.read_failed(id, &f, e).await,
            };
            if let Some(held) = self.held() {
                self.leave(held);
                return Ok(());
            }
            if !self.take_budget() {
                // Left without a journal row: the finding stays open for a later run.
                return Ok(());
            }
            let send_by = SystemTime::now() + SEND_SLACK;
            let intent = Intent {
                send_by: Some(send_by),
                ..self.app.intent(id, &f, Some(group.clone()))
            };
            let action_id = self
                .app
                .store
                .call(move |s| s.journal_intent(&intent))
                .await?;
            let (result, sent, proof_read) = match self
                .send(action_id, &f, &group, proof_read, send_by)
                .await?
            {
                Sent::Answered {
                    result,
                    sent,
                    proof_read,
                } => (result, sent, proof_read),
                Sent::Withdrawn { outcome, again } => {
                    // Nothing was done under this intent.
                    if outcome.status == ActionStatus::Interrupted && self.stopping() {
                        self.note_interrupted();
                    }
                    self.give_back();
                    self.record(action_id, outcome).await?;
                    tries += 1;
                    if again && tries <= MAX_TRIES && self.may_retry() {
                        continue;
                    }
                    return Ok(());
                }
            };
            // Recorded with every outcome: how old the proof was when the attempt AWS acted on
            // left.
            let age = Some(sent.saturating_duration_since(proof_read).as_millis() as u64);
            let record = |outcome: Outcome| {
                self.record(
                    action_id,
                    Outcome {
                        proof_age_ms: age,
                        ..outcome
                    },
                )
            };
            let post_check = |request_id| Due {
                at: Instant::now() + self.app.options.settle,
                action_id,
                finding_id: id,
                finding: f.clone(),
                group: Some(group.clone()),
                request_id,
                kind: DueKind::PostCheck {
                    status: ActionStatus::Detached,
                    reads: 0,
                },
            };
            match result {
                Ok(receipt) => {
                    let request_id = receipt.request_id;
                    record(Outcome {
                        request_id: request_id.clone(),
                        ..Outcome::new(ActionStatus::Detached)
                    })
                    .await?;
                    self.due.push(post_check(request_id));
                }
                Err(e) if e.kind == ErrorKind::NoSuchEntity => {
                    self.give_back();
                    record(Outcome {
                        request_id: e.request_id.clone(),
                        ..Outcome::because(ActionStatus::AlreadyDetached, reason::NO_SUCH_ENTITY)
                    })
                    .await?;
                }
                Err(e) if e.kind == ErrorKind::Transient => {
                    // The request may have reached AWS: settle it from reads.
                    match self.app.iam.attached_user_policies(&f.user_name).await {
                        Ok(list) if !list.contains(&f.policy_arn) => {
                            record(Outcome {
                                error: Some(e),
                                ..Outcome::because(
                                    ActionStatus::Detached,
                                    reason::CONFIRMED_BY_READ,
                                )
                            })
                            .await?;
                            self.due.push(post_check(None));
                        }
                        Ok(_) if self.app.options.settle.is_zero() => {
                            // No window to wait for: a read showing it attached is the truth.
                            self.give_back();
                            record(Outcome {
                                error: Some(e),
                                ..Outcome::because(ActionStatus::Interrupted, reason::NOT_EXECUTED)
                            })
                            .await?;
                            tries += 1;
                            if tries <= MAX_TRIES && self.may_retry() {
                                continue;
                            }
                        }
                        Err(read) if read.kind == ErrorKind::NoSuchEntity => {
                            self.give_back();
                            record(Outcome::because(ActionStatus::Skipped, reason::USER_GONE))
                                .await?;
                        }
                        // Still attached (a read right after a write may lag it) or unreadable:
                        // unknown until a read across the settle window says.
                        _ => {
                            record(Outcome {
                                error: Some(e),
                                ..Outcome::because(ActionStatus::Unknown, reason::AMBIGUOUS)
                            })
                            .await?;
                            self.due.push(Due {
                                kind: DueKind::Ambiguous {
                                    reason: reason::CONFIRMED_BY_READ,
                                    tries,
                                    reads: 0,
                                },
                                ..post_check(None)
                            });
                        }
                    }
                }
                Err(e) if e.kind == ErrorKind::Conflict => {
                    // Another change to the user was in progress; nothing was done.
                    self.give_back();
                    record(Outcome {
                        error: Some(e.clone()),
                        ..Outcome::because(
                            ActionStatus::Interrupted,
                            reason::CONCURRENT_MODIFICATION,
                        )
                    })
                    .await?;
                    tries += 1;
                    if tries <= MAX_TRIES && self.may_retry() {
                        tokio::time::sleep(self.app.iam.policy().retry.delay(tries - 2)).await;
                        want = Fresh::Since(Instant::now());
                        continue;
                    }
                    self.settle(
                        id,
                        &f,
                        Outcome {
                            error: Some(e),
                            ..Outcome::new(ActionStatus::Failed)
                        },
                    )
                    .await?;
                }
                Err(e) if e.kind == ErrorKind::Credentials => {
                    // Refused before anything was done; the run stops.
                    self.give_back();
                    self.halt(e.clone());
                    record(Outcome {
                        error: Some(e),
                        ..Outcome::because(ActionStatus::Interrupted, reason::NOT_EXECUTED)
                    })
                    .await?;
                }
                Err(e) => {
                    // Refused: not made, so it counts against neither limit (a resume retries
                    // it with a slot of its own).
                    self.give_back();
                    if e.kind == ErrorKind::AccessDenied {
                        self.halt(role_cannot(&e, "iam:DetachUserPolicy"));
                    }
                    record(Outcome {
                        request_id: e.request_id.clone(),
                        error: Some(e),
                        ..Outcome::new(ActionStatus::Failed)
                    })
                    .await?;
                }
            }
            return Ok(());
        }
    }

    /// A read needed to prove a finding failed.
    async fn read_failed(&self, id: i64, f: &Finding, e: AwsError) -> Result<(), StoreError> {
        match e.kind {
            // The run stops; the finding stays open, without a journal row.
            ErrorKind::Credentials => {
                self.halt(e);
                self.interrupted.store(true, Ordering::SeqCst);
                Ok(())
            }
            // The role may not make apply's reads: one clear message for the account instead
            // of one failed action per user.
            ErrorKind::AccessDenied => {
                self.halt(role_cannot(&e, "the reads apply needs"));
                self.interrupted.store(true, Ordering::SeqCst);
                Ok(())
            }
            _ => {
                let outcome = Outcome {
                    error: Some(e),
                    ..Outcome::because(ActionStatus::Failed, reason::VERIFY_FAILED)
                };
                self.settle(id, f, outcome).await
            }
        }
    }

    /// A proof of `f`'s covering grant (see [`Proofs::coverage`]), read as patiently as the
    /// settling reads: a network that fails for seconds delays the detach instead of failing it.
    async fn prove(&self, f: &Finding, want: Fresh) -> Result<Coverage, AwsError> {
        calls::patiently(|| self.stopping(), || self.proofs.coverage(f, want)).await
    }

    /// Sends the journaled detach `action_id` of `f`, relying on `group` as proven at
    /// `proof_read`. Right before every attempt (after the pacer's slot and any throttled
    /// re-send's backoff) the proof is younger than `--proof-max-age`, or it is read again, at
    /// once, and the detach leaves right after those reads (a proof read in full just now is as
    /// young as one can be; one still too old because part of it came from another worker's
    /// reads is read in full; after a few rounds that send nothing the detach is withdrawn as
    /// `verify_failed`); and no attempt leaves after `send_by` as the journal has it (moved later,
    /// durably, first). Gives back what AWS answered, or why nothing was sent.
    async fn send(
        &self,
        action_id: i64,
        f: &Finding,
        group: &str,
        mut proof_read: Instant,
        mut send_by: SystemTime,
    ) -> Result<Sent, StoreError> {
        let max_age = self.app.options.proof_max_age;
        let mut throttled = 0;
        // The next attempt leaves without waiting for its slot in the pace.
        let mut at_once = false;
        // The proof was read in full right before this attempt, at once, with nothing waited
        // for since: as young as a proof can be, whatever its reads took.
        let mut just_proven = false;
        // Rounds in a row that sent nothing.
        let mut stale = 0;
        loop {
            self.app.iam.pace_detach(at_once).await;
            at_once = false;
            if self.stopping() {
                return Ok(Sent::withdrawn(Outcome::because(
                    ActionStatus::Interrupted,
                    reason::NOT_EXECUTED,
                )));
            }
            if !just_proven && proof_read.elapsed() > max_age {
                stale += 1;
                if stale > STALE_ROUNDS {
                    let e = AwsError::new(
                        ErrorKind::Other,
                        "ProofTooSlow",
                        format!(
                            "the proof of group {group} was older than --proof-max-age ({} ms) by the time the detach could leave, {STALE_ROUNDS} times in a row; raise --proof-max-age, or lower the load on this account",
                            max_age.as_millis()
                        ),
                    );
                    return Ok(Sent::withdrawn(Outcome {
                        error: Some(e),
                        ..Outcome::because(ActionStatus::Failed, reason::VERIFY_FAILED)
                    }));
                }
                // Read at once (this detach already waited for its slot). Parts another
                // worker read moments ago may serve; if the proof is still too old after its
                // reads, the next round reads all of it.
                let round = Instant::now();
                let want = if stale > 1 {
                    Fresh::Since(round)
                } else {
                    Fresh::Young
                };
                match calls::urgently(self.prove(f, want)).await {
                    Ok(Coverage::Covered {
                        group: now,
                        read_at,
                    }) if now.eq_ignore_ascii_case(group) => {
                        proof_read = read_at;
                        at_once = true;
                        just_proven = read_at >= round;
                        continue;
                    }
                    // Another group covers it now: a new intent names it.
                    Ok(Coverage::Covered { .. }) => {
                        return Ok(Sent::Withdrawn {
                            outcome: Outcome::because(
                                ActionStatus::Interrupted,
                                reason::NOT_EXECUTED,
                            ),
                            again: true,
                        });
                    }
                    Ok(other) => return Ok(Sent::withdrawn(not_covered(&other))),
                    Err(e) => return Ok(Sent::withdrawn(self.unproven(e))),
                }
            }
            if SystemTime::now() >= send_by {
                send_by = SystemTime::now() + SEND_SLACK;
                let at = send_by;
                self.app
                    .store
                    .call(move |s| s.extend_send_by(action_id, at))
                    .await?;
                // The write took its time: look at the proof's age again.
                at_once = true;
                just_proven = false;
                stale += 1;
                continue;
            }
            stale = 0;
            just_proven = false;
            let (result, sent) = self.app.iam.detach_once(&f.user_name, &f.policy_arn).await;
            if let Err(e) = &result
                && e.kind == ErrorKind::Throttled
            {
                throttled += 1;
                if let Some(delay) = self.app.iam.retry_after(Op::DetachUserPolicy, e, throttled) {
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            return Ok(Sent::Answered {
                result,
                sent,
                proof_read,
            });
        }
    }

    /// The outcome of an intent whose proof could not be read again: nothing was sent.
    fn unproven(&self, e: AwsError) -> Outcome {
        match e.kind {
            ErrorKind::Credentials => {
                self.halt(e.clone());
                self.interrupted.store(true, Ordering::SeqCst);
                Outcome {
                    error: Some(e),
                    ..Outcome::because(ActionStatus::Interrupted, reason::NOT_EXECUTED)
                }
            }
            ErrorKind::AccessDenied => {
                self.halt(role_cannot(&e, "the reads apply needs"));
                self.interrupted.store(true, Ordering::SeqCst);
                Outcome {
                    error: Some(e),
                    ..Outcome::because(ActionStatus::Interrupted, reason::NOT_EXECUTED)
                }
            }
            _ => Outcome {
                error: Some(e),
                ..Outcome::because(ActionStatus::Failed, reason::VERIFY_FAILED)
            },
        }
    }
}
