//! `prune --before DATE [--dry-run]`: forgets scan runs that changed nothing, and says which.

use std::io::Write;

use super::work::Work;
use super::{AppError, exit, history::parse_since};
use crate::cli::Cli;

pub(super) async fn prune(
    cli: &Cli,
    before: &str,
    dry: bool,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let until = parse_since(before)
        .map_err(|_| AppError::Usage(format!("--before `{before}`: expected a date like 2026-01-01 or a time like 2026-01-01T00:00:00Z")))?;
    if !cli.db.exists() {
        return Err(super::no_database(&cli.db));
    }
    let work = Work::start(cli)?;
    let pruned = {
        let until = until.clone();
        work.store.call(move |s| s.prune(&until, dry)).await?
    };
    let ids: Vec<String> = pruned.runs.iter().map(i64::to_string).collect();
    let size = |b: u64| {
        if b < 1 << 20 {
            format!("{:.0} KiB", b as f64 / 1024.0)
        } else {
            format!("{:.1} MiB", b as f64 / f64::from(1 << 20))
        }
    };
    let _ = if pruned.runs.is_empty() {
        writeln!(
            out,
            "nothing to prune: no scan run started before {until} changed nothing and is free of references ({} kept)",
            pruned.kept
        )
    } else if dry {
        writeln!(
            out,
            "would forget {} scan runs that changed nothing ({} findings): {}; {} scan runs before {until} are kept; nothing was changed (run without --dry-run to forget them)",
            ids.len(),
            pruned.findings,
            ids.join(", "),
            pruned.kept
        )
    } else {
        writeln!(
            out,
            "forgot {} scan runs that changed nothing ({} findings): {}; {} scan runs before {until} are kept; database {} -> {}",
            ids.len(),
            pruned.findings,
            ids.join(", "),
            pruned.kept,
            size(pruned.bytes_before),
            size(pruned.bytes_after)
        )
    };
    if let Some(e) = &pruned.vacuum_error {
        eprintln!(
            "warning: the runs are forgotten, but the space was not reclaimed (VACUUM: {e}); run prune again with more free disk space"
        );
    }
    Ok(exit::OK)
}
