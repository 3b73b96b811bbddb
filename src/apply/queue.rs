//! What waits for IAM's settle window in one account: journaled actions with the time each is
//! due (a post-check, the settling of a lost answer, a re-attach), and the signal that no more
//! will come. The apply's workers push into it; the settle loop takes every item due at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::calls::read_backoff;
use crate::findings::Finding;
use crate::store::ActionStatus;

/// How often a queue waiting for its next item looks whether the run is stopping.
const STOP_POLL: Duration = Duration::from_millis(250);

/// What to do with a journaled action once it is due.
#[derive(Clone, Debug)]
pub(super) enum DueKind {
    /// Confirm a group still grants the detached policy. `status` is the row's status now
    /// (`detached`, or `failed` after a re-attach that failed); `reads`: the tries so far.
    PostCheck { status: ActionStatus, reads: u32 },
    /// A detach whose outcome is unknown: read whether the attachment is gone. `reason`
    /// is recorded when it is (`confirmed_by_read`, or `reconciled` after a crash); `tries`:
    /// the attempts made at this finding so far; `reads`: the settling reads tried so far.
    Ambiguous {
        reason: &'static str,
        tries: u32,
        reads: u32,
    },
    /// Attach the policy back (a re-attach begun, or failed on the network), because `why`
    /// (`covering_grant_vanished`, or `post_check_unreadable`).
    Reattach { tries: u32, why: &'static str },
}

/// One action waiting for its time.
#[derive(Clone, Debug)]
pub(super) struct Due {
    pub at: Instant,
    pub action_id: i64,
    pub finding_id: i64,
    pub finding: Finding,
    pub group: Option<String>,
    pub request_id: Option<String>,
    pub kind: DueKind,
}

/// Due items of one account, and the signal that no more will come.
#[derive(Default)]
pub(super) struct Queue {
    items: Mutex<Vec<Due>>,
    wake: Notify,
    closed: AtomicBool,
    /// Items due within this of the first one wait for each other: one pass, one read per
    /// group, for detaches made close together.
    grace: Duration,
}

impl Queue {
    pub(super) fn new(settle: Duration) -> Self {
        Self {
            grace: (settle / 4).min(Duration::from_secs(2)),
            ..Self::default()
        }
    }

    pub(super) fn push(&self, item: Due) {
        self.items.lock().expect("due queue").push(item);
        self.wake.notify_one();
    }

    /// `item` again as `kind`, after the backoff for its `tries`-th failure.
    pub(super) fn retry(&self, item: Due, tries: u32, kind: DueKind) {
        self.push(Due {
            at: Instant::now() + read_backoff(tries),
            kind,
            ..item
        });
    }

    /// No more items will be pushed (from outside the loop).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The items due next (the first one and those due within the grace after it), once
    /// every one of them is due; `None` once closed and empty. Once `stopping`, reads waiting
    /// to be tried again are due at once (their last try), so a stop waits for no backoff.
    pub(super) async fn next_batch(&self, stopping: impl Fn() -> bool) -> Option<Vec<Due>> {
        loop {
            if stopping() {
                self.hurry_retried_reads();
            }
            match self.take_due() {
                Next::Batch(due, last) => {
                    tokio::time::sleep_until(last).await;
                    return Some(due);
                }
                Next::At(at) => {
                    // Woken now and then to see whether the run is stopping.
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.min(Instant::now() + STOP_POLL)) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                Next::Nothing if self.closed.load(Ordering::SeqCst) => return None,
                Next::Nothing => self.wake.notified().await,
            }
        }
    }

    /// Makes every read waiting to be tried again due now.
    pub(super) fn hurry_retried_reads(&self) {
        let now = Instant::now();
        for item in self.items.lock().expect("due queue").iter_mut() {
            if let DueKind::Ambiguous { reads: 1.., .. } | DueKind::PostCheck { reads: 1.., .. } =
                item.kind
            {
                item.at = item.at.min(now);
            }
        }
    }

    /// The batch due now, or when the next item is.
    fn take_due(&self) -> Next {
        let mut items = self.items.lock().expect("due queue");
        let now = Instant::now();
        match items.iter().map(|d| d.at).min() {
            Some(first) if first <= now => {
                let (due, later): (Vec<Due>, Vec<Due>) = items
                    .drain(..)
                    .partition(|d| d.at <= (first + self.grace).max(now));
                *items = later;
                let last = due.iter().map(|d| d.at).max().unwrap_or(now);
                Next::Batch(due, last)
            }
            Some(first) => Next::At(first),
            None => Next::Nothing,
        }
    }
}

/// What the queue holds next.
pub(super) enum Next {
    /// These items, once the last of them is due.
    Batch(Vec<Due>, Instant),
    /// Nothing yet; the first item is due then.
    At(Instant),
    Nothing,
}
