//! The values the store reads and writes: status vocabularies (spelled as in the database) and
//! the rows that `runs`, `report` and the summaries show.

use serde::Serialize;

use crate::aws::AwsError;
use crate::model::{AccountId, PolicyArn, UserName};

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
        pub enum $name { $($variant),* }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(RunKind { Scan = "scan", Apply = "apply", Rollback = "rollback" });
vocabulary!(RunStatus {
    Running = "running",
    Completed = "completed",
    CompletedWithErrors = "completed_with_errors",
    Failed = "failed",
    Interrupted = "interrupted",
});
vocabulary!(AccountStatus {
    Pending = "pending",
    Scanned = "scanned",
    Completed = "completed",
    Failed = "failed",
    Stopped = "stopped",
});
vocabulary!(ActionStatus {
    Pending = "pending",
    Unknown = "unknown",
    Detached = "detached",
    AlreadyDetached = "already_detached",
    Skipped = "skipped",
    Failed = "failed",
    Reverting = "reverting",
    Reverted = "reverted",
    Attached = "attached",
    AlreadyAttached = "already_attached",
    Interrupted = "interrupted",
});
vocabulary!(Operation { Detach = "detach", Attach = "attach" });

/// What a journal row says will be done, written before the AWS call.
#[derive(Clone, Debug)]
pub struct Intent {
    pub run_id: i64,
    pub finding_id: Option<i64>,
    pub account: AccountId,
    pub user: UserName,
    pub policy: PolicyArn,
    pub operation: Operation,
    pub covering_group: Option<String>,
    /// For a rollback's attach: the detach action it undoes.
    pub undoes: Option<i64>,
    /// For a detach: no attempt of it is sent after this (see `actions.send_by`).
    pub send_by: Option<std::time::SystemTime>,
}

/// How a journaled action ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: ActionStatus,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub error: Option<AwsError>,
    pub revert_request_id: Option<String>,
    /// For a detach: how old the live proof of the covering grant was when it was sent.
    pub proof_age_ms: Option<u64>,
}

impl Outcome {
    pub fn new(status: ActionStatus) -> Self {
        Self {
            status,
            reason: None,
            request_id: None,
            error: None,
            revert_request_id: None,
            proof_age_ms: None,
        }
    }

    pub fn because(status: ActionStatus, reason: &str) -> Self {
        Self {
            reason: Some(reason.to_owned()),
            ..Self::new(status)
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub source_run_id: Option<i64>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub accounts: u64,
    pub accounts_failed: u64,
    pub redundant: u64,
    pub direct_only: u64,
    /// Detaches (or, for a rollback, attaches) made.
    pub changed: u64,
    pub actions_failed: u64,
    pub api_calls: u64,
    /// `apply --plan`: the SHA-256 of the plan it applied.
    pub plan_digest: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AccountRow {
    pub account_id: String,
    pub account_name: Option<String>,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub users_seen: Option<u64>,
    pub groups_seen: Option<u64>,
    pub users_excluded: Option<u64>,
    pub redundant: Option<u64>,
    pub direct_only: Option<u64>,
    pub api_calls: u64,
    pub role_arn: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub changed: u64,
    pub skipped: u64,
    pub failed: u64,
    pub reverted: u64,
    /// NULL for accounts.toml, else the account's OU path in the organization.
    pub origin: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ApiCallRow {
    pub account_id: String,
    pub operation: String,
    pub calls: u64,
    pub throttled: u64,
    pub errors: u64,
}

/// One finding as `report` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FindingRow {
    pub finding_id: i64,
    pub account_id: String,
    pub account_name: Option<String>,
    /// Where the account came from (its OU path), when discovered in the organization.
    pub account_origin: Option<String>,
    pub user_name: String,
    pub user_arn: String,
    pub policy_arn: String,
    pub policy_name: String,
    pub kind: String,
    pub covering_groups: Vec<String>,
    /// The live `[[exception]]` that covered it when the scan saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<crate::exceptions::ExceptionMark>,
    /// The value of the user's `owner_tag` tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub action: Option<ActionSummary>,
    /// iamsweep detached it before this scan and it came back: drift (the `drift` view).
    pub reappeared: Option<Reappeared>,
}

/// The earlier detach of a finding that came back: it did not hold.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Reappeared {
    pub detached_in_run: i64,
    pub detach_request_id: Option<String>,
    pub detached_at: Option<String>,
}

/// Where a finding stands, with why for the last two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Open,
    Suppressed(String),
    Resolved(String),
}

/// A finding as `report` streams it, borrowed from the database row; serializes exactly like
/// [`FindingRow`].
#[derive(Debug, Serialize)]
pub struct FindingView<'a> {
    pub finding_id: i64,
    pub account_id: &'a str,
    pub account_name: Option<&'a str>,
    pub account_origin: Option<&'a str>,
    pub user_name: &'a str,
    pub user_arn: &'a str,
    pub policy_arn: &'a str,
    pub policy_name: &'a str,
    pub kind: &'a str,
    /// The stored JSON array, passed through as it is.
    pub covering_groups: &'a serde_json::value::RawValue,
    /// The stored JSON object, passed through as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<&'a serde_json::value::RawValue>,
    /// IAM's unique id of the user (OCSF's stable uid); not in the JSON report.
    #[serde(skip)]
    pub user_id: Option<&'a str>,
    /// The value of the user's `owner_tag` tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<&'a str>,
    pub action: Option<ActionView<'a>>,
    pub reappeared: Option<ReappearedView<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ReappearedView<'a> {
    pub detached_in_run: i64,
    pub detach_request_id: Option<&'a str>,
    pub detached_at: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct ActionView<'a> {
    pub id: i64,
    pub run_id: i64,
    pub status: &'a str,
    pub reason: Option<&'a str>,
    pub covering_group: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub error_message: Option<&'a str>,
    pub finished_at: Option<&'a str>,
}

