//! No run left unsettled, against the in-memory fake: a new apply settles what earlier runs left
//! open (each detach kept in the run that made it), and a database that fails mid-apply stops
//! new work, leaves the run interrupted, and resume finishes it exactly.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{FakeRig, accounts_toml, block_on};
use iamsweep::aws::Op;
use iamsweep::events::Event;
use iamsweep::model::AccountId;
use iamsweep::run::{Engine, Halt};
use iamsweep::store::{Intent, Operation, RunKind, RunStatus};

const A: &str = "111111111111";
const P1: &str = "arn:aws:iam::111111111111:policy/Deploy";
const P2: &str = "arn:aws:iam::111111111111:policy/Audit";

fn next_process(rig: &FakeRig) -> Engine<iamsweep::aws::fake::FakeOrg> {
    Engine {
        connector: rig.org.clone(),
        store: rig.engine.store.clone(),
        reporter: rig.recorder.clone(),
        options: rig.engine.options.clone(),
        cancel: iamsweep::cancel::Cancel::new(),
        caller: None,
    }
}

/// What a process killed mid-apply leaves: an apply run of scan `scan`, still `running`, that
/// first settled the earlier runs (as every apply does) and then wrote `sent` intents without
/// outcome for attachments still there; the first `reached` of them reached AWS.
fn crash_mid_apply(rig: &FakeRig, scan: i64, sent: usize, reached: usize) -> i64 {
    block_on(next_process(rig).settle_earlier(None)).unwrap();
    let (file, targets) = (rig.file.clone(), rig.file.accounts.clone());
    let org = rig.org.clone();
    let (run, detached) = block_on(rig.engine.store.call(move |s| {
        let run = s.create_run(RunKind::Apply, Some(scan), &file, &targets, "{}")?;
        let found: Vec<_> = s
            .findings_to_apply(scan, run, &AccountId::parse(A).unwrap())?
            .into_iter()
            .filter(|(_, f)| {
                org.user_policies(A, f.user_name.as_str())
                    .unwrap()
                    .contains(f.policy_arn.as_str())
            })
            .collect();
        let mut detached = Vec::new();
        for (i, (fid, f)) in found.into_iter().take(sent).enumerate() {
            s.journal_intent(&Intent {
                run_id: run,
                finding_id: Some(fid),
                account: AccountId::parse(A).unwrap(),
                user: f.user_name.clone(),
                policy: f.policy_arn.clone(),
                operation: Operation::Detach,
                covering_group: Some("ops".into()),
                undoes: None,
                send_by: None,
            })?;
            if i < reached {
                detached.push((f.user_name.to_string(), f.policy_arn.to_string()));
            }
        }
        Ok((run, detached))
    }))
    .unwrap();
    rig.org.with_account(A, |a| {
        for (u, p) in &detached {
            a.users.get_mut(u).unwrap().attached.remove(p);
        }
    });
    block_on(rig.engine.store.call(|s| s.interrupt_stale_runs())).unwrap();
    run
}

#[test]
fn a_new_apply_settles_what_crashed_applies_left_each_in_its_own_run() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1, P2]);
    for i in 0..6 {
        rig.org.add_user(A, &format!("u{i}"), &["ops"], &[P1, P2]);
    }
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap().run_id;
    // Two crashes, each followed by a new apply instead of `resume`.
    let first = crash_mid_apply(&rig, scan, 3, 2);
    let second = crash_mid_apply(&rig, scan, 5, 4);
    let last = block_on(next_process(&rig).apply(&rig.file)).unwrap();
    assert_eq!(last.status, RunStatus::Completed);
    // Nothing pending in any run.
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM actions WHERE status IN ('pending', 'unknown')"),
        0
    );
    // Each detach that reached AWS is in the rollback list of the run that made it, and the
    // lists together hold every detach exactly once.
    let listed = |run: i64| {
        block_on(rig.engine.store.call(move |s| s.rollback_items(run, None)))
            .unwrap()
            .into_iter()
            .map(|i| format!("{}|{}", i.user_name, i.policy_arn))
            .collect::<Vec<_>>()
    };
    let (a, b, c) = (listed(first), listed(second), listed(last.run_id));
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(b.len(), 4, "{b:?}");
    let mut all: Vec<String> = a.iter().chain(&b).chain(&c).cloned().collect();
    all.sort();
    let total = all.len();
    all.dedup();
    assert_eq!(all.len(), total, "no detach listed twice");
    assert_eq!(
        total, 12,
        "every redundant attachment detached and listed once"
    );
    for i in 0..6 {
        assert!(
            rig.org
                .user_policies(A, &format!("u{i}"))
                .unwrap()
                .is_empty()
        );
    }
    // The user is told.
    let said: Vec<String> = rig
        .recorder
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Settled {
                run_id, actions, ..
            } => Some(format!("{run_id}:{actions}")),
            _ => None,
        })
        .collect();
    assert_eq!(said, vec![format!("{first}:3"), format!("{second}:5")]);
}

#[test]
fn a_database_that_fails_mid_apply_interrupts_the_run_and_resume_finishes_it() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    for i in 0..10 {
        rig.org.add_user(A, &format!("u{i}"), &["ops"], &[P1]);
    }
    block_on(
        rig.engine
            .store
            .call(|s| s.set_busy_timeout(Duration::from_millis(300))),
    )
    .unwrap();
    // Another program takes the database's write lock while the 4th detach is on the wire.
    let blocker: Arc<Mutex<Option<rusqlite::Connection>>> = Arc::default();
    let (held, db) = (blocker.clone(), rig.db());
    rig.org.on_call(A, Op::DetachUserPolicy, 4, move |_| {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        *held.lock().unwrap() = Some(conn);
    });
    let first = block_on(rig.engine.apply(&rig.file)).unwrap();
    assert_eq!(first.status, RunStatus::Interrupted);
    assert!(
        matches!(&first.halted, Some(Halt::Database(m)) if m.contains("database")),
        "{:?}",
        first.halted
    );
    // Nothing new was started after the failure.
    assert_eq!(rig.org.calls(A, Op::DetachUserPolicy), 4);
    drop(blocker.lock().unwrap().take());
    // The 4th detach happened in AWS; its outcome could not be written.
    let ids = block_on(rig.engine.store.call(|s| s.interrupt_stale_runs())).unwrap();
    assert!(ids.is_empty() || ids == vec![first.run_id]);
    let again = block_on(next_process(&rig).resume(first.run_id)).unwrap();
    assert_eq!(again.status, RunStatus::Completed);
    assert_eq!(
        rig.rows("SELECT status, count(*) FROM actions GROUP BY status ORDER BY status"),
        vec!["detached|10"]
    );
    assert_eq!(
        rig.sql::<i64>("SELECT count(*) FROM actions WHERE checked_at IS NULL"),
        0
    );
    assert_eq!(
        rig.org.calls(A, Op::DetachUserPolicy),
        10,
        "none sent twice"
    );
    for i in 0..10 {
        assert!(
            rig.org
                .user_policies(A, &format!("u{i}"))
                .unwrap()
                .is_empty()
        );
    }
    let listed = block_on(
        rig.engine
            .store
            .call(move |s| s.rollback_items(first.run_id, None)),
    )
    .unwrap();
    assert_eq!(listed.len(), 10);
}
