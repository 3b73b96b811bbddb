//! Crash safety end to end against moto: `kill -9` at several moments, Ctrl-C once and twice,
//! and two processes on one database. After every resume, each redundant attachment is detached
//! exactly once and nothing else changed.

mod common;

use std::collections::BTreeSet;

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
    let mut child = spawn_iamsweep(
        &w.db(),
        &w.accounts(),
        &["--max-rate", rate, "apply", "--yes"],
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
