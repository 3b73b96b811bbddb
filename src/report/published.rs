//! `publish`: per account, what was sent to AWS Security Hub.

use super::{Format, csv, json, table};
use crate::publish::AccountPublished;

pub fn published(run_id: i64, rows: &[AccountPublished], format: Format) -> String {
    let headers = [
        "account", "region", "new", "updated", "resolved", "failed", "requests", "error",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                match &r.account_name {
                    Some(n) => format!("{} ({n})", r.account_id),
                    None => r.account_id.clone(),
                },
                r.region.clone(),
                r.new.to_string(),
                r.updated.to_string(),
                r.resolved.to_string(),
                r.failed.to_string(),
                r.requests.to_string(),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    match format {
        Format::Json => json(&rows),
        Format::Csv => csv(&headers, &cells),
        Format::Table => {
            let sum = |f: fn(&AccountPublished) -> u64| rows.iter().map(f).sum::<u64>();
            format!(
                "published run {run_id} to AWS Security Hub: {} new, {} updated, {} resolved, {} failed, in {} accounts ({} with errors)\n{}",
                sum(|r| r.new),
                sum(|r| r.updated),
                sum(|r| r.resolved),
                sum(|r| r.failed),
                rows.len(),
                rows.iter().filter(|r| r.error.is_some()).count(),
                table(
                    &headers,
                    &cells,
                    &[false, false, true, true, true, true, true, false]
                )
            )
        }
    }
}
