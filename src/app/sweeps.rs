//! The commands of scheduled sweeps: `diff`, `scan --fail-on` and `report --format html`. Turns
//! their results into stdout, stderr and an exit code; what changed is decided by
//! `crate::diff`, and the text is `report`'s.

use std::io::Write;

use super::{AppError, exit, no_database};
use crate::cli::{Cli, FailOn};
use crate::diff::DiffError;
use crate::report::{self, Format};
use crate::store::actor::StoreHandle;
use crate::store::{Store, StoreError};

/// `diff [FROM] [TO]`: exit code 1 when an account could not be compared because its scan
/// failed in one of the runs (its errors are in `runs` and `report`).
pub(super) fn diff(
    cli: &Cli,
    from: Option<i64>,
    to: Option<i64>,
    format: Format,
    unchanged: bool,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let store = Store::open_read_only(&cli.db)?.ok_or_else(|| no_database(&cli.db))?;
    let d = crate::diff::diff(&store, from, to, unchanged).map_err(|e| match e {
        DiffError::Store(e) => AppError::Store(e),
        DiffError::Usage(m) => AppError::Usage(m),
    })?;
    if format != Format::Table {
        // JSON and CSV are data only: which runs were compared, and what was not, go to
        // stderr, where a person still sees them.
        eprint!(
            "{}{}",
            report::diff_heading(&d),
            report::diff_not_compared(&d)
        );
    }
    let _ = out.write_all(report::diff(&d, format).as_bytes());
    Ok(if d.has_failures() {
        exit::FAILURES
    } else {
        exit::OK
    })
}

/// `scan --fail-on`: after the scan ended with `code`, exit code 3 if it found what it was
/// asked to fail on. Failures (1) and everything else keep their code: a scan that could not
/// read an account has not shown that there is nothing to fail on.
pub(super) async fn fail_on(
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

/// `report ID --format html`: the page, with the drift collected first (a first pass over
/// the findings) and the findings streamed after it.
pub(super) fn report_html(store: &Store, id: i64, out: &mut impl Write) -> Result<(), StoreError> {
    let run = store.run(id)?;
    let accounts = store.run_accounts(id)?;
    let reasons = store.outcome_reasons(id)?;
    let calls = store.api_calls(id)?;
    let caller = store.run_caller(id)?;
    let mut drift = Vec::new();
    store.report_each(id, |f| {
        if f.reappeared.is_some() {
            drift.push(f.to_row());
        }
        Ok(())
    })?;
    let page = report::HtmlPage {
        run: &run,
        accounts: &accounts,
        reasons: &reasons,
        drift: &drift,
        calls: &calls,
        caller: caller.as_deref(),
    };
    let written = report::HtmlReport::start(std::io::BufWriter::new(out), &page)
        .map_err(StoreError::Write)
        .and_then(|mut html| {
            store.report_each(id, |f| html.view(f))?;
            html.finish(&page).map_err(StoreError::Write)
        });
    match written {
        Err(StoreError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map(drop),
    }
}
