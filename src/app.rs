//! The commands: turns validated arguments into work, prints results on stdout and returns the
//! exit code. The edge where anyhow-free errors meet the user.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use crate::apply::ApplyOptions;
use crate::aws::sdk::{EndpointError, SdkConnector, SdkSettings};
use crate::calls::{CallPolicy, RetryPolicy};
use crate::cli::{ApplyArgs, Cli, Command};
use crate::config::{self, AccountTarget, AccountsFile, ConfigError};
use crate::events::Reporter;
use crate::filters::{Filters, Patterns};
use crate::progress;
use crate::report;
use crate::run::{Engine, RunOptions, RunResult};
use crate::store::actor::StoreHandle;
use crate::store::{FindingRow, Store, StoreError};

/// Documented exit codes.
pub mod exit {
    pub const OK: u8 = 0;
    /// Done, but some accounts or actions failed.
    pub const FAILURES: u8 = 1;
    /// Bad usage, configuration or database; nothing was changed.
    pub const USAGE: u8 = 2;
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("{0}")]
    Usage(String),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        exit::USAGE
    }
}

/// Runs one command; returns the exit code for a command that ran.
pub async fn run(cli: Cli) -> Result<u8, AppError> {
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Scan => {
            let file = config::load(&cli.accounts)?;
            let store = open_store(&cli.db)?;
            let engine = engine(&cli, store.clone(), ApplyOptions::default()).await?;
            let result = engine.scan(&file).await?;
            print_summary(&store, &result, &mut out).await?;
            let _ = writeln!(out, "next: iamsweep report {}", result.run_id);
            Ok(code(&result))
        }
        Command::Apply(args) => apply(&cli, args, &mut out).await,
        Command::Report { id, format } => {
            let store = Store::open(&cli.db)?;
            let id = match id {
                Some(id) => *id,
                None => store.latest_run(None)?.ok_or_else(|| {
                    AppError::Usage(format!(
                        "no runs in {} yet: start with `iamsweep scan`",
                        cli.db.display()
                    ))
                })?,
            };
            let rows = store.report(id)?;
            let _ = out.write_all(report::findings(&rows, *format).as_bytes());
            Ok(exit::OK)
        }
        Command::Runs { format } => {
            let store = Store::open(&cli.db)?;
            let _ = out.write_all(report::runs(&store.runs()?, *format).as_bytes());
            Ok(exit::OK)
        }
    }
}

fn code(result: &RunResult) -> u8 {
    if result.has_failures() {
        exit::FAILURES
    } else {
        exit::OK
    }
}

fn open_store(path: &Path) -> Result<StoreHandle, StoreError> {
    Ok(StoreHandle::spawn(Store::open(path)?))
}

fn reporter() -> Arc<dyn Reporter> {
    if std::io::stderr().is_terminal() {
        Arc::new(progress::Bars::new())
    } else {
        Arc::new(progress::Lines)
    }
}

async fn engine(
    cli: &Cli,
    store: StoreHandle,
    apply: ApplyOptions,
) -> Result<Engine<SdkConnector>, AppError> {
    let connector = SdkConnector::load(&SdkSettings {
        endpoint_url: cli.endpoint_url.clone(),
        profile: cli.profile.clone(),
    })
    .await?;
    Ok(Engine {
        connector,
        store,
        reporter: reporter(),
        options: RunOptions {
            concurrency: cli.concurrency as usize,
            calls: CallPolicy {
                retry: RetryPolicy::default(),
                rate: (cli.max_rate > 0.0).then_some(cli.max_rate),
            },
            apply,
        },
    })
}

async fn print_summary(
    store: &StoreHandle,
    result: &RunResult,
    out: &mut impl Write,
) -> Result<(), StoreError> {
    let id = result.run_id;
    let (run, accounts, reasons) = store
        .call(move |s| Ok((s.run(id)?, s.run_accounts(id)?, s.outcome_reasons(id)?)))
        .await?;
    let _ = out.write_all(report::summary(&run, &accounts, &reasons).as_bytes());
    Ok(())
}

fn patterns(list: &[String], flag: &str) -> Result<Patterns, AppError> {
    Patterns::new(list.to_vec()).map_err(|e| AppError::Usage(format!("--{flag}: {e}")))
}

async fn apply(cli: &Cli, args: &ApplyArgs, out: &mut impl Write) -> Result<u8, AppError> {
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
    };
    let file = config::load(&cli.accounts)?;
    let store = open_store(&cli.db)?;
    let engine = engine(cli, store.clone(), options).await?;

    let source = match args.run {
        Some(id) => Some(id),
        None if args.yes => None,
        None => {
            // Ask about what a fresh scan shows, then apply exactly that scan's findings.
            let scan = engine.scan(&file).await?;
            print_summary(&store, &scan, out).await?;
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
    print_summary(&store, &result, out).await?;
    let _ = writeln!(
        out,
        "next: iamsweep report {} (every action, with its AWS request id)",
        result.run_id
    );
    Ok(code(&result))
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
