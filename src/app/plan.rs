//! `plan [ID]`: what `apply --run ID` would detach now, as a file a change board reviews (rows
//! deleted = not approved); and `apply --plan FILE` reading it back, checked against the
//! database before anything changes.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AppError, exit, no_database, no_runs};
use crate::cli::Cli;
use crate::config::{self, AccountTarget};
use crate::report;
use crate::store::{FindingRow, Store};

/// Written in every plan: a file without it is not a plan.
const FORMAT: &str = "iamsweep-plan/1";

/// The plan file (JSON). `run_started_at` binds it to its database: the same run id in
/// another database started at another time.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PlanFile {
    pub format: String,
    pub run_id: i64,
    pub run_started_at: String,
    pub created_at: String,
    pub items: Vec<PlanItem>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PlanItem {
    pub finding_id: i64,
    pub account_id: String,
    pub user_name: String,
    pub policy_arn: String,
}

const CSV_HEADERS: [&str; 7] = [
    "format",
    "run_id",
    "run_started_at",
    "finding_id",
    "account_id",
    "user_name",
    "policy_arn",
];

/// A plan as `apply --plan` takes it: checked against the database.
pub(super) struct Reviewed {
    pub run_id: i64,
    pub finding_ids: Vec<i64>,
    pub accounts: BTreeSet<String>,
    /// SHA-256 of the file's bytes, hex.
    pub digest: String,
}

pub(super) fn plan(
    cli: &Cli,
    id: Option<i64>,
    format: report::Format,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let store = Store::open_read_only(&cli.db)?.ok_or_else(|| no_database(&cli.db))?;
    let asked = match id {
        Some(id) => id,
        None => store.latest_run(None)?.ok_or_else(|| no_runs(&cli.db))?,
    };
    // An apply of an earlier scan plans that scan: its findings are the ones `apply --plan`
    // checks items against.
    let id = store.findings_run(asked)?.ok_or_else(|| {
        AppError::Usage(format!(
            "run {asked} is a rollback; plan takes a scan (or apply) run"
        ))
    })?;
    if id != asked {
        eprintln!("run {asked} applied the findings of run {id}: this is a plan of run {id}");
    }
    let run = store.run(id)?;
    let file = config::load(&cli.accounts)?;
    let targets = as_configured(store.scanned_targets(id)?, &file);
    let now = crate::store::now();
    // Where each finding stands now: what any apply of the scan detached is not planned again.
    let rows = store.findings_now(id)?;
    let items: Vec<PlanItem> = rows
        .iter()
        .filter(|r| would_detach(r, &targets, &now))
        .map(|r| PlanItem {
            finding_id: r.finding_id,
            account_id: r.account_id.clone(),
            user_name: r.user_name.clone(),
            policy_arn: r.policy_arn.clone(),
        })
        .collect();
    let plan = PlanFile {
        format: FORMAT.into(),
        run_id: id,
        run_started_at: run.started_at.clone(),
        created_at: now,
        items,
    };
    let text = match format {
        report::Format::Csv => {
            let cells: Vec<Vec<String>> = plan
                .items
                .iter()
                .map(|i| {
                    vec![
                        FORMAT.to_owned(),
                        plan.run_id.to_string(),
                        plan.run_started_at.clone(),
                        i.finding_id.to_string(),
                        i.account_id.clone(),
                        i.user_name.clone(),
                        i.policy_arn.clone(),
                    ]
                })
                .collect();
            report::csv(&CSV_HEADERS, &cells)
        }
        _ => serde_json::to_string_pretty(&plan).expect("plan serializes") + "\n",
    };
    let _ = out.write_all(text.as_bytes());
    eprintln!(
        "plan of run {id}: {} detaches; each is still proven live when `apply --plan` sends it (and policies that cannot be attached again are refused then)",
        plan.items.len()
    );
    Ok(exit::OK)
}

