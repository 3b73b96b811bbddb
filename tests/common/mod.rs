//! Shared by the end-to-end tests: the moto server started by scripts/test.sh, accounts seeded
//! through the real SDK, and the real binary run against them.
#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_credential_types::Credentials;
use aws_sdk_iam::config::{BehaviorVersion, Region};

pub const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
pub const VIEW_ONLY: &str = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess";

/// The moto server's URL. These tests are `#[ignore]`d in plain `cargo test`; scripts/test.sh
/// starts moto and runs them with `--include-ignored`. Missing moto is a failure, not a skip.
pub fn moto_url() -> String {
    std::env::var("IAMSWEEP_MOTO_URL").unwrap_or_else(|_| {
        panic!("IAMSWEEP_MOTO_URL is not set: run these tests through scripts/test.sh, which starts moto")
    })
}

fn static_credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "tests")
}

/// An AWS Organizations client acting as `account` (its management account, in moto).
pub async fn organizations_for(account: &str) -> aws_sdk_organizations::Client {
    let conf = aws_sdk_organizations::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto_url())
        .credentials_provider(assumed(account).await)
        .build();
    aws_sdk_organizations::Client::from_conf(conf)
}

/// An IAM client acting inside `account` (moto scopes state by the assumed role's account).
pub async fn iam_for(account: &str) -> aws_sdk_iam::Client {
    iam_at(account, &moto_url()).await
}

/// An IAM client acting inside `account`, sending to `url` (moto, or a proxy in front of it).
pub async fn iam_at(account: &str, url: &str) -> aws_sdk_iam::Client {
    let conf = aws_sdk_iam::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(assumed(account).await)
        .build();
    aws_sdk_iam::Client::from_conf(conf)
}

/// Credentials of a role session in `account`.
async fn assumed(account: &str) -> Credentials {
    let url = moto_url();
    let sts_conf = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&url)
        .credentials_provider(static_credentials())
        .build();
    let sts = aws_sdk_sts::Client::from_conf(sts_conf);
    let out = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/seed"))
        .role_session_name("seed")
        .send()
        .await
        .expect("assume role in moto");
    let c = out.credentials().expect("credentials");
    Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "seed",
    )
}

/// Seeds one moto account through the SDK.
pub struct Seeder {
    pub account: String,
    pub iam: aws_sdk_iam::Client,
}

impl Seeder {
    pub async fn new(account: &str) -> Self {
        Self {
            account: account.to_owned(),
            iam: iam_for(account).await,
        }
    }

    /// A colleague's changes, sent through `url` (a proxy that may delay them, as IAM's
    /// eventual consistency does).
    pub async fn via(account: &str, url: &str) -> Self {
        Self {
            account: account.to_owned(),
            iam: iam_at(account, url).await,
        }
    }

    /// A customer-managed policy; returns its ARN.
    pub async fn policy(&self, name: &str, path: &str) -> String {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#;
        self.iam
            .create_policy()
            .policy_name(name)
            .path(path)
            .policy_document(doc)
            .send()
            .await
            .expect("create policy")
            .policy()
            .and_then(|p| p.arn())
            .expect("policy arn")
            .to_owned()
    }

    pub async fn group(&self, name: &str, policies: &[&str]) {
        self.iam
            .create_group()
            .group_name(name)
            .send()
            .await
            .expect("create group");
        for p in policies {
            self.iam
                .attach_group_policy()
                .group_name(name)
                .policy_arn(*p)
                .send()
                .await
                .expect("attach group policy");
        }
    }

    pub async fn user(&self, name: &str, groups: &[&str], policies: &[&str]) {
        self.iam
            .create_user()
            .user_name(name)
            .send()
            .await
            .expect("create user");
        for g in groups {
            self.iam
                .add_user_to_group()
                .group_name(*g)
                .user_name(name)
                .send()
                .await
                .expect("add user to group");
        }
        for p in policies {
            self.iam
                .attach_user_policy()
                .user_name(name)
                .policy_arn(*p)
                .send()
                .await
                .expect("attach user policy");
        }
    }

    /// The user's direct attachments, read back from moto.
    pub async fn user_policies(&self, user: &str) -> BTreeSet<String> {
        self.iam
            .list_attached_user_policies()
            .user_name(user)
            .send()
            .await
            .expect("list attached user policies")
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect()
    }

