//! What the commands that run share: the lock and the store, the engine and its reporter, and
//! the summary and next step printed when a run ends.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{AppError, exit};
use crate::apply::ApplyOptions;
use crate::aws::sdk::{SdkConnector, SdkSettings};
use crate::calls::{CallPolicy, Meter, RetryPolicy};
use crate::cancel::Cancel;
use crate::cli::Cli;
use crate::config::{AccountTarget, AccountsFile};
use crate::events::{Event, Reporter};
use crate::lock::RunLock;
use crate::model::Partition;
use crate::organization;
use crate::progress;
use crate::report;
use crate::run::{CONCURRENCY_CEILING, Engine, Halt, RunOptions, RunResult};
use crate::store::actor::StoreHandle;
use crate::store::{RunStatus, Store, StoreError};

/// A command that works on the database: holds the run lock while it lives.
pub(super) struct Work {
    pub(super) store: StoreHandle,
    lock: Arc<Mutex<RunLock>>,
}

impl Work {
    /// Takes the lock (or says which run holds it), opens the store, and marks runs left
    /// `running` by a dead process as `interrupted`.
    pub(super) fn start(cli: &Cli) -> Result<Self, AppError> {
        let lock = RunLock::acquire(&cli.db)?;
        let mut store = Store::open(&cli.db)?;
        let stale = store.interrupt_stale_runs()?;
        if let Some(previous) = &lock.taken_over {
            let ids: Vec<String> = stale.iter().map(i64::to_string).collect();
            eprintln!(
                "note: took over the lock left by {previous}, which is no longer running{}",
                if ids.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; run {} marked interrupted (`iamsweep resume` continues it)",
                        ids.join(", ")
                    )
                }
            );
        }
        Ok(Self {
            store: StoreHandle::spawn(store),
            lock: Arc::new(Mutex::new(lock)),
        })
    }
}

/// Passes events on, and writes the run id into the lock file as soon as it is known.
struct Announce {
    inner: Arc<dyn Reporter>,
    lock: Arc<Mutex<RunLock>>,
}

impl Reporter for Announce {
    fn report(&self, event: &Event) {
        if let Event::RunStarted { run_id, .. } = event {
            self.lock.lock().expect("lock mutex").set_run(*run_id);
        }
        self.inner.report(event);
    }
}

fn reporter() -> Arc<dyn Reporter> {
    if std::io::stderr().is_terminal() {
        Arc::new(progress::Bars::new())
    } else {
        Arc::new(progress::Lines::default())
    }
}

pub(super) fn options(cli: &Cli, apply: ApplyOptions) -> RunOptions {
    RunOptions {
        concurrency: cli.concurrency.map_or(CONCURRENCY_CEILING, usize::from),
        adaptive: cli.concurrency.is_none(),
        calls: CallPolicy {
            retry: RetryPolicy::default(),
            rate: (cli.max_rate > 0.0).then_some(cli.max_rate),
            call_timeout: cli.call_timeout,
        },
        apply,
    }
}

pub(super) async fn connector(
    cli: &Cli,
    call_timeout: Duration,
    partition: Partition,
) -> Result<SdkConnector, AppError> {
    Ok(SdkConnector::load(&SdkSettings {
        endpoint_url: cli.endpoint_url.clone(),
        partition,
        profile: cli.profile.clone(),
        call_timeout,
    })
    .await?)
}

/// The partition of a stored run's accounts (one run, one partition).
pub(super) fn run_partition(targets: &[AccountTarget]) -> Result<Partition, AppError> {
    let first = targets.first().map_or(Partition::Aws, |t| t.partition);
    match targets.iter().find(|t| t.partition != first) {
        Some(t) => Err(AppError::Usage(format!(
            "this run holds accounts of two partitions ({first} and {} for account {}); iamsweep works in one partition per run",
            t.partition, t.id
        ))),
        None => Ok(first),
    }
}

/// With `[organization]`, replaces the file's accounts by the discovered and merged list. Its
/// calls are paced, retried and counted like IAM's, at Organizations' own rate; their counts
/// are said on stderr.
pub(super) async fn resolve_accounts(
    connector: &SdkConnector,
    file: &mut AccountsFile,
    calls: CallPolicy,
) -> Result<(), AppError> {
    let Some(spec) = file.organization.clone() else {
        return Ok(());
    };
    let meter = Meter::new(calls.for_organizations());
    let resolved = organization::resolve(file, &meter, || connector.organization(&spec)).await;
    eprintln!("{}", report::organization_calls(&meter.counts()));
    file.accounts = resolved?;
    if file.accounts.is_empty() {
        return Err(AppError::Usage(format!(
            "{}: the [organization] filters select no account (see `iamsweep accounts`)",
            file.path
        )));
    }
    Ok(())
}

pub(super) async fn engine(
    cli: &Cli,
    work: &Work,
    options: RunOptions,
    cancel: Cancel,
    partition: Partition,
) -> Result<Engine<SdkConnector>, AppError> {
    let connector = connector(cli, options.calls.call_timeout, partition).await?;
    Ok(Engine {
        caller: Some(connector.caller_arn().to_owned()),
        connector,
        store: work.store.clone(),
        reporter: Arc::new(Announce {
            inner: reporter(),
            lock: work.lock.clone(),
        }),
        options,
        cancel,
    })
}

/// Prints the summary and what to do next; returns the exit code.
pub(super) async fn finish(
    cli: &Cli,
    store: &StoreHandle,
    result: &RunResult,
    out: &mut impl Write,
    next: &str,
) -> Result<u8, AppError> {
    // With a failed database the summary may not be readable; what to do next still is.
    let printed = print_summary(store, result, out).await;
    let id = result.run_id;
    if result.status == RunStatus::Interrupted {
        if let Some(why) = &result.halted {
            eprintln!("error: {why}");
            eprintln!(
                "run {id} stopped: no new work was started and the work in flight finished; whatever reached AWS is settled from live reads by the next run"
            );
        }
        let _ = writeln!(
            out,
            "interrupted: run {id} stopped{}; continue it with:\n  iamsweep --db {} resume {id}",
            if result.halted.is_some() {
                ""
            } else {
                " cleanly"
            },
            report::shell_quote(&cli.db.display().to_string())
        );
        // A scan changes nothing in AWS: a database failure there is the plain "database"
        // error. Anywhere else something may have changed: the run is interrupted.
        return Ok(match (&result.halted, next) {
            (Some(Halt::Database(_)), "report") => exit::USAGE,
            _ => exit::INTERRUPTED,
        });
    }
    printed?;
    let _ = match next {
        "report" => writeln!(out, "next: iamsweep report {id}"),
        "history" => writeln!(
            out,
            "next: iamsweep history (every change, with its AWS request id)"
        ),
        _ => writeln!(
            out,
            "next: iamsweep report {id} (every action, with its AWS request id); undo: iamsweep rollback {id}"
        ),
    };
    Ok(if result.has_failures() {
        exit::FAILURES
    } else {
        exit::OK
    })
}

pub(super) async fn print_summary(
    store: &StoreHandle,
    result: &RunResult,
    out: &mut impl Write,
) -> Result<(), StoreError> {
    let id = result.run_id;
    let (run, accounts, reasons, caller) = store
        .call(move |s| {
            Ok((
                s.run(id)?,
                s.run_accounts(id)?,
                s.outcome_reasons(id)?,
                s.run_caller(id)?,
            ))
        })
        .await?;
    let _ = out.write_all(report::summary(&run, &accounts, &reasons).as_bytes());
    if let Some(arn) = caller {
        let _ = writeln!(out, "credentials: {arn}");
    }
    Ok(())
}
