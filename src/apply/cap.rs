//! `--max-detaches N`: at most N detaches made in one run, across its accounts. Findings past
//! the cap stay open (no journal row) for a later run; the run itself ends normally.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug)]
pub struct RunCap {
    /// Detaches the run may still make; `None`: no cap.
    left: Option<AtomicU64>,
    /// A detach was held back by the cap at least once.
    held_back: AtomicBool,
}

impl RunCap {
    /// No cap.
    pub fn unlimited() -> Self {
        Self {
            left: None,
            held_back: AtomicBool::new(false),
        }
    }

    /// A cap of `max` detaches for a run that already made `made` (a resumed run).
    pub fn new(max: Option<u64>, made: u64) -> Self {
        Self {
            left: max.map(|m| AtomicU64::new(m.saturating_sub(made))),
            held_back: AtomicBool::new(false),
        }
    }

    /// Takes one detach; false when the cap is reached.
    pub(super) fn take(&self) -> bool {
        let took = self.left.as_ref().is_none_or(|left| {
            left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        });
        if !took {
            self.held_back.store(true, Ordering::SeqCst);
        }
        took
    }

    /// Whether the cap kept a finding from being tried in this run (so what is left is the
    /// cap's doing, not a failure's).
    pub fn held_back(&self) -> bool {
        self.held_back.load(Ordering::SeqCst)
    }

    /// A detach that did not happen does not count.
    pub(super) fn give_back(&self) {
        if let Some(left) = &self.left {
            left.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether no detach may be made any more.
    pub fn reached(&self) -> bool {
        self.left
            .as_ref()
            .is_some_and(|left| left.load(Ordering::SeqCst) == 0)
    }

    /// A finding is left untried because of the cap.
    pub(super) fn hold_back(&self) {
        self.held_back.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_counts_what_a_resumed_run_made_and_takes_back_what_did_not_happen() {
        let cap = RunCap::new(Some(3), 1);
        assert!(cap.take());
        assert!(cap.take());
        assert!(!cap.held_back());
        assert!(
            cap.reached() && !cap.held_back(),
            "asking holds nothing back"
        );
        assert!(!cap.take(), "1 made before + 2 now = 3");
        assert!(cap.held_back());
        cap.give_back();
        assert!(!cap.reached());
        assert!(cap.take());
        assert!(RunCap::new(Some(2), 5).reached());
        let none = RunCap::unlimited();
        assert!((0..1000).all(|_| none.take()));
        assert!(!none.reached());
    }
}
