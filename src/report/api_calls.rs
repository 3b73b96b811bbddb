//! The AWS calls a run made, per account and operation, shown under `report`'s table. Renders
//! the counts it is given; counting them is `calls`' job.

use super::table;
use crate::store::ApiCallRow;

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
