//! The commands: turns validated arguments into work, prints results on stdout and returns the
//! exit code. The edge where anyhow-free errors meet the user.

mod sweeps;

use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::apply::ApplyOptions;
use crate::aws::sdk::{SdkConnector, SdkSettings, SetupError};
use crate::calls::{CallPolicy, Meter, RetryPolicy};
use crate::cancel::Cancel;
use crate::cli::{ApplyArgs, Cli, Command};
use crate::config::{self, AccountTarget, AccountsFile, ConfigError};
use crate::doctor;
use crate::events::{Event, Reporter};
use crate::filters::{Filters, Patterns};
use crate::lock::{LockError, RunLock};
use crate::model::Partition;
use crate::organization::{self, DiscoveryError};
use crate::progress;
use crate::report;
use crate::run::{CONCURRENCY_CEILING, Engine, Halt, RunOptions, RunResult};
use crate::store::actor::StoreHandle;
use crate::store::{FindingRow, HistoryFilter, RunStatus, Store, StoreError};

/// Documented exit codes.
pub mod exit {
    pub const OK: u8 = 0;
    /// Done, but some accounts or actions failed.
    pub const FAILURES: u8 = 1;
    /// Bad usage, configuration or database; nothing was changed.
    pub const USAGE: u8 = 2;
    /// `scan --fail-on any|new` found what it was asked to fail on.
    pub const FOUND: u8 = 3;
    /// Stopped by Ctrl-C; the run is `interrupted` and `iamsweep resume` continues it.
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Endpoint(#[from] SetupError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("{0}")]
    Usage(String),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            // AWS Organizations failed (after its retries): not a usage error.
            AppError::Discovery(DiscoveryError::Aws(_)) => exit::FAILURES,
            _ => exit::USAGE,
        }
    }
}

