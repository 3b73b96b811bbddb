//! `publish` against an in-memory Security Hub, for what moto's hub cannot show: a refusal of
//! some findings of a batch (counted in their own category), a signal between two requests,
//! and the lifecycle across two applies of one scan (a capped apply continued).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use common::{FakeRig, accounts_toml, block_on};
use iamsweep::aws::{AwsError, Hub, HubConnector, HubFinding, HubImported};
use iamsweep::cancel::Cancel;
use iamsweep::config::AccountTarget;
use iamsweep::publish::{AccountPublished, publish};

const A: &str = "111111111111";
const P1: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const P2: &str = "arn:aws:iam::111111111111:policy/Deploy";
const P3: &str = "arn:aws:iam::111111111111:policy/Own";

/// A hub that takes every finding but the refused ones, remembers the last state sent of
/// each, and can raise a signal once it has answered `n` requests.
#[derive(Clone, Default)]
struct TestHub {
    held: Arc<Mutex<BTreeMap<String, (String, String)>>>,
    requests: Arc<Mutex<usize>>,
    refuse: Arc<Mutex<HashSet<String>>>,
    signal_after: Option<(Cancel, usize)>,
}

impl HubConnector for TestHub {
    type Hub = TestHub;

    async fn hub(&self, _: &AccountTarget, _: &str) -> Result<TestHub, AwsError> {
        Ok(self.clone())
    }
}

impl Hub for TestHub {
    async fn import(&self, findings: &[HubFinding]) -> Result<HubImported, AwsError> {
        let refuse = self.refuse.lock().unwrap().clone();
        let mut failed = Vec::new();
        for f in findings {
            if refuse.contains(&f.id) {
                failed.push((f.id.clone(), "InvalidInput".into(), "refused".into()));
            } else {
                self.held
                    .lock()
                    .unwrap()
                    .insert(f.id.clone(), (f.record_state.clone(), f.compliance.clone()));
            }
        }
        let mut n = self.requests.lock().unwrap();
        *n += 1;
        if let Some((cancel, after)) = &self.signal_after
            && *n >= *after
        {
            cancel.cancel();
        }
        Ok(HubImported { failed })
    }
}

impl TestHub {
    /// (user, policy ARN) -> (RecordState, Compliance).
    fn states(&self) -> BTreeMap<(String, String), (String, String)> {
        self.held
            .lock()
            .unwrap()
            .iter()
            .map(|(id, state)| {
                // iamsweep/<account>/<user id or name>/<policy ARN>
                let mut parts = id.splitn(4, '/');
                let (_, _, user, policy) = (
                    parts.next(),
                    parts.next(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                ((user.to_owned(), policy.to_owned()), state.clone())
            })
            .collect()
    }

    fn id_of(&self, user_id: &str, policy: &str) -> String {
        format!("iamsweep/{A}/{user_id}/{policy}")
    }
}

fn counts(p: &AccountPublished) -> (u64, u64, u64, u64) {
    (p.new, p.updated, p.resolved, p.failed)
}

fn user_id(rig: &FakeRig, user: &str) -> String {
    rig.sql(&format!(
        "SELECT coalesce(user_id, user_name) FROM findings WHERE user_name = '{user}' LIMIT 1"
    ))
}

/// Findings Security Hub refuses by Id are counted failed in their own category: a refused
/// resolution is not taken from the new or updated ones, and is not recorded as sent (the
/// next publish sends it again).
#[test]
fn a_refused_finding_is_failed_in_its_own_category_and_sent_again_next_time() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1, P2]);
    rig.org.add_user(A, "alice", &["ops"], &[P1, P2]);
    rig.org.add_user(A, "dave", &[], &[P3]);
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap();
    let hub = TestHub::default();
    let never = Cancel::new();
    let first = block_on(publish(&hub, &rig.engine.store, scan.run_id, None, &never)).unwrap();
    assert_eq!(counts(&first[0]), (3, 0, 0, 0));

    let applied = block_on(
        rig.engine
            .apply_run(scan.run_id, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(applied.tally.detached, 2);
    let refused = hub.id_of(&user_id(&rig, "alice"), P1);
    hub.refuse.lock().unwrap().insert(refused.clone());
    let second = block_on(publish(
        &hub,
        &rig.engine.store,
        applied.run_id,
        None,
        &never,
    ))
    .unwrap();
    assert_eq!(
        counts(&second[0]),
        (0, 1, 1, 1),
        "dave's open finding updated, alice/Deploy resolved, alice/ReadOnlyAccess refused"
    );
    assert!(second[0].error.as_deref().unwrap().contains("refused 1"));
    assert_eq!(
        rig.sql::<String>(&format!(
            "SELECT state FROM published WHERE finding_uid = '{refused}'"
        )),
        "active",
        "the refused resolution is not recorded as sent"
    );

    hub.refuse.lock().unwrap().clear();
    let third = block_on(publish(
        &hub,
        &rig.engine.store,
        applied.run_id,
        None,
        &never,
    ))
    .unwrap();
    assert_eq!(counts(&third[0]), (0, 2, 1, 0), "sent again, resolved now");
    let alice = user_id(&rig, "alice");
    assert_eq!(
        hub.states()[&(alice, P1.to_owned())],
        ("ARCHIVED".to_owned(), "PASSED".to_owned())
    );
}

/// A signal between two requests stops the publish: the batch answered is recorded, the rest
/// is counted failed with the reason, and the next publish sends it.
#[test]
fn a_signal_stops_publish_between_two_requests_and_the_next_one_sends_the_rest() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    for i in 0..150 {
        rig.org.add_user(A, &format!("u{i:03}"), &["ops"], &[P1]);
    }
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap();
    let cancel = Cancel::new();
    let hub = TestHub {
        signal_after: Some((cancel.clone(), 1)),
        ..TestHub::default()
    };
    let out = block_on(publish(&hub, &rig.engine.store, scan.run_id, None, &cancel)).unwrap();
    assert_eq!(
        *hub.requests.lock().unwrap(),
        1,
        "no request after the signal"
    );
    assert_eq!(counts(&out[0]), (100, 0, 0, 50));
    assert!(
        out[0]
            .error
            .as_deref()
            .unwrap()
            .contains("stopped by a signal: 50 findings not sent"),
        "{:?}",
        out[0].error
    );
    assert_eq!(rig.sql::<i64>("SELECT count(*) FROM published"), 100);

    let hub = TestHub {
        held: hub.held.clone(),
        ..TestHub::default()
    };
    let out = block_on(publish(
        &hub,
        &rig.engine.store,
        scan.run_id,
        None,
        &Cancel::new(),
    ))
    .unwrap();
    assert_eq!(counts(&out[0]), (50, 100, 0, 0));
    assert_eq!(hub.states().len(), 150);
}

