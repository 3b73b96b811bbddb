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
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} accounts, {per_sec}, {elapsed} (about {eta} left)",
            )
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

/// "progress: 2500/10000 accounts, 208.3/s, about 36 s left".
pub fn progress_text(done: u64, total: u64, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
    let left = if rate > 0.0 {
        format!(
            ", about {} left",
            humantime::format_duration(Duration::from_secs(
                ((total - done.min(total)) as f64 / rate).ceil() as u64
            ))
        )
    } else {
        String::new()
    };
    format!("progress: {done}/{total} accounts, {rate:.1}/s{left}")
}

/// For a stderr that is not a terminal (CI logs): one line per failure or warning, and for
/// runs of 100 accounts or more a progress line at every tenth done.
#[derive(Default)]
pub struct Lines {
    progress: Mutex<Option<Tenths>>,
}

/// Where a long run is: accounts done of all, since when, and the last tenth said.
struct Tenths {
    total: u64,
    done: u64,
    started: std::time::Instant,
    said: u64,
}

impl Reporter for Lines {
    fn report(&self, event: &Event) {
        let line = match event {
            Event::RunStarted { accounts, .. } => {
                *self.progress.lock().expect("progress") = (*accounts >= 100).then(|| Tenths {
                    total: *accounts as u64,
                    done: 0,
                    started: std::time::Instant::now(),
                    said: 0,
                });
                return;
            }
            Event::AccountFinished {
                label,
                status,
                error,
                ..
            } => {
                let mut lines = Vec::new();
                if let Some(e) = error {
                    lines.push(failure_text(label, *status, e));
                }
                if let Some(p) = self.progress.lock().expect("progress").as_mut() {
                    p.done += 1;
                    let tenth = p.done * 10 / p.total;
                    if tenth > p.said && p.done < p.total {
                        p.said = tenth;
                        lines.push(progress_text(p.done, p.total, p.started.elapsed()));
                    }
                }
                if lines.is_empty() {
                    return;
                }
                lines.join("\n")
            }
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
    fn progress_says_done_rate_and_time_left() {
        assert_eq!(
            progress_text(2500, 10_000, Duration::from_secs(12)),
            "progress: 2500/10000 accounts, 208.3/s, about 36s left"
        );
        assert_eq!(
            progress_text(0, 10_000, Duration::ZERO),
            "progress: 0/10000 accounts, 0.0/s"
        );
    }

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
