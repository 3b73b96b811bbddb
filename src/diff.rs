//! `diff` and `scan --fail-on`: which two runs to compare, which accounts can be compared, and
//! what changed. Only accounts whose scan was recorded in both runs are compared: an account
//! that failed is "not compared", never "everything resolved". Decides only: the SQL is the
//! store's, the text is `report`'s, and nothing here prints.

use std::collections::HashSet;

use crate::store::{Change, ChangeKind, RunRow, ScanCoverage, Store, StoreError};

/// What `diff` found.
#[derive(Clone, Debug, PartialEq)]
pub struct Diff {
    /// The earlier run; `None` when no earlier run recorded a scan (every finding is new).
    pub from: Option<RunRow>,
    pub to: RunRow,
    /// Accounts compared, in `to`'s order.
    pub compared: Vec<String>,
    pub not_compared: Vec<NotCompared>,
    /// Reappeared, new, resolved (then unchanged, on request); each by account, user, policy.
    pub changes: Vec<Change>,
}

impl Diff {
    pub fn count(&self, change: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.change == change).count()
    }

    /// Some account could not be compared because its scan did not complete in a run.
    pub fn has_failures(&self) -> bool {
        self.not_compared.iter().any(NotCompared::failed)
    }
}

/// An account left out of a comparison, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotCompared {
    pub account_id: String,
    pub account_name: Option<String>,
    pub why: Why,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// The run did not list the account (the accounts file or the organization changed).
    NotIn { run: i64 },
    /// The run listed it, but its scan was not recorded (failed, stopped, interrupted).
    NotScanned {
        run: i64,
        status: String,
        error_code: Option<String>,
    },
}

