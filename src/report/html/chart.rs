//! The report's chart: redundant vs direct-only findings per account, as inline SVG (no
//! script, no network). Draws the rows it is given; it must not decide which accounts matter
//! beyond keeping the chart to a screen's height.

use std::fmt::Write as _;

use super::esc;
use crate::report::table::fit;
use crate::store::AccountRow;

/// Accounts drawn at most: the ones with the most findings. Every account is in the table.
pub(super) const MAX_BARS: usize = 30;

const ROW: usize = 24;
const LABEL: usize = 250;
const BAR: usize = 560;
const WIDTH: usize = LABEL + BAR + 90;

/// A horizontal stacked bar per account (redundant, then direct-only), largest first.
pub(super) fn chart(accounts: &[AccountRow]) -> String {
    let mut drawn: Vec<&AccountRow> = accounts.iter().collect();
    let total = |a: &AccountRow| a.redundant.unwrap_or(0) + a.direct_only.unwrap_or(0);
    // Stable: accounts with as many findings keep the run's order.
    drawn.sort_by_key(|a| std::cmp::Reverse(total(a)));
    let left_out = drawn.len().saturating_sub(MAX_BARS);
    drawn.truncate(MAX_BARS);
    let max = drawn.iter().map(|a| total(a)).max().unwrap_or(0).max(1);
    let height = drawn.len() * ROW + 8;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {WIDTH} {height}\" aria-labelledby=\"chart-title chart-desc\">\
         <title id=\"chart-title\">Redundant and direct-only findings per account</title>\
         <desc id=\"chart-desc\">One bar per account: redundant direct attachments (safe to detach) first, then direct-only ones (need a group first). The same numbers are in the table above.</desc>"
    );
    for (i, a) in drawn.iter().enumerate() {
        let y = i * ROW + 4;
        let label = fit(
            &match &a.account_name {
                Some(n) => format!("{} {n}", a.account_id),
                None => a.account_id.clone(),
            },
            34,
        );
        let _ = write!(
            svg,
            "<g><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LABEL - 8,
            y + 15,
            esc(&label)
        );
        match (a.redundant, a.direct_only) {
            (Some(r), Some(d)) => {
                let rw = (r as usize * BAR) / max as usize;
                let dw = (d as usize * BAR) / max as usize;
                let _ = write!(
                    svg,
                    "<rect class=\"r\" x=\"{LABEL}\" y=\"{y}\" width=\"{rw}\" height=\"{}\"><title>{}: {r} redundant</title></rect>\
                     <rect class=\"d\" x=\"{}\" y=\"{y}\" width=\"{dw}\" height=\"{}\"><title>{}: {d} direct-only</title></rect>\
                     <text x=\"{}\" y=\"{}\">{r} / {d}</text>",
                    ROW - 6,
                    esc(&a.account_id),
                    LABEL + rw,
                    ROW - 6,
                    esc(&a.account_id),
                    LABEL + rw + dw + 6,
                    y + 15,
                );
            }
            _ => {
                let _ = write!(
                    svg,
                    "<text class=\"none\" x=\"{LABEL}\" y=\"{}\">not scanned ({})</text>",
                    y + 15,
                    esc(a.error_code.as_deref().unwrap_or(&a.status))
                );
            }
        }
        svg.push_str("</g>\n");
    }
    svg.push_str("</svg>\n");
    let mut out = String::from("<figure>\n");
    out.push_str(&svg);
    let _ = write!(
        out,
        "<figcaption class=\"legend\"><span style=\"background:var(--redundant)\"></span>redundant (detachable) \
         <span style=\"background:var(--direct)\"></span>direct-only (needs a group first); numbers are redundant / direct-only{}</figcaption>\n</figure>\n",
        if left_out > 0 {
            format!(
                "; the {MAX_BARS} accounts with the most findings ({left_out} more in the table)"
            )
        } else {
            String::new()
        }
    );
    out
}