/// Runs one command; returns the exit code for a command that ran. `cancel` is set by the
/// first Ctrl-C.
pub async fn run(cli: Cli, cancel: Cancel) -> Result<u8, AppError> {
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Scan { fail_on } => {
            let mut file = config::load(&cli.accounts)?;
            let work = Work::start(&cli)?;
            let engine = engine(
                &cli,
                &work,
                options(&cli, ApplyOptions::default()),
                cancel,
                file.partition,
            )
            .await?;
            resolve_accounts(&engine.connector, &mut file, engine.options.calls).await?;
            let result = engine.scan(&file).await?;
            let code = finish(&cli, &work.store, &result, &mut out, "report").await?;
            sweeps::fail_on(&work.store, result.run_id, *fail_on, code, &mut out).await
        }
        Command::Diff {
            from,
            to,
            format,
            unchanged,
        } => sweeps::diff(&cli, *from, *to, *format, *unchanged, &mut out),
        Command::Apply(args) => apply(&cli, args, cancel, &mut out).await,
        Command::Resume { id } => resume(&cli, *id, cancel, &mut out).await,
        Command::Report { id, format } => {
            let store = Store::open_read_only(&cli.db)?.ok_or_else(|| no_database(&cli.db))?;
            let id = match id {
                Some(id) => *id,
                None => store.latest_run(None)?.ok_or_else(|| {
                    AppError::Usage(format!(
                        "no runs in {} yet: start with `iamsweep scan`",
                        cli.db.display()
                    ))
                })?,
            };
            let format = match format {
                report::ReportFormat::Html => {
                    sweeps::report_html(&store, id, &mut out)?;
                    return Ok(exit::OK);
                }
                report::ReportFormat::Table => report::Format::Table,
                report::ReportFormat::Json => report::Format::Json,
                report::ReportFormat::Csv => report::Format::Csv,
            };
            if format == report::Format::Table {
                let rows = store.report(id)?;
                let _ = out.write_all(report::findings(&rows).as_bytes());
                let _ = out.write_all(report::api_calls(&store.api_calls(id)?).as_bytes());
            } else {
                // Streamed: a million findings go out without being held in memory. A reader
                // that stops early (`| head`) ends the report quietly, as with any Unix tool.
                let written = report::FindingStream::start(
                    std::io::BufWriter::with_capacity(1 << 16, &mut out),
                    format,
                )
                .map_err(StoreError::Write)
                .and_then(|mut stream| {
                    store.report_each(id, |f| stream.row(f))?;
                    stream.finish().map_err(StoreError::Write)
                });
                match written {
                    Err(StoreError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => {
                        other?;
                    }
                }
            }
            Ok(exit::OK)
        }
        Command::Rollback {
            id,
            format,
            apply,
            yes,
        } => {
            if *apply {
                rollback_apply(&cli, *id, *yes, cancel, &mut out).await
            } else {
                let store = Store::open_read_only(&cli.db)?.ok_or_else(|| no_database(&cli.db))?;
                store.run(*id)?;
                let items = store.rollback_items(*id, None)?;
                let targets = store.run_targets(*id)?;
                let _ = out.write_all(report::rollback(*id, &items, &targets, *format).as_bytes());
                Ok(exit::OK)
            }
        }
        Command::History {
            account,
            user,
            policy,
            since,
            format,
        } => {
            let filter = HistoryFilter {
                account: account.clone(),
                user: user.clone(),
                policy: policy.clone(),
                since: since.as_deref().map(parse_since).transpose()?,
            };
            let rows = match Store::open_read_only(&cli.db)? {
                Some(store) => store.history(&filter)?,
                None => Vec::new(),
            };
            let _ = out.write_all(report::history(&rows, *format).as_bytes());
            Ok(exit::OK)
        }
        Command::Accounts { format } => {
            let mut file = config::load(&cli.accounts)?;
            if file.organization.is_some() {
                let connector = connector(&cli, cli.call_timeout, file.partition).await?;
                let calls = options(&cli, ApplyOptions::default()).calls;
                resolve_accounts(&connector, &mut file, calls).await?;
            }
            let _ = out.write_all(report::accounts(&file.accounts, *format).as_bytes());
            Ok(exit::OK)
        }
        Command::Doctor { apply } => {
            let mut file = config::load(&cli.accounts)?;
            let connector = connector(&cli, cli.call_timeout, file.partition).await?;
            let calls = options(&cli, ApplyOptions::default()).calls;
            resolve_accounts(&connector, &mut file, calls).await?;
            let checks = doctor::check(
                &connector,
                &file.accounts,
                *apply,
                cli.concurrency.map_or(16, usize::from),
                calls,
            )
            .await;
            let _ = out.write_all(report::doctor(&checks).as_bytes());
            Ok(if checks.iter().all(|c| c.ok()) {
                exit::OK
            } else {
                exit::FAILURES
            })
        }
        Command::Runs { format } => {
            let runs = match Store::open_read_only(&cli.db)? {
                Some(store) => store.runs()?,
                None => Vec::new(),
            };
            let _ = out.write_all(report::runs(&runs, *format).as_bytes());
            Ok(exit::OK)
        }
    }
}

/// `--since`: a date (2026-11-27) or an RFC 3339 time, as the database's UTC timestamps.
fn parse_since(s: &str) -> Result<String, AppError> {
    let bad = || {
        AppError::Usage(format!(
            "--since `{s}`: expected a date like 2026-11-27 or a time like 2026-11-27T10:00:00Z"
        ))
    };
    let text = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    let t = humantime::parse_rfc3339_weak(&text).map_err(|_| bad())?;
    Ok(humantime::format_rfc3339_millis(t).to_string())
}

