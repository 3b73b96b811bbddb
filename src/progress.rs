//! The terminal reporters: indicatif bars when stderr is a terminal, plain lines (failures and
//! warnings only) when it is not. The only file that names indicatif.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Phase, Reporter};
use crate::model::AccountId;
use crate::store::AccountStatus;

/// What a running account's line says. Pure, so it is tested without a terminal.
pub fn phase_text(label: &str, phase: &Phase) -> String {
    match phase {
        Phase::Connecting => format!("{label}: assuming role"),
        Phase::Reading { pages: 0, .. } => format!("{label}: reading users and groups"),
        Phase::Reading { pages, entities } => {
            format!("{label}: reading users and groups (page {pages}, {entities} entities)")
        }
        Phase::Recording { findings } => format!("{label}: recording {findings} findings"),
        Phase::Applying { done, total } => {
            format!("{label}: verifying and detaching, {done}/{total} users")
        }
    }
}

/// The line for an account that ended badly.
pub fn failure_text(label: &str, status: AccountStatus, error: &str) -> String {
    format!("{label}: {status}: {error}")
}

/// Progress bars on stderr: the accounts done of all, and one line per running account.
pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    running: Mutex<HashMap<AccountId, (String, ProgressBar)>>,
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} accounts {elapsed}")
                .expect("template")
                .progress_chars("=> "),
        );
        Self {
            multi,
            total,
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl Reporter for Bars {
    fn report(&self, event: &Event) {
        let mut running = self.running.lock().expect("bars lock");
        match event {
            Event::RunStarted {
                run_id,
                kind,
                accounts,
            } => {
                self.total.set_length(*accounts as u64);
                self.total.set_prefix(format!("run {run_id} ({kind})"));
            }
            Event::AccountStarted { account, label } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("  {spinner} {msg}").expect("template"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(phase_text(label, &Phase::Connecting));
                running.insert(account.clone(), (label.clone(), bar));
            }
            Event::Phase { account, phase } => {
                if let Some((label, bar)) = running.get(account) {
                    bar.set_message(phase_text(label, phase));
                }
            }
            Event::AccountFinished {
                account,
                label,
                status,
                error,
            } => {
                if let Some((_, bar)) = running.remove(account) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.total.inc(1);
                if let Some(e) = error {
                    let _ = self.multi.println(failure_text(label, *status, e));
                }
            }
            Event::Warning { account, message } => {
                let _ = self.multi.println(format!("warning: {account}: {message}"));
            }
            Event::Settled { .. } => {
                let _ = self.multi.println(settled_text(event));
            }
            Event::RunFinished { .. } => self.total.finish_and_clear(),
        }
    }
}

/// "settled 2 actions left by run 2 in 111111111111", or why they could not be.
pub fn settled_text(event: &Event) -> String {
    let Event::Settled {
        run_id,
        account,
        actions,
        error,
    } = event
    else {
        return String::new();
    };
    let what = if *actions == 1 { "action" } else { "actions" };
    match error {
        None => format!("note: settled {actions} {what} left by run {run_id} in {account}"),
        Some(e) => format!(
            "warning: {account}: cannot settle {actions} {what} left by run {run_id} yet ({e}); the next run tries again"
        ),
    }
}

/// For a stderr that is not a terminal: one line per failure or warning, nothing else.
pub struct Lines;

impl Reporter for Lines {
    fn report(&self, event: &Event) {
        let line = match event {
            Event::AccountFinished {
                label,
                status,
                error: Some(e),
                ..
            } => failure_text(label, *status, e),
            Event::Warning { account, message } => format!("warning: {account}: {message}"),
            Event::Settled { .. } => settled_text(event),
            _ => return,
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_lines() {
        let label = "111111111111 (prod)";
        let lines: Vec<String> = [
            Phase::Connecting,
            Phase::Reading {
                pages: 0,
                entities: 0,
            },
            Phase::Reading {
                pages: 2,
                entities: 1500,
            },
            Phase::Recording { findings: 42 },
            Phase::Applying { done: 3, total: 10 },
        ]
        .iter()
        .map(|p| phase_text(label, p))
        .collect();
        insta::assert_snapshot!(lines.join("\n"), @r"
        111111111111 (prod): assuming role
        111111111111 (prod): reading users and groups
        111111111111 (prod): reading users and groups (page 2, 1500 entities)
        111111111111 (prod): recording 42 findings
        111111111111 (prod): verifying and detaching, 3/10 users
        ");
    }
}
