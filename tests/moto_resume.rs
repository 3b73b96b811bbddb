//! Crash safety end to end against moto: `kill -9` at several moments, Ctrl-C once and twice,
//! and two processes on one database. After every resume, each redundant attachment is detached
//! exactly once and nothing else changed.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

const USERS: usize = 100;

/// Checks the end state of a finished scenario: moto and the journal agree, nothing repeated.
fn assert_done_exactly_once(w: &Workdir, accounts: &[String]) {
    block_on(async {
        for a in accounts {
            let arn = |name: &str| format!("arn:aws:iam::{a}:policy/{name}");
            let (g1, g2, own) = (arn("Grant1"), arn("Grant2"), arn("Own"));
            let s = Seeder::new(a).await;
            assert_eq!(
                s.group_policies("ops").await,
                BTreeSet::from([g1.clone(), g2.clone()])
            );
            for i in [0, USERS / 2, USERS - 1] {
                let u = format!("user{i:04}");
                // Redundant gone, direct-only kept, membership kept.
                assert_eq!(
                    s.user_policies(&u).await,
                    BTreeSet::from([own.clone()]),
                    "{a} {u}"
                );
                assert_eq!(s.user_groups(&u).await, BTreeSet::from(["ops".to_owned()]));
            }
        }
    });
    let redundant = (accounts.len() * USERS * 2) as i64;
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM findings WHERE kind = 'redundant_direct'"),
        redundant,
        "no finding lost"
    );
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM findings WHERE kind = 'direct_only'"),
        (accounts.len() * USERS) as i64
    );
    // Exactly one detached-or-already-detached outcome per finding, and no other open row.
    assert_eq!(
        w.sql::<i64>(
            "SELECT count(*) FROM (SELECT finding_id FROM actions
             WHERE status IN ('detached', 'already_detached') GROUP BY finding_id HAVING count(*) = 1)"
        ),
        redundant
    );
    assert_eq!(
        w.sql::<i64>(
            "SELECT count(*) FROM actions WHERE status IN ('detached', 'already_detached')"
        ),
        redundant
    );
    assert_eq!(
        w.sql::<i64>(
            "SELECT count(*) FROM actions WHERE status IN ('pending', 'failed', 'reverted')"
        ),
        0
    );
    assert_eq!(
        w.sql::<String>("SELECT group_concat(status) FROM runs"),
        "completed"
    );
}

/// Starts `apply --yes` paced at `rate` calls/s per account, and returns once `detached`
/// detaches are journaled (0: once the run exists).
fn apply_until(w: &Workdir, rate: &str, detached: i64) -> std::process::Child {
    // A short settle window and call timeout: the crash tests are about the journal, and
    // `resume` reuses the options the run started with.
    let mut child = spawn_iamsweep(
        &w.db(),
        &w.accounts(),
        &[
            "--max-rate",
            rate,
            "--settle",
            "1s",
            "--call-timeout",
            "5s",
            "apply",
            "--yes",
        ],
    );
    if detached == 0 {
        wait_until(&w.db(), "SELECT count(*) FROM runs", |n| n >= 1, &mut child);
    } else {
        wait_until(
            &w.db(),
            "SELECT count(*) FROM actions WHERE status = 'detached'",
            |n| n >= detached,
            &mut child,
        );
    }
    child
}

