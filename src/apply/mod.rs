//! Detaches one account's redundant direct attachments without a user losing a permission:
//! a live proof that a group the user is in still grants the policy (a group's members and
//! policies, read at most `proof_max_age` before the detach), the intent journaled (committed)
//! before `DetachUserPolicy` and the outcome after, and a post-check once IAM's settle window
//! has passed that re-attaches at once if the covering grant vanished. A detach whose answer was
//! lost is settled by reads, never sent again blindly. Never touches groups, memberships,
//! inline policies or roles. No printing, no SQL: events go to the reporter, rows to the store.

mod account;
mod cap;
mod detach;
mod proof;
mod queue;
mod recover;
mod settle;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Counted by the store, which owns the journal: taken from below.
pub use crate::store::Tally;
pub use account::AccountApply;
pub use cap::RunCap;
pub(crate) use settle::explain_attach_error;

use crate::aws::AwsError;
use crate::filters::Filters;

/// Apply's limits and filters from the command line.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ApplyOptions {
    /// Circuit breaker: an account stops before its detach number N + 1.
    pub max_detaches_per_account: Option<u64>,
    /// A cap per run: at most N detaches across its accounts; the rest stay open and the run
    /// ends normally.
    pub max_detaches: Option<u64>,
    /// Users verified and detached at once within one account.
    pub write_concurrency: usize,
    /// Added to each account's own filters.
    pub filters: Filters,
    /// How long IAM may take to show a change everywhere: a detach is post-checked once it
    /// has passed, a grant is relied on only once the scan saw it this long before, and a read
    /// right after a write is trusted only across it.
    pub settle: Duration,
    /// The oldest a proof of a covering grant may be when a detach relies on it.
    pub proof_max_age: Duration,
    /// Also detach policies that can never be attached again (`IsAttachable` false).
    pub allow_non_reattachable: bool,
    /// `apply --plan`: only these findings (ids, sorted), exactly as reviewed.
    pub only_findings: Option<Vec<i64>>,
    /// `apply --plan`: the SHA-256 of the plan file, recorded with the run.
    pub plan_digest: Option<String>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            max_detaches_per_account: None,
            max_detaches: None,
            write_concurrency: 4,
            filters: Filters::default(),
            settle: Duration::from_secs(15),
            proof_max_age: Duration::from_secs(1),
            allow_non_reattachable: false,
            only_findings: None,
            plan_digest: None,
        }
    }
}

/// How one account's apply, rollback or recovery ended.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub tally: Tally,
    /// The account stopped early because of this error: a role that may not make apply's calls
    /// (`AccessDenied`: the account fails with it), or base credentials that expired (the
    /// whole run stops).
    pub stop: Option<AwsError>,
}

/// Skip and outcome reasons, as stored in `actions.reason`.
pub mod reason {
    pub const EXCLUDED: &str = "excluded";
    /// A live `[[exception]]` of the accounts file covers it.
    pub const EXCEPTION: &str = "exception";
    pub const USER_GONE: &str = "user_gone";
    pub const USER_RECREATED: &str = "user_recreated";
    pub const NO_LONGER_COVERED: &str = "no_longer_covered";
    pub const NOT_REATTACHABLE: &str = "not_reattachable";
    pub const NOT_ATTACHED_AT_VERIFY: &str = "not_attached_at_verify";
    pub const NO_SUCH_ENTITY: &str = "no_such_entity";
    pub const VERIFY_FAILED: &str = "verify_failed";
    pub const CONFIRMED_BY_READ: &str = "confirmed_by_read";
    pub const AMBIGUOUS: &str = "ambiguous";
    pub const CONCURRENT_MODIFICATION: &str = "concurrent_modification";
    pub const GRANT_VANISHED: &str = "covering_grant_vanished";
    pub const POST_CHECK_UNREADABLE: &str = "post_check_unreadable";
    pub const REATTACH_FAILED: &str = "reattach_failed";
    pub const RECONCILED: &str = "reconciled";
    pub const NOT_EXECUTED: &str = "not_executed";
}

/// The account-stopping error for a role that may not make a call apply needs.
fn role_cannot(e: &AwsError, what: &str) -> AwsError {
    AwsError {
        message: format!(
            "{}; the role may not make {what}: deploy it with Mode=apply (scripts/iamsweep-role.yaml), check with `iamsweep doctor --apply`, then `iamsweep resume`",
            e.message
        ),
        ..e.clone()
    }
}
