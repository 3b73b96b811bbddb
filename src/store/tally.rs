//! What happened to an account's findings, counted from journal outcomes: written with each
//! run account by the store, added up by apply, rollback and the run (which take it from here,
//! below them).

use super::ActionStatus;

/// What happened to one account's findings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub detached: u64,
    pub already_detached: u64,
    pub skipped: u64,
    pub failed: u64,
    pub reverted: u64,
    /// Writes whose answer was lost and that no read could settle before the run ended
    /// (`unknown`): the next run that changes AWS settles them first.
    pub unsettled: u64,
    /// The circuit breaker stopped the account with findings left.
    pub limit_reached: bool,
    /// Ctrl-C (or a stop) ended the account with findings left.
    pub interrupted: bool,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.detached += o.detached;
        self.already_detached += o.already_detached;
        self.skipped += o.skipped;
        self.failed += o.failed;
        self.reverted += o.reverted;
        self.unsettled += o.unsettled;
        self.limit_reached |= o.limit_reached;
        self.interrupted |= o.interrupted;
    }

    /// Counts a rollback's outcome: attaches in `detached` (the changes made), already
    /// attached ones in `already_detached` (nothing to do).
    pub fn count_attach(&mut self, status: ActionStatus) {
        match status {
            ActionStatus::Attached => self.detached += 1,
            ActionStatus::AlreadyAttached => self.already_detached += 1,
            other => self.count(other),
        }
    }

    pub(crate) fn count(&mut self, status: ActionStatus) {
        match status {
            ActionStatus::Detached => self.detached += 1,
            ActionStatus::AlreadyDetached => self.already_detached += 1,
            ActionStatus::Skipped => self.skipped += 1,
            ActionStatus::Failed => self.failed += 1,
            ActionStatus::Reverted => self.reverted += 1,
            ActionStatus::Unknown => self.unsettled += 1,
            _ => {}
        }
    }
}
