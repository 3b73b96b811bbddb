//! Simulated-organization benchmarks on the in-memory fake (targets 3-5 of BENCHMARKS.md).
//! Each scenario runs in its own process so that its peak RSS is its own, and prints one JSON
//! line. Run through scripts/bench.sh, or: cargo bench --bench sim -- SCENARIO
//!
//!   scan-org [ACCOUNTS] [USERS] [GROUPS] [LATENCY_MS] [CONCURRENCY]  (0: adaptive, the default)
//!   throttle [ACCOUNTS] [USERS] [REDUNDANT_PER_USER] [LIMIT_PER_S] [PACE_PER_S]
//!   sqlite [ACCOUNTS] [FINDINGS_PER_ACCOUNT]     (SIM_KEEP_DB=PATH keeps the database)
//!   sqlite-apply DB [ACCOUNTS]                   (adds an apply run to the kept database)
//!   sqlite-prune [ACCOUNTS] [FINDINGS] [SCANS]   (unchanged scans, then prune)
//!   report DB [RUN] [ROUNDS]                     (streams an existing database's report)
//!   mixed [ACCOUNTS] [USERS] [MAX_RATE] [SETTLE_S] (apply's requests per detach, tricky users)
//!   org-walk [ACCOUNTS] [LIMIT_PER_S]            (discovering a large organization, throttled)
//!   steady-throttle [ACCOUNTS] [USERS] [EVERY]   (apply while every EVERYth call is throttled
//!                                                 whatever the pace, against the same apply
//!                                                 unthrottled)

use std::sync::Arc;
use std::time::{Duration, Instant};

use iamsweep::apply::ApplyOptions;
use iamsweep::aws::fake::{FakeOrg, Synthetic};
use iamsweep::aws::{AwsError, ErrorKind, OrgAccount, OrgReader, OrgUnit, Page};
use iamsweep::calls::{CallPolicy, Meter, RetryPolicy};
use iamsweep::cancel::Cancel;
use iamsweep::config::{self, AccountsFile};
use iamsweep::events::Silent;
use iamsweep::findings::{AccountFindings, Finding, FindingKind};
use iamsweep::model::{PolicyArn, UserName};
use iamsweep::report::Format;
use iamsweep::run::{Engine, RunOptions};
use iamsweep::store::actor::StoreHandle;
use iamsweep::store::{RunKind, Store};

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn accounts(n: u64) -> AccountsFile {
    let text: String = (0..n)
        .map(|i| format!("[[account]]\nid = \"{:012}\"\n", 500_000_000_000 + i))
        .collect();
    config::parse("bench-accounts.toml", &text).expect("accounts")
}

fn engine(org: &FakeOrg, db: &std::path::Path, options: RunOptions) -> Engine<FakeOrg> {
    Engine {
        connector: org.clone(),
        store: StoreHandle::spawn(Store::open(db).expect("open store")),
        reporter: Arc::new(Silent),
        options,
        cancel: Cancel::new(),
        caller: None,
    }
}

