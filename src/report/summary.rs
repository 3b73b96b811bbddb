//! The summary printed when a run ends (scan, apply, rollback, resume). Renders the rows it is
//! given; it must not decide a run's status. It scales to organizations of thousands of
//! accounts: the totals first, then every account that needs attention (failed, stopped, left
//! for resume, with failed or reverted actions) with its error, then the others up to a limit;
//! `runs` and `report` keep the full detail.

use std::fmt::Write as _;

use super::table_fit;
use crate::store::{AccountRow, RunRow};

/// Accounts shown beyond those that need attention.
pub const SUMMARY_ROWS: usize = 50;

/// Whether an account's line belongs in the "needs attention" part.
fn needs_attention(a: &AccountRow) -> bool {
    a.status != "completed" || a.failed > 0 || a.reverted > 0 || a.error_code.is_some()
}

/// The end-of-run summary: totals, then one line per account that needs attention and up to
/// [`SUMMARY_ROWS`] others (fits 80 columns), then skip reasons and the errors in full.
pub fn summary(run: &RunRow, accounts: &[AccountRow], reasons: &[(String, u64)]) -> String {
    let mut out = totals(run);
    let (attention, fine): (Vec<&AccountRow>, Vec<&AccountRow>) =
        accounts.iter().partition(|a| needs_attention(a));
    if accounts.len() > SUMMARY_ROWS && !attention.is_empty() {
        let _ = writeln!(out, "\nneeds attention ({} accounts):", attention.len());
        out.push_str(&rows(run, &attention));
        let shown = fine.len().min(SUMMARY_ROWS);
        let _ = writeln!(
            out,
            "\n{} more accounts completed{}",
            fine.len(),
            if shown < fine.len() {
                format!(
                    "; the first {shown}: (every account: `iamsweep report {}`, or the run_accounts table)",
                    run.id
                )
            } else {
                ":".to_owned()
            }
        );
        out.push_str(&rows(run, &fine[..shown]));
    } else {
        // Everything when it fits; else nothing needs attention and the first ones are shown.
        let shown = accounts.len().min(SUMMARY_ROWS);
        let listed: Vec<&AccountRow> = attention.iter().chain(&fine).take(shown).copied().collect();
        out.push('\n');
        out.push_str(&rows(run, &listed));
        if shown < accounts.len() {
            let _ = writeln!(
                out,
                "... and {} more accounts, all completed (every account: `iamsweep report {}`, or the run_accounts table)",
                accounts.len() - shown,
                run.id
            );
        }
    }
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
    out
}

/// `run 3 (scan) completed: ...`, the line a user looks for first.
fn totals(run: &RunRow) -> String {
    format!(
        "run {} ({}) {}: {} accounts, {} failed, {} redundant, {} direct-only{}\n",
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
    ) + &match &run.plan_digest {
        Some(d) => format!("reviewed plan applied: sha256 {d}\n"),
        None => String::new(),
    }
}

/// One line per account.
fn rows(run: &RunRow, accounts: &[&AccountRow]) -> String {
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
    out
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(i: usize, status: &str, error: Option<&str>) -> AccountRow {
        AccountRow {
            account_id: format!("{:012}", 100_000_000_000u64 + i as u64),
            account_name: None,
            status: status.into(),
            error_code: error.map(|_| "AccessDenied".into()),
            error_message: error.map(str::to_owned),
            users_seen: Some(10),
            groups_seen: Some(2),
            users_excluded: Some(0),
            redundant: Some(1),
            direct_only: Some(1),
            api_calls: 2,
            role_arn: None,
            started_at: None,
            finished_at: None,
            changed: 0,
            skipped: 0,
            failed: 0,
            reverted: 0,
            origin: None,
        }
    }

    fn run(accounts: u64, failed: u64) -> RunRow {
        RunRow {
            id: 7,
            kind: "scan".into(),
            status: "completed_with_errors".into(),
            source_run_id: None,
            started_at: "2026-11-28T10:00:00.000Z".into(),
            finished_at: None,
            accounts,
            accounts_failed: failed,
            redundant: accounts,
            direct_only: accounts,
            changed: 0,
            actions_failed: 0,
            api_calls: 2 * accounts,
            plan_digest: None,
        }
    }

    #[test]
    fn ten_thousand_accounts_show_totals_first_then_the_failed_ones_then_a_few() {
        let mut accounts: Vec<AccountRow> =
            (0..10_000).map(|i| account(i, "completed", None)).collect();
        for i in [17, 4242, 9999] {
            accounts[i] = account(i, "failed", Some("cannot assume the role"));
        }
        let text = summary(&run(10_000, 3), &accounts, &[]);
        assert!(
            text.starts_with("run 7 (scan) completed_with_errors: 10000 accounts, 3 failed,"),
            "{text}"
        );
        let attention = text.find("needs attention (3 accounts):").expect(&text);
        let others = text
            .find("9997 more accounts completed; the first 50")
            .expect(&text);
        assert!(attention < others);
        for id in ["100000000017", "100000004242", "100000009999"] {
            let at = text.find(&format!("{id}  failed")).expect(id);
            assert!(at < others, "{id} is listed among those needing attention");
        }
        assert!(text.contains("errors:\n  100000000017: AccessDenied: cannot assume the role"));
        // Short enough to read: totals, 3 + 50 rows with their headers, the errors.
        assert!(text.lines().count() < 70, "{}", text.lines().count());
    }

    #[test]
    fn a_small_run_lists_every_account() {
        let accounts: Vec<AccountRow> = (0..3).map(|i| account(i, "completed", None)).collect();
        let text = summary(&run(3, 0), &accounts, &[]);
        assert_eq!(
            text.lines().filter(|l| l.contains("  completed")).count(),
            3
        );
        assert!(!text.contains("more accounts"));
    }
}
