//! `doctor [--apply]`: checks each account's role and permissions before a run.

use std::io::Write;

use super::work::{connector, options, resolve_accounts};
use super::{AppError, exit};
use crate::apply::ApplyOptions;
use crate::aws::Needed;
use crate::cli::Cli;
use crate::config;
use crate::report;

pub(super) async fn doctor(
    cli: &Cli,
    apply: bool,
    publish: bool,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let with: Vec<Needed> = [(apply, Needed::Apply), (publish, Needed::Publish)]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
    let mut file = config::load(&cli.accounts)?;
    let connector = connector(cli, cli.call_timeout, file.partition).await?;
    let calls = options(cli, ApplyOptions::default()).calls;
    resolve_accounts(&connector, &mut file, calls).await?;
    let checks = crate::doctor::check(
        &connector,
        &file.accounts,
        &with,
        cli.concurrency.map_or(16, usize::from),
        calls,
    )
    .await;
    let _ = out.write_all(report::doctor(&checks).as_bytes());
    Ok(if checks.iter().all(|c| c.ok()) {
        exit::OK
    } else {
        exit::FAILURES
    })
}
