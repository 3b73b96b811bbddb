//! Runs scan, apply and resume over every account with bounded concurrency. One account's
//! failure is recorded and isolated. Ctrl-C, base credentials that expired, and a database
//! failure stop new work, let the work in flight finish, and leave the run `interrupted` for
//! `resume`. No printing: events go to the reporter, rows to the store.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};

use crate::apply::{AccountApply, ApplyOptions, RunCap, Tally};
use crate::aws::{AwsError, Connector};
use crate::calls::{CallPolicy, Meter, Metered, Pacer};
use crate::cancel::Cancel;
use crate::config::{AccountTarget, AccountsFile};
use crate::events::{Event, Phase, Reporter};
use crate::limiter::{Limiter, Observe};
use crate::scan;
use crate::store::actor::StoreHandle;
use crate::store::{AccountStatus, RunKind, RunStatus, StoreError};

mod ends;

use ends::{AccountEnd, Ends};
pub use ends::{Halt, RunResult};

/// Options a run starts with (stored with it, and used again by `resume`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOptions {
    /// Accounts worked on at once: fixed, or (`adaptive`) the ceiling of an adaptive limit.
    pub concurrency: usize,
    /// Adapt the number of accounts at once to what the endpoint sustains (the default).
    #[serde(default)]
    pub adaptive: bool,
    pub calls: CallPolicy,
    pub apply: ApplyOptions,
}

/// How often the engine looks whether the concurrency limit lets more accounts start.
const LIMIT_RECHECK: Duration = Duration::from_millis(50);

/// The most accounts an adaptive limit lets run at once.
pub const CONCURRENCY_CEILING: usize = 256;

/// The most accounts whose earlier runs are settled at once under an adaptive limit (a few
/// reads each, before the run's own work starts).
const SETTLING_CEILING: usize = 32;

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            adaptive: false,
            calls: CallPolicy::default(),
            apply: ApplyOptions {
                write_concurrency: 4,
                ..ApplyOptions::default()
            },
        }
    }
}

impl RunOptions {
    /// Accounts whose earlier runs are settled at once: `--concurrency`, or with an adaptive
    /// limit (whose ceiling is 256) at most [`SETTLING_CEILING`].
    fn settling_at_once(&self) -> usize {
        if self.adaptive {
            self.concurrency.clamp(1, SETTLING_CEILING)
        } else {
            self.concurrency.max(1)
        }
    }

    fn limiter(&self) -> Limiter {
        if self.adaptive {
            Limiter::adaptive(self.concurrency)
        } else {
            Limiter::fixed(self.concurrency)
        }
    }
}

/// What one account has to do in this invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Scan,
    /// Scan, then apply the findings just recorded, in the same run.
    ScanApply,
    /// Settle the journal, then apply the findings of `findings_run` not yet settled.
    Apply {
        findings_run: i64,
    },
    /// Re-attach what run `source` detached and was not rolled back yet.
    Rollback {
        source: i64,
    },
}

/// Everything a run needs: the way to AWS, the store, the reporter, the options and the stop
/// flag.
pub struct Engine<C> {
    pub connector: C,
    pub store: StoreHandle,
    pub reporter: Arc<dyn Reporter>,
    pub options: RunOptions,
    pub cancel: Cancel,
    /// Who the base credentials are (`GetCallerIdentity`), recorded with each run.
    pub caller: Option<String>,
}

impl<C: Connector> Engine<C> {
    /// Scans every account of `file`; changes nothing in AWS.
    pub async fn scan(&self, file: &AccountsFile) -> Result<RunResult, StoreError> {
        let run_id = self
            .create(RunKind::Scan, None, file, &file.accounts)
            .await?;
        self.drive(run_id, plans(&file.accounts, Plan::Scan)).await
    }

    /// Scans and applies every account of `file` in one run.
    pub async fn apply(&self, file: &AccountsFile) -> Result<RunResult, StoreError> {
        self.settle_earlier(None).await?;
        let run_id = self
            .create(RunKind::Apply, None, file, &file.accounts)
            .await?;
        self.drive(run_id, plans(&file.accounts, Plan::ScanApply))
            .await
    }