fn count(db: &std::path::Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

fn scan_org(args: &[String]) {
    let (n, users, groups, latency, concurrency) = (
        arg(args, 0, 1000),
        arg(args, 1, 1000),
        arg(args, 2, 100),
        arg(args, 3, 50),
        arg(args, 4, 64),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let org = FakeOrg::new();
    org.set_synthetic(Some(Synthetic {
        users: users as usize,
        groups: groups as usize,
    }));
    org.set_latency(Duration::from_millis(latency));
    let file = accounts(n);
    // 0: the default, adaptive.
    let options = RunOptions {
        concurrency: if concurrency == 0 {
            iamsweep::run::CONCURRENCY_CEILING
        } else {
            concurrency as usize
        },
        adaptive: concurrency == 0,
        ..RunOptions::default()
    };
    let e = engine(&org, &db, options);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = Instant::now();
    let result = rt.block_on(e.scan(&file)).unwrap();
    let wall = start.elapsed().as_secs_f64();
    let findings = count(&db, "SELECT count(*) FROM findings");
    let calls = count(&db, "SELECT sum(calls) FROM api_calls");
    let done = count(
        &db,
        "SELECT count(*) FROM run_accounts WHERE status = 'completed'",
    );
    println!(
        "{{\"scenario\":\"scan-org\",\"accounts\":{n},\"users_per_account\":{users},\"latency_ms\":{latency},\"concurrency\":{concurrency},\"status\":\"{}\",\"accounts_completed\":{done},\"findings_in_db\":{findings},\"calls\":{calls},\"wall_s\":{wall:.2},\"peak_rss_mib\":{:.1}}}",
        result.status,
        peak_rss_mib()
    );
}

fn throttle(args: &[String]) {
    let (n, users, per_user, limit, pace) = (
        arg(args, 0, 100),
        arg(args, 1, 40),
        arg(args, 2, 5),
        arg(args, 3, 10),
        arg(args, 4, 10),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let org = FakeOrg::new();
    let file = accounts(n);
    for t in &file.accounts {
        let a = t.id.as_str();
        let policies: Vec<String> = (0..per_user)
            .map(|p| format!("arn:aws:iam::{a}:policy/P{p}"))
            .collect();
        let refs: Vec<&str> = policies.iter().map(String::as_str).collect();
        org.add_group(a, "ops", &refs);
        for u in 0..users {
            org.add_user(a, &format!("user{u:04}"), &["ops"], &refs);
        }
    }
    org.set_rate_limit(Some(limit as u32));
    org.set_latency(Duration::from_millis(20));
    let options = RunOptions {
        // Every account in flight at once.
        concurrency: n as usize,
        adaptive: false,
        calls: CallPolicy {
            retry: RetryPolicy::default(),
            rate: (pace > 0).then_some(pace as f64),
            ..CallPolicy::default()
        },
        // This scenario measures pacing against throttling; the fake is strongly consistent,
        // so the settle window would only add its fixed wait.
        apply: ApplyOptions {
            settle: Duration::ZERO,
            ..ApplyOptions::default()
        },
    };
    let e = engine(&org, &db, options);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = Instant::now();
    let scan = rt.block_on(e.scan(&file)).unwrap();
    let scan_wall = start.elapsed().as_secs_f64();
    let throttled_scan = org.throttled_calls();
    let start = Instant::now();
    let apply = rt
        .block_on(e.apply_run(scan.run_id, &file, file.accounts.clone()))
        .unwrap();
    let apply_wall = start.elapsed().as_secs_f64();
    let apply_calls = count(
        &db,
        &format!(
            "SELECT sum(calls) FROM api_calls WHERE run_id = {}",
            apply.run_id
        ),
    );
    let max_account_calls = count(
        &db,
        &format!(
            "SELECT max(c) FROM (SELECT sum(calls) AS c FROM api_calls WHERE run_id = {} GROUP BY account_id)",
            apply.run_id
        ),
    );
    let throttled_apply = org.throttled_calls() - throttled_scan;
    let detached = count(
        &db,
        "SELECT count(*) FROM actions WHERE status = 'detached'",
    );
    let done = count(
        &db,
        &format!(
            "SELECT count(*) FROM run_accounts WHERE run_id = {} AND status = 'completed'",
            apply.run_id
        ),
    );
    let all_calls: u64 = file
        .accounts
        .iter()
        .map(|t| org.total_calls(t.id.as_str()))
        .sum();
    // The throttle's own bound: the calls one account needs, at `limit` per second.
    let bound = max_account_calls as f64 / limit as f64;
    println!(
        "{{\"scenario\":\"throttle\",\"accounts\":{n},\"detaches_per_account\":{},\"limit_per_s\":{limit},\"pace_per_s\":{pace},\"scan_status\":\"{}\",\"apply_status\":\"{}\",\"accounts_completed\":{done},\"detached\":{detached},\"calls\":{all_calls},\"throttled\":{},\"throttled_pct\":{:.2},\"scan_wall_s\":{scan_wall:.2},\"apply_wall_s\":{apply_wall:.2},\"apply_calls\":{apply_calls},\"apply_bound_s\":{bound:.2},\"apply_ratio\":{:.3},\"peak_rss_mib\":{:.1}}}",
        users * per_user,
        scan.status,
        apply.status,
        throttled_scan + throttled_apply,
        100.0 * (throttled_scan + throttled_apply) as f64 / all_calls as f64,
        apply_wall / bound,
        peak_rss_mib()
    );
}

fn sqlite(args: &[String]) {
    let (n, per) = (arg(args, 0, 1000), arg(args, 1, 1000));
    let dir = tempfile::tempdir().unwrap();
    let db =
        std::env::var_os("SIM_KEEP_DB").map_or_else(|| dir.path().join("bench.db"), Into::into);
    let file = accounts(n);
    let mut store = Store::open(&db).unwrap();
    let run = store
        .create_run(RunKind::Scan, None, &file, &file.accounts, "{}")
        .unwrap();
    let batch = |a: &str| sim_findings(a, per);
    let calls = iamsweep::calls::CallCounts::default();
    // Time only the writes: each account's findings are built first, as a scan hands them over.
    let mut write = 0.0;
    for t in &file.accounts {
        let f = batch(t.id.as_str());
        let start = Instant::now();
        store
            .record_scan(
                run,
                &t.id,
                &f,
                &calls,
                iamsweep::store::AccountStatus::Completed,
            )
            .unwrap();
        write += start.elapsed().as_secs_f64();
    }
    drop(store);
    // `report` and `history` are timed as a user runs them, by scripts/bench.sh (whole
    // processes on this database); here, that every finding is there and a documented view answers.
    let stored: i64 = count(
        &db,
        &format!("SELECT count(*) FROM findings WHERE run_id = {run}"),
    );
    let start = Instant::now();
    let open: i64 = count(
        &db,
        "SELECT count(*) FROM open_findings WHERE account_id = '500000000500'",
    );
    let open_q = start.elapsed().as_secs_f64();
    println!(
        "{{\"scenario\":\"sqlite\",\"findings\":{},\"write_s\":{write:.2},\"findings_stored\":{stored},\"open_findings_one_account\":{open},\"open_findings_query_s\":{open_q:.3},\"db_mib\":{:.0},\"peak_rss_mib\":{:.1}}}",
        n * per,
        std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0,
        peak_rss_mib()
    );
}

/// One simulated account's scan: `per` findings, half redundant.
fn sim_findings(a: &str, per: u64) -> AccountFindings {
    let findings = (0..per)
        .map(|i| Finding {
            user_name: UserName::new(format!("user{i:05}")),
            user_id: Some(format!("AIDASIM{i:012}")),
            user_arn: format!("arn:aws:iam::{a}:user/user{i:05}"),
            policy_arn: PolicyArn::new(format!("arn:aws:iam::{a}:policy/P{:04}", i % 200)),
            policy_name: format!("P{:04}", i % 200),
            kind: if i % 2 == 0 {
                FindingKind::RedundantDirect
            } else {
                FindingKind::DirectOnly
            },
            covering_groups: if i % 2 == 0 {
                vec![format!("group{:04}", i % 100)]
            } else {
                vec![]
            },
            covering_group_ids: if i % 2 == 0 {
                vec![format!("AGPASIM{:012}", i % 100)]
            } else {
                vec![]
            },
            exception: None,
            owner: None,
        })
        .collect();
    AccountFindings {
        users_seen: per,
        groups_seen: 100,
        users_excluded: 0,
        findings,
        read_at: None,
    }
}

/// What each scan of a scheduled sweep of an unchanged organization finds: `per` findings in
/// each account of `file`, read at the same time.
fn unchanged_findings(file: &AccountsFile, per: u64) -> Vec<AccountFindings> {
    file.accounts
        .iter()
        .map(|t| AccountFindings {
            read_at: Some("2026-11-28T00:00:00.000Z".into()),
            ..sim_findings(t.id.as_str(), per)
        })
        .collect()
}

/// One scan run recording `batches` for the accounts of `file`, as a scan writes them. Returns
/// the run and the seconds its writes took.
fn scheduled_scan(
    store: &mut Store,
    file: &AccountsFile,
    batches: &[AccountFindings],
) -> (i64, f64) {
    let calls = iamsweep::calls::CallCounts::default();
    let run = store
        .create_run(RunKind::Scan, None, file, &file.accounts, "{}")
        .unwrap();
    let start = Instant::now();
    for (t, f) in file.accounts.iter().zip(batches) {
        store
            .record_scan(
                run,
                &t.id,
                f,
                &calls,
                iamsweep::store::AccountStatus::Completed,
            )
            .unwrap();
    }
    let took = start.elapsed().as_secs_f64();
    store
        .finish_run(run, iamsweep::store::RunStatus::Completed)
        .unwrap();
    (run, took)
}

/// `sqlite-prune [ACCOUNTS] [FINDINGS_PER_ACCOUNT] [SCANS]`: SCANS scans that find the same
/// thing (a scheduled sweep of an unchanged organization), the file's size after the first and
/// after the last, then `prune` (every scan but the first and the newest is forgotten): its time
/// and the size after.
fn sqlite_prune(args: &[String]) {
    let (n, per, scans) = (arg(args, 0, 100), arg(args, 1, 1000), arg(args, 2, 30));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let file = accounts(n);
    let mut store = Store::open(&db).unwrap();
    let batches = unchanged_findings(&file, per);
    // The database's pages (WAL mode: what a checkpoint leaves in the file).
    let size = |store: &Store| store.size_bytes().unwrap() as f64 / 1048576.0;
    let (mut first_mib, mut write) = (0.0, 0.0);
    for scan in 0..scans {
        write += scheduled_scan(&mut store, &file, &batches).1;
        if scan == 0 {
            first_mib = size(&store);
        }
    }
    let last_mib = size(&store);
    let start = Instant::now();
    let pruned = store.prune("2999-01-01T00:00:00.000Z", false).unwrap();
    let prune_s = start.elapsed().as_secs_f64();
    println!(
        "{{\"scenario\":\"sqlite-prune\",\"findings_per_scan\":{},\"scans\":{scans},\"write_s_per_scan\":{:.2},\"db_mib_after_first\":{first_mib:.1},\"db_mib_after_last\":{last_mib:.1},\"runs_forgotten\":{},\"prune_s\":{prune_s:.2},\"db_mib_after_prune\":{:.1},\"peak_rss_mib\":{:.1}}}",
        n * per,
        write / scans as f64,
        pruned.runs.len(),
        pruned.bytes_after as f64 / 1048576.0,
        peak_rss_mib()
    );
}

/// `sqlite-year [ACCOUNTS] [FINDINGS_PER_ACCOUNT] [SCANS]`: a schedule of sweeps of an
/// organization that does not change: SCANS scans that find the same thing, written as a scan
/// writes them (`record_scan`, every account, each scan its own run). Prints the file's size after
/// the first scan and after the last, what each unchanged scan added per finding, the time to
/// write the first scan and an unchanged one, and what a user then reads: the report of the last
/// run (csv, json) and `diff` of the first and the last.
fn sqlite_year(args: &[String]) {
    let (n, per, scans) = (arg(args, 0, 1000), arg(args, 1, 1000), arg(args, 2, 365));
    let dir = tempfile::tempdir().unwrap();
    let db =
        std::env::var_os("SIM_KEEP_DB").map_or_else(|| dir.path().join("bench.db"), Into::into);
    let file = accounts(n);
    let mut store = Store::open(&db).unwrap();
    let batches = unchanged_findings(&file, per);
    // The database's pages (WAL mode: what a checkpoint leaves in the file).
    let size = |store: &Store| store.size_bytes().unwrap() as f64;
    let (mut first_bytes, mut first_s, mut unchanged_s) = (0.0, 0.0, 0.0);
    let (mut first_run, mut last_run) = (0, 0);
    for scan in 0..scans {
        let (run, took) = scheduled_scan(&mut store, &file, &batches);
        if scan == 0 {
            (first_bytes, first_s, first_run) = (size(&store), took, run);
        } else {
            unchanged_s += took;
        }
        last_run = run;
    }
    let last_bytes = size(&store);
    let per_scan_per_finding = if scans > 1 {
        (last_bytes - first_bytes) / (scans - 1) as f64 / (n * per) as f64
    } else {
        0.0
    };
    drop(store);
    let store = Store::open_read_only(&db).unwrap().unwrap();
    let (csv_rows, csv_s) = stream_report(&store, last_run, Format::Csv);
    let (_, json_s) = stream_report(&store, last_run, Format::Json);
    let start = Instant::now();
    let d = iamsweep::diff::diff(&store, Some(first_run), Some(last_run), false).unwrap();
    let diff_s = start.elapsed().as_secs_f64();
    println!(
        "{{\"scenario\":\"sqlite-year\",\"findings_per_scan\":{},\"scans\":{scans},\"db_mib_after_first\":{:.1},\"db_mib_after_last\":{:.1},\"ratio\":{:.3},\"bytes_per_finding_per_unchanged_scan\":{per_scan_per_finding:.2},\"first_scan_write_s\":{first_s:.2},\"unchanged_scan_write_s\":{:.2},\"report_last_csv_s\":{csv_s:.2},\"report_last_rows\":{csv_rows},\"report_last_json_s\":{json_s:.2},\"diff_first_last_s\":{diff_s:.2},\"diff_changes\":{},\"peak_rss_mib\":{:.1}}}",
        n * per,
        first_bytes / 1048576.0,
        last_bytes / 1048576.0,
        last_bytes / first_bytes,
        if scans > 1 {
            unchanged_s / (scans - 1) as f64
        } else {
            0.0
        },
        d.changes.len(),
        peak_rss_mib()
    );
}

/// What `report --format csv|json` does: streams every finding of the run out. Rows and seconds.
fn stream_report(store: &Store, run: i64, format: Format) -> (u64, f64) {
    let start = Instant::now();
    let mut out = iamsweep::report::FindingStream::start(std::io::sink(), format).unwrap();
    let rows = store.report_each(run, |f| out.row(f)).unwrap();
    out.finish().unwrap();
    (rows, start.elapsed().as_secs_f64())
}

/// `sqlite-apply DB`: gives the scan of `sqlite` (run 1) an apply run (run 2) that detached
/// every redundant finding, written with one SQL statement (seeding, not a measured path), so
/// that `report 2` reads through the actions and `history` has rows to find. Prints the run.
fn sqlite_apply(args: &[String]) {
    let db = std::path::Path::new(args.first().expect("sqlite-apply DB"));
    let file = accounts(arg(args, 1, 1000));
    let run = Store::open(db)
        .unwrap()
        .create_run(RunKind::Apply, Some(1), &file, &file.accounts, "{}")
        .unwrap();
    let conn = rusqlite::Connection::open(db).unwrap();
    let start = Instant::now();
    let actions = conn
        .execute(
            "INSERT INTO actions (run_id, finding_id, account_id, user_name, policy_arn, operation,
                                  status, covering_group, request_id, intent_at, finished_at,
                                  checked_at)
             SELECT ?1, id, account_id, user_name, policy_arn, 'detach', 'detached',
                    covering_groups ->> '$[0]', 'req-' || id, '2026-11-28T00:00:00.000Z',
                    '2026-11-28T00:00:00.080Z', '2026-11-28T00:00:00.160Z'
             FROM findings WHERE run_id = 1 AND kind = 'redundant_direct' ORDER BY id",
            [run],
        )
        .unwrap();
    conn.execute(
        "UPDATE runs SET status = 'completed', finished_at = '2026-11-28T00:10:00.000Z'
         WHERE id = ?1",
        [run],
    )
    .unwrap();
    println!(
        "{{\"scenario\":\"sqlite-apply\",\"run\":{run},\"actions\":{actions},\"insert_s\":{:.2}}}",
        start.elapsed().as_secs_f64()
    );
}

/// `report DB RUN [ROUNDS]`: times the streamed report of an existing database (profiling).
fn report(args: &[String]) {
    let db = std::path::Path::new(args.first().expect("report DB RUN"));
    let run = arg(args, 1, 1) as i64;
    let store = Store::open_read_only(db).unwrap().unwrap();
    for _ in 0..arg(args, 2, 1) {
        let (rows, csv) = stream_report(&store, run, Format::Csv);
        let (_, json) = stream_report(&store, run, Format::Json);
        println!(
            "{{\"scenario\":\"report\",\"rows\":{rows},\"csv_s\":{csv:.2},\"json_s\":{json:.2}}}"
        );
    }
}

/// Apply's cost on a mixed organization: users in 0 to 3 groups, 1 to 5 direct policies each
/// (some granted by a group too), a large group nearly nobody needs proving through, and a few
/// tricky users changed between the scan and the apply (covering grant removed, user deleted,
/// user re-created, a deprecated AWS managed policy). Paced as by default (20 calls/s per
/// account), with the default settle window and proof bound. Prints apply's requests per
/// detach, every request counted (AssumeRole, proofs, post-checks).
fn mixed(args: &[String]) {
    let (n, users, rate, settle) = (
        arg(args, 0, 4),
        arg(args, 1, 300),
        arg(args, 2, 20),
        arg(args, 3, 15),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let org = FakeOrg::new();
    let file = accounts(n);
    let deprecated = "arn:aws:iam::aws:policy/AmazonElasticTranscoderFullAccess";
    let mut rng = fastrand::Rng::with_seed(7);
    for t in &file.accounts {
        let a = t.id.as_str();
        let pool: Vec<String> = (0..15)
            .map(|p| format!("arn:aws:iam::{a}:policy/P{p:02}"))
            .chain([
                "arn:aws:iam::aws:policy/ReadOnlyAccess".to_owned(),
                deprecated.to_owned(),
            ])
            .collect();
        let mut grants: Vec<Vec<String>> = Vec::new();
        for g in 0..10 {
            let k = rng.usize(1..=3);
            let picked: Vec<String> = (0..k)
                .map(|_| pool[rng.usize(..pool.len())].clone())
                .collect();
            let refs: Vec<&str> = picked.iter().map(String::as_str).collect();
            org.add_group(a, &format!("g{g:02}"), &refs);
            grants.push(picked);
        }
        org.deprecate_policy(a, deprecated);
        // A large group that grants P00; only one user needs proving through it.
        org.add_group(a, "everyone", &[pool[0].as_str()]);
        for i in 0..2500 {
            org.add_user(a, &format!("staff{i:04}"), &["everyone"], &[]);
        }
        org.add_user(a, "lonely", &["everyone"], &[pool[0].as_str()]);
        for u in 0..users {
            let groups: Vec<String> = (0..rng.usize(0..=3))
                .map(|_| format!("g{:02}", rng.usize(0..10)))
                .collect();
            let mut direct: Vec<String> = (0..rng.usize(1..=5))
                .map(|_| pool[rng.usize(..pool.len())].clone())
                .collect();
            // Half of the users hold one of their groups' grants directly as well.
            if let Some(g) = groups.first().filter(|_| rng.bool()) {
                let g: usize = g[1..].parse().unwrap();
                direct.push(grants[g][0].clone());
            }
            let g: Vec<&str> = groups.iter().map(String::as_str).collect();
            let d: Vec<&str> = direct.iter().map(String::as_str).collect();
            org.add_user(a, &format!("user{u:04}"), &g, &d);
        }
    }
    let options = RunOptions {
        concurrency: n as usize,
        adaptive: false,
        calls: CallPolicy {
            rate: (rate > 0).then_some(rate as f64),
            ..CallPolicy::default()
        },
        apply: ApplyOptions {
            settle: Duration::from_secs(settle),
            ..ApplyOptions::default()
        },
    };
    let e = engine(&org, &db, options);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scan = rt.block_on(e.scan(&file)).unwrap();
    // Between the scan and the apply: the tricky users.
    for t in &file.accounts {
        org.with_account(t.id.as_str(), |acct| {
            let names: Vec<String> = acct
                .users
                .keys()
                .filter(|u| u.starts_with("user"))
                .cloned()
                .collect();
            for (i, u) in names.iter().enumerate() {
                match i % 50 {
                    // Taken out of its groups.
                    1 => acct.users.get_mut(u).unwrap().groups.clear(),
                    // Deleted.
                    2 => {
                        acct.users.remove(u);
                    }
                    // Deleted and re-created under the same name.
                    3 => acct.users.get_mut(u).unwrap().id.clear(),
                    _ => {}
                }
            }
        });
    }
    let start = Instant::now();
    let apply = rt
        .block_on(e.apply_run(scan.run_id, &file, file.accounts.clone()))
        .unwrap();
    let wall = start.elapsed().as_secs_f64();
    let run = apply.run_id;
    let calls = count(
        &db,
        &format!("SELECT sum(calls) FROM api_calls WHERE run_id = {run}"),
    );
    let detached = count(
        &db,
        &format!(
            "SELECT count(*) FROM actions WHERE run_id = {run} AND status IN ('detached', 'reverted')"
        ),
    );
    let outcomes: Vec<String> = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT status || coalesce('/' || reason, '') || '=' || count(*) FROM actions
                 WHERE run_id = {run} GROUP BY status, reason ORDER BY count(*) DESC"
            ))
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let per_op: Vec<String> = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT operation || '=' || sum(calls) FROM api_calls WHERE run_id = {run}
                 GROUP BY operation ORDER BY sum(calls) DESC"
            ))
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    println!(
        "{{\"scenario\":\"mixed\",\"accounts\":{n},\"users_per_account\":{users},\"max_rate\":{rate},\"settle_s\":{settle},\"apply_status\":\"{}\",\"detached\":{detached},\"calls\":{calls},\"calls_per_detach\":{:.3},\"wall_s\":{wall:.2},\"outcomes\":\"{}\",\"calls_by_operation\":\"{}\",\"peak_rss_mib\":{:.1}}}",
        apply.status,
        calls as f64 / detached.max(1) as f64,
        outcomes.join(" "),
        per_op.join(" "),
        peak_rss_mib()
    );
}

