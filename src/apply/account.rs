//! One account's apply: filters and the policies that could never be attached again first, then
//! workers that prove each finding's covering grant (see `proof`), journal the intent, detach,
//! journal the outcome and queue the post-check, while the settle loop (see `settle`) checks
//! what is due. A detach whose answer was lost is settled by reads, never sent again blindly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::time::Instant;

use super::proof::{Coverage, Fresh, Proofs};
use super::queue::{Due, DueKind, Queue};
use super::{Applied, ApplyOptions, Tally, reason};
use crate::aws::{AwsError, ErrorKind, Iam, Op};
use crate::calls::{self, Metered};
use crate::cancel::Cancel;
use crate::config::AccountTarget;
use crate::events::{Event, Phase, Reporter};
use crate::findings::Finding;
use crate::model::PolicyArn;
use crate::store::actor::StoreHandle;
use crate::store::{ActionStatus, Intent, Operation, Outcome, StoreError};

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

/// One account's apply (or the settling of its journal) within run `run_id`.
pub struct AccountApply<'a, I> {
    pub run_id: i64,
    pub target: &'a AccountTarget,
    pub iam: &'a Metered<I>,
    pub store: &'a StoreHandle,
    pub reporter: &'a dyn Reporter,
    pub options: &'a ApplyOptions,
    pub cancel: &'a Cancel,
}

pub(super) struct Budget {
    left: AtomicU64,
    tripped: AtomicBool,
}

impl Budget {
    fn new(left: u64) -> Self {
        Self {
            left: AtomicU64::new(left),
            tripped: AtomicBool::new(false),
        }
    }

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

    /// A detach that did not happen does not count.
    pub(super) fn give_back(&self) {
        let _ = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_add(1));
    }
}

/// One pass over an account's journal and findings, shared by its workers and its settle
/// loop.
pub(super) struct Pass<'p, 'a, I> {
    pub app: &'p AccountApply<'a, I>,
    pub proofs: Proofs<'a, I>,
    pub due: Queue,
    pub budget: Budget,
    /// In a live apply, a detach found not to have happened is tried again; when settling an
    /// earlier run's journal, the finding is left open for that run.
    pub retry_not_executed: bool,
    stop: Mutex<Option<AwsError>>,
    store_failed: AtomicBool,
    interrupted: AtomicBool,
}

impl<'p, 'a, I: Iam> Pass<'p, 'a, I> {
    pub(super) fn new(
        app: &'p AccountApply<'a, I>,
        findings: &[&Finding],
        budget: u64,
        retry_not_executed: bool,
    ) -> Self {
        Self {
            app,
            proofs: Proofs::new(app.iam, app.options.proof_max_age, findings),
            due: Queue::new(app.options.settle),
            budget: Budget::new(budget),
            retry_not_executed,
            stop: Mutex::new(None),
            store_failed: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
        }
    }

    /// Stops new work in the account because of `e` (kept: the first one).
    pub(super) fn halt(&self, e: AwsError) {
        self.stop.lock().expect("stop").get_or_insert(e);
    }

    /// Whether no new detach may start: Ctrl-C, a stop, a failed database or the breaker.
    pub(super) fn halted(&self) -> bool {
        self.stopping() || self.budget.tripped.load(Ordering::SeqCst)
    }

    /// Whether the run is stopping here: Ctrl-C, a stop or a failed database (not the breaker,
    /// which only keeps new findings from starting).
    pub(super) fn stopping(&self) -> bool {
        self.app.cancel.is_cancelled()
            || self.stop.lock().expect("stop").is_some()
            || self.store_failed.load(Ordering::SeqCst)
    }

    /// Whether even protective re-attaches cannot be made (no credentials, no database).
    pub(super) fn halted_for_good(&self) -> bool {
        self.store_failed.load(Ordering::SeqCst)
            || self
                .stop
                .lock()
                .expect("stop")
                .as_ref()
                .is_some_and(|e| e.kind == ErrorKind::Credentials)
    }

