//! `report [ID] [--format table|json|csv|html]`: a run's findings and actions, streamed.

use std::io::Write;

use super::{AppError, exit, no_database, no_runs};
use crate::cli::Cli;
use crate::report;
use crate::store::{Store, StoreError};

pub(super) fn report(
    cli: &Cli,
    id: Option<i64>,
    format: report::ReportFormat,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let store = Store::open_read_only(&cli.db)?.ok_or_else(|| no_database(&cli.db))?;
    let id = match id {
        Some(id) => id,
        None => store.latest_run(None)?.ok_or_else(|| no_runs(&cli.db))?,
    };
    let format = match format {
        report::ReportFormat::Html => {
            report_html(&store, id, out)?;
            return Ok(exit::OK);
        }
        report::ReportFormat::Ocsf => {
            report_ocsf(&store, id, out)?;
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
            std::io::BufWriter::with_capacity(1 << 16, &mut *out),
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

/// `report ID --format html`: the page, with the drift collected first (a first pass over
/// the findings) and the findings streamed after it.
fn report_html(store: &Store, id: i64, out: &mut impl Write) -> Result<(), StoreError> {
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

/// `report ID --format ocsf`: one OCSF Detection Finding per finding, streamed.
fn report_ocsf(store: &Store, id: i64, out: &mut impl Write) -> Result<(), StoreError> {
    let run = store.run(id)?;
    // A finding's accounts are the scan's: for `apply --run`, the scan run's targets.
    let findings_run = store.findings_run(id)?.unwrap_or(id);
    let accounts = store
        .run_targets(findings_run)?
        .into_iter()
        .chain(store.run_targets(id)?)
        .map(|t| (t.id.to_string(), (t.partition, t.name)))
        .collect();
    let time_ms = humantime::parse_rfc3339_weak(&run.started_at)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    let mut stream = report::OcsfStream::start(
        std::io::BufWriter::with_capacity(1 << 16, out),
        report::OcsfRun {
            run_id: id,
            time_ms,
            started_at: run.started_at.clone(),
            accounts,
        },
    );
    // Each finding's status is where it stands now (OCSF is a finding's lifecycle): detached
    // by this run or another apply of the same scan, or put back by a rollback.
    let written = store
        .findings_now_each(id, None, |f| stream.row(f))
        .and_then(|_| stream.finish().map(drop).map_err(StoreError::Write));
    match written {
        Err(StoreError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