impl NotCompared {
    pub fn failed(&self) -> bool {
        matches!(self.why, Why::NotScanned { .. })
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NotIn { run } => write!(f, "not in run {run}"),
            Why::NotScanned {
                run,
                status,
                error_code: Some(code),
            } => write!(f, "its scan {status} in run {run}: {code}"),
            Why::NotScanned { run, status, .. } => {
                write!(f, "its scan did not complete in run {run} ({status})")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
}

/// Compares the findings of run `from` with those of run `to`. Defaults: `to` is the latest
/// run that recorded a scan; `from` the latest run before it that listed the same accounts
/// (else the latest before it that shares one), or nothing if there is none.
pub fn diff(
    store: &Store,
    from: Option<i64>,
    to: Option<i64>,
    unchanged: bool,
) -> Result<Diff, DiffError> {
    let to_named = to.is_some();
    let to = match to {
        Some(id) => scan_run(store, id)?,
        None => match store.scan_runs(None)?.first() {
            Some(&id) => id,
            None => {
                return Err(DiffError::Usage(
                    "no run has recorded a scan yet: start with `iamsweep scan`".into(),
                ));
            }
        },
    };
    let to_accounts = store.scan_coverage(to)?;
    let from = match from {
        Some(id) => {
            let id = scan_run(store, id)?;
            if id == to {
                return Err(DiffError::Usage(if to_named {
                    format!("FROM and TO are the same run ({id}): pass an earlier run first")
                } else {
                    format!(
                        "run {id} is the latest run that recorded a scan: there is nothing after it to compare it with"
                    )
                }));
            }
            if id > to {
                return Err(DiffError::Usage(format!(
                    "run {id} is later than run {to}: pass the earlier run first (diff FROM TO)"
                )));
            }
            Some(id)
        }
        None => {
            let earlier = store.scan_runs(Some(to))?;
            pick_from(&to_accounts, &earlier, |id| store.scan_coverage(id))?
        }
    };
    let from_accounts = match from {
        Some(id) => Some((id, store.scan_coverage(id)?)),
        None => None,
    };
    let (compared, not_compared) = coverage(
        from_accounts.as_ref().map(|(id, a)| (*id, a.as_slice())),
        (to, &to_accounts),
    );
    let mut changes = Vec::new();
    for account in &compared {
        changes.extend(store.changes(from, to, account, unchanged)?);
    }
    // Drift first across all accounts, then new, resolved, unchanged; each in account order.
    changes.sort_by_key(|c| c.change);
    Ok(Diff {
        from: from.map(|id| store.run(id)).transpose()?,
        to: store.run(to)?,
        compared,
        not_compared,
        changes,
    })
}

/// Run `id`, if it recorded a scan; else a usage error that says which run to pass.
fn scan_run(store: &Store, id: i64) -> Result<i64, DiffError> {
    let run = store.run(id)?;
    if store.scan_coverage(id)?.iter().any(|a| a.scanned) {
        return Ok(id);
    }
    Err(DiffError::Usage(
        match (run.kind.as_str(), run.source_run_id) {
            ("apply", Some(src)) => format!(
                "run {id} recorded no findings: it applied the findings of run {src}; pass {src}"
            ),
            ("rollback", _) => format!("run {id} is a rollback: it recorded no findings"),
            _ => format!("run {id} recorded the scan of no account (see `iamsweep runs`)"),
        },
    ))
}

/// The run to compare `to` with: the latest of `earlier` (newest first) that listed exactly
/// the same accounts, else the latest that shares one with it.
fn pick_from(
    to: &[ScanCoverage],
    earlier: &[i64],
    mut coverage_of: impl FnMut(i64) -> Result<Vec<ScanCoverage>, StoreError>,
) -> Result<Option<i64>, StoreError> {
    let ids = |a: &[ScanCoverage]| -> HashSet<String> {
        a.iter().map(|c| c.account_id.clone()).collect()
    };
    let wanted = ids(to);
    let mut sharing = None;
    for &id in earlier {
        let theirs = ids(&coverage_of(id)?);
        if theirs == wanted {
            return Ok(Some(id));
        }
        if sharing.is_none() && !theirs.is_disjoint(&wanted) {
            sharing = Some(id);
        }
    }
    Ok(sharing)
}

/// Which accounts can be compared: those whose scan was recorded in both runs (or, with no
/// earlier run, in `to`). The rest say why not, `to`'s accounts first.
fn coverage(
    from: Option<(i64, &[ScanCoverage])>,
    (to, to_accounts): (i64, &[ScanCoverage]),
) -> (Vec<String>, Vec<NotCompared>) {
    let mut compared = Vec::new();
    let mut not = Vec::new();
    let skip = |a: &ScanCoverage, why: Why| NotCompared {
        account_id: a.account_id.clone(),
        account_name: a.account_name.clone(),
        why,
    };
    let not_scanned = |run: i64, a: &ScanCoverage| Why::NotScanned {
        run,
        status: a.status.clone(),
        error_code: a.error_code.clone(),
    };
    for a in to_accounts {
        let before =
            from.map(|(id, list)| (id, list.iter().find(|b| b.account_id == a.account_id)));
        match before {
            _ if !a.scanned => not.push(skip(a, not_scanned(to, a))),
            None => compared.push(a.account_id.clone()),
            Some((run, None)) => not.push(skip(a, Why::NotIn { run })),
            Some((run, Some(b))) if !b.scanned => not.push(skip(a, not_scanned(run, b))),
            Some(_) => compared.push(a.account_id.clone()),
        }
    }
    if let Some((_, list)) = from {
        for b in list {
            if !to_accounts.iter().any(|a| a.account_id == b.account_id) {
                not.push(skip(b, Why::NotIn { run: to }));
            }
        }
    }
    (compared, not)
}

/// What `scan --fail-on` looks at in a scan run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    /// Redundant findings the run recorded.
    pub redundant: u64,
    /// Of those, new since the previous scan of their account (every one, for an account
    /// never scanned before).
    pub new: u64,
    /// Of those, detached by iamsweep before and back since the previous scan.
    pub reappeared: u64,
    /// Redundant findings a live `[[exception]]` covered: in none of the counts above.
    pub excepted: u64,
}

/// Counts run `run_id`'s redundant findings, and those new or reappeared compared with the
/// previous recorded scan of each account (not of the whole run: an account that failed last
/// time is compared with the scan before).
pub fn gate(store: &Store, run_id: i64) -> Result<Gate, StoreError> {
    // Findings a live exception covered when the scan saw them are accepted risk: not
    // counted, new or not.
    let excepted: std::collections::HashSet<(String, String, String)> =
        store.excepted_findings(run_id)?.into_iter().collect();
    let mut gate = Gate {
        redundant: store
            .run(run_id)?
            .redundant
            .saturating_sub(excepted.len() as u64),
        excepted: excepted.len() as u64,
        ..Gate::default()
    };
    for a in store.scan_coverage(run_id)? {
        if !a.scanned {
            continue;
        }
        let previous = store.previous_scan(&a.account_id, run_id)?;
        for c in store.changes(previous, run_id, &a.account_id, false)? {
            let key = (c.account_id, c.user_name, c.policy_arn);
            if excepted.contains(&key) {
                continue;
            }
            match (c.kind.as_str(), c.change) {
                ("redundant_direct", ChangeKind::New) => gate.new += 1,
                ("redundant_direct", ChangeKind::Reappeared) => gate.reappeared += 1,
                _ => {}
            }
        }
    }
    Ok(gate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(id: &str, scanned: bool) -> ScanCoverage {
        ScanCoverage {
            account_id: id.into(),
            account_name: None,
            scanned,
            status: if scanned { "completed" } else { "failed" }.into(),
            error_code: (!scanned).then(|| "AccessDenied".into()),
        }
    }

    #[test]
    fn an_account_that_failed_in_either_run_is_not_compared() {
        let from = [acct("1", true), acct("2", false), acct("3", true)];
        let to = [
            acct("1", true),
            acct("2", true),
            acct("3", false),
            acct("4", true),
        ];
        let (compared, not) = coverage(Some((5, &from)), (6, &to));
        assert_eq!(compared, ["1"]);
        let why: Vec<String> = not
            .iter()
            .map(|n| format!("{}: {}", n.account_id, n.why))
            .collect();
        assert_eq!(
            why,
            [
                "2: its scan failed in run 5: AccessDenied",
                "3: its scan failed in run 6: AccessDenied",
                "4: not in run 5",
            ]
        );
        assert!(not.iter().filter(|n| n.failed()).count() == 2);
        let (_, gone) = coverage(Some((5, &from)), (6, &to[..1]));
        assert_eq!(
            gone.len(),
            2,
            "accounts only in the earlier run are named too"
        );
        assert_eq!(gone[1].why, Why::NotIn { run: 6 });
    }

    #[test]
    fn with_no_earlier_run_every_scanned_account_is_compared_with_nothing() {
        let to = [acct("1", true), acct("2", false)];
        let (compared, not) = coverage(None, (1, &to));
        assert_eq!(compared, ["1"]);
        assert_eq!(not.len(), 1);
    }

    #[test]
    fn the_earlier_run_is_the_latest_with_the_same_accounts_else_one_that_shares_any() {
        let to = [acct("1", true), acct("2", true)];
        let runs = |id: i64| -> Result<Vec<ScanCoverage>, StoreError> {
            Ok(match id {
                9 => vec![acct("1", true)],
                8 => vec![acct("2", false), acct("1", true)],
                7 => vec![acct("1", true), acct("2", true)],
                _ => vec![acct("3", true)],
            })
        };
        // Run 8 failed in one account but listed the same ones: it is the one (the failed
        // account is then reported as not compared, never silently skipped).
        assert_eq!(pick_from(&to, &[9, 8, 7], runs).unwrap(), Some(8));
        assert_eq!(pick_from(&to, &[9, 6], runs).unwrap(), Some(9));
        assert_eq!(pick_from(&to, &[6], runs).unwrap(), None);
    }
}