    pub(super) fn warn(&self, message: String) {
        self.app.reporter.report(&Event::Warning {
            account: self.app.target.id.clone(),
            message,
        });
    }

    pub(super) async fn record(&self, action_id: i64, outcome: Outcome) -> Result<(), StoreError> {
        self.app
            .store
            .call(move |s| s.journal_outcome(action_id, &outcome))
            .await
    }

    /// Journals an action that needs no AWS call.
    async fn settle(
        &self,
        finding_id: i64,
        f: &Finding,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let intent = self.app.intent(finding_id, f, None);
        self.app
            .store
            .call(move |s| s.journal_settled(&intent, &outcome))
            .await
            .map(drop)
    }

    /// Runs the workers over `work` (each a user's findings) next to the settle loop; returns
    /// the first database error after every task in flight has ended.
    pub(super) async fn drive(&self, work: Vec<Vec<(i64, Finding)>>) -> Result<(), StoreError> {
        let total = work.len() as u64;
        let workers = async {
            let mut first = None;
            let mut done = 0;
            let mut users = futures::stream::iter(work)
                .map(|items| self.user(items))
                .buffer_unordered(self.app.options.write_concurrency.max(1));
            while let Some(result) = users.next().await {
                if let Err(e) = result {
                    // New work stopped when it failed; the tasks in flight finish (their
                    // journal rows are settled by the next run if they cannot be written now).
                    first.get_or_insert(e);
                }
                done += 1;
                self.app.phase(done, total);
            }
            self.due.close();
            first
        };
        let settling = async {
            let settled = self.settle_loop().await;
            if settled.is_err() {
                // At once: a detach made from now on would have no post-check in this run
                // (its row stays open for the next one, which checks it).
                self.store_failed();
            }
            settled
        };
        let (workers, settled) = futures::join!(workers, settling);
        match (workers, settled) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(()),
        }
    }

    async fn user(&self, items: Vec<(i64, Finding)>) -> Result<(), StoreError> {
        for (id, f) in items {
            if self.halted() {
                // Left without a journal row: the finding stays open for a later run.
                self.note_interrupted();
                return Ok(());
            }
            if let Err(e) = self.attempt(id, f, 1).await {
                // No new detach anywhere in the account from now on.
                self.store_failed();
                return Err(e);
            }
        }
        Ok(())
    }

    /// The database failed: no new detach may start (calls in flight finish; what cannot be
    /// journaled now is settled by the next run).
    pub(super) fn store_failed(&self) {
        self.store_failed.store(true, Ordering::SeqCst);
    }

    /// Findings were left open because the run is stopping (not because of the breaker, which
    /// says so itself).
    fn note_interrupted(&self) {
        if !self.budget.tripped.load(Ordering::SeqCst) {
            self.interrupted.store(true, Ordering::SeqCst);
        }
    }

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
            if self.halted() {
                self.note_interrupted();
                return Ok(());
            }
            if !self.budget.take() {
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
                    self.budget.give_back();
                    self.record(action_id, outcome).await?;
                    tries += 1;
                    if again && tries <= MAX_TRIES && !self.halted() {
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
                    self.budget.give_back();
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
                            self.budget.give_back();
                            record(Outcome {
                                error: Some(e),
                                ..Outcome::because(ActionStatus::Interrupted, reason::NOT_EXECUTED)
                            })
                            .await?;
                            tries += 1;
                            if tries <= MAX_TRIES && !self.halted() {
                                continue;
                            }
                        }
                        Err(read) if read.kind == ErrorKind::NoSuchEntity => {
                            self.budget.give_back();
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
                    self.budget.give_back();
                    record(Outcome {
                        error: Some(e.clone()),
                        ..Outcome::because(
                            ActionStatus::Interrupted,
                            reason::CONCURRENT_MODIFICATION,
                        )
                    })
                    .await?;
                    tries += 1;
                    if tries <= MAX_TRIES && !self.halted() {
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
                    self.budget.give_back();
                    self.halt(e.clone());
                    record(Outcome {
                        error: Some(e),
                        ..Outcome::because(ActionStatus::Interrupted, reason::NOT_EXECUTED)
                    })
                    .await?;
                }
                Err(e) => {
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

    /// How the pass ended, beyond the journal.
    pub(super) fn finish(self) -> Applied {
        Applied {
            tally: Tally {
                limit_reached: self.budget.tripped.load(Ordering::SeqCst),
                interrupted: self.interrupted.load(Ordering::SeqCst)
                    || self.app.cancel.is_cancelled(),
                ..Tally::default()
            },
            stop: self.stop.into_inner().expect("stop"),
        }
    }
}

/// The account-stopping error for a role that may not make a call apply needs.
fn role_cannot(e: &AwsError, what: &str) -> AwsError {
    AwsError {
        message: format!(
            "{}; the role may not make {what}: deploy it with Mode=apply (scripts/iamsweep-role.yaml), check with `iamsweep doctor --apply`, then `iamsweep resume`",
            e.message
        ),
        ..e.clone()
    }
}

impl<I: Iam> AccountApply<'_, I> {
    pub(super) fn intent(&self, finding_id: i64, f: &Finding, covering: Option<String>) -> Intent {
        Intent {
            run_id: self.run_id,
            finding_id: Some(finding_id),
            account: self.target.id.clone(),
            user: f.user_name.clone(),
            policy: f.policy_arn.clone(),
            operation: Operation::Detach,
            covering_group: covering,
            undoes: None,
            send_by: None,
        }
    }

    fn phase(&self, done: u64, total: u64) {
        self.reporter.report(&Event::Phase {
            account: self.target.id.clone(),
            phase: Phase::Applying { done, total },
        });
    }

    /// Applies `findings` (redundant ones, with their ids), read by a scan at `scanned_at`;
    /// `already` detaches were made by this run before (a resume), and count against the
    /// circuit breaker.
    pub async fn run(
        &self,
        findings: Vec<(i64, Finding)>,
        already: u64,
        scanned_at: Option<SystemTime>,
    ) -> Result<Applied, StoreError> {
        let mut open = Vec::new();
        for (id, f) in findings {
            let filters = [&self.target.filters, &self.options.filters];
            let excluded = filters.iter().any(|fl| {
                fl.user_excluded(f.user_name.as_str()) || !fl.policy_selected(f.policy_arn.as_str())
            });
            if excluded {
                self.settle_now(
                    id,
                    &f,
                    Outcome::because(ActionStatus::Skipped, reason::EXCLUDED),
                )
                .await?;
            } else {
                open.push((id, f));
            }
        }
        let limit = self
            .options
            .max_detaches_per_account
            .map_or(u64::MAX, |max| max.saturating_sub(already));
        let refs: Vec<&Finding> = open.iter().map(|(_, f)| f).collect();
        let pass = Pass::new(self, &refs, limit, true);
        let open = match self.reattachable(&pass, open).await? {
            Some(open) => open,
            None => return Ok(pass.finish()),
        };
        // A grant is relied on only once it is old enough to have reached every IAM endpoint:
        // the scan must have seen it at least the settle window before the first detach.
        if let Some(at) = scanned_at
            && !self.wait_until(at + self.options.settle).await
        {
            let mut applied = pass.finish();
            applied.tally.interrupted = true;
            return Ok(applied);
        }
        // One work item per user; users relying on the same group next to each other, so its
        // proof is read once and shared while it is fresh.
        let mut by_user: BTreeMap<(String, String), Vec<(i64, Finding)>> = BTreeMap::new();
        for (id, f) in open {
            let group = pass
                .proofs
                .preferred(&f.covering_groups)
                .cloned()
                .unwrap_or_default();
            by_user
                .entry((group, f.user_name.as_str().to_owned()))
                .or_default()
                .push((id, f));
        }
        self.phase(0, by_user.len() as u64);
        pass.drive(by_user.into_values().collect()).await?;
        Ok(pass.finish())
    }

    /// Journals an action that needs no AWS call.
    async fn settle_now(&self, id: i64, f: &Finding, outcome: Outcome) -> Result<(), StoreError> {
        let intent = self.intent(id, f, None);
        self.store
            .call(move |s| s.journal_settled(&intent, &outcome))
            .await
            .map(drop)
    }

    /// Skips findings whose policy could never be attached again (deprecated AWS managed
    /// policies: `IsAttachable` false), unless allowed: a detach of one could not be undone by
    /// the post-check nor by a rollback. `None` when the account must stop.
    async fn reattachable(
        &self,
        pass: &Pass<'_, '_, I>,
        open: Vec<(i64, Finding)>,
    ) -> Result<Option<Vec<(i64, Finding)>>, StoreError> {
        if self.options.allow_non_reattachable {
            return Ok(Some(open));
        }
        let mut known: HashMap<PolicyArn, Result<bool, AwsError>> = HashMap::new();
        for (_, f) in &open {
            // Customer managed policies can always be attached again; AWS managed ones are
            // deprecated now and then.
            if is_aws_managed(&f.policy_arn) && !known.contains_key(&f.policy_arn) {
                let answer = self.iam.policy_attachable(&f.policy_arn).await;
                if let Err(e) = &answer
                    && matches!(e.kind, ErrorKind::Credentials | ErrorKind::AccessDenied)
                {
                    pass.halt(if e.kind == ErrorKind::AccessDenied {
                        role_cannot(e, "iam:GetPolicy")
                    } else {
                        e.clone()
                    });
                    return Ok(None);
                }
                known.insert(f.policy_arn.clone(), answer);
            }
        }
        let mut keep = Vec::new();
        for (id, f) in open {
            match known.get(&f.policy_arn) {
                None | Some(Ok(true)) => keep.push((id, f)),
                Some(Ok(false)) => {
                    self.settle_now(
                        id,
                        &f,
                        Outcome::because(ActionStatus::Skipped, reason::NOT_REATTACHABLE),
                    )
                    .await?
                }
                // A policy that does not exist cannot be attached again either.
                Some(Err(e)) if e.kind == ErrorKind::NoSuchEntity => {
                    self.settle_now(
                        id,
                        &f,
                        Outcome {
                            error: Some(e.clone()),
                            ..Outcome::because(ActionStatus::Skipped, reason::NOT_REATTACHABLE)
                        },
                    )
                    .await?
                }
                Some(Err(e)) => {
                    self.settle_now(
                        id,
                        &f,
                        Outcome {
                            error: Some(e.clone()),
                            ..Outcome::because(ActionStatus::Failed, reason::VERIFY_FAILED)
                        },
                    )
                    .await?
                }
            }
        }
        Ok(Some(keep))
    }

    /// Sleeps until `at` (wall clock); false if Ctrl-C came first.
    async fn wait_until(&self, at: SystemTime) -> bool {
        let Ok(left) = at.duration_since(SystemTime::now()) else {
            return !self.cancel.is_cancelled();
        };
        let end = Instant::now() + left;
        while Instant::now() < end {
            if self.cancel.is_cancelled() {
                return false;
            }
            tokio::time::sleep((end - Instant::now()).min(Duration::from_millis(100))).await;
        }
        !self.cancel.is_cancelled()
    }
}

/// `arn:<partition>:iam::aws:policy/...`: managed by AWS.
fn is_aws_managed(arn: &PolicyArn) -> bool {
    arn.as_str()
        .split(':')
        .nth(4)
        .is_some_and(|owner| owner == "aws")
}
