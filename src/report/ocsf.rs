//! `report --format ocsf`: one OCSF Detection Finding (class 2004, OCSF 1.5.0) per finding, as
//! a JSON array streamed like the JSON report. What Amazon Security Lake, most SIEMs and
//! Prowler's own output read. Pure rendering of the rows it is given.

use std::collections::HashMap;
use std::io::Write;

use serde_json::json;

use crate::model::Partition;
use crate::store::FindingView;

/// The OCSF schema version the events follow (checked in CI with py-ocsf-models).
pub const OCSF_VERSION: &str = "1.5.0";

/// What the events of one run share: when, which product, and each account's partition and
/// name.
pub struct OcsfRun {
    pub run_id: i64,
    /// The run's start, milliseconds since the epoch (OCSF `time`).
    pub time_ms: u64,
    pub started_at: String,
    pub accounts: HashMap<String, (Partition, Option<String>)>,
}

pub struct OcsfStream<W: Write> {
    out: W,
    run: OcsfRun,
    rows: u64,
}

impl<W: Write> OcsfStream<W> {
    pub fn start(out: W, run: OcsfRun) -> Self {
        Self { out, run, rows: 0 }
    }

    pub fn row(&mut self, f: &FindingView<'_>) -> std::io::Result<()> {
        self.out
            .write_all(if self.rows == 0 { b"[\n" } else { b",\n" })?;
        serde_json::to_writer(&mut self.out, &event(&self.run, f))?;
        self.rows += 1;
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out
            .write_all(if self.rows == 0 { b"[]\n" } else { b"\n]\n" })?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// `finding_info.uid`: the same account, user (IAM's unique id, which a user re-created under
/// the same name does not keep) and policy give the same uid in every run.
pub fn finding_uid(
    account: &str,
    user_id: Option<&str>,
    user_name: &str,
    policy_arn: &str,
) -> String {
    format!(
        "iamsweep/{account}/{}/{policy_arn}",
        user_id.unwrap_or(user_name)
    )
}

/// OCSF status: 4 Resolved (iamsweep detached it, or found it already gone), 3 Suppressed
/// (excluded or a live exception: why in `status_detail`), 1 New (open).
fn status(f: &FindingView<'_>) -> (u8, &'static str, Option<String>) {
    let exception = f.exception_mark();
    match &f.action {
        Some(a) if a.status == "detached" || a.status == "already_detached" => (
            4,
            "Resolved",
            Some(format!("{} by iamsweep in run {}", a.status, a.run_id)),
        ),
        Some(a) if a.status == "skipped" && a.reason == Some("excluded") => (
            3,
            "Suppressed",
            Some("excluded by exclude_users, exclude_policies or only_policies".into()),
        ),
        _ if exception.is_some() => {
            let e = exception.expect("checked");
            (
                3,
                "Suppressed",
                Some(format!(
                    "[[exception]] until {} (owner {}): {}",
                    e.expires, e.owner, e.reason
                )),
            )
        }
        Some(a) if a.status == "skipped" && a.reason == Some("exception") => (
            3,
            "Suppressed",
            Some("a live [[exception]] covers it".into()),
        ),
        _ => (1, "New", None),
    }
}

fn event(run: &OcsfRun, f: &FindingView<'_>) -> serde_json::Value {
    let (partition, account_name) = run
        .accounts
        .get(f.account_id)
        .cloned()
        .unwrap_or((Partition::Aws, None));
    let region = partition.iam_region();
    let groups = f.groups();
    let redundant = f.kind == "redundant_direct";
    let (title, desc, severity_id, severity) = if redundant {
        (
            format!(
                "IAM user {} holds {} both directly and through group {}",
                f.user_name,
                f.policy_name,
                groups.join(", ")
            ),
            format!(
                "The managed policy {} is attached directly to IAM user {} and also granted by the user's group(s) {}. The direct attachment is redundant: iamsweep can detach it (DetachUserPolicy) while a group still grants the policy, so the user keeps every permission.",
                f.policy_arn,
                f.user_arn,
                groups.join(", ")
            ),
            2,
            "Low",
        )
    } else {
        (
            format!(
                "IAM user {} holds {} directly, through no group",
                f.user_name, f.policy_name
            ),
            format!(
                "The managed policy {} is attached directly to IAM user {} and granted by none of the user's groups. Grant it through a group, then detach it from the user; iamsweep never removes it on its own.",
                f.policy_arn, f.user_arn
            ),
            3,
            "Medium",
        )
    };
    let (status_id, status_name, detail) = status(f);
    let mut e = json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "time": run.time_ms,
        "time_dt": run.started_at,
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status_name,
        "metadata": {
            "version": OCSF_VERSION,
            "event_code": f.kind,
            "product": {
                "name": "iamsweep",
                "vendor_name": "iamsweep",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "profiles": ["cloud"],
        },
        "finding_info": {
            "uid": finding_uid(f.account_id, f.user_id, f.user_name, f.policy_arn),
            "title": title,
            "desc": desc,
            "types": [if redundant { "Redundant direct IAM policy attachment" } else { "Direct IAM policy attachment" }],
            "created_time": run.time_ms,
        },
        "cloud": {
            "provider": "AWS",
            "region": region,
            "account": {
                "uid": f.account_id,
                "name": account_name.as_deref().unwrap_or(f.account_id),
                "type_id": 10,
                "type": "AWS Account",
            },
        },
        "resources": [
            {
                "uid": f.user_arn,
                "name": f.user_name,
                "type": "AWS::IAM::User",
                "cloud_partition": partition.as_str(),
                "region": region,
                "labels": f.owner.map(|o| vec![format!("owner:{o}")]),
                "data": {
                    "owner": f.owner,
                    "policy_arn": f.policy_arn,
                    "policy_name": f.policy_name,
                    "covering_groups": groups,
                    "user_id": f.user_id,
                },
            },
            {
                "uid": f.policy_arn,
                "name": f.policy_name,
                "type": "AWS::IAM::ManagedPolicy",
                "cloud_partition": partition.as_str(),
                "region": region,
            },
        ],
        "remediation": {
            "desc": if redundant {
                "Detach the direct attachment while the group still grants the policy: `iamsweep apply` (verified live, journaled, reversible with `iamsweep rollback`). Never remove it in the console, which also removes the user from the group."
            } else {
                "Grant the policy through a group the user belongs to, then detach it from the user."
            },
            "references": [
                "https://docs.aws.amazon.com/securityhub/latest/userguide/iam-controls.html#iam-2",
                "https://docs.aws.amazon.com/IAM/latest/UserGuide/best-practices.html",
            ],
        },
        "unmapped": {
            "compliance": {
                "CIS-AWS-Foundations-Benchmark": ["1.15"],
                "AWS-Foundational-Security-Best-Practices": ["IAM.2"],
            },
            "iamsweep": {
                "run_id": run.run_id,
                "finding_id": f.finding_id,
                "owner": f.owner,
                "action": f.action.as_ref().map(|a| json!({
                    "run_id": a.run_id,
                    "status": a.status,
                    "reason": a.reason,
                    "request_id": a.request_id,
                    "finished_at": a.finished_at,
                })),
            },
        },
    });
    if let Some(d) = detail {
        e["status_detail"] = json!(d);
    }
    e
}
