//! `history [--account] [--user] [--policy] [--since]`: every change iamsweep made, with its
//! AWS request id.

use std::io::Write;

use super::{AppError, exit};
use crate::cli::Cli;
use crate::report;
use crate::store::{HistoryFilter, Store};

pub(super) fn history(
    cli: &Cli,
    account: &Option<String>,
    user: &Option<String>,
    policy: &Option<String>,
    since: &Option<String>,
    format: report::Format,
    out: &mut impl Write,
) -> Result<u8, AppError> {
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
    let _ = out.write_all(report::history(&rows, format).as_bytes());
    Ok(exit::OK)
}

/// `--since`: a date (2026-11-27) or an RFC 3339 time, as the database's UTC timestamps.
pub(super) fn parse_since(s: &str) -> Result<String, AppError> {
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