    /// Applies the findings of scan run `source` to `targets` (accounts that scan read).
    pub async fn apply_run(
        &self,
        source: i64,
        file: &AccountsFile,
        targets: Vec<AccountTarget>,
    ) -> Result<RunResult, StoreError> {
        self.settle_earlier(None).await?;
        let run_id = self
            .create(RunKind::Apply, Some(source), file, &targets)
            .await?;
        let plan = Plan::Apply {
            findings_run: source,
        };
        self.drive(run_id, plans(&targets, plan)).await
    }

    /// Re-attaches every successful detach of run `source` not rolled back yet, as a new
    /// recorded run, through the same role assumption the run used in each account.
    pub async fn rollback(&self, source: i64) -> Result<RunResult, StoreError> {
        self.settle_earlier(None).await?;
        let (inputs, targets, items) = self
            .store
            .call(move |s| {
                Ok((
                    s.run_inputs(source)?,
                    s.run_targets(source)?,
                    s.rollback_items(source, None)?,
                ))
            })
            .await?;
        let targets: Vec<AccountTarget> = targets
            .into_iter()
            .filter(|t| items.iter().any(|i| i.account_id == t.id.as_str()))
            .collect();
        let file = AccountsFile::stored(inputs.0, inputs.1, targets.clone());
        let run_id = self
            .create(RunKind::Rollback, Some(source), &file, &targets)
            .await?;
        self.drive(run_id, plans(&targets, Plan::Rollback { source }))
            .await
    }

    /// Continues run `run_id`: accounts not scanned are scanned, the journal left by a dead
    /// process is settled, and findings not yet settled (failed ones included) are applied.
    /// Accounts and actions that finished are not touched again. `self.options` should be the
    /// run's own (see `store.run_inputs`).
    pub async fn resume(&self, run_id: i64) -> Result<RunResult, StoreError> {
        self.settle_earlier(Some(run_id)).await?;
        let (run, accounts) = self
            .store
            .call(move |s| Ok((s.run(run_id)?, s.resume_accounts(run_id)?)))
            .await?;
        let mut jobs = Vec::new();
        for a in accounts {
            let retry = matches!(
                a.status.as_str(),
                "pending" | "failed" | "scanned" | "stopped"
            );
            let plan = match (run.kind.as_str(), run.source_run_id) {
                ("scan", _) if retry => Some(Plan::Scan),
                ("rollback", Some(source)) if retry || a.open_actions => {
                    Some(Plan::Rollback { source })
                }
                ("apply", source) if retry || a.open_actions => Some(match (a.scanned, source) {
                    (_, Some(src)) => Plan::Apply { findings_run: src },
                    (true, None) => Plan::Apply {
                        findings_run: run_id,
                    },
                    (false, None) => Plan::ScanApply,
                }),
                _ => None,
            };
            if let Some(plan) = plan {
                jobs.push((a.target, plan));
            }
        }
        self.store.call(move |s| s.reopen_run(run_id)).await?;
        self.drive(run_id, jobs).await
    }

    /// Before a run changes AWS: settles, from live reads, the journal rows every other run
    /// left open (intents without outcome, lost answers, detaches never post-checked,
    /// re-attaches begun or failed, rollback attaches without outcome), each in its own run,
    /// so that a detach made then stays in that run's rollback list. An account that cannot be
    /// reached now is left for the next run, with a warning.
    pub async fn settle_earlier(&self, except: Option<i64>) -> Result<(), StoreError> {
        let open = self.store.call(move |s| s.unsettled(except)).await?;
        let mut settling = futures::stream::iter(open)
            .map(|u| async move {
                let (run_id, account) = (u.run_id, u.target.id.clone());
                let prior = self
                    .store
                    .call(move |s| s.prior_calls(run_id, &account))
                    .await?;
                let meter = Meter::resuming(self.options.calls, prior);
                let error = match meter.connect(&self.connector, &u.target).await {
                    Err(e) => Some(e),
                    Ok(iam) => {
                        let applied = match u.kind {
                            RunKind::Rollback => {
                                crate::rollback::AccountRollback {
                                    run_id,
                                    source: 0,
                                    target: &u.target,
                                    iam: &iam,
                                    store: &self.store,
                                    reporter: self.reporter.as_ref(),
                                    write_concurrency: 1,
                                    cancel: &self.cancel,
                                }
                                .settle()
                                .await?
                            }
                            _ => {
                                AccountApply {
                                    run_id,
                                    target: &u.target,
                                    iam: &iam,
                                    store: &self.store,
                                    reporter: self.reporter.as_ref(),
                                    options: &self.options.apply,
                                    cancel: &self.cancel,
                                    cap: &RunCap::unlimited(),
                                }
                                .recover()
                                .await?
                            }
                        };
                        applied.stop
                    }
                };
                let (account, calls) = (u.target.id.clone(), meter.counts());
                self.store
                    .call(move |s| s.pause_account(run_id, &account, &calls))
                    .await?;
                let left = {
                    let account = u.target.id.clone();
                    self.store
                        .call(move |s| s.open_actions(run_id, &account))
                        .await?
                        .len()
                };
                self.reporter.report(&Event::Settled {
                    run_id,
                    account: u.target.id.clone(),
                    actions: u.open,
                    error: (left > 0 || error.is_some()).then(|| {
                        error.map_or_else(|| format!("{left} still open"), |e| e.to_string())
                    }),
                });
                Ok::<_, StoreError>(())
            })
            .buffer_unordered(self.options.settling_at_once());
        while let Some(done) = settling.next().await {
            done?;
        }
        Ok(())
    }