/// A fake AWS Organizations: a root with 10 OUs of 10 OUs each, the accounts spread over the 100
/// leaves, pages of 20 as AWS gives them, 50 ms a call, and a throttle of `limit` requests in
/// any one second (Organizations' quotas are low).
struct FakeTree {
    accounts: u64,
    limit: usize,
    recent: std::sync::Mutex<std::collections::VecDeque<Instant>>,
    calls: std::sync::atomic::AtomicU64,
    throttled: std::sync::atomic::AtomicU64,
}

impl FakeTree {
    async fn serve<T>(&self, f: impl FnOnce() -> T) -> Result<T, AwsError> {
        use std::sync::atomic::Ordering;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            recent.pop_front();
        }
        if recent.len() >= self.limit {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(AwsError::new(
                ErrorKind::Throttled,
                "TooManyRequestsException",
                "AWS Organizations can't complete your request because another request is already in progress or too many requests",
            ));
        }
        recent.push_back(now);
        Ok(f())
    }
}

fn page<T: Clone>(all: &[T], marker: Option<String>) -> Page<T> {
    let start: usize = marker.and_then(|m| m.parse().ok()).unwrap_or(0);
    let end = (start + 20).min(all.len());
    Page {
        items: all[start.min(end)..end].to_vec(),
        next_marker: (end < all.len()).then(|| end.to_string()),
    }
}

