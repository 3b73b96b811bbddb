//! `diff`: what changed between two runs, as a table for people (which runs were compared,
//! drift first, the accounts not compared) or as JSON and CSV for tools. Renders the [`Diff`] it
//! is given; it must not decide what changed or which accounts count.

use std::fmt::Write as _;

use super::{Format, csv, json, short_time, table_fit};
use crate::diff::Diff;
use crate::store::{ChangeKind, RunRow};

/// Which runs were compared, on two lines that fit 80 columns:
/// `from run 1 (apply, 11-21 22:16:06)` / `to   run 3 (scan, 11-23 22:16:06): 2 accounts compared`.
pub fn diff_heading(d: &Diff) -> String {
    let run = |r: &RunRow| format!("run {} ({}, {})", r.id, r.kind, short_time(&r.started_at));
    let accounts = match d.compared.len() {
        1 => "1 account".to_owned(),
        n => format!("{n} accounts"),
    };
    match &d.from {
        Some(from) => format!(
            "from {}\nto   {}: {accounts} compared\n",
            run(from),
            run(&d.to)
        ),
        None => format!(
            "to   {}: {accounts}, and no earlier run recorded\n     a scan of them: every finding is new\n",
            run(&d.to)
        ),
    }
}

/// The accounts left out of the comparison, one line each (empty when none was).
pub fn diff_not_compared(d: &Diff) -> String {
    let mut out = String::new();
    for n in &d.not_compared {
        let label = match &n.account_name {
            Some(name) => format!("{} {name}", n.account_id),
            None => n.account_id.clone(),
        };
        let _ = writeln!(out, "not compared: {label}: {}", n.why);
    }
    out
}

