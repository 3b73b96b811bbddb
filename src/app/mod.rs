//! The command line's glue: one file per command (as cargo keeps its `commands/`), each turning
//! its arguments into calls of the core and its results into stdout, stderr and an exit code.
//! Core code never prints; these files and `report` do.

mod accounts;
mod apply;
mod diff;
mod doctor;
mod exceptions;
mod history;
mod plan;
mod prune;
mod publish;
mod report;
mod resume;
mod rollback;
mod runs;
mod scan;
mod work;

use std::io::{BufRead, Write};

use crate::aws::sdk::SetupError;
use crate::cancel::Cancel;
use crate::cli::{Cli, Command};
use crate::config::ConfigError;
use crate::filters::Patterns;
use crate::lock::LockError;
use crate::organization::DiscoveryError;
use crate::store::StoreError;

/// Documented exit codes.
pub mod exit {
    pub const OK: u8 = 0;
    /// Done, but some accounts or actions failed.
    pub const FAILURES: u8 = 1;
    /// Bad usage, configuration or database; nothing was changed.
    pub const USAGE: u8 = 2;
    /// `scan --fail-on any|new` found what it was asked to fail on.
    pub const FOUND: u8 = 3;
    /// Stopped by Ctrl-C (SIGINT); the run is `interrupted` and `iamsweep resume` continues it.
    pub const INTERRUPTED: u8 = 130;
    /// Stopped by SIGTERM (a scheduler stopping the job), like Ctrl-C.
    pub const TERMINATED: u8 = 143;
    /// Stopped by SIGHUP (its terminal closed), like Ctrl-C.
    pub const HANGUP: u8 = 129;
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
        Command::Scan { fail_on, publish } => {
            scan::scan(&cli, *fail_on, *publish, cancel, &mut out).await
        }
        Command::Diff {
            from,
            to,
            format,
            unchanged,
        } => diff::diff(&cli, *from, *to, *format, *unchanged, &mut out),
        Command::Apply(args) => apply::apply(&cli, args, cancel, &mut out).await,
        Command::Plan { id, format } => plan::plan(&cli, *id, *format, &mut out),
        Command::Publish { id, region, format } => {
            publish::publish(&cli, *id, region.as_deref(), *format, &cancel, &mut out).await
        }
        Command::Resume { id } => resume::resume(&cli, *id, cancel, &mut out).await,
        Command::Report { id, format } => report::report(&cli, *id, *format, &mut out),
        Command::Rollback {
            id,
            format,
            apply,
            yes,
        } => {
            if *apply {
                rollback::rollback_apply(&cli, *id, *yes, cancel, &mut out).await
            } else {
                rollback::rollback_list(&cli, *id, *format, &mut out)
            }
        }
        Command::History {
            account,
            user,
            policy,
            since,
            format,
        } => history::history(&cli, account, user, policy, since, *format, &mut out),
        Command::Accounts { format } => accounts::accounts(&cli, *format, &mut out).await,
        Command::Doctor { apply, publish } => {
            doctor::doctor(&cli, *apply, *publish, &mut out).await
        }
        Command::Runs { format } => runs::runs(&cli, *format, &mut out),
        Command::Exceptions { format } => exceptions::exceptions(&cli, *format, &mut out),
        Command::Prune { before, dry_run } => prune::prune(&cli, before, *dry_run, &mut out).await,
    }
}

fn no_database(db: &std::path::Path) -> AppError {
    AppError::Usage(format!(
        "no database at {}: start with `iamsweep scan` (or pass --db)",
        db.display()
    ))
}

/// The command was given no run id and the database has no run yet.
fn no_runs(db: &std::path::Path) -> AppError {
    AppError::Usage(format!(
        "no runs in {} yet: start with `iamsweep scan`",
        db.display()
    ))
}

fn patterns(list: &[String], flag: &str) -> Result<Patterns, AppError> {
    Patterns::new(list.to_vec()).map_err(|e| AppError::Usage(format!("--{flag}: {e}")))
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
