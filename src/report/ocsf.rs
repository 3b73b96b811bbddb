//! `report --format ocsf`: one OCSF Detection Finding (class 2004, OCSF 1.5.0) per finding, as
//! a JSON array streamed like the JSON report. What Amazon Security Lake, most SIEMs and
//! Prowler's own output read. Pure rendering of the rows it is given.

use std::collections::HashMap;
use std::io::Write;

use serde_json::json;

use crate::model::Partition;
use crate::store::{FindingView, Lifecycle};

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

fn event(run: &OcsfRun, f: &FindingView<'_>) -> serde_json::Value {
    let (partition, account_name) = run
        .accounts
        .get(f.account_id)
        .cloned()
        .unwrap_or((Partition::Aws, None));
    let region = partition.iam_region();
    let groups = f.groups();
    let redundant = f.kind == "redundant_direct";
    let (title, desc, remediation) = crate::findings::describe(
        f.kind,
        f.user_name,
        f.user_arn,
        f.policy_name,
        f.policy_arn,
        &groups,
    );
    let (severity_id, severity) = if redundant { (2, "Low") } else { (3, "Medium") };
    let (status_id, status_name, detail) = match f.lifecycle() {
        Lifecycle::Resolved(why) => (4, "Resolved", Some(why)),
        Lifecycle::Suppressed(why) => (3, "Suppressed", Some(why)),
        Lifecycle::Open => (1, "New", None),
    };
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
            "desc": remediation,
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
