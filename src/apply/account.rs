//! One account's apply: filters and the policies that could never be attached again first, then
//! workers that prove each finding's covering grant (see `proof`), journal the intent, detach,
//! journal the outcome and queue the post-check, while the settle loop (see `settle`) checks
//! what is due. A detach whose answer was lost is settled by reads, never sent again blindly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::time::Instant;

use super::proof::Proofs;
use super::queue::Queue;
use super::{Applied, ApplyOptions, RunCap, Tally, reason, role_cannot};
use crate::aws::{AwsError, ErrorKind, Iam};
use crate::calls::Metered;
use crate::cancel::Cancel;
use crate::config::AccountTarget;
use crate::events::{Event, Phase, Reporter};
use crate::findings::Finding;
use crate::model::PolicyArn;
use crate::store::actor::StoreHandle;
use crate::store::{ActionStatus, Intent, Operation, Outcome, StoreError};

/// One account's apply (or the settling of its journal) within run `run_id`.
pub struct AccountApply<'a, I> {
    pub run_id: i64,
    pub target: &'a AccountTarget,
    pub iam: &'a Metered<I>,
    pub store: &'a StoreHandle,
    pub reporter: &'a dyn Reporter,
    pub options: &'a ApplyOptions,
    pub cancel: &'a Cancel,
    /// The run's `--max-detaches`, shared by its accounts.
    pub cap: &'a RunCap,
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

    pub(super) fn take(&self) -> bool {
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
    pub(super) stop: Mutex<Option<AwsError>>,
    pub(super) store_failed: AtomicBool,
    pub(super) interrupted: AtomicBool,
    /// Workers inside an attempt (holding, or about to take, a slot of the cap).
    attempting: AtomicUsize,
    /// An attempt ended or a slot was given back: workers waiting for the cap look again.
    slot_freed: tokio::sync::Notify,
}

/// Why a finding is not tried now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// Ctrl-C, a stop, a failed database or the breaker.
    Stopped,
    /// The run's `--max-detaches`.
    Capped,
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
            attempting: AtomicUsize::new(0),
            slot_freed: tokio::sync::Notify::new(),
        }
    }

    /// Stops new work in the account because of `e` (kept: the first one).
    pub(super) fn halt(&self, e: AwsError) {
        self.stop.lock().expect("stop").get_or_insert(e);
    }

    /// Why no new detach may start now, if so.
    pub(super) fn held(&self) -> Option<Held> {
        if self.stopping() || self.budget.tripped.load(Ordering::SeqCst) {
            Some(Held::Stopped)
        } else if self.app.cap.reached() {
            Some(Held::Capped)
        } else {
            None
        }
    }

    /// A finding is left untried (no row, or one that says the call never happened) because
    /// of `held`: the cap says it held one back; a stop marks the account interrupted.
    pub(super) fn leave(&self, held: Held) {
        match held {
            Held::Capped => self.app.cap.hold_back(),
            Held::Stopped => self.note_interrupted(),
        }
    }

    /// Whether a finding whose detach did not happen is tried again now; if not, it is left
    /// (and said so, as [`Pass::leave`]).
    pub(super) fn may_retry(&self) -> bool {
        match self.held() {
            None => true,
            Some(held) => {
                self.leave(held);
                false
            }
        }
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
    pub(super) async fn settle(
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
            if let Some(held) = self.may_start().await {
                // Left without a journal row: the finding stays open for a later run.
                self.leave(held);
                return Ok(());
            }
            self.attempting.fetch_add(1, Ordering::SeqCst);
            let attempted = self.attempt(id, f, 1).await;
            self.attempting.fetch_sub(1, Ordering::SeqCst);
            self.slot_freed.notify_waiters();
            if let Err(e) = attempted {
                // No new detach anywhere in the account from now on.
                self.store_failed();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether a worker may start its next finding. With the run's cap reached while other
    /// findings are being attempted, it waits for them: one refused, or found never made, gives
    /// its slot back, which this finding may then take.
    /// `None`: go; else why not.
    async fn may_start(&self) -> Option<Held> {
        loop {
            // Registered before looking, so a slot freed meanwhile is not missed.
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.held() {
                Some(Held::Capped) if self.attempting.load(Ordering::SeqCst) > 0 => {}
                held => return held,
            }
            // Every attempt ends (a stop ends them too), and wakes this.
            freed.await;
        }
    }

    /// The database failed: no new detach may start (calls in flight finish; what cannot be
    /// journaled now is settled by the next run).
    pub(super) fn store_failed(&self) {
        self.store_failed.store(true, Ordering::SeqCst);
    }

    /// Findings were left open because the run is stopping (not because of the breaker, which
    /// says so itself).
    pub(super) fn note_interrupted(&self) {
        if !self.budget.tripped.load(Ordering::SeqCst) {
            self.interrupted.store(true, Ordering::SeqCst);
        }
    }

    /// Takes one detach from the account's breaker and the run's cap; false (nothing taken)
    /// when either is spent.
    pub(super) fn take_budget(&self) -> bool {
        if !self.budget.take() {
            return false;
        }
        if !self.app.cap.take() {
            self.budget.give_back();
            return false;
        }
        true
    }

    /// A detach that did not happen counts against neither limit.
    pub(super) fn give_back(&self) {
        self.budget.give_back();
        self.app.cap.give_back();
        self.slot_freed.notify_waiters();
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
        // Exceptions are judged now, by the accounts file as it is: one added since the scan
        // applies, one expired since does not.
        let now = crate::store::now();
        for (id, f) in findings {
            // A reviewed plan: what it does not list is not this run's (no row).
            if let Some(only) = &self.options.only_findings
                && only.binary_search(&id).is_err()
            {
                continue;
            }
            let filters = [&self.target.filters, &self.options.filters];
            let excluded = filters.iter().any(|fl| {
                fl.user_excluded(f.user_name.as_str()) || !fl.policy_selected(f.policy_arn.as_str())
            });
            let excepted = filters.iter().any(|fl| {
                fl.exception(
                    self.target.id.as_str(),
                    f.user_name.as_str(),
                    f.policy_arn.as_str(),
                    &now,
                )
                .is_some()
            });
            if excluded || excepted {
                let why = if excluded {
                    reason::EXCLUDED
                } else {
                    reason::EXCEPTION
                };
                self.settle_now(id, &f, Outcome::because(ActionStatus::Skipped, why))
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
