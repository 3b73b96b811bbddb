//! Governed sweeps end to end against moto: a cap per run (`--max-detaches`), exceptions that
//! expire, and reviewed plans applied exactly.

mod common;

use std::collections::BTreeSet;

use common::*;

const USERS: usize = 10;

/// Two accounts of `USERS` users each, every user holding Grant1 and Grant2 directly and
/// through group `ops` (2 redundant) and `Own` directly only.
fn scenario(first: u64) -> (Workdir, Vec<String>) {
    let accounts: Vec<String> = (0..2).map(|i| (first + i).to_string()).collect();
    block_on(async {
        for a in &accounts {
            seed_many(a, USERS).await;
        }
    });
    let ids: Vec<&str> = accounts.iter().map(String::as_str).collect();
    (Workdir::new(&accounts_toml(&ids)), accounts)
}

/// Direct policies still held, over every user of every account.
fn direct_left(accounts: &[String]) -> usize {
    block_on(async {
        let mut n = 0;
        for a in accounts {
            let s = Seeder::new(a).await;
            for i in 0..USERS {
                n += s.user_policies(&format!("user{i:04}")).await.len();
            }
        }
        n
    })
}

#[test]
#[ignore = "needs moto: run scripts/test.sh"]
fn a_capped_apply_detaches_exactly_n_and_the_printed_command_finishes() {
    let (w, accounts) = scenario(100000000801);
    let redundant = 2 * USERS * accounts.len();
    assert_exit(&w.iamsweep(&["scan"]), 0);
    let out = w.iamsweep(&[
        "--settle",
        "1s",
        "apply",
        "--run",
        "1",
        "--yes",
        "--max-detaches",
        "7",
    ]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE run_id = 2 AND status = 'detached'"),
        7
    );
    assert_eq!(
        direct_left(&accounts),
        3 * USERS * accounts.len() - 7,
        "AWS agrees"
    );
    assert_eq!(
        w.sql::<String>("SELECT status FROM runs WHERE id = 2"),
        "completed",
        "a cap is not a failure"
    );
    let left = redundant - 7;
    assert!(
        text.contains(&format!("{left} findings of run 1 are left")),
        "{text}"
    );
    // The command it prints continues: run it as printed (minus the --db path).
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("cap: "))
        .nth(1)
        .expect("the continuing command")
        .trim()
        .to_owned();
    assert!(
        line.ends_with("apply --run 1 --yes --max-detaches 7"),
        "{line}"
    );
    let mut made = 7;
    for run in 3.. {
        let out = w.iamsweep(&[
            "--settle",
            "1s",
            "apply",
            "--run",
            "1",
            "--yes",
            "--max-detaches",
            "7",
        ]);
        assert_exit(&out, 0);
        let now: i64 = w.sql(&format!(
            "SELECT count(*) FROM actions WHERE run_id = {run} AND status = 'detached'"
        ));
        assert!(now <= 7, "run {run}: {now} detached");
        made += now as usize;
        if !stdout(&out).contains("cap: ") {
            break;
        }
        assert!(run < 10, "the cap never let the sweep finish");
    }
    assert_eq!(made, redundant, "every redundant attachment once");
    // Nothing detached twice: runs 3.. did not send again what run 2 detached.
    assert_eq!(
        w.sql::<i64>("SELECT count(*) FROM actions WHERE status <> 'detached'"),
        0,
        "{:?}",
        w.rows("SELECT run_id || ' ' || status || ' ' || coalesce(reason, '') FROM actions WHERE status <> 'detached'")
    );
    assert_eq!(
        direct_left(&accounts),
        USERS * accounts.len(),
        "only Own is left"
    );
    let kept: BTreeSet<String> = block_on(async {
        Seeder::new(&accounts[0])
            .await
            .user_groups("user0000")
            .await
    });
    assert_eq!(kept, BTreeSet::from(["ops".to_owned()]), "membership kept");
}
