//! `report`: a run's findings, as a table for people or streamed as JSON or CSV for tools.
//! The stream holds no rows in memory, so it must not collect what it is given.

use std::io::Write;

use super::csv::write_csv_field;
use super::{Format, csv, table_fit};
use crate::store::{FindingRow, FindingView};

/// `report --format table`: a run's findings with their actions.
pub fn findings(rows: &[FindingRow]) -> String {
    const HEADERS: [&str; 6] = ["ACCOUNT", "USER", "POLICY", "KIND", "GROUPS", "ACTION"];
    if rows.is_empty() {
        return "no direct policy attachments found\n".into();
    }
    // Skips show their reason (it says more than "skipped"); the rest their status. A finding
    // nothing was done with yet says whether it is drift.
    let action = |r: &FindingRow| match &r.action {
        None if r.reappeared.is_some() => "reappeared".to_owned(),
        // Excepted, nothing done yet (reason, owner and expiry: json, csv, html).
        None if r.exception.is_some() => "exception".to_owned(),
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
                super::short_kind(&r.kind).to_owned(),
                if r.covering_groups.is_empty() {
                    "-".to_owned()
                } else {
                    r.covering_groups.join(",")
                },
                action(r),
            ]
        })
        .collect();
    let mut out = table_fit(&HEADERS, &cells, &[], &[12, 13, 14, 9, 8, 14]);
    let drift = rows.iter().filter(|r| r.reappeared.is_some()).count();
    if drift > 0 {
        out.push_str(&format!(
            "\n{drift} reappeared: iamsweep detached {} before and {} came back; the clean-up\nwill not hold until {} source is fixed (`iamsweep diff`, the `drift` view)\n",
            if drift == 1 { "it" } else { "them" },
            if drift == 1 { "it" } else { "they" },
            if drift == 1 { "its" } else { "their" },
        ));
    }
    out
}

const FINDING_CSV_HEADERS: [&str; 16] = [
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
    "detached_in_run",
    "detach_request_id",
    "exception",
    "owner",
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
                out.write_all(b",")?;
                if let Some(d) = &f.reappeared {
                    write!(out, "{}", d.detached_in_run)?;
                }
                out.write_all(b",")?;
                write_csv_field(
                    out,
                    f.reappeared
                        .as_ref()
                        .and_then(|d| d.detach_request_id)
                        .unwrap_or_default(),
                )?;
                out.write_all(b",")?;
                if let Some(e) = f.exception_mark() {
                    write_csv_field(
                        out,
                        &format!(
                            "{} (owner {}, expires {}, line {})",
                            e.reason, e.owner, e.expires, e.line
                        ),
                    )?;
                }
                out.write_all(b",")?;
                write_csv_field(out, f.owner.unwrap_or_default())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PolicyArn;
    use crate::report::{ODD_POLICY, ODD_USER};
    use crate::store::ActionSummary;

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
            exception: None,
            owner: None,
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
            reappeared: None,
        };
        let drift = FindingRow {
            reappeared: Some(crate::store::Reappeared {
                detached_in_run: 2,
                detach_request_id: Some("req-0".into()),
                detached_at: Some("2026-11-27T22:16:06.123Z".into()),
            }),
            ..row(
                "dave",
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                "redundant_direct",
                &["ops"],
                None,
            )
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
            drift,
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
                exception: None,
                user_id: None,
                owner: r.owner.as_deref(),
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
                reappeared: r.reappeared.as_ref().map(|d| crate::store::ReappearedView {
                    detached_in_run: d.detached_in_run,
                    detach_request_id: d.detach_request_id.as_deref(),
                    detached_at: d.detached_at.as_deref(),
                }),
            };
            s.row(&view).unwrap();
        }
        String::from_utf8(s.finish().unwrap()).unwrap()
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
            exception: None,
            owner: None,
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
            reappeared: None,
        };
        let t = findings(&[row]);
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
    }
}