async fn rollback_apply(
    cli: &Cli,
    id: i64,
    yes: bool,
    cancel: Cancel,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !yes && !interactive {
        return Err(AppError::Usage(
            "rollback --apply changes IAM in your accounts: pass --yes to go ahead (there is no terminal to ask on); nothing was changed".into(),
        ));
    }
    let work = Work::start(cli)?;
    let (run, targets, open) = work
        .store
        .call(move |s| Ok((s.run(id)?, s.run_targets(id)?, s.unsettled(None)?)))
        .await?;
    if run.kind != "apply" {
        return Err(AppError::Usage(format!(
            "run {id} is a {}; rollback takes an apply run",
            run.kind
        )));
    }
    let partition = run_partition(&targets)?;
    let build = || {
        engine(
            cli,
            &work,
            options(
                cli,
                ApplyOptions {
                    settle: cli.settle,
                    ..ApplyOptions::default()
                },
            ),
            cancel.clone(),
            partition,
        )
    };
    // What earlier runs left open is settled first: a detach found done joins its run's list.
    let engine = if open.is_empty() {
        None
    } else {
        let engine = build().await?;
        engine.settle_earlier(None).await?;
        Some(engine)
    };
    let items = work.store.call(move |s| s.rollback_items(id, None)).await?;
    if items.is_empty() {
        let _ = writeln!(
            out,
            "nothing to roll back: run {id} has no detach that is not rolled back yet"
        );
        return Ok(exit::OK);
    }
    if !yes {
        let mut accounts: Vec<&str> = items.iter().map(|i| i.account_id.as_str()).collect();
        accounts.dedup();
        let prompt = format!(
            "re-attach {} policies that run {id} detached, in {} accounts? type yes to go ahead: ",
            items.len(),
            accounts.len()
        );
        if !confirm(&prompt)? {
            let _ = writeln!(out, "nothing was changed");
            return Ok(exit::OK);
        }
    }
    let engine = match engine {
        Some(e) => e,
        None => build().await?,
    };
    let result = engine.rollback(id).await?;
    finish(cli, &work.store, &result, out, "history").await
}

fn no_database(db: &std::path::Path) -> AppError {
    AppError::Usage(format!(
        "no database at {}: start with `iamsweep scan` (or pass --db)",
        db.display()
    ))
}

/// A command that works on the database: holds the run lock while it lives.
struct Work {
    store: StoreHandle,
    lock: Arc<Mutex<RunLock>>,
}