fn scenario(first_account: u64) -> (Workdir, Vec<String>) {
    let accounts: Vec<String> = (0..2).map(|i| (first_account + i).to_string()).collect();
    block_on(async {
        for a in &accounts {
            seed_many(a, USERS).await;
        }
    });
    let ids: Vec<&str> = accounts.iter().map(String::as_str).collect();
    (Workdir::new(&accounts_toml(&ids)), accounts)
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn kill_9_at_any_moment_then_resume_detaches_everything_exactly_once() {
    // (name, first account, detached actions to wait for before the kill)
    for (moment, first, detached) in [
        ("before any detach", 100000000101_u64, 0_i64),
        ("mid-way", 100000000111, 150),
        ("near the end", 100000000121, 370),
    ] {
        let (w, accounts) = scenario(first);
        // Paced so the run takes a few seconds: the kill lands where we want it.
        let mut child = apply_until(&w, "150", detached);
        signal(&child, "-KILL");
        let _ = child.wait();
        let before: i64 = w.sql("SELECT count(*) FROM actions WHERE status = 'detached'");
        let pending: i64 = w.sql("SELECT count(*) FROM actions WHERE status = 'pending'");
        assert_eq!(
            w.sql::<String>("SELECT status FROM runs"),
            "running",
            "{moment}: killed mid-run"
        );

        let out = w.iamsweep(&["resume"]);
        assert_exit(&out, 0);
        assert!(
            stderr(&out).contains("took over the lock"),
            "{moment}: {}",
            stderr(&out)
        );
        assert_done_exactly_once(&w, &accounts);
        eprintln!(
            "kill -9 {moment}: {before} detached and {pending} intents without outcome at the kill; resume finished the rest"
        );
    }
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn ctrl_c_once_stops_cleanly_and_resume_finishes() {
    let (w, accounts) = scenario(100000000131);
    let child = apply_until(&w, "100", 20);
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 130);
    let text = stdout(&out);
    assert!(
        text.contains("interrupted: run 1 stopped cleanly"),
        "{text}"
    );
    assert!(text.contains("resume 1"), "{text}");
    assert_eq!(w.sql::<String>("SELECT status FROM runs"), "interrupted");
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE status = 'pending'"),
        0
    );

    let out = w.iamsweep(&["resume", "1"]);
    assert_exit(&out, 0);
    assert_done_exactly_once(&w, &accounts);
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn ctrl_c_twice_quits_at_once_and_the_journal_stays_consistent() {
    let (w, accounts) = scenario(100000000141);
    let child = apply_until(&w, "100", 20);
    signal(&child, "-INT");
    std::thread::sleep(std::time::Duration::from_millis(20));
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 130);
    assert!(stderr(&out).contains("quitting now"), "{}", stderr(&out));

    let out = w.iamsweep(&["resume"]);
    assert_exit(&out, 0);
    assert_done_exactly_once(&w, &accounts);
}

