//! Pure rendering of what the store holds: tables for people, JSON and CSV for tools, and the
//! end-of-run summary. No I/O: every function returns a String.

use std::fmt::Write as _;
use std::io::Write;

use crate::config::{Access, AccountTarget};
use crate::model::PolicyArn;
use crate::store::{
    AccountRow, ApiCallRow, FindingRow, FindingView, HistoryRow, RollbackItem, RunRow,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Cuts a cell to `max` characters, ending in `…` when cut (0: no limit). Tables fit 80
/// columns; `--format csv` and `json` carry the full values.
fn fit(cell: &str, max: usize) -> String {
    if max == 0 || cell.chars().count() <= max {
        cell.to_owned()
    } else {
        let mut s: String = cell.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// A table whose columns are cut to `max` characters each (0: no limit).
pub fn table_fit(
    headers: &[&str],
    rows: &[Vec<String>],
    numeric: &[bool],
    max: &[usize],
) -> String {
    let cut: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, c)| fit(c, max.get(i).copied().unwrap_or(0)))
                .collect()
        })
        .collect();
    table(headers, &cut, numeric)
}

/// A plain text table: columns padded to their widest cell, numbers right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>], numeric: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                l.push_str("  ");
            }
            if numeric.get(i).copied().unwrap_or(false) {
                l.push_str(&" ".repeat(pad));
                l.push_str(cell);
            } else {
                l.push_str(cell);
                if i + 1 < cells.len() {
                    l.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Whether a CSV field must be quoted. Bytes, not chars: it runs on every cell of a
/// million-row report.
fn needs_quotes(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
}

/// Writes one CSV field without allocating unless it needs quotes.
fn write_csv_field(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    if needs_quotes(s) {
        out.write_all(csv_field(s).as_bytes())
    } else {
        out.write_all(s.as_bytes())
    }
}

/// The names of a stored JSON array of group names, joined with `;`. IAM names hold neither `"`
/// nor a backslash, so a compact array of them is split as it is; anything else is parsed.
fn join_group_names(raw: &str, out: &mut String) {
    let inner = raw.strip_prefix("[\"").and_then(|r| r.strip_suffix("\"]"));
    if let Some(inner) = inner.filter(|i| !i.contains('\\')) {
        for (i, name) in inner.split("\",\"").enumerate() {
            if name.contains('"') {
                out.clear();
                break;
            }
            if i > 0 {
                out.push(';');
            }
            out.push_str(name);
        }
        if !out.is_empty() {
            return;
        }
    }
    let names: Vec<String> = serde_json::from_str(raw).unwrap_or_default();
    out.push_str(&names.join(";"));
}

/// One RFC 4180 CSV field: quoted only when it needs it.
fn csv_field(s: &str) -> String {
    if needs_quotes(s) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// RFC 4180 CSV.
pub fn csv(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let join = |cells: Vec<String>| cells.join(",") + "\n";
    out.push_str(&join(headers.iter().map(|h| csv_field(h)).collect()));
    for row in rows {
        out.push_str(&join(row.iter().map(|c| csv_field(c)).collect()));
    }
    out
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("rows serialize") + "\n"
}

/// `runs`: every run.
pub fn runs(rows: &[RunRow], format: Format) -> String {
    match format {
        Format::Json => json(&rows),
        Format::Csv => {
            let headers = [
                "id",
                "kind",
                "status",
                "source_run_id",
                "started_at",
                "finished_at",
                "accounts",
                "accounts_failed",
                "redundant",
                "direct_only",
                "changed",
                "actions_failed",
                "api_calls",
            ];
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.kind.clone(),
                        r.status.clone(),
                        r.source_run_id.map(|v| v.to_string()).unwrap_or_default(),
                        r.started_at.clone(),
                        r.finished_at.clone().unwrap_or_default(),
                        r.accounts.to_string(),
                        r.accounts_failed.to_string(),
                        r.redundant.to_string(),
                        r.direct_only.to_string(),
                        r.changed.to_string(),
                        r.actions_failed.to_string(),
                        r.api_calls.to_string(),
                    ]
                })
                .collect();
            csv(&headers, &cells)
        }
        Format::Table if rows.is_empty() => "no runs yet: start with `iamsweep scan`\n".into(),
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.kind.clone(),
                        match r.status.as_str() {
                            "completed_with_errors" => "with errors".to_owned(),
                            s => s.to_owned(),
                        },
                        short_time(&r.started_at).chars().take(11).collect(),
                        took(&r.started_at, r.finished_at.as_deref()),
                        r.accounts.to_string(),
                        r.redundant.to_string(),
                        r.changed.to_string(),
                        (r.accounts_failed + r.actions_failed).to_string(),
                    ]
                })
                .collect();
            table(
                &[
                    "ID", "KIND", "STATUS", "STARTED", "TOOK", "ACCT", "REDUND", "CHANGED",
                    "FAILED",
                ],
                &cells,
                &[true, false, false, false, true, true, true, true, true],
            )
        }
    }
}