    pub async fn group_policies(&self, group: &str) -> BTreeSet<String> {
        self.iam
            .list_attached_group_policies()
            .group_name(group)
            .send()
            .await
            .expect("list attached group policies")
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect()
    }

    pub async fn user_groups(&self, user: &str) -> BTreeSet<String> {
        self.iam
            .list_groups_for_user()
            .user_name(user)
            .send()
            .await
            .expect("list groups for user")
            .groups()
            .iter()
            .map(|g| g.group_name().to_owned())
            .collect()
    }

    /// Attaches `policy` to `user` directly: a colleague, or Terraform putting it back.
    pub async fn attach_user_policy(&self, user: &str, policy: &str) {
        self.iam
            .attach_user_policy()
            .user_name(user)
            .policy_arn(policy)
            .send()
            .await
            .expect("attach user policy");
    }

    pub async fn detach_group_policy(&self, group: &str, policy: &str) {
        self.iam
            .detach_group_policy()
            .group_name(group)
            .policy_arn(policy)
            .send()
            .await
            .expect("detach group policy");
    }

    pub async fn remove_user_from_group(&self, group: &str, user: &str) {
        self.iam
            .remove_user_from_group()
            .group_name(group)
            .user_name(user)
            .send()
            .await
            .expect("remove user from group");
    }
}