/// A scheduler's stop (SIGTERM) or a closed terminal (SIGHUP) during an apply whose answers
/// are slow: the process ends with the signal's code within the call timeout, the run is
/// `interrupted` with every row settled, and resume reaches the same end state as a run never
/// stopped.
#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn sigterm_or_sighup_during_a_slow_apply_stops_cleanly_and_resume_finishes() {
    for (sig, code, first) in [
        ("-TERM", 143, 100000000181_u64),
        ("-HUP", 129, 100000000191),
    ] {
        let (w, accounts) = scenario(first);
        let proxy = common::proxy::Proxy::start(&moto_url());
        // Every detach is answered 2 s after moto acted: at the signal, detaches are in flight.
        proxy.set_schedule(|s| {
            (s.action == "DetachUserPolicy")
                .then_some(common::proxy::Fault::SlowAnswer(Duration::from_secs(2)))
        });
        let mut child = iamsweep_command(
            &w.db(),
            &w.accounts(),
            &["--settle", "1s", "--call-timeout", "5s", "apply", "--yes"],
        )
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn iamsweep");
        wait_until(
            &w.db(),
            "SELECT count(*) FROM actions WHERE status = 'detached'",
            |n| n >= 10,
            &mut child,
        );
        let signalled = Instant::now();
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let took = signalled.elapsed();
        assert_exit(&out, code);
        // In flight: at most one slow answer (2 s) and the settle window (1 s) to wait for,
        // well inside the call timeout (5 s) plus the settling.
        assert!(
            took < Duration::from_secs(12),
            "{sig}: ended {took:?} after the signal"
        );
        let text = stdout(&out);
        assert!(
            text.contains("interrupted: run 1 stopped cleanly"),
            "{text}"
        );
        assert!(text.contains("resume 1"), "{text}");
        assert_eq!(w.sql::<String>("SELECT status FROM runs"), "interrupted");
        assert_eq!(
            w.sql::<i64>(
                "SELECT count(*) FROM actions WHERE status IN ('pending', 'unknown', 'reverting')"
            ),
            0,
            "{sig}: every write in flight was settled before the exit"
        );
        let detached: i64 = w.sql("SELECT count(*) FROM actions WHERE status = 'detached'");
        eprintln!("{sig}: exit {code} {took:?} after the signal, {detached} detached before it");

        let out = w.iamsweep(&["resume", "1"]);
        assert_exit(&out, 0);
        assert_done_exactly_once(&w, &accounts);
    }
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_second_process_is_refused_naming_the_run_and_readers_still_work() {
    let (w, accounts) = scenario(100000000151);
    let mut child = apply_until(&w, "50", 5);
    let second = w.iamsweep(&["scan"]);
    assert_exit(&second, 2);
    let err = stderr(&second);
    assert!(
        err.contains("in use by another iamsweep (run 1, pid "),
        "{err}"
    );
    // The lock belongs to the database file, not to a path: through a symlink, nobody gets in
    // either (src/lock.rs also tests a deleted note and a `..` path).
    let link = w.dir.path().join("link.db");
    std::os::unix::fs::symlink(w.db(), &link).unwrap();
    let third = run_iamsweep(&link, &w.accounts(), &["apply", "--yes"]);
    assert_exit(&third, 2);
    assert!(
        stderr(&third).contains("is in use by another iamsweep"),
        "{}",
        stderr(&third)
    );
    // Read-only commands work while the run writes (WAL).
    let runs = w.iamsweep(&["runs", "--format", "json"]);
    assert_exit(&runs, 0);
    assert!(
        stdout(&runs).contains("\"status\": \"running\""),
        "{}",
        stdout(&runs)
    );
    assert_exit(&w.iamsweep(&["report", "1", "--format", "csv"]), 0);

    // A stale lock (its process killed) is taken over, not left to block forever.
    signal(&child, "-KILL");
    let _ = child.wait();
    let out = w.iamsweep(&["resume"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("took over the lock left by run 1"), "{err}");
    assert!(err.contains("run 1 marked interrupted"), "{err}");
    assert_done_exactly_once(&w, &accounts);
}

/// Every redundant attachment detached exactly once across all runs, each detach in exactly one
/// run's rollback list, and no journal row left open in any run.
fn assert_each_detach_once_across_runs(w: &Workdir, accounts: &[String]) {
    block_on(async {
        for a in accounts {
            let s = Seeder::new(a).await;
            for i in 0..USERS {
                let u = format!("user{i:04}");
                assert_eq!(
                    s.user_policies(&u).await,
                    BTreeSet::from([format!("arn:aws:iam::{a}:policy/Own")]),
                    "{a} {u}"
                );
            }
        }
    });
    let redundant = (accounts.len() * USERS * 2) as i64;
    w.assert_journal_settled();
    let runs: Vec<String> = w.rows("SELECT id FROM runs WHERE kind = 'apply' ORDER BY id");
    let mut listed = Vec::new();
    for run in &runs {
        let out = w.iamsweep(&["rollback", run, "--format", "csv"]);
        assert_exit(&out, 0);
        listed.extend(stdout(&out).lines().skip(1).map(str::to_owned));
    }
    let total = listed.len();
    listed.sort();
    listed.dedup();
    assert_eq!(listed.len(), total, "a detach in two rollback lists");
    assert_eq!(total as i64, redundant, "every detach in one rollback list");
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn two_kills_each_followed_by_a_new_apply_leave_no_row_unsettled() {
    let (w, accounts) = scenario(100000000161);
    for detached in [100, 250] {
        let mut child = apply_until(&w, "150", detached);
        signal(&child, "-KILL");
        let _ = child.wait();
    }
    let pending: i64 = w.sql("SELECT count(*) FROM actions WHERE status = 'pending'");
    // What most operators do: a new apply, not `resume`.
    let out = w.iamsweep(&["--settle", "1s", "--call-timeout", "5s", "apply", "--yes"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("note: settled"), "{err}");
    assert_each_detach_once_across_runs(&w, &accounts);
    eprintln!("two kills: {pending} intents without outcome settled by the third apply");
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_killed_rollback_is_continued_by_plain_resume() {
    let (w, accounts) = scenario(100000000171);
    let out = w.iamsweep(&["--settle", "1s", "apply", "--yes"]);
    assert_exit(&out, 0);
    let mut child = spawn_iamsweep(
        &w.db(),
        &w.accounts(),
        &["--max-rate", "50", "rollback", "1", "--apply", "--yes"],
    );
    wait_until(
        &w.db(),
        "SELECT count(*) FROM actions WHERE operation = 'attach' AND status = 'attached'",
        |n| n >= 60,
        &mut child,
    );
    signal(&child, "-KILL");
    let _ = child.wait();
    let out = w.iamsweep(&["resume"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("(rollback) completed"),
        "{}",
        stdout(&out)
    );
    // The seeded state, exactly: every user holds its three policies directly again.
    block_on(async {
        for a in &accounts {
            let s = Seeder::new(a).await;
            let arn = |name: &str| format!("arn:aws:iam::{a}:policy/{name}");
            for i in 0..USERS {
                assert_eq!(
                    s.user_policies(&format!("user{i:04}")).await,
                    BTreeSet::from([arn("Grant1"), arn("Grant2"), arn("Own")])
                );
            }
        }
    });
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE status = 'pending'"),
        0
    );
    let left = w.iamsweep(&["rollback", "1", "--format", "json"]);
    assert_eq!(stdout(&left).trim(), "[]");
}
