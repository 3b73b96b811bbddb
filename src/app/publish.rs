//! `publish [ID]` (and `scan --publish`, `apply --publish`): a run's findings to AWS Security
//! Hub in each account.

use std::io::Write;

use super::work::{Work, connector};
use super::{AppError, exit, no_runs};
use crate::cancel::Cancel;
use crate::cli::Cli;
use crate::model::Partition;
use crate::report;
use crate::store::actor::StoreHandle;

pub(super) async fn publish(
    cli: &Cli,
    id: Option<i64>,
    region: Option<&str>,
    format: report::Format,
    cancel: &Cancel,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let work = Work::start(cli)?;
    let id = match id {
        Some(id) => id,
        None => work
            .store
            .call(|s| s.latest_run(None))
            .await?
            .ok_or_else(|| no_runs(&cli.db))?,
    };
    run(cli, &work.store, id, region, format, cancel, out).await
}

/// Publishes run `id` with the lock already held; the exit code says whether every account
/// took every finding.
pub(super) async fn run(
    cli: &Cli,
    store: &StoreHandle,
    id: i64,
    region: Option<&str>,
    format: report::Format,
    cancel: &Cancel,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    refuse_older(store, id).await?;
    let targets = store.call(move |s| s.run_targets(id)).await?;
    let partition = targets.first().map_or(Partition::Aws, |t| t.partition);
    let connector = connector(cli, cli.call_timeout, partition).await?;
    let rows = crate::publish::publish(&connector, store, id, region, cancel).await?;
    let _ = out.write_all(report::published(id, &rows, format).as_bytes());
    Ok(if cancel.is_cancelled() {
        exit::INTERRUPTED
    } else if rows.iter().any(|r| r.error.is_some() || r.failed > 0) {
        exit::FAILURES
    } else {
        exit::OK
    })
}

/// `scan --publish`, `apply --publish`: publishes the run just made, unless it was interrupted
/// (its findings are incomplete). The exit code it adds (OK when nothing was sent).
pub(super) async fn after_run(
    cli: &Cli,
    store: &StoreHandle,
    result: &crate::run::RunResult,
    cancel: &Cancel,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    if result.status == crate::store::RunStatus::Interrupted {
        return Ok(exit::OK);
    }
    run(
        cli,
        store,
        result.run_id,
        None,
        report::Format::Table,
        cancel,
        out,
    )
    .await
}

/// Refuses a rollback, and a run whose scan is older than one already published to its
/// accounts: Security Hub holds the newest state, and the older scan would reopen what the
/// newer one resolved.
pub(super) async fn refuse_older(store: &StoreHandle, id: i64) -> Result<(), AppError> {
    let Some(findings_run) = store.call(move |s| s.findings_run(id)).await? else {
        return Err(AppError::Usage(format!(
            "run {id} is a rollback; publish takes a scan or apply run"
        )));
    };
    if let Some(newer) = store
        .call(move |s| s.newest_published_scan(findings_run))
        .await?
        .filter(|&n| n > findings_run)
    {
        return Err(AppError::Usage(format!(
            "run {id} holds the findings of run {findings_run}, older than run {newer}, already published: sending them would reopen in Security Hub what run {newer} resolved; publish run {newer} or a newer run (nothing was sent)"
        )));
    }
    Ok(())
}