    async fn create(
        &self,
        kind: RunKind,
        source: Option<i64>,
        file: &AccountsFile,
        targets: &[AccountTarget],
    ) -> Result<i64, StoreError> {
        let options = serde_json::to_string(&self.options).expect("options serialize");
        let (file, targets, caller) = (file.clone(), targets.to_vec(), self.caller.clone());
        let digest = self.options.apply.plan_digest.clone();
        self.store
            .call(move |s| {
                let id =
                    s.create_run_as(kind, source, &file, &targets, &options, caller.as_deref())?;
                if let Some(d) = digest {
                    s.set_plan_digest(id, &d)?;
                }
                Ok(id)
            })
            .await
    }

    async fn drive(
        &self,
        run_id: i64,
        jobs: Vec<(AccountTarget, Plan)>,
    ) -> Result<RunResult, StoreError> {
        let kind = self.store.call(move |s| s.run(run_id)).await?.kind;
        self.reporter.report(&Event::RunStarted {
            run_id,
            kind: match kind.as_str() {
                "scan" => RunKind::Scan,
                "rollback" => RunKind::Rollback,
                _ => RunKind::Apply,
            },
            accounts: jobs.len(),
        });
        let limiter = Arc::new(self.options.limiter());
        // Every account's AssumeRole is made by one principal: one pace for all of them,
        // unpaced until STS throttles.
        let sts = Arc::new(Pacer::new(None));
        // `--max-detaches` counts what the run made before it was resumed.
        let cap = match self.options.apply.max_detaches {
            Some(max) => {
                let made = self.store.call(move |s| s.sent_detaches(run_id)).await?;
                RunCap::new(Some(max), made)
            }
            None => RunCap::unlimited(),
        };
        let waiting = jobs.iter();
        let mut results = FuturesUnordered::new();
        let mut ends = Ends::default();
        let mut waiting = waiting.peekable();
        loop {
            // Start accounts while the limit allows (it moves with how the calls go).
            while results.len() < limiter.limit() && !self.cancel.is_cancelled() {
                let Some((t, plan)) = waiting.next() else {
                    break;
                };
                results.push(self.account(run_id, t, *plan, &limiter, &sts, &cap));
            }
            // The limit may grow while every account in flight is still busy (an apply
            // waiting out its settle window): look again now and then, not only when one ends.
            let more = waiting.peek().is_some() && !self.cancel.is_cancelled();
            let next = if more {
                tokio::select! {
                    r = results.next() => r,
                    _ = tokio::time::sleep(LIMIT_RECHECK) => continue,
                }
            } else {
                results.next().await
            };
            let Some(r) = next else {
                break;
            };
            ends.add(r, &self.cancel);
        }
        drop(results);
        let Ends {
            mut tally,
            failed,
            interrupted,
            halted,
            fatal,
        } = ends;
        tally.interrupted = interrupted || self.cancel.is_cancelled();
        if fatal.is_none() {
            // A run is complete only with none of its rows open, whatever its accounts said
            // (an account with open rows that this invocation did not work on, say).
            let open = self.store.call(move |s| s.open_rows(run_id)).await?;
            tally.unsettled = tally.unsettled.max(open);
        }
        let status = if tally.interrupted {
            RunStatus::Interrupted
        } else if failed == jobs.len() && !jobs.is_empty() {
            RunStatus::Failed
        } else if failed > 0 || tally.failed > 0 || tally.unsettled > 0 {
            RunStatus::CompletedWithErrors
        } else {
            RunStatus::Completed
        };
        let finished = self.store.call(move |s| s.finish_run(run_id, status)).await;
        if fatal.is_none() {
            finished?;
        }
        // With a failed database the run may still say `running`; the next process marks it
        // `interrupted` when it takes the lock.
        self.reporter.report(&Event::RunFinished { run_id, status });
        Ok(RunResult {
            run_id,
            status,
            accounts_failed: failed,
            tally,
            halted,
            capped: cap.held_back(),
        })
    }

