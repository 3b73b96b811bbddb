//! The HTML report in a real headless browser (Chromium): the page loads from a file with the
//! network out of reach, its summary and findings are in the rendered DOM, its script ran (the
//! filters work, the sort headers are buttons), and a screenshot is saved under target/ for
//! people to look at. Needs Chromium: `scripts/browser-check.sh` finds it and runs this test,
//! and `.ci/run` installs it; `scripts/test.sh` leaves it out.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{FakeRig, block_on, external_references};
use iamsweep::aws::{AwsError, ErrorKind};
use serde_json::Value;

const PROD: &str = "111111111111";
const STAGING: &str = "222222222222";
const SANDBOX: &str = "333333333333";
const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
const READ: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const VIEW: &str = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess";
const BILLING: &str = "arn:aws:iam::aws:policy/job-function/Billing";

/// The browser to drive, from `IAMSWEEP_BROWSER` (set by scripts/browser-check.sh). Missing is
/// a failure, never a skip.
fn browser() -> PathBuf {
    let path = std::env::var_os("IAMSWEEP_BROWSER").unwrap_or_else(|| {
        panic!("IAMSWEEP_BROWSER is not set: run scripts/browser-check.sh, which finds headless Chromium (apt-get install chromium-headless-shell)")
    });
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "IAMSWEEP_BROWSER={} does not exist",
        path.display()
    );
    path
}

/// Runs headless Chromium on `url` with the network out of reach and a fresh profile; kills it
/// after a minute. Returns its stdout.
fn chromium(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let output = tempfile::tempdir().expect("output dir");
    let (stdout_path, stderr_path) = (output.path().join("out"), output.path().join("err"));
    let mut child = Command::new(browser())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
            "--hide-scrollbars",
            // No name resolves: nothing the page might ask for could leave this machine.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        // To files, not pipes: a pipe nobody reads while waiting would stall a large DOM.
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("start the browser");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the browser did not finish within 60 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &std::path::Path| {
        String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
    };
    assert!(
        status.success(),
        "browser failed on {url}: {}",
        read(&stderr_path)
    );
    read(&stdout_path)
}