/// How long a run took: `850ms`, `42s`, `3m12s`, `2h05m`; `-` while it runs.
fn took(started: &str, finished: Option<&str>) -> String {
    let (Some(end), Ok(start)) = (finished, humantime::parse_rfc3339_weak(started)) else {
        return "-".into();
    };
    let Ok(end) = humantime::parse_rfc3339_weak(end) else {
        return "-".into();
    };
    let d = end.duration_since(start).unwrap_or_default();
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// `2026-11-27T22:16:06.123Z` as `11-27 22:16:06`: enough to tell runs apart in 80 columns.
fn short_time(t: &str) -> String {
    match (t.get(5..10), t.get(11..19)) {
        (Some(d), Some(h)) => format!("{d} {h}"),
        _ => t.to_owned(),
    }
}

/// `report --format table`: a run's findings with their actions.
pub fn findings(rows: &[FindingRow]) -> String {
    const HEADERS: [&str; 6] = ["ACCOUNT", "USER", "POLICY", "KIND", "GROUPS", "ACTION"];
    if rows.is_empty() {
        return "no direct policy attachments found\n".into();
    }
    // Skips show their reason (it says more than "skipped"); the rest their status.
    let action = |r: &FindingRow| match &r.action {
        None => "-".to_owned(),
        Some(a) => match &a.reason {
            Some(reason) if a.status == "skipped" => reason.clone(),
            _ => a.status.clone(),
        },
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.account_id.clone(),
                r.user_name.clone(),
                r.policy_name.clone(),
                match r.kind.as_str() {
                    "redundant_direct" => "redundant".to_owned(),
                    "direct_only" => "direct".to_owned(),
                    k => k.to_owned(),
                },
                if r.covering_groups.is_empty() {
                    "-".to_owned()
                } else {
                    r.covering_groups.join(",")
                },
                action(r),
            ]
        })
        .collect();
    table_fit(&HEADERS, &cells, &[], &[12, 13, 14, 9, 8, 14])
}

const FINDING_CSV_HEADERS: [&str; 12] = [
    "account_id",
    "account_name",
    "account_origin",
    "user_name",
    "user_arn",
    "policy_arn",
    "policy_name",
    "kind",
    "covering_groups",
    "action_status",
    "action_reason",
    "request_id",
];

/// `report --format json|csv`, written as the findings stream from the store: JSON is an array
/// with one finding per line, CSV has a header line. Nothing is held in memory.
pub struct FindingStream<W: Write> {
    out: W,
    format: Format,
    rows: u64,
    /// The CSV covering-groups cell, reused from row to row.
    groups: String,
}

impl<W: Write> FindingStream<W> {
    pub fn start(mut out: W, format: Format) -> std::io::Result<Self> {
        if format == Format::Csv {
            out.write_all(csv(&FINDING_CSV_HEADERS, &[]).as_bytes())?;
        }
        Ok(Self {
            out,
            format,
            rows: 0,
            groups: String::new(),
        })
    }

