//! `rollback ID [--format sh|json|csv] [--apply]`: what an apply run detached, as a list to
//! re-attach, or re-attached by iamsweep itself.

use std::io::{IsTerminal, Write};

use super::work::{Work, engine, finish, options, run_partition};
use super::{AppError, confirm, exit, no_database};
use crate::apply::ApplyOptions;
use crate::cancel::Cancel;
use crate::cli::Cli;
use crate::report;
use crate::store::Store;

pub(super) fn rollback_list(
    cli: &Cli,
    id: i64,
    format: report::RollbackFormat,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let store = Store::open_read_only(&cli.db)?.ok_or_else(|| no_database(&cli.db))?;
    store.run(id)?;
    let items = store.rollback_items(id, None)?;
    let targets = store.run_targets(id)?;
    let _ = out.write_all(report::rollback(id, &items, &targets, format).as_bytes());
    Ok(exit::OK)
}

pub(super) async fn rollback_apply(
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
