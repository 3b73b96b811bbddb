//! The command line (a contract: tests outside this repo drive it). clap types only; `app.rs`
//! turns them into work.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::report::{Format, ReportFormat, RollbackFormat};

#[derive(Debug, Parser)]
#[command(
    name = "iamsweep",
    version,
    about = "Detach IAM managed policies that users hold both directly and through a group, across many AWS accounts, without a user losing a permission for a second",
    after_help = "Exit codes: 0 all done; 1 done, but some accounts or actions failed (or AWS Organizations could not be listed); 2 bad usage, configuration or database (nothing was changed); 3 `scan --fail-on any|new` found what it was asked to fail on; 130 interrupted by Ctrl-C, expired credentials or a failed database (continue with `iamsweep resume`).\n\nDocs (in the source repository): README.md; docs/safety.md (the rules every change follows), docs/configuration.md (accounts.toml, credentials, endpoints), docs/operations.md (apply, resume, rollback, scheduled sweeps), docs/schema.md (the audit database)."
)]
pub struct Cli {
    /// The SQLite audit database (created with mode 0600).
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "iamsweep.db"
    )]
    pub db: PathBuf,

    /// The accounts file.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "accounts.toml"
    )]
    pub accounts: PathBuf,

    /// Send every AWS request iamsweep makes (STS, IAM, Organizations) here: an emulator or a
    /// proxy. It beats AWS_ENDPOINT_URL*; the credential chain's own STS calls (source_profile,
    /// web identity) do not follow it. For one service's endpoint (a VPC endpoint) use
    /// AWS_ENDPOINT_URL_<SERVICE> or the AWS config file's [services]. http:// only on loopback.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// The AWS profile for the base credentials (default: the standard chain).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// Accounts worked on at once. Default: adapted to what the endpoint sustains (up to 256):
    /// more while calls stay fast, fewer when they slow down or are throttled. Fix it to cap
    /// the load on a shared emulator or proxy, or to compare runs.
    #[arg(long, global = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: Option<u16>,

    /// At most this many AWS calls per second per account, spaced evenly (0: no pacing).
    #[arg(long, global = true, value_name = "N", default_value_t = 20.0)]
    pub max_rate: f64,

    /// The longest one AWS call may take (connect, first byte, whole answer): a silent
    /// connection is given up after this. A read is then retried; a write's outcome is settled
    /// by reads.
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s",
          value_parser = parse_duration)]
    pub call_timeout: Duration,

    /// How long IAM may take to show a change everywhere (it is eventually consistent): a
    /// detach is post-checked once this has passed, a grant the scan saw is relied on only once
    /// it is this old, and a read right after a write is trusted only across this window.
    /// See docs/safety.md.
    #[arg(long, global = true, value_name = "DURATION", default_value = "15s",
          value_parser = parse_duration)]
    pub settle: Duration,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read every account and record findings; changes nothing.
    Scan {
        /// Exit with code 3 when the scan recorded redundant findings (`any`), or redundant
        /// findings that are new or reappeared since the previous scan of their account
        /// (`new`). A failed account still makes it 1.
        #[arg(long, value_enum, value_name = "WHAT")]
        fail_on: Option<FailOn>,
        /// Then send the run's findings to AWS Security Hub (as `iamsweep publish`).
        #[arg(long)]
        publish: bool,
    },
    /// Detach redundant direct attachments, each verified live first.
    Apply(ApplyArgs),
    /// What `apply --run ID` would detach now, as a file to review (delete the rows not
    /// approved) and give to `apply --plan FILE`. No AWS call.
    Plan {
        /// The scan run (default: the latest run).
        id: Option<i64>,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Continue an interrupted run (default: the latest unfinished one), with the accounts and
    /// options it started with.
    Resume {
        /// Run id (default: the latest unfinished run).
        id: Option<i64>,
    },
    /// The findings of a run (default: the latest) and what was done with them.
    Report {
        /// Run id (default: the latest run).
        id: Option<i64>,
        /// `html`: one self-contained page for a review (summary, chart, drift, findings, AWS
        /// calls), e.g. `iamsweep report --format html > report.html`.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
    /// Findings new, resolved or reappeared (detached by iamsweep, then attached again)
    /// between two runs. Only accounts whose scan completed in both runs are compared.
    Diff {
        /// The earlier run (default: the latest run before TO that listed the same accounts).
        from: Option<i64>,
        /// The later run (default: the latest run that recorded a scan).
        to: Option<i64>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Also list the findings that did not change.
        #[arg(long)]
        unchanged: bool,
    },
    /// Each [[exception]] of the accounts file: live, expiring (14 days), expired or unmatched,
    /// and how many findings of the latest scan it covers.
    Exceptions {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Send run ID's findings (default: the latest run) to AWS Security Hub in each account,
    /// with the account's role: new and open findings active, detached or vanished ones
    /// resolved (archived); nothing resolved in an account whose scan failed.
    Publish {
        id: Option<i64>,
        /// Security Hub's region (default: the partition's home region, us-east-1 in aws).
        #[arg(long)]
        region: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Every run, with status, times and counts.
    Runs {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// The re-attach list for run ID's detaches, or (--apply) re-attach them as a new run.
    Rollback {
        /// The apply run to undo.
        id: i64,
        #[arg(long, value_enum, default_value = "sh")]
        format: RollbackFormat,
        /// Re-attach the policies now, as a new recorded (and resumable) run.
        #[arg(long)]
        apply: bool,
        /// With --apply: make the changes without asking.
        #[arg(long, requires = "apply")]
        yes: bool,
    },
    /// The accounts a run would work on (accounts.toml, and [organization] discovery), without
    /// scanning: id, name, OU path, role.
    Accounts {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// For each account, try the role and the reads the scan needs (and with --apply, whether
    /// the role may detach and attach); changes nothing.
    Doctor {
        /// Also check the permissions apply and rollback need (IAM policy simulator).
        #[arg(long)]
        apply: bool,
        /// Also check the permission publish needs (securityhub:BatchImportFindings).
        #[arg(long)]
        publish: bool,
    },
    /// Forget scan runs started before DATE that changed nothing (every account read completely
    /// and exactly as its previous scan; no apply, journal row or publish refers to them), then
    /// reclaim the space. The newest scan, and every run that tells something, is kept.
    Prune {
        /// A date (2026-01-01, midnight UTC) or a time (2026-01-01T00:00:00Z).
        #[arg(long, value_name = "DATE")]
        before: String,
        /// Only say which runs would be forgotten.
        #[arg(long)]
        dry_run: bool,
    },
    /// Every change iamsweep made or attempted, oldest first.
    History {
        /// Only this account id.
        #[arg(long, value_name = "ID")]
        account: Option<String>,
        /// Only this user name.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Only this policy ARN.
        #[arg(long, value_name = "ARN")]
        policy: Option<String>,
        /// Only actions from this date (2026-11-27) or time (2026-11-27T10:00:00Z) on.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// What `scan --fail-on` fails on (exit code 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Any redundant finding.
    Any,
    /// Redundant findings new or reappeared since the previous scan of their account.
    New,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Apply the findings of this scan run (each still verified live) instead of scanning now.
    #[arg(long, value_name = "ID", conflicts_with = "plan")]
    pub run: Option<i64>,

    /// Apply exactly the items of this reviewed plan (`iamsweep plan`; JSON or CSV), each still
    /// proven live; an item that is no finding of the plan's run is refused, nothing changed.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<std::path::PathBuf>,

    /// Make the changes without asking.
    #[arg(long)]
    pub yes: bool,

    /// At most N detaches in this run, across all accounts (and its resumes); the rest stay
    /// open, the run ends normally and says the command that continues.
    #[arg(long, value_name = "N")]
    pub max_detaches: Option<u64>,

    /// Stop an account before it would make more than N detaches.
    #[arg(long, value_name = "N")]
    pub max_detaches_per_account: Option<u64>,

    /// Users verified and detached at once within one account.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub write_concurrency: u16,

    /// Never touch users matching this glob (repeatable; adds to accounts.toml).
    #[arg(long = "exclude-user", value_name = "GLOB")]
    pub exclude_users: Vec<String>,

    /// Never detach policies whose ARN matches this glob (repeatable).
    #[arg(long = "exclude-policy", value_name = "GLOB")]
    pub exclude_policies: Vec<String>,

    /// Detach only policies whose ARN matches one of these globs (repeatable).
    #[arg(long = "only-policy", value_name = "GLOB")]
    pub only_policies: Vec<String>,

    /// The oldest a live proof of a covering grant (a group's members and policies) may be when
    /// a detach relies on it; older proofs are read again first.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub proof_max_age: Duration,

    /// Also detach policies that cannot be attached again (deprecated AWS managed policies,
    /// `IsAttachable` false): neither the post-check nor a rollback could restore them.
    #[arg(long)]
    pub allow_non_reattachable: bool,

    /// Then send the run's findings to AWS Security Hub (as `iamsweep publish`): what was
    /// detached resolved.
    #[arg(long)]
    pub publish: bool,
}

/// `30s`, `1m`, `500ms`, or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!("`{s}` is not a duration"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}): try 30s, 2m or 500ms"))
}
