//! Pure rendering of what the store holds: tables for people, JSON and CSV for tools, an HTML
//! page for reviews, and the end-of-run summary. No I/O of its own: functions return a String,
//! and the streamed outputs write to the writer they are given.
//!
//! One file per output; the text-table and CSV primitives they share have a file each.

mod accounts;
mod api_calls;
mod csv;
mod diff;
mod doctor;
mod exceptions;
mod findings;
mod history;
mod html;
mod ocsf;
mod published;
mod rollback;
mod runs;
mod summary;
mod table;

pub use self::accounts::accounts;
pub use self::api_calls::{api_calls, organization_calls};
pub use self::csv::csv;
pub use self::diff::{diff, diff_heading, diff_not_compared};
pub use self::doctor::doctor;
pub use self::exceptions::{ExceptionRow, exceptions};
pub use self::findings::{FindingStream, findings};
pub use self::history::history;
pub use self::html::{HtmlPage, HtmlReport, html};
pub use self::ocsf::{OCSF_VERSION, OcsfRun, OcsfStream, finding_uid};
pub use self::published::published;
pub use self::rollback::{RollbackFormat, rollback, shell_quote};
pub use self::runs::runs;
pub use self::summary::summary;
pub use self::table::{table, table_fit};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// `report`'s formats: those of every listing, and a page for a review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
    /// One self-contained HTML file (inline CSS, JavaScript and SVG; no network).
    Html,
    /// OCSF 1.5.0 Detection Finding events (class 2004), one per finding, as a JSON array.
    Ocsf,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("rows serialize") + "\n"
}

/// A finding's kind as a table shows it: `redundant`, `direct`.
fn short_kind(kind: &str) -> &str {
    match kind {
        "redundant_direct" => "redundant",
        "direct_only" => "direct",
        k => k,
    }
}

/// `2026-11-27T22:16:06.123Z` as `11-27 22:16:06`: enough to tell runs apart in 80 columns.
fn short_time(t: &str) -> String {
    match (t.get(5..10), t.get(11..19)) {
        (Some(d), Some(h)) => format!("{d} {h}"),
        _ => t.to_owned(),
    }
}

// Every punctuation mark IAM allows in a name: tables must cut them, CSV must quote the comma,
// and the rollback script must leave them unquoted.
#[cfg(test)]
const ODD_USER: &str = "svc+deploy=ci,ops.bot@corp-x_y";
#[cfg(test)]
const ODD_POLICY: &str = "arn:aws:iam::111111111111:policy/team/a+b=c,d.e@f-g_h";