impl Work {
    /// Takes the lock (or says which run holds it), opens the store, and marks runs left
    /// `running` by a dead process as `interrupted`.
    fn start(cli: &Cli) -> Result<Self, AppError> {
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

fn options(cli: &Cli, apply: ApplyOptions) -> RunOptions {
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

async fn connector(
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
fn run_partition(targets: &[AccountTarget]) -> Result<Partition, AppError> {
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
async fn resolve_accounts(
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

async fn engine(
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
async fn finish(
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

async fn resume(
    cli: &Cli,
    id: Option<i64>,
    cancel: Cancel,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let work = Work::start(cli)?;
    let id = match id {
        Some(id) => id,
        None => work
            .store
            .call(|s| s.unfinished_run())
            .await?
            .ok_or_else(|| {
                AppError::Usage("no unfinished run to resume (see `iamsweep runs`)".into())
            })?,
    };
    let (run, (path, text, options_json), targets) = work
        .store
        .call(move |s| Ok((s.run(id)?, s.run_inputs(id)?, s.run_targets(id)?)))
        .await?;
    if run.status == "completed" {
        return Err(AppError::Usage(format!(
            "run {id} completed; there is nothing to resume"
        )));
    }
    let options: RunOptions = serde_json::from_str(&options_json).map_err(|e| {
        AppError::Usage(format!(
            "run {id} holds options this iamsweep cannot read: {e}"
        ))
    })?;
    match std::fs::read_to_string(&path) {
        Ok(now) if now == text => {}
        _ => eprintln!(
            "note: {path} changed since run {id} started; resuming with the accounts and options the run started with (kept in the database)"
        ),
    }
    let engine = engine(cli, &work, options, cancel, run_partition(&targets)?).await?;
    let result = engine.resume(id).await?;
    let next = match run.kind.as_str() {
        "scan" => "report",
        "rollback" => "history",
        _ => "apply",
    };
    finish(cli, &work.store, &result, out, next).await
}

async fn print_summary(
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

fn patterns(list: &[String], flag: &str) -> Result<Patterns, AppError> {
    Patterns::new(list.to_vec()).map_err(|e| AppError::Usage(format!("--{flag}: {e}")))
}

async fn apply(
    cli: &Cli,
    args: &ApplyArgs,
    cancel: Cancel,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !args.yes && !interactive {
        return Err(AppError::Usage(
            "apply changes IAM in your accounts: pass --yes to go ahead (there is no terminal to ask on); nothing was changed".into(),
        ));
    }
    let options = ApplyOptions {
        max_detaches_per_account: args.max_detaches_per_account,
        write_concurrency: args.write_concurrency as usize,
        filters: Filters {
            exclude_users: patterns(&args.exclude_users, "exclude-user")?,
            exclude_policies: patterns(&args.exclude_policies, "exclude-policy")?,
            only_policies: patterns(&args.only_policies, "only-policy")?,
        },
        settle: cli.settle,
        proof_max_age: args.proof_max_age,
        allow_non_reattachable: args.allow_non_reattachable,
    };
    let mut file = config::load(&cli.accounts)?;
    let work = Work::start(cli)?;
    let store = work.store.clone();
    let engine = engine(
        cli,
        &work,
        self::options(cli, options),
        cancel,
        file.partition,
    )
    .await?;
    if args.run.is_none() {
        resolve_accounts(&engine.connector, &mut file, engine.options.calls).await?;
    }

    let source = match args.run {
        Some(id) => Some(id),
        None if args.yes => None,
        None => {
            // Ask about what a fresh scan shows, then apply exactly that scan's findings.
            let scan = engine.scan(&file).await?;
            print_summary(&store, &scan, out).await?;
            if scan.status == RunStatus::Interrupted {
                return finish(cli, &store, &scan, out, "report").await;
            }
            Some(scan.run_id)
        }
    };
    let result = match source {
        None => engine.apply(&file).await?,
        Some(id) => {
            let targets = apply_targets(&store, id, &file).await?;
            if !args.yes {
                let rows = store.call(move |s| s.report(id)).await?;
                if !confirm(&plan(id, &rows, &engine.options.apply, &targets))? {
                    let _ = writeln!(out, "nothing was changed");
                    return Ok(exit::OK);
                }
            }
            engine.apply_run(id, &file, targets).await?
        }
    };
    finish(cli, &store, &result, out, "apply").await
}

/// The accounts scan run `id` read: as the accounts file describes them now (its role and
/// filters), or as the scan ran them if the file no longer lists them.
async fn apply_targets(
    store: &StoreHandle,
    id: i64,
    file: &AccountsFile,
) -> Result<Vec<AccountTarget>, AppError> {
    let run = store.call(move |s| s.run(id)).await?;
    if run.kind == "rollback" {
        return Err(AppError::Usage(format!(
            "run {id} is a rollback; apply --run takes a scan (or apply) run"
        )));
    }
    let scanned = store.call(move |s| s.scanned_targets(id)).await?;
    if scanned.is_empty() {
        return Err(AppError::Usage(format!(
            "run {id} recorded no scanned account; run `iamsweep scan` first"
        )));
    }
    Ok(scanned
        .into_iter()
        .map(|t| {
            file.accounts
                .iter()
                .find(|a| a.id == t.id)
                .cloned()
                .unwrap_or(t)
        })
        .collect())
}

/// What apply is about to do, per account.
fn plan(id: i64, rows: &[FindingRow], options: &ApplyOptions, targets: &[AccountTarget]) -> String {
    let mut text = format!("apply the findings of run {id}:\n");
    let mut total = 0;
    for t in targets {
        let mine: Vec<&FindingRow> = rows
            .iter()
            .filter(|r| {
                r.account_id == t.id.as_str()
                    && r.kind == "redundant_direct"
                    && ![&t.filters, &options.filters]
                        .iter()
                        .any(|f| f.user_excluded(&r.user_name) || !f.policy_selected(&r.policy_arn))
            })
            .collect();
        let mut users: Vec<&str> = mine.iter().map(|r| r.user_name.as_str()).collect();
        users.dedup();
        total += mine.len();
        text.push_str(&format!(
            "  {}: up to {} detaches for {} users\n",
            t.label(),
            mine.len(),
            users.len()
        ));
    }
    text.push_str(&format!(
        "each is verified live first; direct-only attachments, groups and memberships are never touched.\ndetach up to {total} direct attachments? type yes to go ahead: "
    ));
    text
}

fn confirm(prompt: &str) -> Result<bool, AppError> {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(prompt.as_bytes());
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| AppError::Usage(format!("cannot read the answer: {e}")))?;
    Ok(line.trim().eq_ignore_ascii_case("yes"))
}