    pub fn row(&mut self, f: &FindingView<'_>) -> std::io::Result<()> {
        match self.format {
            Format::Json => {
                self.out
                    .write_all(if self.rows == 0 { b"[\n" } else { b",\n" })?;
                serde_json::to_writer(&mut self.out, f)?;
            }
            _ => {
                let a = f.action.as_ref();
                let out = &mut self.out;
                for (i, cell) in [
                    f.account_id,
                    f.account_name.unwrap_or_default(),
                    f.account_origin.unwrap_or_default(),
                    f.user_name,
                    f.user_arn,
                    f.policy_arn,
                    f.policy_name,
                    f.kind,
                ]
                .iter()
                .enumerate()
                {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    write_csv_field(out, cell)?;
                }
                out.write_all(b",")?;
                let raw = f.covering_groups.get();
                if raw != "[]" {
                    self.groups.clear();
                    join_group_names(raw, &mut self.groups);
                    write_csv_field(out, &self.groups)?;
                }
                for cell in [
                    a.map_or("", |a| a.status),
                    a.and_then(|a| a.reason).unwrap_or_default(),
                    a.and_then(|a| a.request_id).unwrap_or_default(),
                ] {
                    out.write_all(b",")?;
                    write_csv_field(out, cell)?;
                }
                out.write_all(b"\n")?;
            }
        }
        self.rows += 1;
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        if self.format == Format::Json {
            self.out
                .write_all(if self.rows == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The AWS calls of a run, per account and operation (shown under `report`'s table).
pub fn api_calls(rows: &[ApiCallRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.account_id.clone(),
                r.operation.clone(),
                r.calls.to_string(),
                r.throttled.to_string(),
                r.errors.to_string(),
            ]
        })
        .collect();
    let total: u64 = rows.iter().map(|r| r.calls).sum();
    format!(
        "\nAWS calls ({total} in all):\n{}",
        table(
            &["ACCOUNT", "OPERATION", "CALLS", "THROTTLED", "ERRORS"],
            &cells,
            &[false, false, true, true, true],
        )
    )
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        let s = csv(
            &["a", "b"],
            &[
                vec!["x,y".into(), "say \"hi\"".into()],
                vec!["plain".into(), "".into()],
            ],
        );
        assert_eq!(s, "a,b\n\"x,y\",\"say \"\"hi\"\"\"\nplain,\n");
    }

    #[test]
    fn group_names_join_whatever_the_stored_array_looks_like() {
        let joined = |raw: &str| {
            let mut out = String::new();
            join_group_names(raw, &mut out);
            out
        };
        assert_eq!(joined(r#"["admins"]"#), "admins");
        assert_eq!(joined(r#"["a,b","c=d@e"]"#), "a,b;c=d@e");
        // Not written by iamsweep, still read right: spaces and escapes go through the parser.
        assert_eq!(joined(r#"["a", "b"]"#), "a;b");
        assert_eq!(joined(r#"["a\u0062"]"#), "ab");
        assert_eq!(joined(r#"[""]"#), "");
    }

    #[test]
    fn table_pads_and_right_aligns_numbers() {
        let s = table(
            &["NAME", "N"],
            &[
                vec!["alice".into(), "3".into()],
                vec!["b".into(), "120".into()],
            ],
            &[false, true],
        );
        insta::assert_snapshot!(s, @r"
        NAME     N
        alice    3
        b      120
        ");
    }
}

/// `accounts`: the resolved account list.
pub fn accounts(targets: &[AccountTarget], format: Format) -> String {
    let role = |t: &AccountTarget| match &t.access {
        Access::AssumeRole { role_arn, .. } => role_arn.clone(),
        Access::BaseCredentials => "(base credentials)".to_owned(),
    };
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = targets
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "account_id": t.id,
                        "name": t.name,
                        "origin": t.origin,
                        "role_arn": t.role_arn(),
                        "partition": t.partition,
                    })
                })
                .collect();
            json(&rows)
        }
        Format::Csv => {
            let cells: Vec<Vec<String>> = targets
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.name.clone().unwrap_or_default(),
                        t.origin.clone().unwrap_or_default(),
                        t.role_arn().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            csv(&["account_id", "name", "origin", "role_arn"], &cells)
        }
        Format::Table if targets.is_empty() => "no accounts selected\n".into(),
        Format::Table => {
            let cells: Vec<Vec<String>> = targets
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.name.clone().unwrap_or_else(|| "-".into()),
                        t.origin.clone().unwrap_or_else(|| "accounts.toml".into()),
                        // The account is in the first column: show the role's name and path.
                        role(t)
                            .split_once(":role/")
                            .map_or_else(|| role(t), |(_, name)| name.to_owned()),
                    ]
                })
                .collect();
            let mut out = table_fit(
                &["ACCOUNT", "NAME", "ORIGIN", "ROLE"],
                &cells,
                &[],
                &[12, 16, 24, 20],
            );
            out.push_str(&format!("{} accounts\n", targets.len()));
            out
        }
    }
}

/// `doctor`: one line per account.
pub fn doctor(checks: &[crate::doctor::Checkup]) -> String {
    let mut out = String::new();
    for c in checks {
        let label = c.target.label();
        let line = match (&c.connect, &c.read) {
            (Err(e), _) => format!("FAIL  {label}: cannot use the role: {e}"),
            (Ok(()), Some(Err(e))) => format!(
                "FAIL  {label}: role ok, but the scan's read failed: {e} (the role needs iam:GetAccountAuthorizationDetails)"
            ),
            (Ok(()), _) => {
                let write = match &c.write {
                    Some(Ok(decisions)) if decisions.iter().all(|d| d.decision == "allowed") => {
                        "; apply: allowed".to_owned()
                    }
                    Some(Ok(decisions)) => {
                        let denied: Vec<String> = decisions
                            .iter()
                            .filter(|d| d.decision != "allowed")
                            .map(|d| format!("{} ({})", d.action, d.decision))
                            .collect();
                        format!("; apply: DENIED {}", denied.join(", "))
                    }
                    Some(Err(e)) => format!("; apply: could not check ({e})"),
                    None => match &c.write_unchecked {
                        Some(why) => format!("; apply: {why}"),
                        None => String::new(),
                    },
                };
                let status = if c.ok() { "ok  " } else { "FAIL" };
                format!("{status}  {label}: role ok, scan read ok{write}")
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    let bad = checks.iter().filter(|c| !c.ok()).count();
    out.push_str(&format!(
        "{} accounts checked, {bad} with problems\n",
        checks.len()
    ));
    out
}

/// `rollback ID --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RollbackFormat {
    Sh,
    Json,
    Csv,
}

/// A string as one POSIX shell word: single-quoted unless it is plainly safe.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=,@:".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The re-attach list for a run's detaches.
pub fn rollback(
    run_id: i64,
    items: &[RollbackItem],
    targets: &[AccountTarget],
    format: RollbackFormat,
) -> String {
    match format {
        RollbackFormat::Json => json(&items),
        RollbackFormat::Csv => {
            let headers = [
                "account_id",
                "account_name",
                "user_name",
                "policy_arn",
                "policy_name",
                "detach_action_id",
                "detached_at",
                "request_id",
                "role_arn",
            ];
            let cells: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    vec![
                        i.account_id.clone(),
                        i.account_name.clone().unwrap_or_default(),
                        i.user_name.clone(),
                        i.policy_arn.clone(),
                        i.policy_name.clone(),
                        i.action_id.to_string(),
                        i.detached_at.clone().unwrap_or_default(),
                        i.request_id.clone().unwrap_or_default(),
                        i.role_arn.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            csv(&headers, &cells)
        }
        RollbackFormat::Sh => rollback_script(run_id, items, targets),
    }
}

fn rollback_script(run_id: i64, items: &[RollbackItem], targets: &[AccountTarget]) -> String {
    let mut out = String::new();
    let users: std::collections::BTreeSet<(&str, &str)> = items
        .iter()
        .map(|i| (i.account_id.as_str(), i.user_name.as_str()))
        .collect();
    let accounts: Vec<&str> = {
        let mut v: Vec<&str> = items.iter().map(|i| i.account_id.as_str()).collect();
        v.dedup();
        v
    };
    let _ = writeln!(out, "#!/bin/sh");
    let _ = writeln!(
        out,
        "# Re-attach what iamsweep run {run_id} detached: {} policies for {} users in {} accounts.",
        items.len(),
        users.len(),
        accounts.len()
    );
    if items.is_empty() {
        let _ = writeln!(
            out,
            "# Nothing to re-attach: the run made no detach that is not rolled back yet."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "# Review it, then run it with base credentials that may assume each account's role.\n# Or let iamsweep do it, journaled and resumable: iamsweep rollback {run_id} --apply --yes\nset -eu\n"
    );
    out.push_str(
        "# Fails the script when a policy is not attached to its user after the re-attach.\n\
check() {\n  n=$(aws iam list-attached-user-policies --user-name \"$1\" \\\n    --query \"length(AttachedPolicies[?PolicyArn=='$2'])\" --output text)\n  [ \"$n\" = 1 ] || { echo \"not attached: $2 to user $1\" >&2; exit 1; }\n}\n",
    );
    for account in accounts {
        let mine: Vec<&RollbackItem> = items.iter().filter(|i| i.account_id == account).collect();
        let name = mine[0]
            .account_name
            .as_deref()
            .map_or(String::new(), |n| format!(" ({n})"));
        let _ = writeln!(
            out,
            "\n# --- account {account}{name}: {} policies\n(",
            mine.len()
        );
        let target = targets.iter().find(|t| t.id.as_str() == account);
        match target.map(|t| &t.access) {
            Some(Access::AssumeRole {
                role_arn,
                external_id,
                ..
            }) => {
                let _ = writeln!(
                    out,
                    "  # Credentials for the account: the role run {run_id} used.\n  creds=$(aws sts assume-role --role-arn {} --role-session-name iamsweep-rollback{} \\\n    --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text)\n  set -- $creds\n  export AWS_ACCESS_KEY_ID=\"$1\" AWS_SECRET_ACCESS_KEY=\"$2\" AWS_SESSION_TOKEN=\"$3\"",
                    shell_quote(role_arn),
                    external_id.as_deref().map_or(String::new(), |x| format!(
                        " --external-id {}",
                        shell_quote(x)
                    ))
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  # Credentials for the account: run {run_id} used the base credentials as they are\n  # (assume_role = false); run this part with credentials of account {account}."
                );
            }
        }
        for i in &mine {
            let _ = writeln!(
                out,
                "  aws iam attach-user-policy --user-name {} --policy-arn {}",
                shell_quote(&i.user_name),
                shell_quote(&i.policy_arn)
            );
        }
        for i in &mine {
            let _ = writeln!(
                out,
                "  check {} {}",
                shell_quote(&i.user_name),
                shell_quote(&i.policy_arn)
            );
        }
        out.push_str(")\n");
    }
    let _ = writeln!(
        out,
        "\necho \"re-attached {} policies of iamsweep run {run_id}\"",
        items.len()
    );
    out
}

/// `history`: every action, oldest first.
pub fn history(rows: &[HistoryRow], format: Format) -> String {
    match format {
        Format::Json => json(&rows),
        Format::Csv => {
            let headers = [
                "time",
                "run_id",
                "run_kind",
                "account_id",
                "account_name",
                "user_name",
                "policy_arn",
                "operation",
                "status",
                "reason",
                "request_id",
                "role_arn",
                "session_name",
                "action_id",
                "rolled_back_by",
            ];
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.time.clone(),
                        r.run_id.to_string(),
                        r.run_kind.clone(),
                        r.account_id.clone(),
                        r.account_name.clone().unwrap_or_default(),
                        r.user_name.clone(),
                        r.policy_arn.clone(),
                        r.operation.clone(),
                        r.status.clone(),
                        r.reason.clone().unwrap_or_default(),
                        r.request_id.clone().unwrap_or_default(),
                        r.role_arn.clone().unwrap_or_default(),
                        r.session_name.clone().unwrap_or_default(),
                        r.action_id.to_string(),
                        r.rolled_back_by.map(|v| v.to_string()).unwrap_or_default(),
                    ]
                })
                .collect();
            csv(&headers, &cells)
        }
        Format::Table if rows.is_empty() => "no actions recorded\n".into(),
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        short_time(&r.time).chars().take(11).collect(),
                        r.run_id.to_string(),
                        r.account_id.clone(),
                        r.user_name.clone(),
                        PolicyArn::new(r.policy_arn.clone())
                            .policy_name()
                            .to_owned(),
                        match &r.reason {
                            Some(reason) if r.status == "skipped" => reason.clone(),
                            _ => r.status.clone(),
                        },
                    ]
                })
                .collect();
            table_fit(
                &["TIME", "RUN", "ACCOUNT", "USER", "POLICY", "STATUS"],
                &cells,
                &[false, true],
                &[11, 4, 12, 14, 14, 16],
            )
        }
    }
}

#[cfg(test)]
mod snapshots {
    //! What people read and run: the rollback script (quoting included), CSV and tables.
    use super::*;
    use crate::filters::Filters;
    use crate::model::{AccountId, Partition};
    use crate::store::{ActionSummary, FindingRow, HistoryRow};