/// A scratch folder with a database path and an accounts file.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new(accounts_toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("accounts.toml"), accounts_toml).expect("write accounts");
        Self { dir }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("audit.db")
    }

    pub fn accounts(&self) -> PathBuf {
        self.dir.path().join("accounts.toml")
    }

    /// Runs the real binary against moto with emulator credentials.
    pub fn iamsweep(&self, args: &[&str]) -> Output {
        run_iamsweep(&self.db(), &self.accounts(), args)
    }

    /// Runs the binary with these environment variables added.
    pub fn iamsweep_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = iamsweep_command(&self.db(), &self.accounts(), args);
        cmd.envs(env.iter().copied());
        cmd.output().expect("run iamsweep")
    }

    /// Runs the binary with the base credentials of an AWS config file (`config`, written to
    /// the work folder) instead of the emulator's environment variables.
    pub fn iamsweep_config(&self, args: &[&str], config: &str) -> Output {
        let path = self.dir.path().join("aws-config");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = iamsweep_command(&self.db(), &self.accounts(), args);
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_CONFIG_FILE", &path)
            .env("AWS_PROFILE", "tool");
        cmd.output().expect("run iamsweep")
    }

    /// Runs the binary with its AWS requests sent to `endpoint` (a proxy in front of moto);
    /// kills it and fails if it has not ended after `limit`: a run that hangs is a bug.
    /// Returns its output and how long it took.
    pub fn iamsweep_via(
        &self,
        endpoint: &str,
        args: &[&str],
        limit: std::time::Duration,
    ) -> (Output, std::time::Duration) {
        self.iamsweep_via_env(endpoint, args, &[], limit)
    }

    /// [`Workdir::iamsweep_via`] with these environment variables added (an empty value
    /// removes one).
    pub fn iamsweep_via_env(
        &self,
        endpoint: &str,
        args: &[&str],
        env: &[(&str, &str)],
        limit: std::time::Duration,
    ) -> (Output, std::time::Duration) {
        let mut cmd = iamsweep_command(&self.db(), &self.accounts(), args);
        // An empty value removes the variable (the emulator's keys, to use another source).
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        cmd.env("AWS_ENDPOINT_URL", endpoint)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let started = std::time::Instant::now();
        let mut child = cmd.spawn().expect("spawn iamsweep");
        loop {
            if child.try_wait().expect("wait").is_some() {
                let out = child.wait_with_output().expect("output");
                return (out, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "iamsweep {args:?} still running after {limit:?}: hung\n--- stdout\n{}\n--- stderr\n{}",
                    stdout(&out),
                    stderr(&out)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Rows of a query as strings joined by `|`.
    pub fn rows(&self, query: &str) -> Vec<String> {
        rows_of(&self.db(), query)
    }

    pub fn sql<T: rusqlite::types::FromSql>(&self, query: &str) -> T {
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        conn.query_row(query, [], |r| r.get(0)).expect(query)
    }

    /// The journal of every run is settled: no row pending, unknown, reverting or failed, and
    /// every detach post-checked.
    pub fn assert_journal_settled(&self) {
        let open: Vec<String> = self.rows(
            "SELECT run_id, account_id, user_name, status FROM actions \
             WHERE status IN ('pending', 'unknown', 'reverting', 'failed') ORDER BY id",
        );
        assert!(open.is_empty(), "rows left open: {open:?}");
        let unchecked: Vec<String> = self.rows(
            "SELECT run_id, account_id, user_name FROM actions \
             WHERE status = 'detached' AND checked_at IS NULL ORDER BY id",
        );
        assert!(
            unchecked.is_empty(),
            "detaches never post-checked: {unchecked:?}"
        );
    }
}

/// The binary with emulator credentials, and nothing from the developer's AWS setup.
pub fn iamsweep_command(db: &Path, accounts: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iamsweep"));
    cmd.arg("--db")
        .arg(db)
        .arg("--accounts")
        .arg(accounts)
        .args(args)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    if let Ok(url) = std::env::var("IAMSWEEP_MOTO_URL") {
        cmd.env("AWS_ENDPOINT_URL", url);
    }
    cmd
}

pub fn run_iamsweep(db: &Path, accounts: &Path, args: &[&str]) -> Output {
    iamsweep_command(db, accounts, args)
        .output()
        .expect("run iamsweep")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it differs.
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

/// Whatever in an HTML page could make a browser fetch something: a URL, an attribute or CSS
/// that loads, an element that embeds, a script API that sends. Empty for a self-contained
/// page. Each hit comes with its surroundings.
pub fn external_references(page: &str) -> Vec<String> {
    let lower = page.to_lowercase();
    let mut hits = Vec::new();
    let around = |at: usize| {
        let start = lower[..at]
            .char_indices()
            .rev()
            .nth(40)
            .map_or(0, |(i, _)| i);
        let end = lower[at..]
            .char_indices()
            .nth(60)
            .map_or(lower.len(), |(i, _)| at + i);
        lower[start..end].to_owned()
    };
    for needle in [
        "://",
        "src=",
        "srcset=",
        "url(",
        "@import",
        "<link",
        "<iframe",
        "<object",
        "<embed",
        "<img",
        "<base",
        "<form",
        "<audio",
        "<video",
        "fetch(",
        "xmlhttprequest",
        "websocket",
        "eventsource",
        "sendbeacon",
        "import(",
        "serviceworker",
        "window.open",
    ] {
        for (at, _) in lower.match_indices(needle) {
            hits.push(format!("`{needle}`: …{}…", around(at)));
        }
    }
    // Links are allowed only within the page.
    for (at, _) in lower.match_indices("href=") {
        let value = lower[at + 5..].trim_start_matches(['"', '\'']);
        if !value.starts_with('#') {
            hits.push(format!("`href=`: …{}…", around(at)));
        }
    }
    hits
}

/// Runs a future on a fresh runtime (the tests are plain `#[test]`s that also run the binary).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Runs a future on a fresh runtime whose clock is paused: sleeps end as soon as nothing else
/// can run, so settle windows and read lags of the fake pass at once, in order.
pub fn block_on_paused<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
        .block_on(f)
}

// --- the in-memory fake ---------------------------------------------------------------------

use std::sync::Arc;

use iamsweep::aws::fake::FakeOrg;
use iamsweep::calls::{CallPolicy, RetryPolicy};
use iamsweep::config::AccountsFile;
use iamsweep::events::Recorder;
use iamsweep::run::{Engine, RunOptions};
use iamsweep::store::Store;
use iamsweep::store::actor::StoreHandle;

/// The default options, with no settle window: the fake is strongly consistent unless a test
/// gives it a read lag (and then a window to match).
pub fn options() -> RunOptions {
    let mut options = RunOptions::default();
    options.apply.settle = std::time::Duration::ZERO;
    options
}

/// An engine over a fake organization and a real SQLite file in a temp folder.
pub struct FakeRig {
    pub org: FakeOrg,
    pub engine: Engine<FakeOrg>,
    pub recorder: Arc<Recorder>,
    pub file: AccountsFile,
    pub dir: tempfile::TempDir,
}

impl FakeRig {
    pub fn new(accounts_toml: &str) -> Self {
        Self::with_options(accounts_toml, options())
    }

    pub fn with_options(accounts_toml: &str, mut options: RunOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StoreHandle::spawn(Store::open(&dir.path().join("audit.db")).expect("open"));
        let org = FakeOrg::new();
        let recorder = Arc::new(Recorder::default());
        // Fast backoff: the tests check behaviour, not timing. The fake is strongly
        // consistent unless a test gives it a read lag (and a settle window to match), and its
        // calls end at once.
        options.calls = CallPolicy {
            retry: RetryPolicy {
                base_delay: std::time::Duration::from_millis(1),
                max_delay: std::time::Duration::from_millis(5),
                ..options.calls.retry
            },
            call_timeout: std::time::Duration::ZERO,
            ..options.calls
        };

        let engine = Engine {
            connector: org.clone(),
            store,
            reporter: recorder.clone(),
            options,
            cancel: iamsweep::cancel::Cancel::new(),
            caller: None,
        };
        let file = iamsweep::config::parse("accounts.toml", accounts_toml).expect("accounts");
        Self {
            org,
            engine,
            recorder,
            file,
            dir,
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("audit.db")
    }

    /// Another engine on the same fake and database: the next process after a crash.
    pub fn next_process(&self) -> Engine<FakeOrg> {
        Engine {
            connector: self.org.clone(),
            store: self.engine.store.clone(),
            reporter: self.recorder.clone(),
            options: self.engine.options.clone(),
            cancel: iamsweep::cancel::Cancel::new(),
            caller: None,
        }
    }

    /// A query's single value, read through a second connection as a user would.
    pub fn sql<T: rusqlite::types::FromSql>(&self, query: &str) -> T {
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        conn.query_row(query, [], |r| r.get(0)).expect(query)
    }

    /// Rows of a query as strings joined by `|`.
    pub fn rows(&self, query: &str) -> Vec<String> {
        rows_of(&self.db(), query)
    }

    /// The journal, oldest first: user, status, reason, whether it was post-checked.
    pub fn journal(&self) -> Vec<String> {
        self.rows(
            "SELECT user_name, status, coalesce(reason, '-'), checked_at IS NOT NULL FROM actions ORDER BY id",
        )
    }
}

/// Rows of a query on the database at `db`, as strings joined by `|`.
pub fn rows_of(db: &Path, query: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("open db");
    let mut stmt = conn.prepare(query).expect(query);
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        Ok((0..n)
            .map(|i| match r.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Blob(_) => "<blob>".to_owned(),
            })
            .collect::<Vec<_>>()
            .join("|"))
    })
    .expect(query)
    .map(Result::unwrap)
    .collect()
}

/// accounts.toml text for these ids.
pub fn accounts_toml(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| format!("[[account]]\nid = \"{id}\"\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

// --- long-running scenarios (crash, signals, locks) -----------------------------------------

/// Seeds `users` users, each in group `ops` which grants two customer-managed policies that the
/// user also holds directly (2 redundant), plus one direct-only policy. Returns the policy ARNs
/// (grant1, grant2, own).
pub async fn seed_many(account: &str, users: usize) -> (String, String, String) {
    let s = Seeder::new(account).await;
    let g1 = s.policy("Grant1", "/").await;
    let g2 = s.policy("Grant2", "/").await;
    let own = s.policy("Own", "/").await;
    s.group("ops", &[&g1, &g2]).await;
    let names: Vec<String> = (0..users).map(|i| format!("user{i:04}")).collect();
    futures::future::join_all(names.chunks(25).map(|chunk| {
        let s = &s;
        let (g1, g2, own) = (&g1, &g2, &own);
        async move {
            for n in chunk {
                s.user(n, &["ops"], &[g1, g2, own]).await;
            }
        }
    }))
    .await;
    (g1, g2, own)
}

/// Starts the binary in the background (stdout and stderr piped).
pub fn spawn_iamsweep(db: &Path, accounts: &Path, args: &[&str]) -> std::process::Child {
    let mut cmd = iamsweep_command(db, accounts, args);
    cmd.env("AWS_ENDPOINT_URL", moto_url())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().expect("spawn iamsweep")
}

/// Polls a query on the database (read-only, as another process would) until `ok` holds.
pub fn wait_until(
    db: &Path,
    query: &str,
    ok: impl Fn(i64) -> bool,
    child: &mut std::process::Child,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Ok(conn) =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        {
            let _ = conn.busy_timeout(std::time::Duration::from_secs(1));
            if let Ok(v) = conn.query_row(query, [], |r| r.get::<_, i64>(0))
                && ok(v)
            {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("iamsweep ended ({status}) before `{query}` was satisfied");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for `{query}`"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

pub fn signal(child: &std::process::Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}
