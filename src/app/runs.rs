//! `runs`: every run in the database, newest first.

use std::io::Write;

use super::{AppError, exit};
use crate::cli::Cli;
use crate::report;
use crate::store::Store;

pub(super) fn runs(
    cli: &Cli,
    format: report::Format,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let runs = match Store::open_read_only(&cli.db)? {
        Some(store) => store.runs()?,
        None => Vec::new(),
    };
    let _ = out.write_all(report::runs(&runs, format).as_bytes());
    Ok(exit::OK)
}
