//! `accounts`: the accounts a run would read, after `[organization]` discovery and filters.

use std::io::Write;

use super::work::{connector, options, resolve_accounts};
use super::{AppError, exit};
use crate::apply::ApplyOptions;
use crate::cli::Cli;
use crate::config;
use crate::report;

pub(super) async fn accounts(
    cli: &Cli,
    format: report::Format,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let mut file = config::load(&cli.accounts)?;
    if file.organization.is_some() {
        let connector = connector(cli, cli.call_timeout, file.partition).await?;
        let calls = options(cli, ApplyOptions::default()).calls;
        resolve_accounts(&connector, &mut file, calls).await?;
    }
    let _ = out.write_all(report::accounts(&file.accounts, format).as_bytes());
    Ok(exit::OK)
}