    const ODD_USER: &str = "svc+deploy=ci,ops.bot@corp-x_y";
    const ODD_POLICY: &str = "arn:aws:iam::111111111111:policy/team/a+b=c,d.e@f-g_h";

    fn item(account: &str, name: Option<&str>, user: &str, policy: &str, id: i64) -> RollbackItem {
        RollbackItem {
            account_id: account.into(),
            account_name: name.map(str::to_owned),
            user_name: user.into(),
            policy_arn: policy.into(),
            policy_name: PolicyArn::new(policy).policy_name().into(),
            action_id: id,
            run_id: 2,
            finding_id: Some(id),
            detached_at: Some("2026-11-27T22:16:06.123Z".into()),
            request_id: Some(format!("req-{id}")),
            role_arn: None,
            user_id: None,
        }
    }

    fn targets() -> Vec<AccountTarget> {
        vec![
            AccountTarget {
                id: AccountId::parse("111111111111").unwrap(),
                name: Some("prod".into()),
                partition: Partition::Aws,
                access: Access::AssumeRole {
                    role_arn: "arn:aws:iam::111111111111:role/ops/IamSweepRole".into(),
                    external_id: Some("ext:id/7".into()),
                    session_name: "iamsweep".into(),
                },
                filters: Filters::default(),
                origin: None,
            },
            AccountTarget {
                id: AccountId::parse("222222222222").unwrap(),
                name: None,
                partition: Partition::Aws,
                access: Access::BaseCredentials,
                filters: Filters::default(),
                origin: None,
            },
        ]
    }