impl FindingView<'_> {
    /// The covering groups as names.
    pub fn groups(&self) -> Vec<String> {
        serde_json::from_str(self.covering_groups.get()).unwrap_or_default()
    }

    /// Where the finding stands for a security team's tools (OCSF, Security Hub): resolved when
    /// iamsweep detached it (or found it gone), suppressed when excluded or excepted, else open.
    pub fn lifecycle(&self) -> Lifecycle {
        match &self.action {
            Some(a) if a.status == "detached" || a.status == "already_detached" => {
                Lifecycle::Resolved(format!("{} by iamsweep in run {}", a.status, a.run_id))
            }
            Some(a) if a.status == "skipped" && a.reason == Some("excluded") => {
                Lifecycle::Suppressed(
                    "excluded by exclude_users, exclude_policies or only_policies".into(),
                )
            }
            _ => match self.exception_mark() {
                Some(e) => Lifecycle::Suppressed(format!(
                    "[[exception]] until {} (owner {}): {}",
                    e.expires, e.owner, e.reason
                )),
                None => match &self.action {
                    Some(a) if a.status == "skipped" && a.reason == Some("exception") => {
                        Lifecycle::Suppressed("a live [[exception]] covers it".into())
                    }
                    _ => Lifecycle::Open,
                },
            },
        }
    }

    /// The exception that covered it, if any.
    pub fn exception_mark(&self) -> Option<crate::exceptions::ExceptionMark> {
        self.exception
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    }

    pub fn to_row(&self) -> FindingRow {
        let own = |s: Option<&str>| s.map(str::to_owned);
        FindingRow {
            finding_id: self.finding_id,
            account_id: self.account_id.to_owned(),
            account_name: own(self.account_name),
            account_origin: own(self.account_origin),
            user_name: self.user_name.to_owned(),
            user_arn: self.user_arn.to_owned(),
            policy_arn: self.policy_arn.to_owned(),
            policy_name: self.policy_name.to_owned(),
            kind: self.kind.to_owned(),
            covering_groups: self.groups(),
            exception: self.exception_mark(),
            owner: own(self.owner),
            action: self.action.as_ref().map(|a| ActionSummary {
                id: a.id,
                run_id: a.run_id,
                status: a.status.to_owned(),
                reason: own(a.reason),
                covering_group: own(a.covering_group),
                request_id: own(a.request_id),
                error_code: own(a.error_code),
                error_message: own(a.error_message),
                finished_at: own(a.finished_at),
            }),
            reappeared: self.reappeared.as_ref().map(|d| Reappeared {
                detached_in_run: d.detached_in_run,
                detach_request_id: own(d.detach_request_id),
                detached_at: own(d.detached_at),
            }),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ActionSummary {
    pub id: i64,
    pub run_id: i64,
    pub status: String,
    pub reason: Option<String>,
    pub covering_group: Option<String>,
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub finished_at: Option<String>,
}

/// An account of a run being resumed: what it was doing and whether work is left.
#[derive(Clone, Debug)]
pub struct ResumeAccount {
    pub target: crate::config::AccountTarget,
    pub status: String,
    /// Its scan is recorded in the run.
    pub scanned: bool,
    /// Journal rows of the run that still need attention, or findings not yet acted on.
    pub open_actions: bool,
}

/// A journal row left unsettled: an intent without outcome (`pending`), a write whose answer
/// was lost (`unknown`), a detach whose post-check never ran, a re-attach begun (`reverting`)
/// or failed.
#[derive(Clone, Debug)]
pub struct OpenAction {
    pub action_id: i64,
    pub finding_id: i64,
    pub status: ActionStatus,
    pub finding: crate::findings::Finding,
    pub covering_group: Option<String>,
    pub request_id: Option<String>,
    pub intent_at: String,
    pub finished_at: Option<String>,
    /// Why the row is as it is (a `reverting` row: why it is being re-attached).
    pub reason: Option<String>,
    /// No attempt of a pending detach was sent after this (rows from before schema version 5:
    /// `None`, bounded by `intent_at`).
    pub send_by: Option<String>,
}

/// An account of an earlier run whose journal still has open rows.
#[derive(Clone, Debug)]
pub struct Unsettled {
    pub run_id: i64,
    pub kind: RunKind,
    pub target: crate::config::AccountTarget,
    pub open: u64,
}

/// One successful detach that a rollback would undo.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RollbackItem {
    pub account_id: String,
    pub account_name: Option<String>,
    pub user_name: String,
    pub policy_arn: String,
    pub policy_name: String,
    /// The detach action (in `actions`) this item undoes.
    pub action_id: i64,
    pub run_id: i64,
    pub finding_id: Option<i64>,
    pub detached_at: Option<String>,
    pub request_id: Option<String>,
    /// The role the run used in the account (`None`: the base credentials).
    pub role_arn: Option<String>,
    /// The user's unique id when the scan saw it: a rollback never attaches to another
    /// principal of the same name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// What became of the detach: done, or its post-check found the grant gone and the
    /// re-attach is under way or failed (the user lacks the policy now).
    pub state: DetachState,
}

/// A detach iamsweep made, as a rollback item says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetachState {
    /// Detached; a group still granted the policy at its post-check (or it is not checked yet).
    Detached,
    /// The post-check found the covering grant gone; its re-attach was begun and its outcome
    /// is not known yet (the next run that changes AWS settles it).
    Reverting,
    /// The post-check found the covering grant gone and re-attaching failed: the user lacks the
    /// policy now.
    ReattachFailed,
}

impl DetachState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detached => "detached",
            Self::Reverting => "reverting",
            Self::ReattachFailed => "reattach_failed",
        }
    }
}

/// One action as `history` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HistoryRow {
    pub action_id: i64,
    pub run_id: i64,
    pub run_kind: String,
    pub time: String,
    pub account_id: String,
    pub account_name: Option<String>,
    pub user_name: String,
    pub policy_arn: String,
    pub operation: String,
    pub status: String,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub role_arn: Option<String>,
    pub session_name: Option<String>,
    pub rolled_back_by: Option<i64>,
    pub undoes: Option<i64>,
}

/// `history`'s filters; all optional.
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    pub account: Option<String>,
    pub user: Option<String>,
    pub policy: Option<String>,
    /// RFC 3339 time or date; actions from then on.
    pub since: Option<String>,
}

/// An attach intent of a rollback run left without outcome.
#[derive(Clone, Debug)]
pub struct OpenAttach {
    pub action_id: i64,
    pub user: crate::model::UserName,
    pub policy: crate::model::PolicyArn,
    /// The unique id of the user the detach was made on, when the scan saw it.
    pub user_id: Option<String>,
}
