//! `report --format html`: one self-contained page for a security review — the run's summary
//! per account, a chart, the drift, the findings (filterable and sortable with JavaScript,
//! readable without it) and the AWS calls. Everything is inline: the page must never reference
//! anything outside itself (no link, no font, no image, no request), and its Content Security
//! Policy forbids it. Streams the findings it is given; it must not query or decide anything.

mod chart;

use std::fmt::Write as _;
use std::io::Write;

use crate::store::{AccountRow, ApiCallRow, FindingRow, FindingView, RunRow};

const CSS: &str = include_str!("report.css");
/// Findings rows at most: a page a browser opens and a person reads (a million rows make a
/// 300 MB file). The drift is always shown whole; CSV and JSON carry every finding.
pub const MAX_ROWS: u64 = 20_000;
const JS: &str = include_str!("report.js");

/// What the page shows besides the findings.
pub struct HtmlPage<'a> {
    pub run: &'a RunRow,
    pub accounts: &'a [AccountRow],
    /// Why actions did not detach: (`status: reason`, count).
    pub reasons: &'a [(String, u64)],
    /// The findings that reappeared (drift): shown first.
    pub drift: &'a [FindingRow],
    pub calls: &'a [ApiCallRow],
    /// Who the base credentials were.
    pub caller: Option<&'a str>,
}

/// Text for HTML element content and quoted attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page, written as the findings stream in: the head, summary, chart and drift first,
/// then one table row per finding (drift rows first, then the others), then the AWS calls.
pub struct HtmlReport<W: Write> {
    out: W,
    rows: u64,
    /// Findings left out beyond [`MAX_ROWS`].
    left_out: u64,
    run_id: i64,
}

impl<W: Write> HtmlReport<W> {
    pub fn start(mut out: W, page: &HtmlPage<'_>) -> std::io::Result<Self> {
        out.write_all(head(page).as_bytes())?;
        let mut s = Self {
            out,
            rows: 0,
            left_out: 0,
            run_id: page.run.id,
        };
        for f in page.drift {
            s.write_row(f)?;
        }
        Ok(s)
    }

    /// One finding; drift rows were written at the start and are skipped here.
    pub fn row(&mut self, f: &FindingRow) -> std::io::Result<()> {
        if self.admit(f.reappeared.is_some()) {
            self.write_row(f)
        } else {
            Ok(())
        }
    }

    /// [`HtmlReport::row`] for a streamed finding, made an owned row only if it is written.
    pub fn view(&mut self, f: &FindingView<'_>) -> std::io::Result<()> {
        if self.admit(f.reappeared.is_some()) {
            self.write_row(&f.to_row())
        } else {
            Ok(())
        }
    }

    /// Whether the next finding is written: not drift (written at the start), and within the
    /// page's cap (the rest are counted).
    fn admit(&mut self, drift: bool) -> bool {
        if drift {
            return false;
        }
        if self.rows >= MAX_ROWS {
            self.left_out += 1;
            return false;
        }
        true
    }

    fn write_row(&mut self, f: &FindingRow) -> std::io::Result<()> {
        self.out.write_all(finding_row(f).as_bytes())?;
        self.rows += 1;
        Ok(())
    }

    pub fn finish(mut self, page: &HtmlPage<'_>) -> std::io::Result<W> {
        if self.rows == 0 {
            // In a body of its own, like the note below: not a finding the script filters.
            self.out.write_all(
                b"</tbody>\n<tbody><tr><td colspan=\"8\">No direct policy attachments found.</td></tr>\n",
            )?;
        }
        if self.left_out > 0 {
            // Outside the rows the script filters and sorts: it always stays in view.
            write!(
                self.out,
                "</tbody>\n<tbody><tr><th scope=\"row\" colspan=\"8\">{} more findings are not shown here (this page lists {MAX_ROWS}, drift first): <code>iamsweep report {} --format csv</code> lists them all.</th></tr>\n",
                self.left_out, self.run_id
            )?;
        }
        self.out.write_all(tail(page).as_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The whole page for findings held in memory (tests, small runs).
pub fn html(page: &HtmlPage<'_>, rows: &[FindingRow]) -> String {
    let mut r = HtmlReport::start(Vec::new(), page).expect("writes to memory");
    for f in rows {
        r.row(f).expect("writes to memory");
    }
    String::from_utf8(r.finish(page).expect("writes to memory")).expect("UTF-8 in, UTF-8 out")
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "–".to_owned(), T::to_string)
}

fn label(id: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{} <span class=\"meta\">{}</span>", esc(id), esc(n)),
        None => esc(id),
    }
}