impl OrgReader for FakeTree {
    async fn roots(&self) -> Result<Vec<OrgUnit>, AwsError> {
        self.serve(|| {
            vec![OrgUnit {
                id: "r-root".into(),
                name: "Root".into(),
            }]
        })
        .await
    }

    async fn child_units(
        &self,
        parent: &str,
        marker: Option<String>,
    ) -> Result<Page<OrgUnit>, AwsError> {
        let units: Vec<OrgUnit> = match parent {
            "r-root" => (0..10)
                .map(|i| OrgUnit {
                    id: format!("ou-root-{i:08}"),
                    name: format!("division{i}"),
                })
                .collect(),
            p if p.starts_with("ou-root-") && !p.contains('x') => (0..10)
                .map(|j| OrgUnit {
                    id: format!("{p}x{j}"),
                    name: format!("team{j}"),
                })
                .collect(),
            _ => Vec::new(),
        };
        self.serve(|| page(&units, marker)).await
    }

    async fn accounts_in(
        &self,
        parent: &str,
        marker: Option<String>,
    ) -> Result<Page<OrgAccount>, AwsError> {
        // Leaf `ou-root-0000000Dxj` holds the accounts whose index is 10 * D + j modulo 100.
        let leaf = parent
            .strip_prefix("ou-root-")
            .and_then(|p| p.split_once('x'))
            .and_then(|(d, j)| Some(d.parse::<u64>().ok()? * 10 + j.parse::<u64>().ok()?));
        let accounts: Vec<OrgAccount> = match leaf {
            Some(k) => (k..self.accounts)
                .step_by(100)
                .map(|i| OrgAccount {
                    id: format!("{:012}", 700_000_000_000 + i),
                    name: format!("account{i}"),
                    status: "ACTIVE".into(),
                })
                .collect(),
            None => Vec::new(),
        };
        self.serve(|| page(&accounts, marker)).await
    }
}

