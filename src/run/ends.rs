//! How a run and each of its accounts ended: the result the command reports, what halted it,
//! and the tally gathered as accounts end.

use crate::apply::Tally;
use crate::aws::{AwsError, ErrorKind};
use crate::cancel::Cancel;
use crate::store::{RunStatus, StoreError};

/// How a run (or this part of it) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    pub run_id: i64,
    pub status: RunStatus,
    pub accounts_failed: usize,
    pub tally: Tally,
    /// Why the run stopped before its end, when it was not Ctrl-C.
    pub halted: Option<Halt>,
    /// `--max-detaches` held back at least one finding.
    pub capped: bool,
}

/// What stopped a run that was not stopped by Ctrl-C.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Halt {
    /// The base credentials stopped working (expired, revoked): every account would fail.
    Credentials(String),
    /// The database failed (full disk, I/O error, lock timeout).
    Database(String),
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Halt::Credentials(m) => write!(f, "the AWS credentials stopped working: {m}"),
            Halt::Database(m) => f.write_str(m),
        }
    }
}

impl RunResult {
    /// Whether anything failed or is left unsettled (exit code 1).
    pub fn has_failures(&self) -> bool {
        self.accounts_failed > 0 || self.tally.failed > 0 || self.tally.unsettled > 0
    }
}

pub(super) enum AccountEnd {
    Done(Tally),
    Failed(AwsError),
    Interrupted,
    /// Base credentials that no longer work: the whole run stops.
    Halted(AwsError),
}

impl AccountEnd {
    /// An account-level end from how its apply went: a role that may not make apply's calls
    /// fails the account; expired base credentials stop the run.
    pub(super) fn from_applied(tally: Tally, stop: Option<AwsError>) -> Self {
        match stop {
            Some(e) if e.kind == ErrorKind::Credentials => AccountEnd::Halted(e),
            Some(e) => AccountEnd::Failed(e),
            None => AccountEnd::Done(tally),
        }
    }
}

/// How the accounts of a run ended, gathered as each ends.
#[derive(Default)]
pub(super) struct Ends {
    pub(super) tally: Tally,
    pub(super) failed: usize,
    pub(super) interrupted: bool,
    pub(super) halted: Option<Halt>,
    pub(super) fatal: Option<StoreError>,
}

impl Ends {
    pub(super) fn add(&mut self, end: Result<AccountEnd, StoreError>, cancel: &Cancel) {
        match end {
            Ok(AccountEnd::Done(t)) => {
                if t.limit_reached {
                    self.failed += 1;
                }
                self.interrupted |= t.interrupted;
                self.tally.add(&t);
            }
            Ok(AccountEnd::Failed(_)) => self.failed += 1,
            Ok(AccountEnd::Interrupted) => self.interrupted = true,
            Ok(AccountEnd::Halted(e)) => {
                // Every account would fail the same way: stop starting new work.
                cancel.cancel();
                self.interrupted = true;
                self.halted
                    .get_or_insert_with(|| Halt::Credentials(e.to_string()));
            }
            Err(e) => {
                // Stop new work, and let the accounts in flight finish: what they write may
                // fail too, and is then settled by the next run.
                cancel.cancel();
                self.interrupted = true;
                self.halted
                    .get_or_insert_with(|| Halt::Database(e.to_string()));
                self.fatal.get_or_insert(e);
            }
        }
    }
}
