//! The AWS calls a run made, per account and operation, shown under `report`'s table, and those
//! of the Organizations walk before it. Renders the counts it is given; counting them is
//! `calls`' job.

use super::table;
use crate::calls::CallCounts;
use crate::store::ApiCallRow;

/// The Organizations walk's calls in one line (said on stderr: they belong to no account of
/// the run): `organization: 20 AWS calls (ListAccountsForParent 10, ...); 6 throttled, 0 failed`.
pub fn organization_calls(counts: &CallCounts) -> String {
    let per_op: Vec<String> = counts
        .iter()
        .map(|(op, c)| format!("{op} {}", c.calls))
        .collect();
    let throttled: u64 = counts.iter().map(|(_, c)| c.throttled).sum();
    let errors: u64 = counts.iter().map(|(_, c)| c.errors).sum();
    format!(
        "organization: {} AWS calls ({}); {throttled} throttled, {errors} failed",
        counts.total(),
        per_op.join(", ")
    )
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