/// Discovers `accounts` accounts from a fake organization that allows `limit` requests a
/// second, through the Organizations walk as `scan` runs it (its default pace and retries).
fn org_walk(args: &[String]) {
    use std::sync::atomic::Ordering;
    let (n, limit) = (arg(args, 0, 10_000), arg(args, 1, 2));
    let tree = FakeTree {
        accounts: n,
        limit: limit as usize,
        recent: Default::default(),
        calls: Default::default(),
        throttled: Default::default(),
    };
    let meter = Meter::new(CallPolicy::default().for_organizations());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = Instant::now();
    let found = rt.block_on(iamsweep::organization::walk(&tree, &meter));
    let wall = start.elapsed().as_secs_f64();
    let (status, found) = match found {
        Ok(f) => ("completed".to_owned(), f.len()),
        Err(e) => (format!("failed: {e}"), 0),
    };
    let calls = tree.calls.load(Ordering::Relaxed);
    let throttled = tree.throttled.load(Ordering::Relaxed);
    println!(
        "{{\"scenario\":\"org-walk\",\"accounts\":{n},\"limit_per_s\":{limit},\"status\":{},\"found\":{found},\"calls\":{calls},\"throttled\":{throttled},\"wall_s\":{wall:.2},\"bound_s\":{:.2},\"peak_rss_mib\":{:.1}}}",
        serde_json::to_string(&status).unwrap(),
        (calls - throttled) as f64 / limit as f64,
        peak_rss_mib()
    );
}

