//! `runs`: every run as a table, JSON or CSV. Reads no store: it renders the rows it is given.

use super::{Format, csv, json, short_time, table};
use crate::store::RunRow;

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
                "plan_digest",
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
                        r.plan_digest.clone().unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
            plan_digest: None,
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
}