fn head(page: &HtmlPage<'_>) -> String {
    let run = page.run;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"generator\" content=\"iamsweep {}\">\n\
         <title>iamsweep report: run {} ({})</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n\
         <a class=\"skip\" href=\"#findings\">Skip to the findings</a>\n<header>\n\
         <h1>iamsweep report: run {}</h1>\n",
        env!("CARGO_PKG_VERSION"),
        run.id,
        esc(&run.kind),
        run.id,
    );
    let _ = writeln!(
        h,
        "<p class=\"meta\">{} run, <span class=\"badge {}\">{}</span>; started {}, finished {}{}{}</p>\n</header>\n<main>",
        esc(&run.kind),
        esc(&run.status),
        esc(&run.status),
        esc(&run.started_at),
        esc(run.finished_at.as_deref().unwrap_or("–")),
        match (run.source_run_id, &run.plan_digest) {
            (Some(src), Some(d)) if run.kind == "apply" => format!(
                "; applied the reviewed plan of run {src} (sha256 <code>{}</code>)",
                esc(d)
            ),
            (Some(src), _) if run.kind == "apply" => format!("; applied the findings of run {src}"),
            (Some(src), _) => format!("; rolled back run {src}"),
            (None, _) => String::new(),
        },
        match page.caller {
            Some(arn) => format!("; credentials <code>{}</code>", esc(arn)),
            None => String::new(),
        },
    );

    // The totals a reviewer reads first. A scan changes nothing: no column says so at length.
    let drift = page.drift.len();
    let applied = run.kind != "scan";
    let _ = writeln!(
        h,
        "<section id=\"summary\" aria-labelledby=\"summary-h\">\n<h2 id=\"summary-h\">Summary</h2>\n<dl class=\"totals\">\
         <div><dt>Accounts</dt><dd>{}</dd></div>\
         <div class=\"{}\"><dt>Accounts failed</dt><dd>{}</dd></div>\
         <div><dt>Redundant</dt><dd>{}</dd></div>\
         <div><dt>Direct-only</dt><dd>{}</dd></div>\
         {}\
         <div class=\"{}\"><dt>Reappeared (drift)</dt><dd>{drift}</dd></div></dl>",
        run.accounts,
        if run.accounts_failed > 0 { "bad" } else { "" },
        run.accounts_failed,
        run.redundant,
        run.direct_only,
        match run.kind.as_str() {
            "scan" => String::new(),
            "rollback" => format!("<div><dt>Re-attached</dt><dd>{}</dd></div>", run.changed),
            _ => format!("<div><dt>Detached</dt><dd>{}</dd></div>", run.changed),
        },
        if drift > 0 { "drift" } else { "" },
    );

    // Per account: the same numbers as the end-of-run summary. An apply of an earlier scan read
    // no users itself: its columns of counts are left out rather than shown empty.
    let read = page.accounts.iter().any(|a| a.users_seen.is_some());
    let _ = write!(
        h,
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-labelledby=\"accounts-cap\">\n\
         <table id=\"accounts\" data-sortable>\n<caption id=\"accounts-cap\">Per account</caption>\n<thead><tr>\
         <th scope=\"col\">Account</th><th scope=\"col\">Status</th>{}<th scope=\"col\" class=\"num\">Redundant</th>\
         <th scope=\"col\" class=\"num\">Direct-only</th>{}\
         <th scope=\"col\" class=\"num\">AWS calls</th></tr></thead>\n<tbody>\n",
        if read {
            "<th scope=\"col\" class=\"num\">Users</th><th scope=\"col\" class=\"num\">Groups</th>"
        } else {
            ""
        },
        match run.kind.as_str() {
            "scan" => "",
            "rollback" => {
                "<th scope=\"col\" class=\"num\">Re-attached</th><th scope=\"col\" class=\"num\">Skipped</th>\
                 <th scope=\"col\" class=\"num\">Failed</th>"
            }
            _ => {
                "<th scope=\"col\" class=\"num\">Detached</th><th scope=\"col\" class=\"num\">Skipped</th>\
                 <th scope=\"col\" class=\"num\">Failed</th>"
            }
        }
    );
    for a in page.accounts {
        let seen = if read {
            format!(
                "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                opt(&a.users_seen),
                opt(&a.groups_seen)
            )
        } else {
            String::new()
        };
        let changes = if applied {
            format!(
                "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                a.changed, a.skipped, a.failed
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            h,
            "<tr><td data-sort=\"{}\">{}{}</td><td><span class=\"badge {}\">{}</span></td>\
             {seen}<td class=\"num\">{}</td><td class=\"num\">{}</td>{changes}<td class=\"num\">{}</td></tr>",
            esc(&a.account_id),
            label(&a.account_id, a.account_name.as_deref()),
            match &a.origin {
                Some(o) => format!("<br><span class=\"meta\">{}</span>", esc(o)),
                None => String::new(),
            },
            esc(&a.status),
            esc(&a.status),
            opt(&a.redundant),
            opt(&a.direct_only),
            a.api_calls,
        );
    }
    h.push_str("</tbody>\n</table>\n</div>\n");
    let errors: Vec<&AccountRow> = page
        .accounts
        .iter()
        .filter(|a| a.error_code.is_some())
        .collect();
    if !errors.is_empty() {
        h.push_str("<h3>Errors</h3>\n<ul class=\"errors\">\n");
        for a in errors {
            let _ = writeln!(
                h,
                "<li><strong>{}</strong>: <code>{}</code> {}</li>",
                esc(&a.account_id),
                esc(a.error_code.as_deref().unwrap_or_default()),
                esc(a.error_message.as_deref().unwrap_or_default()),
            );
        }
        h.push_str("</ul>\n");
    }
    if !page.reasons.is_empty() {
        let list: Vec<String> = page
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} <code>{}</code>", esc(r)))
            .collect();
        let _ = writeln!(h, "<p>Not detached: {}.</p>", list.join(", "));
    }
    h.push_str(&chart::chart(page.accounts));
    h.push_str("</section>\n");

    // Drift, before everything else about the findings.
    let _ = writeln!(
        h,
        "<section id=\"drift\" aria-labelledby=\"drift-h\">\n<h2 id=\"drift-h\">Drift: reappeared after iamsweep detached them ({drift})</h2>"
    );
    if page.drift.is_empty() {
        h.push_str("<p class=\"callout clear\">None: no finding of this run is a direct attachment that iamsweep detached before.</p>\n");
    } else {
        h.push_str(
            "<p class=\"callout\">iamsweep detached these direct attachments in an earlier run, and they came back: \
             something (Terraform, CloudFormation, a script) attaches them again. The clean-up will not hold until that source is fixed. \
             Each detach's request id finds it in CloudTrail.</p>\n\
             <div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-labelledby=\"drift-cap\">\n<table id=\"drift-table\" data-sortable>\n\
             <caption id=\"drift-cap\">Findings iamsweep had detached</caption>\n<thead><tr><th scope=\"col\">Account</th><th scope=\"col\">User</th>\
             <th scope=\"col\">Policy</th><th scope=\"col\">Detached in run</th><th scope=\"col\">Detached at</th>\
             <th scope=\"col\">Detach request id</th></tr></thead>\n<tbody>\n",
        );
        for f in page.drift {
            let d = f.reappeared.as_ref().expect("drift rows have a detach");
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td title=\"{}\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
                label(&f.account_id, f.account_name.as_deref()),
                esc(&f.user_name),
                esc(&f.policy_arn),
                esc(&f.policy_name),
                d.detached_in_run,
                esc(d.detached_at.as_deref().unwrap_or("–")),
                esc(d.detach_request_id.as_deref().unwrap_or("–")),
            );
        }
        h.push_str("</tbody>\n</table>\n</div>\n");
    }
    h.push_str("</section>\n");

    // The findings: controls are hidden until the script shows them (without JavaScript they
    // would do nothing).
    let _ = writeln!(
        h,
        "<section id=\"findings\" aria-labelledby=\"findings-h\">\n<h2 id=\"findings-h\">Findings</h2>\n\
         <p class=\"note\">Every managed policy attached directly to a user: <span class=\"kind-redundant_direct\">redundant</span> \
         (a group of the user grants it too: safe to detach) or <span class=\"kind-direct_only\">direct-only</span> (never detached: it needs a group first). \
         Drift first, then by account, user and policy.</p>\n\
         <div id=\"controls\" hidden>\n\
         <label for=\"f-q\">Search<input type=\"search\" id=\"f-q\" placeholder=\"user, policy, account, group\"></label>\n\
         <label for=\"f-kind\">Kind<select id=\"f-kind\"><option value=\"\">all</option>\
         <option value=\"redundant_direct\">redundant</option><option value=\"direct_only\">direct-only</option></select></label>\n\
         <label for=\"f-action\">Action<select id=\"f-action\"><option value=\"\">all</option></select></label>\n\
         <label for=\"f-owner\">Owner<select id=\"f-owner\"><option value=\"\">all</option></select></label>\n\
         <label class=\"check\" for=\"f-drift\"><input type=\"checkbox\" id=\"f-drift\">reappeared only</label>\n\
         <output id=\"shown\" aria-live=\"polite\"></output>\n</div>\n\
         <div class=\"scroll tall\" tabindex=\"0\" role=\"region\" aria-labelledby=\"findings-cap\">\n\
         <table id=\"findings-table\" data-sortable>\n<caption id=\"findings-cap\">Findings of run {}</caption>\n<thead><tr>\
         <th scope=\"col\">Account</th><th scope=\"col\">User</th><th scope=\"col\">Owner</th><th scope=\"col\">Policy</th><th scope=\"col\">Kind</th>\
         <th scope=\"col\">Covering groups</th><th scope=\"col\">Action</th><th scope=\"col\">Request id</th>\
         <th scope=\"col\">Drift</th></tr></thead>\n<tbody>",
        run.id
    );
    h
}

