//! The summary printed when a run ends (scan, apply, rollback, resume). Renders the rows it is
//! given; it must not decide a run's status.

use std::fmt::Write as _;

use super::table_fit;
use crate::store::{AccountRow, RunRow};

/// The end-of-run summary: one line per account (fits 80 columns), then skip reasons and the
/// errors in full.
pub fn summary(run: &RunRow, accounts: &[AccountRow], reasons: &[(String, u64)]) -> String {
    let mut out = String::new();
    let applied = run.kind != "scan";
    let label = |a: &AccountRow| match &a.account_name {
        Some(n) => format!("{} {n}", a.account_id),
        None => a.account_id.clone(),
    };
    let (headers, cells): (Vec<&str>, Vec<Vec<String>>) = if applied {
        (
            vec![
                "ACCOUNT",
                "STATUS",
                "REDUND",
                if run.kind == "rollback" {
                    "ATTACH"
                } else {
                    "DETACH"
                },
                "SKIP",
                "FAIL",
                "REVERT",
                "CALLS",
            ],
            accounts
                .iter()
                .map(|a| {
                    vec![
                        label(a),
                        a.status.clone(),
                        opt(&a.redundant),
                        a.changed.to_string(),
                        a.skipped.to_string(),
                        a.failed.to_string(),
                        a.reverted.to_string(),
                        a.api_calls.to_string(),
                    ]
                })
                .collect(),
        )
    } else {
        (
            vec![
                "ACCOUNT",
                "STATUS",
                "USERS",
                "GROUPS",
                "REDUNDANT",
                "DIRECT-ONLY",
                "CALLS",
            ],
            accounts
                .iter()
                .map(|a| {
                    vec![
                        label(a),
                        a.status.clone(),
                        opt(&a.users_seen),
                        opt(&a.groups_seen),
                        opt(&a.redundant),
                        opt(&a.direct_only),
                        a.api_calls.to_string(),
                    ]
                })
                .collect(),
        )
    };
    let mut numeric = vec![true; headers.len()];
    numeric[0] = false;
    numeric[1] = false;
    out.push_str(&table_fit(&headers, &cells, &numeric, &[23]));
    if !reasons.is_empty() {
        let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        let _ = writeln!(out, "\nnot detached: {}", list.join(", "));
    }
    let errors: Vec<&AccountRow> = accounts.iter().filter(|a| a.error_code.is_some()).collect();
    if !errors.is_empty() {
        out.push_str("\nerrors:\n");
        for a in errors {
            let _ = writeln!(
                out,
                "  {}: {}: {}",
                a.account_id,
                opt(&a.error_code),
                opt(&a.error_message)
            );
        }
    }
    let _ = writeln!(
        out,
        "\nrun {} ({}) {}: {} accounts, {} failed, {} redundant, {} direct-only{}",
        run.id,
        run.kind,
        run.status,
        run.accounts,
        run.accounts_failed,
        run.redundant,
        run.direct_only,
        match run.kind.as_str() {
            "scan" => String::new(),
            "rollback" => format!(", {} re-attached", run.changed),
            _ => format!(", {} detached", run.changed),
        }
    );
    out
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}
