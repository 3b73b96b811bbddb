//! `exceptions`: each `[[exception]]` of the accounts file, its state and what it covers.

use serde::Serialize;

use super::{Format, csv, json, table};

/// One exception as `iamsweep exceptions` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct ExceptionRow {
    pub line: usize,
    /// `live`, `expiring` (within 14 days), `expired`, or `unmatched` (live, but it covered no
    /// finding of the latest scan).
    pub state: String,
    pub owner: String,
    pub reason: String,
    pub expires: String,
    pub accounts: Vec<String>,
    pub users: Vec<String>,
    pub policies: Vec<String>,
    /// Findings of the latest scan it covers (`None`: no scan yet).
    pub findings: Option<u64>,
    /// The run those findings are from.
    pub run_id: Option<i64>,
}

pub fn exceptions(rows: &[ExceptionRow], format: Format) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.line.to_string(),
                r.state.clone(),
                r.owner.clone(),
                r.expires.clone(),
                r.findings.map(|n| n.to_string()).unwrap_or_default(),
                if r.accounts.is_empty() {
                    "*".into()
                } else {
                    r.accounts.join(";")
                },
                r.users.join(";"),
                r.policies.join(";"),
                r.reason.clone(),
            ]
        })
        .collect();
    let headers = [
        "line", "state", "owner", "expires", "findings", "accounts", "users", "policies", "reason",
    ];
    match format {
        Format::Json => json(&rows),
        Format::Csv => csv(&headers, &cells),
        Format::Table if rows.is_empty() => "no [[exception]] in the accounts file\n".into(),
        Format::Table => table(
            &headers,
            &cells,
            &[true, false, false, false, true, false, false, false, false],
        ),
    }
}
