//! `accounts`: the resolved account list as a table, JSON or CSV. Resolving it (accounts.toml,
//! the organization) is not its job.

use super::{Format, csv, json, table_fit};
use crate::config::{Access, AccountTarget};

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
