//! What the core tells the outside world while it works. The core emits [`Event`]s; a
//! [`Reporter`] (progress bars, plain lines, nothing) decides what to show. Core code never prints.

use crate::model::AccountId;
use crate::store::{AccountStatus, RunKind, RunStatus};

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    RunStarted {
        run_id: i64,
        kind: RunKind,
        accounts: usize,
    },
    AccountStarted {
        account: AccountId,
        label: String,
    },
    Phase {
        account: AccountId,
        phase: Phase,
    },
    AccountFinished {
        account: AccountId,
        label: String,
        status: AccountStatus,
        /// `CODE: message` when the account failed or stopped.
        error: Option<String>,
    },
    /// A change that did not go as planned and that the user must hear about at once.
    Warning {
        account: AccountId,
        message: String,
    },
    /// Before changing anything, journal rows an earlier run left open were settled from live
    /// reads (or could not be, with `error`).
    Settled {
        run_id: i64,
        account: AccountId,
        actions: u64,
        error: Option<String>,
    },
    RunFinished {
        run_id: i64,
        status: RunStatus,
    },
}

/// What a running account is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Connecting,
    /// Reading users and groups: pages done, entities so far.
    Reading {
        pages: u32,
        entities: u64,
    },
    Recording {
        findings: u64,
    },
    /// Verifying and detaching: users done of total.
    Applying {
        done: u64,
        total: u64,
    },
}

pub trait Reporter: Send + Sync {
    fn report(&self, event: &Event);
}

/// Shows nothing (tests, `--quiet`).
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _: &Event) {}
}

/// Collects events (tests).
#[derive(Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<Event>>);

impl Reporter for Recorder {
    fn report(&self, event: &Event) {
        self.0.lock().expect("recorder lock").push(event.clone());
    }
}
