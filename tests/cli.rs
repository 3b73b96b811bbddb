//! The command line's contract without AWS: bad input gets exit code 2 and a message naming the
//! file, line, key or value; nothing is started.

mod common;

use common::{Workdir, assert_exit, stderr, stdout};

fn scan_with(toml: &str) -> (Workdir, std::process::Output) {
    let w = Workdir::new(toml);
    let out = w.iamsweep(&["--endpoint-url", "http://127.0.0.1:9", "scan"]);
    (w, out)
}

#[test]
fn config_errors_exit_2_naming_file_line_and_key() {
    for (toml, expected) in [
        (
            "[[account]]\nid = \"111111111111\"\nrole = \"x\"\n",
            "accounts.toml:3: unknown field `role`",
        ),
        (
            "[[account]]\nid = \"111111111111\"\n[[account]]\nid = \"111111111111\"\n",
            "accounts.toml:4: key `id`: duplicate account id 111111111111 (first listed at line 2)",
        ),
        (
            "[[account]]\nid = \"1234\"\n",
            "accounts.toml:2: key `id`: `1234` is not a 12-digit AWS account id",
        ),
        (
            "[[account]]\nid = \"111111111111\"\nrole_arn = \"arn:aws:iam::111111111111:user/x\"\n",
            "accounts.toml:3: key `role_arn`: `arn:aws:iam::111111111111:user/x` is not a role ARN",
        ),
        (
            "[defaults]\npartition = \"aws-us-gov\"\n[[account]]\nid = \"111111111111\"\n[[account]]\nid = \"222222222222\"\nrole_arn = \"arn:aws:iam::222222222222:role/x\"\n",
            "accounts.toml:7: key `role_arn`: partition aws, but line 2 (`partition`) is in partition aws-us-gov; one run works in one partition",
        ),
    ] {
        let (w, out) = scan_with(toml);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        assert!(err.contains(&w.accounts().display().to_string()), "{err}");
        assert!(!w.db().exists(), "nothing was started");
    }
}

#[test]
fn a_missing_accounts_file_says_what_to_do() {
    let w = Workdir::new("");
    std::fs::remove_file(w.accounts()).unwrap();
    let out = w.iamsweep(&["scan"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("cannot read accounts file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_plaintext_endpoint_off_this_machine_is_refused() {
    let w = Workdir::new("[[account]]\nid = \"111111111111\"\n");
    let out = w.iamsweep(&["--endpoint-url", "http://192.0.2.10:5000", "scan"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("refusing plaintext endpoint `http://192.0.2.10:5000`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_plaintext_endpoint_set_for_one_service_is_refused() {
    let w = Workdir::new("[[account]]\nid = \"111111111111\"\n");
    for (var, service) in [
        (
            "AWS_ENDPOINT_URL_STS",
            "STS (base credential chain) endpoint",
        ),
        ("AWS_ENDPOINT_URL_IAM", "IAM endpoint"),
        ("AWS_ENDPOINT_URL_ORGANIZATIONS", "Organizations endpoint"),
    ] {
        let out = w.iamsweep_env(&["doctor"], &[(var, "http://192.0.2.10:5000")]);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "error: {service}: refusing plaintext endpoint `http://192.0.2.10:5000"
            )),
            "{var}: {err}"
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    let w = Workdir::new("[[account]]\nid = \"111111111111\"\n");
    assert_exit(&w.iamsweep(&["frobnicate"]), 2);
    assert_exit(&w.iamsweep(&["report", "--format", "yaml"]), 2);
    assert_exit(&w.iamsweep(&["--concurrency", "0", "scan"]), 2);
}

#[test]
fn report_on_an_empty_database_points_to_scan() {
    let w = Workdir::new("[[account]]\nid = \"111111111111\"\n");
    let out = w.iamsweep(&["report"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("iamsweep scan"), "{}", stderr(&out));
    let runs = w.iamsweep(&["runs"]);
    assert_exit(&runs, 0);
    assert!(stdout(&runs).contains("no runs yet"));
}

#[test]
fn a_database_that_is_not_iamsweeps_is_refused_with_exit_2() {
    let w = Workdir::new("[[account]]\nid = \"111111111111\"\n");
    std::fs::write(
        w.db(),
        "plain text, not a database at all........................",
    )
    .unwrap();
    let out = w.iamsweep(&["runs"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("not an SQLite database"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn diff_and_fail_on_are_part_of_the_contract_and_exit_code_3_is_documented() {
    let w = Workdir::new("[[account]]\nid = \"111111111111\"\n");
    let help = w.iamsweep(&["--help"]);
    assert_exit(&help, 0);
    assert!(
        stdout(&help).contains("3 `scan --fail-on any|new` found what it was asked to fail on"),
        "{}",
        stdout(&help)
    );
    assert!(stdout(&help).contains("diff"), "{}", stdout(&help));
    let scan_help = stdout(&w.iamsweep(&["scan", "--help"]));
    assert!(scan_help.contains("--fail-on <WHAT>"), "{scan_help}");
    assert_exit(&w.iamsweep(&["scan", "--fail-on", "some"]), 2);
    assert_exit(&w.iamsweep(&["diff", "--format", "html"]), 2);
    assert_exit(&w.iamsweep(&["runs", "--format", "html"]), 2);

    // No database yet: diff says where to start, and creates nothing.
    let out = w.iamsweep(&["diff"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("iamsweep scan"), "{}", stderr(&out));
    assert!(!w.db().exists());
}
