//! Runs scan and apply over every account with bounded concurrency. One account's failure is
//! recorded and isolated; only a database failure stops the run. No printing: events go to the
//! reporter, rows to the store.

use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use crate::apply::{AccountApply, ApplyOptions, Tally};
use crate::aws::{AwsError, Connector};
use crate::calls::{CallPolicy, Meter};
use crate::config::{AccountTarget, AccountsFile};
use crate::events::{Event, Phase, Reporter};
use crate::scan;
use crate::store::actor::StoreHandle;
use crate::store::{AccountStatus, RunKind, RunStatus, StoreError};

/// Options a run starts with (stored with it).
#[derive(Clone, Debug, Serialize)]
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

/// How a run ended.
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

#[derive(Clone, Copy)]
enum Mode {
    Scan,
    /// Scan and apply in the same run.
    ScanApply,
    /// Apply the findings of an earlier scan run.
    ApplyFrom(i64),
}

/// Everything a run needs: the way to AWS, the store, the reporter and the options.
pub struct Engine<C> {
    pub connector: C,
    pub store: StoreHandle,
    pub reporter: Arc<dyn Reporter>,
    pub options: RunOptions,
}

enum AccountEnd {
    Done(Tally),
    Failed(AwsError),
}

impl<C: Connector> Engine<C> {
    /// Scans every account of `file`; changes nothing in AWS.
    pub async fn scan(&self, file: &AccountsFile) -> Result<RunResult, StoreError> {
        self.run(RunKind::Scan, None, file, file.accounts.clone(), Mode::Scan)
            .await
    }

    /// Scans and applies every account of `file` in one run.
    pub async fn apply(&self, file: &AccountsFile) -> Result<RunResult, StoreError> {
        self.run(
            RunKind::Apply,
            None,
            file,
            file.accounts.clone(),
            Mode::ScanApply,
        )
        .await
    }

    /// Applies the findings of scan run `source` to `targets` (accounts that scan read).
    pub async fn apply_run(
        &self,
        source: i64,
        file: &AccountsFile,
        targets: Vec<AccountTarget>,
    ) -> Result<RunResult, StoreError> {
        self.run(
            RunKind::Apply,
            Some(source),
            file,
            targets,
            Mode::ApplyFrom(source),
        )
        .await
    }

    async fn run(
        &self,
        kind: RunKind,
        source: Option<i64>,
        file: &AccountsFile,
        targets: Vec<AccountTarget>,
        mode: Mode,
    ) -> Result<RunResult, StoreError> {
        let options = serde_json::to_string(&self.options).expect("options serialize");
        let (file2, targets2) = (file.clone(), targets.clone());
        let run_id = self
            .store
            .call(move |s| s.create_run(kind, source, &file2, &targets2, &options))
            .await?;
        self.reporter.report(&Event::RunStarted {
            run_id,
            kind,
            accounts: targets.len(),
        });
        let mut results = futures::stream::iter(targets.iter())
            .map(|t| self.account(run_id, t, mode))
            .buffer_unordered(self.options.concurrency.max(1));
        let mut tally = Tally::default();
        let mut failed = 0;
        let mut fatal = None;
        while let Some(r) = results.next().await {
            match r {
                Ok(AccountEnd::Done(t)) => {
                    tally.failed += t.failed;
                    tally.detached += t.detached;
                    tally.already_detached += t.already_detached;
                    tally.skipped += t.skipped;
                    tally.reverted += t.reverted;
                    if t.limit_reached {
                        tally.limit_reached = true;
                        failed += 1;
                    }
                }
                Ok(AccountEnd::Failed(_)) => failed += 1,
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        drop(results);
        if let Some(e) = fatal {
            // Best effort: the database is what failed.
            let _ = self
                .store
                .call(move |s| s.finish_run(run_id, RunStatus::Failed))
                .await;
            return Err(e);
        }
        let status = if failed == targets.len() && !targets.is_empty() {
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
        mode: Mode,
    ) -> Result<AccountEnd, StoreError> {
        let id = target.id.clone();
        let id2 = id.clone();
        self.store
            .call(move |s| s.mark_account_started(run_id, &id2))
            .await?;
        self.reporter.report(&Event::AccountStarted {
            account: id.clone(),
            label: target.label(),
        });
        let meter = Meter::new(self.options.calls);
        let end = self.account_work(run_id, target, mode, &meter).await?;
        let calls = meter.counts();
        let (status, error) = match &end {
            AccountEnd::Done(t) if t.limit_reached => (AccountStatus::Stopped, None),
            AccountEnd::Done(_) => (AccountStatus::Completed, None),
            AccountEnd::Failed(e) => (AccountStatus::Failed, Some(e.clone())),
        };
        let limit = self.options.apply.max_detaches_per_account;
        let id2 = id.clone();
        let error2 = error.clone();
        self.store
            .call(move |s| match status {
                AccountStatus::Stopped => s.stop_account(
                    run_id,
                    &id2,
                    "MaxDetachesReached",
                    &format!(
                        "stopped: more detaches were needed than --max-detaches-per-account {}; the rest stay open for a later run",
                        limit.unwrap_or_default()
                    ),
                    &calls,
                ),
                _ => s.finish_account(run_id, &id2, status, error2.as_ref(), &calls),
            })
            .await?;
        self.reporter.report(&Event::AccountFinished {
            account: id,
            label: target.label(),
            status,
            error: match (&error, status) {
                (Some(e), _) => Some(e.to_string()),
                (None, AccountStatus::Stopped) => Some(format!(
                    "MaxDetachesReached: more than {} detaches needed",
                    limit.unwrap_or_default()
                )),
                _ => None,
            },
        });
        Ok(end)
    }

    async fn account_work(
        &self,
        run_id: i64,
        target: &AccountTarget,
        mode: Mode,
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
        let findings_run = match mode {
            Mode::Scan | Mode::ScanApply => {
                let findings = match scan::read_account(&iam, target, |pages, entities| {
                    phase(Phase::Reading { pages, entities })
                })
                .await
                {
                    Ok(f) => f,
                    Err(e) => return Ok(AccountEnd::Failed(e)),
                };
                phase(Phase::Recording {
                    findings: findings.findings.len() as u64,
                });
                let status = match mode {
                    Mode::Scan => AccountStatus::Completed,
                    _ => AccountStatus::Scanned,
                };
                let (id, calls) = (target.id.clone(), meter.counts());
                self.store
                    .call(move |s| s.record_scan(run_id, &id, &findings, &calls, status))
                    .await?;
                if let Mode::Scan = mode {
                    return Ok(AccountEnd::Done(Tally::default()));
                }
                run_id
            }
            Mode::ApplyFrom(source) => source,
        };
        let id = target.id.clone();
        let findings = self
            .store
            .call(move |s| s.redundant_findings(findings_run, &id))
            .await?;
        let apply = AccountApply {
            run_id,
            target,
            iam: &iam,
            store: &self.store,
            reporter: self.reporter.as_ref(),
            options: &self.options.apply,
        };
        Ok(AccountEnd::Done(apply.run(findings).await?))
    }
}