/// One apply (scan, then detaches) of `n` accounts of `users` users each, at the default
/// `--max-rate 20`, 20 ms a call; every `every`th call of each account throttled (0: none).
/// Returns the apply's wall time, its calls, the throttled ones, and the detaches.
fn steady_apply(n: u64, users: u64, every: u64) -> (f64, i64, u64, i64) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let org = FakeOrg::new();
    let file = accounts(n);
    for t in &file.accounts {
        let a = t.id.as_str();
        let policy = format!("arn:aws:iam::{a}:policy/Deploy");
        org.add_group(a, "ops", &[&policy]);
        for u in 0..users {
            org.add_user(a, &format!("user{u:04}"), &["ops"], &[&policy]);
        }
    }
    org.set_latency(Duration::from_millis(20));
    let options = RunOptions {
        calls: CallPolicy {
            retry: RetryPolicy::default(),
            rate: Some(20.0),
            ..CallPolicy::default()
        },
        // Pacing under throttling is measured; the fake is strongly consistent.
        apply: ApplyOptions {
            settle: Duration::ZERO,
            ..ApplyOptions::default()
        },
        ..RunOptions::default()
    };
    let e = engine(&org, &db, options);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scan = rt.block_on(e.scan(&file)).unwrap();
    org.set_throttle_every((every > 0).then_some(every));
    let before = org.throttled_calls();
    let start = Instant::now();
    let apply = rt
        .block_on(e.apply_run(scan.run_id, &file, file.accounts.clone()))
        .unwrap();
    let wall = start.elapsed().as_secs_f64();
    let calls = count(
        &db,
        &format!(
            "SELECT sum(calls) FROM api_calls WHERE run_id = {}",
            apply.run_id
        ),
    );
    let detached = count(
        &db,
        &format!(
            "SELECT count(*) FROM actions WHERE run_id = {} AND status = 'detached'",
            apply.run_id
        ),
    );
    (wall, calls, org.throttled_calls() - before, detached)
}