fn finding_row(f: &FindingRow) -> String {
    let (status, reason, request) = match &f.action {
        Some(a) => (
            a.status.as_str(),
            a.reason.as_deref(),
            a.request_id.as_deref(),
        ),
        None => ("none", None, None),
    };
    let action = match (&f.action, reason) {
        (None, _) => "–".to_owned(),
        (Some(_), Some(r)) => format!(
            "<span class=\"badge {}\">{}</span> <span class=\"meta\">{}</span>",
            esc(status),
            esc(status),
            esc(r)
        ),
        (Some(_), None) => format!(
            "<span class=\"badge {}\">{}</span>",
            esc(status),
            esc(status)
        ),
    };
    // A live exception when the scan saw it: who answers for it, why and until when.
    let action = match &f.exception {
        Some(e) => format!(
            "{action} <span class=\"meta exception\" title=\"[[exception]] at line {} of the accounts file\">exception until {} ({}): {}</span>",
            e.line,
            esc(&e.expires),
            esc(&e.owner),
            esc(&e.reason)
        ),
        None => action,
    };
    let drift = match &f.reappeared {
        Some(d) => format!(
            "<span class=\"badge reappeared\">reappeared</span> <span class=\"meta\">detached in run {}</span>",
            d.detached_in_run
        ),
        None => String::new(),
    };
    format!(
        "<tr data-kind=\"{}\" data-action=\"{}\" data-drift=\"{}\" data-owner=\"{}\"{}><td data-sort=\"{}\">{}</td><td>{}</td><td>{}</td>\
         <td title=\"{}\">{}</td><td class=\"kind-{}\">{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td></tr>\n",
        esc(&f.kind),
        esc(status),
        if f.reappeared.is_some() { 1 } else { 0 },
        esc(f.owner.as_deref().unwrap_or_default()),
        if f.reappeared.is_some() {
            " class=\"drift\""
        } else {
            ""
        },
        esc(&f.account_id),
        label(&f.account_id, f.account_name.as_deref()),
        esc(&f.user_name),
        esc(f.owner.as_deref().unwrap_or("–")),
        esc(&f.policy_arn),
        esc(&f.policy_name),
        esc(&f.kind),
        match f.kind.as_str() {
            "redundant_direct" => "redundant",
            "direct_only" => "direct-only",
            k => k,
        },
        esc(&f.covering_groups.join(", ")),
        action,
        esc(request.unwrap_or_default()),
        drift,
    )
}