/// `diff --format table|json|csv`. The table carries the heading and the accounts not
/// compared; for JSON and CSV, which are data only, they are the caller's to show elsewhere.
pub fn diff(d: &Diff, format: Format) -> String {
    match format {
        Format::Json => json(&d.changes),
        Format::Csv => csv(
            &[
                "change",
                "account_id",
                "account_name",
                "user_name",
                "policy_arn",
                "policy_name",
                "kind",
                "covering_groups",
                "detached_in_run",
                "detach_request_id",
                "detached_at",
                "exception",
            ],
            &d.changes
                .iter()
                .map(|c| {
                    vec![
                        c.change.as_str().to_owned(),
                        c.account_id.clone(),
                        c.account_name.clone().unwrap_or_default(),
                        c.user_name.clone(),
                        c.policy_arn.clone(),
                        c.policy_name.clone(),
                        c.kind.clone(),
                        c.covering_groups.join(";"),
                        c.detached_in_run.map(|r| r.to_string()).unwrap_or_default(),
                        c.detach_request_id.clone().unwrap_or_default(),
                        c.detached_at.clone().unwrap_or_default(),
                        c.exception
                            .as_ref()
                            .map(|e| {
                                format!(
                                    "{} (owner {}, expires {}, line {})",
                                    e.reason, e.owner, e.expires, e.line
                                )
                            })
                            .unwrap_or_default(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        Format::Table => table(d),
    }
}

fn table(d: &Diff) -> String {
    let mut out = diff_heading(d);
    if d.changes.is_empty() {
        out.push_str("no changes\n");
    } else {
        let cells: Vec<Vec<String>> = d
            .changes
            .iter()
            .map(|c| {
                vec![
                    c.change.as_str().to_owned(),
                    c.account_id.clone(),
                    c.user_name.clone(),
                    c.policy_name.clone(),
                    super::short_kind(&c.kind).to_owned(),
                    c.detached_in_run
                        .map_or_else(|| "-".to_owned(), |r| format!("run {r}")),
                ]
            })
            .collect();
        out.push_str(&table_fit(
            &["CHANGE", "ACCOUNT", "USER", "POLICY", "KIND", "DETACHED"],
            &cells,
            &[],
            &[10, 12, 14, 16, 9, 8],
        ));
        let counts: Vec<String> = [
            ChangeKind::Reappeared,
            ChangeKind::New,
            ChangeKind::Resolved,
            ChangeKind::Unchanged,
        ]
        .into_iter()
        .filter_map(|k| match d.count(k) {
            0 => None,
            n => Some(format!("{n} {}", k.as_str())),
        })
        .collect();
        let _ = writeln!(out, "\n{}", counts.join(", "));
    }
    let drift: Vec<_> = d
        .changes
        .iter()
        .filter(|c| c.change == ChangeKind::Reappeared)
        .collect();
    if !drift.is_empty() {
        out.push_str(
            "\nreappeared: iamsweep detached these and they came back (Terraform, CloudFormation,\na script?); the clean-up will not hold until their source is fixed:\n",
        );
        for c in drift {
            let _ = writeln!(
                out,
                "  {} {} {}: detached in run {} at {}, request id {}",
                c.account_id,
                c.user_name,
                c.policy_arn,
                c.detached_in_run.unwrap_or_default(),
                c.detached_at.as_deref().unwrap_or("?"),
                c.detach_request_id.as_deref().unwrap_or("?"),
            );
        }
    }
    let not = diff_not_compared(d);
    if !not.is_empty() {
        out.push('\n');
        out.push_str(&not);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{NotCompared, Why};
    use crate::report::{ODD_POLICY, ODD_USER};
    use crate::store::Change;

    fn run(id: i64, kind: &str) -> RunRow {
        RunRow {
            id,
            kind: kind.into(),
            status: "completed".into(),
            source_run_id: None,
            started_at: format!("2026-11-2{id}T22:16:06.123Z"),
            finished_at: None,
            accounts: 2,
            accounts_failed: 0,
            redundant: 0,
            direct_only: 0,
            changed: 0,
            actions_failed: 0,
            api_calls: 0,
            plan_digest: None,
        }
    }

    fn change(user: &str, policy: &str, change: ChangeKind) -> Change {
        let drift = change == ChangeKind::Reappeared;
        Change {
            account_id: "111111111111".into(),
            account_name: Some("prod".into()),
            user_name: user.into(),
            user_arn: format!("arn:aws:iam::111111111111:user/{user}"),
            policy_arn: policy.into(),
            policy_name: crate::model::PolicyArn::new(policy).policy_name().into(),
            kind: "redundant_direct".into(),
            covering_groups: vec!["ops".into(), "a,b".into()],
            change,
            detached_in_run: drift.then_some(1),
            detach_request_id: drift.then(|| "4f1c-req".into()),
            detached_at: drift.then(|| "2026-11-21T22:17:00.000Z".into()),
            exception: None,
        }
    }

    fn sample() -> Diff {
        Diff {
            from: Some(run(1, "apply")),
            to: run(3, "scan"),
            compared: vec!["111111111111".into()],
            not_compared: vec![NotCompared {
                account_id: "222222222222".into(),
                account_name: Some("staging".into()),
                why: Why::NotScanned {
                    run: 3,
                    status: "failed".into(),
                    error_code: Some("AccessDenied".into()),
                },
            }],
            changes: vec![
                change(ODD_USER, ODD_POLICY, ChangeKind::Reappeared),
                change(
                    "carol",
                    "arn:aws:iam::aws:policy/ReadOnlyAccess",
                    ChangeKind::New,
                ),
                change(
                    "alice",
                    "arn:aws:iam::aws:policy/ReadOnlyAccess",
                    ChangeKind::Resolved,
                ),
            ],
        }
    }

    #[test]
    fn diff_table_says_what_was_compared_and_puts_drift_first() {
        let d = sample();
        insta::assert_snapshot!("diff_table", diff(&d, Format::Table));
        let t = diff(&d, Format::Table);
        let table: Vec<&str> = t.lines().take(6).collect();
        assert!(table.iter().all(|l| l.chars().count() <= 80), "{t}");
        insta::assert_snapshot!("diff_csv", diff(&d, Format::Csv));
    }

    #[test]
    fn diff_json_items_carry_the_contract_fields() {
        let v: serde_json::Value = serde_json::from_str(&diff(&sample(), Format::Json)).unwrap();
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 3);
        for item in items {
            for key in ["account_id", "user_name", "policy_arn", "kind", "change"] {
                assert!(item[key].is_string(), "{key} in {item}");
            }
        }
        assert_eq!(items[0]["change"], "reappeared");
        assert_eq!(items[0]["detached_in_run"], 1);
        assert_eq!(items[0]["detach_request_id"], "4f1c-req");
        assert_eq!(items[1]["change"], "new");
        assert!(items[1]["detached_in_run"].is_null());
    }

    #[test]
    fn with_nothing_to_compare_with_the_heading_says_so() {
        let d = Diff {
            from: None,
            not_compared: vec![],
            changes: vec![],
            ..sample()
        };
        insta::assert_snapshot!(diff(&d, Format::Table), @r"
        to   run 3 (scan, 11-23 22:16:06): 1 account, and no earlier run recorded
             a scan of them: every finding is new
        no changes
        ");
    }
}
