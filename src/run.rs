//! Runs scan, apply and resume over every account with bounded concurrency. One account's
//! failure is recorded and isolated; only a database failure stops the run; Ctrl-C stops
//! starting new work and leaves the run `interrupted`. No printing: events go to the reporter,
//! rows to the store.

use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::apply::{AccountApply, ApplyOptions, Tally};
use crate::aws::{AwsError, Connector};
use crate::calls::{CallPolicy, Meter};
use crate::cancel::Cancel;
use crate::config::{AccountTarget, AccountsFile};
use crate::events::{Event, Phase, Reporter};
use crate::scan;
use crate::store::actor::StoreHandle;
use crate::store::{AccountStatus, RunKind, RunStatus, StoreError};

/// Options a run starts with (stored with it, and used again by `resume`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOptions {
    /// Accounts worked on at once.
    pub concurrency: usize,
    pub calls: CallPolicy,
    pub apply: ApplyOptions,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            calls: CallPolicy::default(),
            apply: ApplyOptions {
                write_concurrency: 4,
                ..ApplyOptions::default()
            },
        }
    }
}

/// How a run (or this part of it) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunResult {
    pub run_id: i64,
    pub status: RunStatus,
    pub accounts_failed: usize,
    pub tally: Tally,
}

impl RunResult {
    /// Whether anything failed (exit code 1).
    pub fn has_failures(&self) -> bool {
        self.accounts_failed > 0 || self.tally.failed > 0
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
}

enum AccountEnd {
    Done(Tally),
    Failed(AwsError),
    Interrupted,
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

    async fn create(
        &self,
        kind: RunKind,
        source: Option<i64>,
        file: &AccountsFile,
        targets: &[AccountTarget],
    ) -> Result<i64, StoreError> {
        let options = serde_json::to_string(&self.options).expect("options serialize");
        let (file, targets) = (file.clone(), targets.to_vec());
        self.store
            .call(move |s| s.create_run(kind, source, &file, &targets, &options))
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
        let mut results = futures::stream::iter(jobs.iter())
            .map(|(t, plan)| self.account(run_id, t, *plan))
            .buffer_unordered(self.options.concurrency.max(1));
        let mut tally = Tally::default();
        let mut failed = 0;
        let mut interrupted = false;
        let mut fatal = None;
        while let Some(r) = results.next().await {
            match r {
                Ok(AccountEnd::Done(t)) => {
                    if t.limit_reached {
                        failed += 1;
                    }
                    interrupted |= t.interrupted;
                    tally.add(&t);
                }
                Ok(AccountEnd::Failed(_)) => failed += 1,
                Ok(AccountEnd::Interrupted) => interrupted = true,
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        drop(results);
        if let Some(e) = fatal {
            // Best effort: the database is what failed. What was committed stays true.
            let _ = self
                .store
                .call(move |s| s.finish_run(run_id, RunStatus::Failed))
                .await;
            return Err(e);
        }
        tally.interrupted = interrupted || self.cancel.is_cancelled();
        let status = if tally.interrupted {
            RunStatus::Interrupted
        } else if failed == jobs.len() && !jobs.is_empty() {
            RunStatus::Failed
        } else if failed > 0 || tally.failed > 0 {
            RunStatus::CompletedWithErrors
        } else {
            RunStatus::Completed
        };
        self.store
            .call(move |s| s.finish_run(run_id, status))
            .await?;
        self.reporter.report(&Event::RunFinished { run_id, status });
        Ok(RunResult {
            run_id,
            status,
            accounts_failed: failed,
            tally,
        })
    }

    async fn account(
        &self,
        run_id: i64,
        target: &AccountTarget,
        plan: Plan,
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
        let meter = Meter::resuming(self.options.calls, prior);
        let end = self.account_work(run_id, target, plan, &meter).await?;
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
            AccountEnd::Interrupted => (AccountStatus::Pending, None),
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
            Err(e) => return Ok(AccountEnd::Failed(e)),
        };
        let findings_run = match plan {
            Plan::Scan | Plan::ScanApply => {
                phase(Phase::Reading {
                    pages: 0,
                    entities: 0,
                });
                let read = scan::read_account(&iam, target, &self.cancel, |pages, entities| {
                    phase(Phase::Reading { pages, entities })
                })
                .await;
                let findings = match read {
                    Ok(Some(f)) => f,
                    Ok(None) => return Ok(AccountEnd::Interrupted),
                    Err(e) => return Ok(AccountEnd::Failed(e)),
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
                if plan == Plan::Scan {
                    return Ok(AccountEnd::Done(Tally::default()));
                }
                run_id
            }
            Plan::Apply { findings_run } => findings_run,
            Plan::Rollback { source } => {
                let rollback = crate::rollback::AccountRollback {
                    run_id,
                    source,
                    target,
                    iam: &iam,
                    store: &self.store,
                    reporter: self.reporter.as_ref(),
                    write_concurrency: self.options.apply.write_concurrency,
                    cancel: &self.cancel,
                };
                return Ok(match rollback.run().await? {
                    Ok(t) => AccountEnd::Done(t),
                    Err(e) => AccountEnd::Failed(e),
                });
            }
        };
        let apply = AccountApply {
            run_id,
            target,
            iam: &iam,
            store: &self.store,
            reporter: self.reporter.as_ref(),
            options: &self.options.apply,
            cancel: &self.cancel,
        };
        let mut tally = match apply.recover().await? {
            Ok(t) => t,
            Err(e) => return Ok(AccountEnd::Failed(e)),
        };
        let id = target.id.clone();
        let (findings, already) = self
            .store
            .call(move |s| {
                Ok((
                    s.findings_to_apply(findings_run, run_id, &id)?,
                    s.detached_in_run(run_id, &id)?,
                ))
            })
            .await?;
        tally.add(&apply.run(findings, already).await?);
        Ok(AccountEnd::Done(tally))
    }
}

fn plans(targets: &[AccountTarget], plan: Plan) -> Vec<(AccountTarget, Plan)> {
    targets.iter().map(|t| (t.clone(), plan)).collect()
}