fn tail(page: &HtmlPage<'_>) -> String {
    let mut t = String::from("</tbody>\n</table>\n</div>\n</section>\n");
    let total: u64 = page.calls.iter().map(|c| c.calls).sum();
    let _ = writeln!(
        t,
        "<section id=\"calls\" aria-labelledby=\"calls-h\">\n<h2 id=\"calls-h\">AWS calls ({total} in all)</h2>\n\
         <p class=\"note\">Every request sent, retries included, per account and operation.</p>\n\
         <div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-labelledby=\"calls-cap\">\n<table id=\"calls-table\" data-sortable>\n\
         <caption id=\"calls-cap\">AWS calls of run {}</caption>\n<thead><tr><th scope=\"col\">Account</th><th scope=\"col\">Operation</th>\
         <th scope=\"col\" class=\"num\">Calls</th><th scope=\"col\" class=\"num\">Throttled</th><th scope=\"col\" class=\"num\">Errors</th></tr></thead>\n<tbody>",
        page.run.id
    );
    for c in page.calls {
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&c.account_id),
            esc(&c.operation),
            c.calls,
            c.throttled,
            c.errors
        );
    }
    if page.calls.is_empty() {
        t.push_str("<tr><td colspan=\"5\">No AWS call was recorded for this run.</td></tr>\n");
    }
    let _ = write!(
        t,
        "</tbody>\n</table>\n</div>\n</section>\n</main>\n<footer>\n<p>Written by iamsweep {} from its audit database. \
         Every detach is journaled with its AWS request id: <code>iamsweep history</code>; undo a run with <code>iamsweep rollback</code>.</p>\n\
         </footer>\n<script>\n{JS}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ODD_POLICY, ODD_USER};
    use crate::store::{ActionSummary, Reappeared};

    fn account(id: &str, name: Option<&str>, scanned: bool) -> AccountRow {
        AccountRow {
            account_id: id.into(),
            account_name: name.map(str::to_owned),
            status: if scanned { "completed" } else { "failed" }.into(),
            error_code: (!scanned).then(|| "AccessDenied".into()),
            error_message: (!scanned).then(|| "not authorized to perform sts:AssumeRole".into()),
            users_seen: scanned.then_some(4),
            groups_seen: scanned.then_some(2),
            users_excluded: scanned.then_some(0),
            redundant: scanned.then_some(3),
            direct_only: scanned.then_some(1),
            api_calls: 7,
            role_arn: None,
            started_at: None,
            finished_at: None,
            changed: 0,
            skipped: 0,
            failed: 0,
            reverted: 0,
            origin: None,
        }
    }

    fn finding(user: &str, policy: &str, kind: &str, action: Option<&str>) -> FindingRow {
        FindingRow {
            finding_id: 1,
            account_id: "111111111111".into(),
            account_name: Some("<prod> & co".into()),
            account_origin: None,
            user_name: user.into(),
            user_arn: format!("arn:aws:iam::111111111111:user/{user}"),
            policy_arn: policy.into(),
            policy_name: crate::model::PolicyArn::new(policy).policy_name().into(),
            kind: kind.into(),
            covering_groups: vec!["ops".into()],
            exception: None,
            owner: None,
            action: action.map(|s| ActionSummary {
                id: 1,
                run_id: 3,
                status: s.into(),
                reason: (s == "skipped").then(|| "no_longer_covered".into()),
                covering_group: None,
                request_id: Some("req-7".into()),
                error_code: None,
                error_message: None,
                finished_at: None,
            }),
            reappeared: None,
        }
    }

    fn page_with(rows: &[FindingRow]) -> String {
        let run = RunRow {
            id: 3,
            kind: "scan".into(),
            status: "completed_with_errors".into(),
            source_run_id: None,
            started_at: "2026-11-27T22:16:06.123Z".into(),
            finished_at: Some("2026-11-27T22:16:09.456Z".into()),
            accounts: 2,
            accounts_failed: 1,
            redundant: 3,
            direct_only: 1,
            changed: 0,
            actions_failed: 0,
            api_calls: 7,
            plan_digest: None,
        };
        let accounts = [
            account("111111111111", Some("<prod> & co"), true),
            account("222222222222", None, false),
        ];
        let drift: Vec<FindingRow> = rows
            .iter()
            .filter(|r| r.reappeared.is_some())
            .cloned()
            .collect();
        let calls = [ApiCallRow {
            account_id: "111111111111".into(),
            operation: "GetAccountAuthorizationDetails".into(),
            calls: 1,
            throttled: 0,
            errors: 0,
        }];
        html(
            &HtmlPage {
                run: &run,
                accounts: &accounts,
                reasons: &[],
                drift: &drift,
                calls: &calls,
                caller: Some("arn:aws:iam::999999999999:user/auditor"),
            },
            rows,
        )
    }

    #[test]
    fn the_page_shows_drift_first_escapes_names_and_inlines_its_style_and_script() {
        let mut back = finding(
            "dave",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "redundant_direct",
            None,
        );
        back.reappeared = Some(Reappeared {
            detached_in_run: 2,
            detach_request_id: Some("req-2".into()),
            detached_at: Some("2026-11-26T10:00:00.000Z".into()),
        });
        let rows = [
            finding(ODD_USER, ODD_POLICY, "redundant_direct", Some("detached")),
            finding(
                "alice",
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                "redundant_direct",
                Some("skipped"),
            ),
            back,
            finding(
                "bob",
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                "direct_only",
                None,
            ),
        ];
        let page = page_with(&rows);
        // The markup people read; the stylesheet and script are inlined once each.
        let body = &page[page.find("<body>").unwrap()..page.find("<script>").unwrap()];
        insta::assert_snapshot!("html_report_body", body);
        assert_eq!(page.matches("<style>").count(), 1);
        assert!(page.contains(CSS) && page.contains(JS));
        assert!(!page.contains("<prod>"), "names are escaped");
        // Drift is the first row of the findings table, whatever order the rows came in.
        let table = &page[page.find("id=\"findings-table\"").unwrap()..];
        let first = table.find("<tr data-kind").unwrap();
        assert!(table[first..].starts_with(
            "<tr data-kind=\"redundant_direct\" data-action=\"none\" data-drift=\"1\""
        ));
        // The filters only appear once the script runs: without it, nothing that does nothing.
        assert!(page.contains("<div id=\"controls\" hidden>"));
    }

    #[test]
    fn an_empty_run_still_makes_a_whole_page() {
        let page = page_with(&[]);
        // Outside the body of findings the script filters (it would offer an `undefined`
        // action and count the note as a finding).
        let table = &page[page.find("id=\"findings-table\"").unwrap()..];
        let note = table.find("No direct policy attachments found.").unwrap();
        let first_body = table.find("</tbody>").unwrap();
        assert!(first_body < note, "{}", &table[..note]);
        assert!(page.contains("None: no finding of this run"));
        assert!(page.ends_with("</html>\n"));
    }

    #[test]
    fn a_run_larger_than_a_page_says_how_many_findings_are_left_out() {
        let row = finding(
            "alice",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "direct_only",
            None,
        );
        let rows = vec![row; MAX_ROWS as usize + 5];
        let page = page_with(&rows);
        assert_eq!(page.matches("<tr data-kind=").count(), MAX_ROWS as usize);
        assert!(
            page.contains("5 more findings are not shown here (this page lists 20000, drift first): <code>iamsweep report 3 --format csv</code>"),
            "{}",
            &page[page.len() - 3000..]
        );
    }

    #[test]
    fn the_chart_keeps_to_a_screen_and_says_so() {
        let accounts: Vec<AccountRow> = (0..40)
            .map(|i| account(&format!("{:012}", i), None, true))
            .collect();
        let svg = chart::chart(&accounts);
        assert_eq!(svg.matches("<g>").count(), chart::MAX_BARS);
        assert!(svg.contains("(10 more in the table)"), "{svg}");
    }
}
