//! `diff [FROM] [TO]`: what changed between two scans, account by account.

use std::io::Write;

use super::{AppError, exit, no_database};
use crate::cli::Cli;
use crate::diff::DiffError;
use crate::report::{self, Format};
use crate::store::Store;

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