    fn items() -> Vec<RollbackItem> {
        vec![
            item("111111111111", Some("prod"), ODD_USER, ODD_POLICY, 7),
            item(
                "111111111111",
                Some("prod"),
                "alice",
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                8,
            ),
            item(
                "222222222222",
                None,
                "bob",
                "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
                9,
            ),
        ]
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote(ODD_USER), ODD_USER);
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn rollback_script() {
        insta::assert_snapshot!(rollback(2, &items(), &targets(), RollbackFormat::Sh));
    }

    #[test]
    fn rollback_script_with_nothing_to_do() {
        insta::assert_snapshot!(rollback(2, &[], &targets(), RollbackFormat::Sh));
    }

    #[test]
    fn rollback_csv() {
        insta::assert_snapshot!(rollback(2, &items(), &targets(), RollbackFormat::Csv));
    }

    #[test]
    fn findings_table_and_csv() {
        let row = |user: &str,
                   policy: &str,
                   kind: &str,
                   groups: &[&str],
                   status: Option<(&str, Option<&str>)>| FindingRow {
            finding_id: 1,
            account_id: "111111111111".into(),
            account_name: Some("prod".into()),
            account_origin: None,
            user_name: user.into(),
            user_arn: format!("arn:aws:iam::111111111111:user/{user}"),
            policy_arn: policy.into(),
            policy_name: PolicyArn::new(policy).policy_name().into(),
            kind: kind.into(),
            covering_groups: groups.iter().map(|s| s.to_string()).collect(),
            action: status.map(|(s, r)| ActionSummary {
                id: 1,
                run_id: 2,
                status: s.into(),
                reason: r.map(str::to_owned),
                covering_group: None,
                request_id: Some("req-1".into()),
                error_code: None,
                error_message: None,
                finished_at: None,
            }),
        };
        let rows = vec![
            row(
                ODD_USER,
                ODD_POLICY,
                "redundant_direct",
                &["ops", "ops,2"],
                Some(("detached", None)),
            ),
            row(
                "alice",
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                "redundant_direct",
                &["ops"],
                Some(("skipped", Some("no_longer_covered"))),
            ),
            row(
                "bob",
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                "direct_only",
                &[],
                None,
            ),
        ];
        insta::assert_snapshot!("findings_table", findings(&rows));
        insta::assert_snapshot!("findings_csv", stream(&rows, Format::Csv));
        // The streamed JSON is an array of exactly the owned rows.
        let json: Vec<serde_json::Value> =
            serde_json::from_str(&stream(&rows, Format::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::to_value(&rows)
                .unwrap()
                .as_array()
                .unwrap()
                .clone()
        );
        assert_eq!(stream(&[], Format::Json), "[]\n");
    }

    /// What `report --format json|csv` writes for these rows.
    fn stream(rows: &[FindingRow], format: Format) -> String {
        let raw: Vec<Box<serde_json::value::RawValue>> = rows
            .iter()
            .map(|r| serde_json::value::to_raw_value(&r.covering_groups).unwrap())
            .collect();
        let mut s = FindingStream::start(Vec::new(), format).unwrap();
        for (r, groups) in rows.iter().zip(&raw) {
            let view = FindingView {
                finding_id: r.finding_id,
                account_id: &r.account_id,
                account_name: r.account_name.as_deref(),
                account_origin: r.account_origin.as_deref(),
                user_name: &r.user_name,
                user_arn: &r.user_arn,
                policy_arn: &r.policy_arn,
                policy_name: &r.policy_name,
                kind: &r.kind,
                covering_groups: groups,
                action: r.action.as_ref().map(|a| crate::store::ActionView {
                    id: a.id,
                    run_id: a.run_id,
                    status: &a.status,
                    reason: a.reason.as_deref(),
                    covering_group: a.covering_group.as_deref(),
                    request_id: a.request_id.as_deref(),
                    error_code: a.error_code.as_deref(),
                    error_message: a.error_message.as_deref(),
                    finished_at: a.finished_at.as_deref(),
                }),
            };
            s.row(&view).unwrap();
        }
        String::from_utf8(s.finish().unwrap()).unwrap()
    }

    #[test]
    fn history_table() {
        let rows = vec![HistoryRow {
            action_id: 1,
            run_id: 2,
            run_kind: "apply".into(),
            time: "2026-11-27T22:16:06.123Z".into(),
            account_id: "111111111111".into(),
            account_name: Some("prod".into()),
            user_name: ODD_USER.into(),
            policy_arn: ODD_POLICY.into(),
            operation: "detach".into(),
            status: "reverted".into(),
            reason: Some("covering_grant_vanished".into()),
            request_id: Some("req-1".into()),
            role_arn: None,
            session_name: Some("iamsweep".into()),
            rolled_back_by: None,
            undoes: None,
        }];
        let t = history(&rows, Format::Table);
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
        insta::assert_snapshot!(t);
    }

    #[test]
    fn runs_table() {
        let run = |id, kind: &str, status: &str, finished: Option<&str>| RunRow {
            id,
            kind: kind.into(),
            status: status.into(),
            source_run_id: None,
            started_at: "2026-11-27T22:16:06.123Z".into(),
            finished_at: finished.map(str::to_owned),
            accounts: 1000,
            accounts_failed: 3,
            redundant: 123456,
            direct_only: 5,
            changed: 123400,
            actions_failed: 2,
            api_calls: 99,
        };
        let t = runs(
            &[
                run(1, "scan", "completed", Some("2026-11-27T22:16:09.000Z")),
                run(
                    2,
                    "apply",
                    "completed_with_errors",
                    Some("2026-11-27T23:20:00.000Z"),
                ),
                run(
                    3,
                    "rollback",
                    "interrupted",
                    Some("2026-11-27T22:16:06.900Z"),
                ),
                run(4, "apply", "running", None),
            ],
            Format::Table,
        );
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
        insta::assert_snapshot!(t);
    }

    #[test]
    fn tables_fit_80_columns_whatever_the_names() {
        let long = "a-very-long-name-that-goes-on-and-on-and-on-for-ever-and-ever";
        let row = FindingRow {
            finding_id: 1,
            account_id: "111111111111".into(),
            account_name: Some(long.into()),
            account_origin: None,
            user_name: long.into(),
            user_arn: long.into(),
            policy_arn: format!("arn:aws:iam::111111111111:policy/{long}"),
            policy_name: long.into(),
            kind: "redundant_direct".into(),
            covering_groups: vec![long.into(), long.into()],
            action: Some(ActionSummary {
                id: 1,
                run_id: 2,
                status: "skipped".into(),
                reason: Some("no_longer_covered".into()),
                covering_group: None,
                request_id: None,
                error_code: None,
                error_message: None,
                finished_at: None,
            }),
        };
        let t = findings(&[row]);
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
    }
}
