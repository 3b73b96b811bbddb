//! `publish [ID]` (and `scan --publish`, `apply --publish`): a run's findings to AWS Security
//! Hub in each account.

use std::io::Write;

use super::work::{Work, connector};
use super::{AppError, exit};
use crate::cli::Cli;
use crate::model::Partition;
use crate::report;
use crate::store::actor::StoreHandle;

pub(super) async fn publish(
    cli: &Cli,
    id: Option<i64>,
    region: Option<&str>,
    format: report::Format,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let work = Work::start(cli)?;
    let id = match id {
        Some(id) => id,
        None => work
            .store
            .call(|s| s.latest_run(None))
            .await?
            .ok_or_else(|| {
                AppError::Usage(format!(
                    "no runs in {} yet: start with `iamsweep scan`",
                    cli.db.display()
                ))
            })?,
    };
    run(cli, &work.store, id, region, format, out).await
}

/// Publishes run `id` with the lock already held; the exit code says whether every account
/// took every finding.
pub(super) async fn run(
    cli: &Cli,
    store: &StoreHandle,
    id: i64,
    region: Option<&str>,
    format: report::Format,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let (run, targets) = store
        .call(move |s| Ok((s.run(id)?, s.run_targets(id)?)))
        .await?;
    if run.kind == "rollback" {
        return Err(AppError::Usage(format!(
            "run {id} is a rollback; publish takes a scan or apply run"
        )));
    }
    let partition = targets.first().map_or(Partition::Aws, |t| t.partition);
    let connector = connector(cli, cli.call_timeout, partition).await?;
    let rows = crate::publish::publish(&connector, store, id, region).await?;
    let _ = out.write_all(report::published(id, &rows, format).as_bytes());
    Ok(if rows.iter().any(|r| r.error.is_some() || r.failed > 0) {
        exit::FAILURES
    } else {
        exit::OK
    })
}