/// The accounts a scan read, as the accounts file describes them now (its role and filters),
/// or as the scan ran them if the file no longer lists them.
pub(super) fn as_configured(
    scanned: Vec<AccountTarget>,
    file: &config::AccountsFile,
) -> Vec<AccountTarget> {
    scanned
        .into_iter()
        .map(|t| {
            file.accounts
                .iter()
                .find(|a| a.id == t.id)
                .cloned()
                .unwrap_or(t)
        })
        .collect()
}

/// Whether `apply --run` would send a detach for this finding now: redundant, in an account
/// the run scanned, not excluded, no live exception, not detached by an earlier apply.
pub(super) fn would_detach(r: &FindingRow, targets: &[AccountTarget], now: &str) -> bool {
    let Some(t) = targets.iter().find(|t| t.id.as_str() == r.account_id) else {
        return false;
    };
    r.kind == "redundant_direct"
        && !t.filters.user_excluded(&r.user_name)
        && t.filters.policy_selected(&r.policy_arn)
        && t.filters
            .exception(&r.account_id, &r.user_name, &r.policy_arn, now)
            .is_none()
        && !r
            .action
            .as_ref()
            .is_some_and(|a| a.status == "detached" || a.status == "already_detached")
}

/// Reads `path` (JSON, or CSV with the plan's header) and checks every item against the
/// database: a finding of the plan's run, with the same account, user and policy. Any
/// mismatch is exit 2 naming the item; nothing was changed.
pub(super) fn read(path: &Path, store: &Store) -> Result<Reviewed, AppError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| AppError::Usage(format!("cannot read plan {name}: {e}")))?;
    let digest = format!("{:x}", Sha256::digest(&bytes));
    let text = String::from_utf8(bytes)
        .map_err(|_| AppError::Usage(format!("plan {name} is not UTF-8 text")))?;
    let bad = |what: String| AppError::Usage(format!("plan {name}: {what}; nothing was changed"));
    let (run_id, started_at, items) = if text.trim_start().starts_with('{') {
        let plan: PlanFile = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a plan written by `iamsweep plan` ({e})")))?;
        if plan.format != FORMAT {
            return Err(bad(format!(
                "format `{}`, expected `{FORMAT}`",
                plan.format
            )));
        }
        let items = plan
            .items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (format!("item {}", i + 1), item))
            .collect();
        (plan.run_id, plan.run_started_at, items)
    } else {
        read_csv(&text).map_err(bad)?
    };
    let run = store.run(run_id).map_err(|_| {
        bad(format!(
            "run {run_id} is not in {}: the plan was made from another database",
            store.path().display()
        ))
    })?;
    if run.started_at != started_at {
        return Err(bad(format!(
            "its run {run_id} started at {started_at}, but run {run_id} of {} started at {}: the plan was made from another database",
            store.path().display(),
            run.started_at
        )));
    }
    let mut ids = Vec::with_capacity(items.len());
    let mut accounts = BTreeSet::new();
    for (at, item) in items {
        let found =
            store.finding_in_run(run_id, &item.account_id, &item.user_name, &item.policy_arn)?;
        let expected = (item.finding_id, "redundant_direct".to_owned());
        if found.as_ref() != Some(&expected) {
            return Err(bad(format!(
                "{at} (finding {}, account {}, user {}, policy {}) is not a redundant finding of run {run_id}",
                item.finding_id, item.account_id, item.user_name, item.policy_arn
            )));
        }
        ids.push(item.finding_id);
        accounts.insert(item.account_id);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(Reviewed {
        run_id,
        finding_ids: ids,
        accounts,
        digest,
    })
}

type CsvPlan = (i64, String, Vec<(String, PlanItem)>);