/// Three accounts. Prod was cleaned up by an earlier apply, then Terraform put a policy back;
/// a scan of all three; sandbox stops trusting the role; an apply of that scan, with
/// break-glass users excluded. Returns the rig and the last run's id: its report has drift,
/// detaches, skips, direct-only findings and a failed account.
fn scenario() -> (FakeRig, i64) {
    let mut options = common::options();
    options.apply.filters.exclude_users =
        iamsweep::filters::Patterns::new(vec!["break-glass-*".into()]).unwrap();
    let rig = FakeRig::with_options(
        &format!(
            "[[account]]\nid = \"{PROD}\"\nname = \"prod\"\n\n[[account]]\nid = \"{STAGING}\"\nname = \"staging\"\n\n[[account]]\nid = \"{SANDBOX}\"\nname = \"sandbox\"\n"
        ),
        options,
    );
    for id in [PROD, STAGING, SANDBOX] {
        let deploy = format!("arn:aws:iam::{id}:policy/team/Deploy");
        rig.org.add_group(id, "admins", &[ADMIN]);
        rig.org.add_group(id, "readers", &[READ, VIEW]);
        rig.org.add_group(id, "deployers", &[&deploy]);
        rig.org
            .add_user(id, "alice", &["admins", "readers"], &[ADMIN, READ]);
        rig.org.add_user(id, "bob", &["readers"], &[READ, BILLING]);
        rig.org.add_user(id, "carol", &[], &[VIEW]);
        rig.org
            .add_user(id, "svc+deploy@ci", &["deployers"], &[&deploy]);
        rig.org
            .add_user(id, "break-glass-admin", &["admins"], &[ADMIN]);
    }
    let prod_only = iamsweep::config::parse(
        "accounts.toml",
        &format!("[[account]]\nid = \"{PROD}\"\nname = \"prod\"\n"),
    )
    .unwrap();
    block_on(rig.engine.apply(&prod_only)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    rig.org.add_user(PROD, "alice", &[], &[ADMIN]);
    rig.org.add_user(STAGING, "dave", &["readers"], &[VIEW]);
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    rig.org.refuse_assume(
        SANDBOX,
        AwsError::new(
            ErrorKind::AccessDenied,
            "AccessDenied",
            "not authorized to perform sts:AssumeRole",
        ),
    );
    std::thread::sleep(Duration::from_millis(5));
    let apply = block_on(
        rig.engine
            .apply_run(scan, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap()
    .run_id;
    (rig, apply)
}

fn iamsweep(db: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_iamsweep"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run iamsweep");
    assert!(
        out.status.success(),
        "iamsweep {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The start tags of the findings table's rows, as the browser left them.
fn finding_rows(dom: &str) -> Vec<&str> {
    dom.match_indices("<tr data-kind=")
        .map(|(at, _)| &dom[at..at + dom[at..].find('>').unwrap()])
        .collect()
}

#[test]
#[ignore = "needs headless Chromium: scripts/browser-check.sh"]
fn browser_renders_the_html_report_with_its_summary_findings_and_working_filters() {
    let browser = browser();
    let (rig, run) = scenario();
    let page = iamsweep(&rig.db(), &["report", &run.to_string(), "--format", "html"]);
    assert_eq!(external_references(&page), Vec::<String>::new());
    let findings: Value = serde_json::from_str(&iamsweep(
        &rig.db(),
        &["report", &run.to_string(), "--format", "json"],
    ))
    .unwrap();
    let findings = findings.as_array().unwrap();

    // Under target/, where people can open it.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("html-report");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("report.html");
    std::fs::write(&file, &page).unwrap();
    let url = format!("file://{}", file.display());

    let dom = chromium(&url, &["--dump-dom"]);
    // The summary, rendered.
    assert!(dom.contains("<h2 id=\"summary-h\">Summary</h2>"), "{dom}");
    assert!(
        dom.contains("<dt>Reappeared (drift)</dt><dd>1</dd>"),
        "{dom}"
    );
    assert!(dom.contains("<dt>Accounts failed</dt><dd>1</dd>"), "{dom}");
    for label in [
        "prod",
        "staging",
        "sandbox",
        "not authorized to perform sts:AssumeRole",
    ] {
        assert!(
            dom.contains(label),
            "{label} in the summary, chart and errors"
        );
    }
    // Every finding is a row; the drift one first, with the detach it undid.
    let rows = finding_rows(&dom);
    assert_eq!(rows.len(), findings.len());
    assert!(rows[0].contains("data-drift=\"1\""), "{}", rows[0]);
    assert_eq!(
        rows.iter()
            .filter(|r| r.contains("data-drift=\"1\""))
            .count(),
        1
    );
    assert!(
        rows.iter().all(|r| !r.contains("hidden")),
        "nothing filtered"
    );
    assert!(dom.contains("svc+deploy@ci"));
    // The script ran: the controls are shown, the count is written, headers are buttons
    // (reachable with Tab, pressed with Enter or Space).
    assert!(dom.contains("<div id=\"controls\">"), "controls shown");
    let all = format!("Showing {n} of {n} findings", n = findings.len());
    assert!(dom.contains(&all), "{all}");
    assert!(dom.contains("<button type=\"button\" aria-label=\"Sort by User\">User</button>"));

    // A filtered view from the address: only alice's findings stay visible.
    let alice = findings
        .iter()
        .filter(|f| f["user_name"] == "alice")
        .count();
    assert!(alice > 0 && alice < findings.len());
    let filtered = chromium(&format!("{url}#q=alice"), &["--dump-dom"]);
    let rows = finding_rows(&filtered);
    let visible: Vec<&&str> = rows.iter().filter(|r| !r.contains("hidden")).collect();
    assert_eq!(visible.len(), alice, "{visible:?}");
    assert!(filtered.contains(&format!("Showing {alice} of {} findings", findings.len())));

    // A screenshot of a laptop-sized window, for people.
    let shot = out.join("report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &url,
        &[
            "--window-size=1366,1900",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    eprintln!(
        "browser: {}\nreport: {}\nscreenshot: {}",
        browser.display(),
        file.display(),
        shot.display()
    );
}