    async fn account(
        &self,
        run_id: i64,
        target: &AccountTarget,
        plan: Plan,
        limiter: &Arc<Limiter>,
        sts: &Arc<Pacer>,
        cap: &RunCap,
    ) -> Result<AccountEnd, StoreError> {
        if self.cancel.is_cancelled() {
            return Ok(AccountEnd::Interrupted);
        }
        let id = target.id.clone();
        let id2 = id.clone();
        let prior = self
            .store
            .call(move |s| {
                s.mark_account_started(run_id, &id2)?;
                s.prior_calls(run_id, &id2)
            })
            .await?;
        self.reporter.report(&Event::AccountStarted {
            account: id.clone(),
            label: target.label(),
        });
        let observer: Arc<dyn Observe> = limiter.clone();
        let meter = Meter::shared(self.options.calls, prior, Some(observer), Some(sts.clone()));
        let end = match self.account_work(run_id, target, plan, &meter, cap).await {
            Ok(end) => end,
            Err(e) => {
                // The calls made are written if the database still takes them.
                let (id, calls) = (id.clone(), meter.counts());
                let _ = self
                    .store
                    .call(move |s| s.pause_account(run_id, &id, &calls))
                    .await;
                return Err(e);
            }
        };
        let calls = meter.counts();
        let limit = self.options.apply.max_detaches_per_account;
        let (status, error) = match &end {
            AccountEnd::Done(t) if t.limit_reached => (
                AccountStatus::Stopped,
                Some(AwsError::new(
                    crate::aws::ErrorKind::Other,
                    "MaxDetachesReached",
                    format!(
                        "stopped: more detaches were needed than --max-detaches-per-account {}; the rest stay open for a later run",
                        limit.unwrap_or_default()
                    ),
                )),
            ),
            AccountEnd::Done(t) if t.interrupted => (AccountStatus::Scanned, None),
            AccountEnd::Done(_) => (AccountStatus::Completed, None),
            AccountEnd::Failed(e) => (AccountStatus::Failed, Some(e.clone())),
            AccountEnd::Interrupted | AccountEnd::Halted(_) => (AccountStatus::Pending, None),
        };
        let (id2, error2) = (id.clone(), error.clone());
        self.store
            .call(move |s| match status {
                // Interrupted: keep its status (pending, or scanned) for `resume`.
                AccountStatus::Scanned | AccountStatus::Pending => {
                    s.pause_account(run_id, &id2, &calls)
                }
                _ => s.finish_account(run_id, &id2, status, error2.as_ref(), &calls),
            })
            .await?;
        self.reporter.report(&Event::AccountFinished {
            account: id,
            label: target.label(),
            status,
            error: error.map(|e| e.to_string()),
        });
        Ok(end)
    }

    async fn account_work(
        &self,
        run_id: i64,
        target: &AccountTarget,
        plan: Plan,
        meter: &Arc<Meter>,
        cap: &RunCap,
    ) -> Result<AccountEnd, StoreError> {
        let phase = |phase| {
            self.reporter.report(&Event::Phase {
                account: target.id.clone(),
                phase,
            })
        };
        phase(Phase::Connecting);
        let iam = match meter.connect(&self.connector, target).await {
            Ok(iam) => iam,
            Err(e) => return Ok(AccountEnd::from_applied(Tally::default(), Some(e))),
        };
        let findings_run = match plan {
            Plan::Scan | Plan::ScanApply => {
                match self.scan_account(run_id, target, &iam, plan, meter).await? {
                    Ok(()) if plan == Plan::Scan => return Ok(AccountEnd::Done(Tally::default())),
                    Ok(()) => run_id,
                    Err(end) => return Ok(end),
                }
            }
            Plan::Apply { findings_run } => findings_run,
            Plan::Rollback { source } => {
                return self.rollback_account(run_id, source, target, &iam).await;
            }
        };
        self.apply_account(run_id, findings_run, target, &iam, cap)
            .await
    }

