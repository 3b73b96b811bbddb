//! `scan [--fail-on any|new]`: reads every account and records its findings; changes nothing.

use std::io::Write;

use super::work::{Work, engine, finish, options, resolve_accounts};
use super::{AppError, exit};
use crate::apply::ApplyOptions;
use crate::cancel::Cancel;
use crate::cli::{Cli, FailOn};
use crate::config;
use crate::store::actor::StoreHandle;

pub(super) async fn scan(
    cli: &Cli,
    gate: Option<FailOn>,
    publish: bool,
    cancel: Cancel,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let mut file = config::load(&cli.accounts)?;
    super::exceptions::note_expired(&file);
    let work = Work::start(cli)?;
    let engine = engine(
        cli,
        &work,
        options(cli, ApplyOptions::default()),
        cancel,
        file.partition,
    )
    .await?;
    resolve_accounts(&engine.connector, &mut file, engine.options.calls).await?;
    let result = engine.scan(&file).await?;
    let code = finish(cli, &work.store, &result, out, "report").await?;
    let code = if publish {
        code.max(super::publish::after_run(cli, &work.store, &result, &engine.cancel, out).await?)
    } else {
        code
    };
    fail_on(&work.store, result.run_id, gate, code, out).await
}

/// `scan --fail-on`: after the scan ended with `code`, exit code 3 if it found what it was
/// asked to fail on. Failures (1) and everything else keep their code: a scan that could not
/// read an account has not shown that there is nothing to fail on.
async fn fail_on(
    store: &StoreHandle,
    run_id: i64,
    what: Option<FailOn>,
    code: u8,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let Some(what) = what else {
        return Ok(code);
    };
    if code != exit::OK && code != exit::FAILURES {
        return Ok(code);
    }
    let gate = store.call(move |s| crate::diff::gate(s, run_id)).await?;
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let (found, text) = match what {
        FailOn::Any => (
            gate.redundant > 0,
            match gate.redundant {
                0 => "no redundant finding".to_owned(),
                n => format!("{n} redundant finding{}", plural(n)),
            },
        ),
        FailOn::New => {
            let n = gate.new + gate.reappeared;
            (
                n > 0,
                match n {
                    0 => "no redundant finding is new or reappeared since the previous scan"
                        .to_owned(),
                    n => format!(
                        "{n} redundant finding{} new or reappeared since the previous scan of {} account ({} new, {} reappeared); `iamsweep diff` lists them",
                        plural(n),
                        if n == 1 { "its" } else { "their" },
                        gate.new,
                        gate.reappeared
                    ),
                },
            )
        }
    };
    let name = match what {
        FailOn::Any => "any",
        FailOn::New => "new",
    };
    let code = match (found, code) {
        (true, exit::OK) => exit::FOUND,
        _ => code,
    };
    let text = match gate.excepted {
        0 => text,
        n => format!(
            "{text} ({n} more covered by a live [[exception]], not counted; `iamsweep exceptions` lists them)"
        ),
    };
    let _ = writeln!(
        out,
        "fail-on {name}: {text}{}",
        match (found, code) {
            (true, exit::FOUND) => " (exit code 3)".to_owned(),
            (_, exit::FAILURES) => " (exit code 1: some accounts failed)".to_owned(),
            _ => String::new(),
        }
    );
    Ok(code)
}