/// The CSV form: the header line, then one item a row; every row carries the run it is of.
fn read_csv(text: &str) -> Result<CsvPlan, String> {
    let rows = parse_csv(text)?;
    let Some((header, rows)) = rows.split_first() else {
        return Err("empty file".into());
    };
    if header.1.iter().map(String::as_str).ne(CSV_HEADERS) {
        return Err(format!(
            "line 1: expected the header `{}`",
            CSV_HEADERS.join(",")
        ));
    }
    let mut run: Option<(i64, String)> = None;
    let mut items = Vec::new();
    for (line, row) in rows {
        let at = format!("line {line}");
        let [
            format,
            run_id,
            started_at,
            finding_id,
            account,
            user,
            policy,
        ] = row.as_slice()
        else {
            return Err(format!("{at}: expected {} fields", CSV_HEADERS.len()));
        };
        if format != FORMAT {
            return Err(format!("{at}: format `{format}`, expected `{FORMAT}`"));
        }
        let run_id: i64 = run_id
            .parse()
            .map_err(|_| format!("{at}: run_id `{run_id}` is not a number"))?;
        match &run {
            None => run = Some((run_id, started_at.clone())),
            Some((r, s)) if *r == run_id && s == started_at => {}
            Some((r, _)) => {
                return Err(format!(
                    "{at}: run {run_id}, but earlier rows are of run {r}"
                ));
            }
        }
        items.push((
            at.clone(),
            PlanItem {
                finding_id: finding_id
                    .parse()
                    .map_err(|_| format!("{at}: finding_id `{finding_id}` is not a number"))?,
                account_id: account.clone(),
                user_name: user.clone(),
                policy_arn: policy.clone(),
            },
        ));
    }
    let (run_id, started_at) = run.ok_or("no items (every row was deleted): nothing to apply")?;
    Ok((run_id, started_at, items))
}

/// RFC 4180 records with their 1-based line numbers: quoted fields may hold commas, quotes
/// (doubled) and line breaks. Blank lines are skipped.
fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let (mut line, mut start) = (1, 1);
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                if !(row.len() == 1 && row[0].is_empty()) {
                    rows.push((start, std::mem::take(&mut row)));
                }
                row.clear();
                line += 1;
                start = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {start}: a quoted field is not closed"));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push((start, row));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_keep_commas_quotes_and_line_numbers() {
        let rows = parse_csv("a,b\n\n\"x,1\",\"say \"\"hi\"\"\"\r\nlast,\n").unwrap();
        assert_eq!(
            rows,
            vec![
                (1, vec!["a".to_string(), "b".to_string()]),
                (3, vec!["x,1".to_string(), "say \"hi\"".to_string()]),
                (4, vec!["last".to_string(), String::new()]),
            ]
        );
        assert!(parse_csv("a,\"b\n").is_err());
    }

    #[test]
    fn a_csv_plan_is_read_back_as_written() {
        let items = [PlanItem {
            finding_id: 7,
            account_id: "111111111111".into(),
            user_name: "svc+deploy=ci,ops.bot@corp-x_y".into(),
            policy_arn: "arn:aws:iam::aws:policy/ReadOnlyAccess".into(),
        }];
        let cells: Vec<Vec<String>> = items
            .iter()
            .map(|i| {
                vec![
                    FORMAT.into(),
                    "3".into(),
                    "2026-12-01T00:00:00.000Z".into(),
                    i.finding_id.to_string(),
                    i.account_id.clone(),
                    i.user_name.clone(),
                    i.policy_arn.clone(),
                ]
            })
            .collect();
        let text = report::csv(&CSV_HEADERS, &cells);
        let (run, started, read) = read_csv(&text).unwrap();
        assert_eq!((run, started.as_str()), (3, "2026-12-01T00:00:00.000Z"));
        assert_eq!(read, vec![("line 2".to_string(), items[0].clone())]);
        let header_only = report::csv(&CSV_HEADERS, &[]);
        assert!(
            read_csv(&header_only)
                .unwrap_err()
                .contains("nothing to apply")
        );
    }
}
