//! `publish`: a run's findings to AWS Security Hub in each account, with a lifecycle. Open
//! findings are active and `FAILED`; a finding iamsweep detached, or one published before and no
//! longer found by a scan that read its account, is sent again with the same Id, `PASSED` and
//! `ARCHIVED`. Nothing is resolved in an account whose scan failed. What was sent is recorded,
//! so the next publish knows what is new, what to update and what to resolve.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;

use crate::aws::{AwsError, ErrorKind, Hub, HubConnector, HubFinding};
use crate::cancel::Cancel;
use crate::config::AccountTarget;
use crate::store::actor::StoreHandle;
use crate::store::{FindingView, Lifecycle, StoreError};

/// Findings per `BatchImportFindings` request: Security Hub's limit.
pub const BATCH: usize = 100;
/// Between two requests of one account: Security Hub allows 10 per second per account and
/// region.
const PACE: Duration = Duration::from_millis(110);
const TRIES: u32 = 5;
/// Accounts published at once.
const ACCOUNTS_AT_ONCE: usize = 8;

/// How one account's publish went.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AccountPublished {
    pub account_id: String,
    pub account_name: Option<String>,
    pub region: String,
    /// Sent for the first time.
    pub new: u64,
    /// Sent again (still open, or suppressed).
    pub updated: u64,
    /// Sent `PASSED` / `ARCHIVED`: detached, or no longer found.
    pub resolved: u64,
    /// Refused by Security Hub (`FailedFindings`) or never sent because of `error`.
    pub failed: u64,
    pub requests: u64,
    /// Why the account was not (fully) published: a refused call, a failed scan.
    pub error: Option<String>,
}

