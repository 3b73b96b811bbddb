//! `history`: every action, oldest first, as a table, JSON or CSV. Renders the rows it is given.

use super::{Format, csv, json, short_time, table_fit};
use crate::model::PolicyArn;
use crate::store::HistoryRow;

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
mod tests {
    use super::*;
    use crate::report::{ODD_POLICY, ODD_USER};

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
}
