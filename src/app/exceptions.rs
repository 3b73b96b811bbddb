//! `exceptions`: each `[[exception]]` of the accounts file with its state and the findings of
//! the latest scan it covers; and the note scan and apply give about expired ones.

use std::io::Write;
use std::time::SystemTime;

use super::{AppError, exit};
use crate::cli::Cli;
use crate::config::{self, AccountsFile};
use crate::report::{self, ExceptionRow};
use crate::store::Store;

pub(super) fn exceptions(
    cli: &Cli,
    format: report::Format,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let file = config::load(&cli.accounts)?;
    let mut covered = vec![0u64; file.exceptions.len()];
    let mut run_id = None;
    if let Some(store) = Store::open_read_only(&cli.db)?
        && let Some(id) = store.latest_run(None)?
    {
        run_id = Some(id);
        store.report_each(id, |f| {
            for (n, e) in covered.iter_mut().zip(&file.exceptions) {
                if e.covers(f.account_id, f.user_name, f.policy_arn) {
                    *n += 1;
                }
            }
            Ok(())
        })?;
    }
    let now = SystemTime::now();
    let rows: Vec<ExceptionRow> = file
        .exceptions
        .iter()
        .zip(covered)
        .map(|(e, n)| {
            let state = match e.state_at(now) {
                "live" if run_id.is_some() && n == 0 => "unmatched",
                s => s,
            };
            ExceptionRow {
                line: e.line,
                state: state.to_owned(),
                owner: e.owner.clone(),
                reason: e.reason.clone(),
                expires: e.expires.clone(),
                accounts: e.accounts.clone(),
                users: e.users.as_slice().to_vec(),
                policies: e.policies.as_slice().to_vec(),
                findings: run_id.map(|_| n),
                run_id,
            }
        })
        .collect();
    let _ = out.write_all(report::exceptions(&rows, format).as_bytes());
    Ok(exit::OK)
}

/// Says on stderr which exceptions expired and when: their findings are treated like any
/// other from now on.
pub(super) fn note_expired(file: &AccountsFile) {
    let now = crate::store::now();
    for e in file.exceptions.iter().filter(|e| !e.live_at(&now)) {
        eprintln!(
            "note: {}:{}: [[exception]] of {} expired {} ({}); the findings it covered are swept like any other",
            file.path, e.line, e.owner, e.expires, e.reason
        );
    }
}