/// Publishes run `run_id` (a scan, or an apply: its scan's findings, each where it stands now).
/// Each account's findings are read when its turn comes: a few accounts' are held at once,
/// never the whole organization's. A signal stops it between two requests: what was sent is
/// recorded, the rest is counted as failed and sent by the next publish.
pub async fn publish<C: HubConnector>(
    connector: &C,
    store: &StoreHandle,
    run_id: i64,
    region: Option<&str>,
    cancel: &Cancel,
) -> Result<Vec<AccountPublished>, StoreError> {
    let (findings_run, targets, scanned) = store
        .call(move |s| {
            let findings_run = s.findings_run(run_id)?.ok_or_else(|| {
                StoreError::NotFound(format!(
                    "run {run_id} is a rollback; publish takes a scan or apply run"
                ))
            })?;
            let scanned: HashSet<String> = s
                .scanned_targets(findings_run)?
                .into_iter()
                .map(|t| t.id.to_string())
                .collect();
            Ok((findings_run, s.run_targets(findings_run)?, scanned))
        })
        .await?;
    let jobs = targets.into_iter().map(|t| {
        let scanned = scanned.contains(t.id.as_str());
        let region = region
            .map(str::to_owned)
            .unwrap_or_else(|| t.partition.iam_region().to_owned());
        async move {
            let untouched = |why: String| AccountPublished {
                account_id: t.id.to_string(),
                account_name: t.name.clone(),
                region: region.clone(),
                error: Some(why),
                ..AccountPublished::default()
            };
            if !scanned {
                return Ok(untouched(format!(
                    "its scan failed in run {findings_run}: nothing published, nothing resolved"
                )));
            }
            if cancel.is_cancelled() {
                return Ok(untouched(
                    "stopped by a signal before this account: nothing sent (publish the run again)"
                        .into(),
                ));
            }
            let findings = {
                let (account, partition, region) = (t.id.to_string(), t.partition, region.clone());
                store
                    .call(move |s| {
                        let now = crate::store::now();
                        let mut out = Vec::new();
                        // Where each finding stands now: one an earlier apply of the scan
                        // detached stays resolved.
                        s.findings_now_each(run_id, Some(&account), |f| {
                            out.push(hub_finding(f, partition, &region, run_id, &now));
                            Ok(())
                        })?;
                        Ok(out)
                    })
                    .await?
            };
            account(connector, store, run_id, &t, &region, findings, cancel).await
        }
    });
    let mut out: Vec<AccountPublished> = futures::stream::iter(jobs)
        .buffered(ACCOUNTS_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    out.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    Ok(out)
}

/// The ASFF finding for one of iamsweep's findings.
pub fn hub_finding(
    f: &FindingView<'_>,
    partition: crate::model::Partition,
    region: &str,
    run_id: i64,
    now: &str,
) -> HubFinding {
    let groups = f.groups();
    let (title, description, remediation) = crate::findings::describe(
        f.kind,
        f.user_name,
        f.user_arn,
        f.policy_name,
        f.policy_arn,
        &groups,
    );
    let (compliance, record_state, workflow) = match f.lifecycle() {
        Lifecycle::Open => ("FAILED", "ACTIVE", "NEW"),
        Lifecycle::Suppressed(_) => ("FAILED", "ACTIVE", "SUPPRESSED"),
        Lifecycle::Resolved(_) => ("PASSED", "ARCHIVED", "RESOLVED"),
    };
    let mut fields = vec![
        ("iamsweep_policy_arn".to_owned(), f.policy_arn.to_owned()),
        ("iamsweep_kind".to_owned(), f.kind.to_owned()),
        ("iamsweep_run".to_owned(), run_id.to_string()),
    ];
    if !groups.is_empty() {
        fields.push(("iamsweep_covering_groups".to_owned(), groups.join(",")));
    }
    if let Some(o) = f.owner {
        fields.push(("owner".to_owned(), o.to_owned()));
    }
    let account = f.account_id;
    HubFinding {
        id: crate::report::finding_uid(account, f.user_id, f.user_name, f.policy_arn),
        product_arn: format!(
            "arn:{}:securityhub:{region}:{account}:product/{account}/default",
            partition.as_str()
        ),
        generator_id: format!("iamsweep/{}", f.kind),
        account_id: account.to_owned(),
        region: region.to_owned(),
        partition: partition.as_str().to_owned(),
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        title,
        description,
        severity: if f.kind == "redundant_direct" { "LOW" } else { "MEDIUM" }.to_owned(),
        types: vec![
            "Software and Configuration Checks/Industry and Regulatory Standards/CIS AWS Foundations Benchmark"
                .to_owned(),
        ],
        user_arn: f.user_arn.to_owned(),
        user_name: f.user_name.to_owned(),
        user_id: f.user_id.map(str::to_owned),
        compliance: compliance.to_owned(),
        related_requirements: vec![
            "CIS AWS Foundations Benchmark v1.4.0/1.15".to_owned(),
            "AWS Foundational Security Best Practices v1.0.0/IAM.2".to_owned(),
        ],
        record_state: record_state.to_owned(),
        workflow: workflow.to_owned(),
        remediation: remediation.to_owned(),
        fields,
    }
}

/// What a finding sent by publish is, for the summary.
#[derive(Clone, Copy)]
enum Sent {
    New,
    Updated,
    Resolved,
}

async fn account<C: HubConnector>(
    connector: &C,
    store: &StoreHandle,
    run_id: i64,
    target: &AccountTarget,
    region: &str,
    mut findings: Vec<HubFinding>,
    cancel: &Cancel,
) -> Result<AccountPublished, StoreError> {
    let mut done = AccountPublished {
        account_id: target.id.to_string(),
        account_name: target.name.clone(),
        region: region.to_owned(),
        ..AccountPublished::default()
    };
    let id = target.id.to_string();
    let prior = store.call(move |s| s.published(&id)).await?;
    // Published and open before, not found now by a scan that read the account: resolved.
    let now = crate::store::now();
    let current: HashSet<String> = findings.iter().map(|f| f.id.clone()).collect();
    let mut gone: Vec<HubFinding> = prior
        .iter()
        .filter(|(uid, p)| p.state == "active" && !current.contains(*uid))
        .map(|(_, p)| HubFinding {
            compliance: "PASSED".into(),
            record_state: "ARCHIVED".into(),
            workflow: "RESOLVED".into(),
            updated_at: now.clone(),
            ..p.finding.clone()
        })
        .collect();
    gone.sort_by(|a, b| a.id.cmp(&b.id));
    let mut kinds = Vec::with_capacity(findings.len() + gone.len());
    for f in &mut findings {
        let before = prior.get(&f.id);
        // Security Hub keeps a finding's creation time: send the first one again.
        if let Some(p) = before {
            f.created_at = p.finding.created_at.clone();
        }
        kinds.push(
            match (f.record_state.as_str(), before.map(|p| p.state.as_str())) {
                ("ARCHIVED", Some("archived")) => Sent::Updated,
                ("ARCHIVED", _) => Sent::Resolved,
                (_, None) => Sent::New,
                _ => Sent::Updated,
            },
        );
    }
    kinds.extend(gone.iter().map(|_| Sent::Resolved));
    findings.extend(gone);
    if findings.is_empty() {
        return Ok(done);
    }
    let hub = match connector.hub(target, region).await {
        Ok(h) => h,
        Err(e) => {
            done.failed = findings.len() as u64;
            done.error = Some(e.to_string());
            return Ok(done);
        }
    };
    let mut last: Option<tokio::time::Instant> = None;
    // Findings of the batches sent so far, each counted in one category or as failed.
    let mut handled = 0;
    for (batch, kinds) in findings.chunks(BATCH).zip(kinds.chunks(BATCH)) {
        if cancel.is_cancelled() {
            let left = (findings.len() - handled) as u64;
            done.failed += left;
            done.error = Some(format!(
                "stopped by a signal: {left} findings not sent (publish the run again to send them)"
            ));
            break;
        }
        let result = send(&hub, batch, &mut last, &mut done.requests).await;
        handled += batch.len();
        match result {
            Ok(imported) => {
                let refused: HashSet<&str> = imported
                    .failed
                    .iter()
                    .map(|(id, _, _)| id.as_str())
                    .collect();
                if let Some((id, code, message)) = imported.failed.first() {
                    done.error.get_or_insert_with(|| {
                        format!(
                            "Security Hub refused {} findings, e.g. {id}: {code} {message}",
                            imported.failed.len()
                        )
                    });
                }
                // An answer naming a finding this request did not hold cannot say which of
                // ours were taken: the whole batch counts as failed, nothing of it is recorded
                // as sent, and the next publish sends it again (an import is idempotent).
                let ours: HashSet<&str> = batch.iter().map(|f| f.id.as_str()).collect();
                if let Some(stranger) = refused.difference(&ours).next() {
                    done.failed += batch.len() as u64;
                    let said = done.error.take().unwrap_or_default();
                    done.error = Some(format!(
                        "{said}; {stranger} is not a finding the request held, so all {} of it count as not sent",
                        batch.len()
                    ));
                    continue;
                }
                let mut took = Vec::with_capacity(batch.len());
                for (f, kind) in batch.iter().zip(kinds) {
                    if refused.contains(f.id.as_str()) {
                        done.failed += 1;
                        continue;
                    }
                    match kind {
                        Sent::New => done.new += 1,
                        Sent::Updated => done.updated += 1,
                        Sent::Resolved => done.resolved += 1,
                    }
                    took.push(f.clone());
                }
                store
                    .call(move |s| s.record_published(run_id, &took))
                    .await?;
            }
            Err(e) => {
                // This batch and every later one.
                done.failed += (findings.len() - handled + batch.len()) as u64;
                done.error = Some(e.to_string());
                break;
            }
        }
    }
    Ok(done)
}

/// One request, paced under Security Hub's rate, retried while throttled or lost (an import is
/// idempotent: the same Id updates the same finding).
async fn send<H: Hub>(
    hub: &H,
    batch: &[HubFinding],
    last: &mut Option<tokio::time::Instant>,
    requests: &mut u64,
) -> Result<crate::aws::HubImported, AwsError> {
    let mut tries = 0;
    loop {
        if let Some(at) = *last {
            tokio::time::sleep_until(at + PACE).await;
        }
        *last = Some(tokio::time::Instant::now());
        *requests += 1;
        tries += 1;
        match hub.import(batch).await {
            Err(e)
                if matches!(e.kind, ErrorKind::Throttled | ErrorKind::Transient)
                    && tries < TRIES =>
            {
                tokio::time::sleep(Duration::from_millis(200 << tries)).await;
            }
            other => return other,
        }
    }
}