fn steady_throttle(args: &[String]) {
    let (n, users, every) = (arg(args, 0, 4), arg(args, 1, 60), arg(args, 2, 4));
    let (clean_wall, clean_calls, _, clean_detached) = steady_apply(n, users, 0);
    let (wall, calls, throttled, detached) = steady_apply(n, users, every);
    println!(
        "{{\"scenario\":\"steady-throttle\",\"accounts\":{n},\"users_per_account\":{users},\"throttle_every\":{every},\"unthrottled_wall_s\":{clean_wall:.2},\"unthrottled_calls\":{clean_calls},\"unthrottled_detached\":{clean_detached},\"throttled_wall_s\":{wall:.2},\"throttled_calls\":{calls},\"throttled\":{throttled},\"detached\":{detached},\"ratio\":{:.2},\"peak_rss_mib\":{:.1}}}",
        wall / clean_wall,
        peak_rss_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("scan-org") => scan_org(&args[1..]),
        Some("throttle") => throttle(&args[1..]),
        Some("sqlite") => sqlite(&args[1..]),
        Some("sqlite-apply") => sqlite_apply(&args[1..]),
        Some("sqlite-prune") => sqlite_prune(&args[1..]),
        Some("sqlite-year") => sqlite_year(&args[1..]),
        Some("report") => report(&args[1..]),
        Some("mixed") => mixed(&args[1..]),
        Some("org-walk") => org_walk(&args[1..]),
        Some("steady-throttle") => steady_throttle(&args[1..]),
        _ => eprintln!(
            "usage: sim scan-org|throttle|sqlite|sqlite-apply|sqlite-prune|sqlite-year|report|mixed|org-walk|steady-throttle [ARGS] (see benches/sim.rs)"
        ),
    }
}