/// A capped apply continued by a second apply of the same scan: publishing the second one
/// keeps what the first detached resolved (it is not "open" because the second run did not
/// touch it).
#[test]
fn publishing_a_continued_apply_keeps_what_the_first_apply_resolved() {
    let mut rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    for user in ["alice", "bob", "carol"] {
        rig.org.add_user(A, user, &["ops"], &[P1]);
    }
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap();
    let hub = TestHub::default();
    let never = Cancel::new();
    rig.engine.options.apply.max_detaches = Some(1);
    let capped = block_on(
        rig.engine
            .apply_run(scan.run_id, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(capped.tally.detached, 1);
    let out = block_on(publish(
        &hub,
        &rig.engine.store,
        capped.run_id,
        None,
        &never,
    ))
    .unwrap();
    assert_eq!(counts(&out[0]), (2, 0, 1, 0));

    rig.engine.options.apply.max_detaches = None;
    let rest = block_on(
        rig.engine
            .apply_run(scan.run_id, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(rest.tally.detached, 2);
    let out = block_on(publish(&hub, &rig.engine.store, rest.run_id, None, &never)).unwrap();
    assert_eq!(
        counts(&out[0]),
        (0, 1, 2, 0),
        "the first apply's detach is sent as resolved again, never reopened"
    );
    let states = hub.states();
    assert_eq!(states.len(), 3);
    assert!(
        states
            .values()
            .all(|s| s == &("ARCHIVED".to_owned(), "PASSED".to_owned())),
        "{states:?}"
    );
}

/// A rollback whose re-attach AWS refused leaves the detach in force: the finding stays
/// resolved in Security Hub (a failed attach row is not where the finding stands).
#[test]
fn a_refused_rollback_attach_does_not_reopen_a_resolved_finding() {
    let rig = FakeRig::new(&accounts_toml(&[A]));
    rig.org.add_group(A, "ops", &[P1]);
    rig.org.add_user(A, "alice", &["ops"], &[P1]);
    let scan = block_on(rig.engine.scan(&rig.file)).unwrap();
    let applied = block_on(
        rig.engine
            .apply_run(scan.run_id, &rig.file, rig.file.accounts.clone()),
    )
    .unwrap();
    assert_eq!(applied.tally.detached, 1);
    rig.org.fail_call(
        A,
        iamsweep::aws::Op::AttachUserPolicy,
        1,
        AwsError::new(
            iamsweep::aws::ErrorKind::LimitExceeded,
            "LimitExceeded",
            "too many policies",
        ),
    );
    block_on(rig.engine.rollback(applied.run_id)).unwrap();
    assert_eq!(
        rig.sql::<String>("SELECT status FROM actions WHERE operation = 'attach'"),
        "failed"
    );
    assert!(!rig.org.user_policies(A, "alice").unwrap().contains(P1));
    let hub = TestHub::default();
    let out = block_on(publish(
        &hub,
        &rig.engine.store,
        applied.run_id,
        None,
        &Cancel::new(),
    ))
    .unwrap();
    assert_eq!(counts(&out[0]), (0, 0, 1, 0), "resolved, not reopened");
    assert!(
        hub.states()
            .values()
            .all(|s| s == &("ARCHIVED".to_owned(), "PASSED".to_owned()))
    );
}
