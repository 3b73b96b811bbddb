//! `resume [ID]`: continues an interrupted run with the accounts and options it started with.

use std::io::Write;

use super::AppError;
use super::work::{Work, engine, finish, run_partition};
use crate::cancel::Cancel;
use crate::cli::Cli;
use crate::run::RunOptions;

pub(super) async fn resume(
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