    /// Step one of a scan: reads the account and records its findings. `Err(end)` when the
    /// account ends here (interrupted, or its reads failed).
    async fn scan_account(
        &self,
        run_id: i64,
        target: &AccountTarget,
        iam: &Metered<C::Client>,
        plan: Plan,
        meter: &Arc<Meter>,
    ) -> Result<Result<(), AccountEnd>, StoreError> {
        let phase = |phase| {
            self.reporter.report(&Event::Phase {
                account: target.id.clone(),
                phase,
            })
        };
        phase(Phase::Reading {
            pages: 0,
            entities: 0,
        });
        let read = scan::read_account(iam, target, &self.cancel, |pages, entities| {
            phase(Phase::Reading { pages, entities })
        })
        .await;
        let findings = match read {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(Err(AccountEnd::Interrupted)),
            Err(e) => return Ok(Err(AccountEnd::from_applied(Tally::default(), Some(e)))),
        };
        phase(Phase::Recording {
            findings: findings.findings.len() as u64,
        });
        let status = match plan {
            Plan::Scan => AccountStatus::Completed,
            _ => AccountStatus::Scanned,
        };
        let (id, calls) = (target.id.clone(), meter.counts());
        self.store
            .call(move |s| s.record_scan(run_id, &id, &findings, &calls, status))
            .await?;
        Ok(Ok(()))
    }

    /// A rollback's account: re-attaches what run `source` detached there.
    async fn rollback_account(
        &self,
        run_id: i64,
        source: i64,
        target: &AccountTarget,
        iam: &Metered<C::Client>,
    ) -> Result<AccountEnd, StoreError> {
        let rollback = crate::rollback::AccountRollback {
            run_id,
            source,
            target,
            iam,
            store: &self.store,
            reporter: self.reporter.as_ref(),
            write_concurrency: self.options.apply.write_concurrency,
            cancel: &self.cancel,
        };
        let done = rollback.run().await?;
        // The journal counts each item once, by its latest row; the pass adds only how it
        // ended.
        let id = target.id.clone();
        let mut tally = self
            .store
            .call(move |s| s.account_tally(run_id, &id))
            .await?;
        tally.interrupted = done.tally.interrupted;
        Ok(AccountEnd::from_applied(tally, done.stop))
    }

    /// An apply's account: settles what earlier passes left open, then detaches the
    /// findings of run `findings_run`.
    async fn apply_account(
        &self,
        run_id: i64,
        findings_run: i64,
        target: &AccountTarget,
        iam: &Metered<C::Client>,
        cap: &RunCap,
    ) -> Result<AccountEnd, StoreError> {
        let apply = AccountApply {
            run_id,
            target,
            iam,
            store: &self.store,
            reporter: self.reporter.as_ref(),
            options: &self.options.apply,
            cancel: &self.cancel,
            cap,
        };
        let recovered = apply.recover().await?;
        if recovered.stop.is_some() {
            return Ok(AccountEnd::from_applied(recovered.tally, recovered.stop));
        }
        let id = target.id.clone();
        let (findings, already, scanned_at) = self
            .store
            .call(move |s| {
                Ok((
                    s.findings_to_apply(findings_run, run_id, &id)?,
                    s.detached_in_run(run_id, &id)?,
                    s.scanned_at(findings_run, &id)?,
                ))
            })
            .await?;
        let scanned_at = scanned_at.and_then(|t| humantime::parse_rfc3339_weak(&t).ok());
        let applied = apply.run(findings, already, scanned_at).await?;
        let id = target.id.clone();
        let mut tally = self
            .store
            .call(move |s| s.account_tally(run_id, &id))
            .await?;
        tally.limit_reached = applied.tally.limit_reached;
        tally.interrupted = applied.tally.interrupted || recovered.tally.interrupted;
        Ok(AccountEnd::from_applied(tally, applied.stop))
    }
}

fn plans(targets: &[AccountTarget], plan: Plan) -> Vec<(AccountTarget, Plan)> {
    targets.iter().map(|t| (t.clone(), plan)).collect()
}
