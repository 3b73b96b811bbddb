//! `apply [--run ID] [--yes]`: detaches the direct attachments a group still grants, each proven
//! live right before it is sent.

use std::io::{IsTerminal, Write};

use super::work::{Work, engine, finish, print_summary, resolve_accounts};
use super::{AppError, confirm, exit, no_database, patterns, plan};
use crate::apply::ApplyOptions;
use crate::cancel::Cancel;
use crate::cli::{ApplyArgs, Cli};
use crate::config::{self, AccountTarget, AccountsFile};
use crate::filters::Filters;
use crate::store::actor::StoreHandle;
use crate::store::{FindingRow, RunStatus, Store};

pub(super) async fn apply(
    cli: &Cli,
    args: &ApplyArgs,
    cancel: Cancel,
    out: &mut impl Write,
) -> Result<u8, AppError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !args.yes && !interactive {
        return Err(AppError::Usage(
            "apply changes IAM in your accounts: pass --yes to go ahead (there is no terminal to ask on); nothing was changed".into(),
        ));
    }
    let options = ApplyOptions {
        max_detaches_per_account: args.max_detaches_per_account,
        max_detaches: args.max_detaches,
        write_concurrency: args.write_concurrency as usize,
        filters: Filters {
            exclude_users: patterns(&args.exclude_users, "exclude-user")?,
            exclude_policies: patterns(&args.exclude_policies, "exclude-policy")?,
            only_policies: patterns(&args.only_policies, "only-policy")?,
            exceptions: Vec::new(),
        },
        settle: cli.settle,
        proof_max_age: args.proof_max_age,
        allow_non_reattachable: args.allow_non_reattachable,
        only_findings: None,
        plan_digest: None,
    };
    let mut options = options;
    let mut file = config::load(&cli.accounts)?;
    super::exceptions::note_expired(&file);
    let work = Work::start(cli)?;
    let store = work.store.clone();
    // A reviewed plan is checked whole before anything is built or sent.
    let reviewed = match &args.plan {
        Some(path) => {
            let path = path.clone();
            let db = cli.db.clone();
            let reviewed = tokio::task::spawn_blocking(move || {
                let store = Store::open_read_only(&db)?.ok_or_else(|| no_database(&db))?;
                plan::read(&path, &store)
            })
            .await
            .expect("plan check")?;
            options.only_findings = Some(reviewed.finding_ids.clone());
            options.plan_digest = Some(reviewed.digest.clone());
            Some(reviewed)
        }
        None => None,
    };
    let run = match reviewed.as_ref().map(|r| r.run_id).or(args.run) {
        // An apply of an earlier scan stands for that scan's findings.
        Some(asked) => {
            let id = store
                .call(move |s| s.findings_run(asked))
                .await?
                .ok_or_else(|| {
                    AppError::Usage(format!(
                        "run {asked} is a rollback; apply --run takes a scan (or apply) run"
                    ))
                })?;
            if id != asked {
                eprintln!("run {asked} applied the findings of run {id}: applying run {id}");
            }
            Some(id)
        }
        None => None,
    };
    let engine = engine(
        cli,
        &work,
        super::work::options(cli, options),
        cancel,
        file.partition,
    )
    .await?;
    if run.is_none() {
        resolve_accounts(&engine.connector, &mut file, engine.options.calls).await?;
    }

    let source = match run {
        Some(id) => Some(id),
        None if args.yes => None,
        None => {
            // Ask about what a fresh scan shows, then apply exactly that scan's findings.
            let scan = engine.scan(&file).await?;
            print_summary(&store, &scan, out).await?;
            if scan.status == RunStatus::Interrupted {
                return finish(cli, &store, &scan, out, "report").await;
            }
            Some(scan.run_id)
        }
    };
    // `--publish` of an older scan than one already published would be refused after the
    // detaches: say so before anything changes.
    if args.publish
        && let Some(id) = source
    {
        super::publish::refuse_older(&store, id).await?;
    }
    let result = match source {
        None => engine.apply(&file).await?,
        Some(id) => {
            let mut targets = apply_targets(&store, id, &file).await?;
            if let Some(r) = &reviewed {
                targets.retain(|t| r.accounts.contains(t.id.as_str()));
            }
            if let Some(r) = reviewed.as_ref().filter(|_| !args.yes) {
                let question = format!(
                    "detach the {} items of the reviewed plan (run {id}, sha256 {}), each verified live first? type yes to go ahead: ",
                    r.finding_ids.len(),
                    r.digest
                );
                if !confirm(&question)? {
                    let _ = writeln!(out, "nothing was changed");
                    return Ok(exit::OK);
                }
            } else if !args.yes {
                let rows = store.call(move |s| s.findings_now(id)).await?;
                if !confirm(&prompt(id, &rows, &engine.options.apply, &targets))? {
                    let _ = writeln!(out, "nothing was changed");
                    return Ok(exit::OK);
                }
            }
            engine.apply_run(id, &file, targets).await?
        }
    };
    let mut code = finish(cli, &store, &result, out, "apply").await?;
    if let Some(max) = args.max_detaches
        && result.capped
        && result.status != RunStatus::Interrupted
    {
        capped(
            cli,
            args,
            &store,
            max,
            (source.unwrap_or(result.run_id), result.run_id),
            reviewed.as_ref().map(|r| r.finding_ids.as_slice()),
            out,
        )
        .await?;
    }
    if args.publish {
        code =
            code.max(super::publish::after_run(cli, &store, &result, &engine.cancel, out).await?);
    }
    Ok(code)
}

/// Says what `--max-detaches` left for a later run, and the command that continues.
/// With a reviewed plan, only its items count, and the command that continues applies the
/// same plan: never the whole scan, which would detach what the reviewers left out.
async fn capped(
    cli: &Cli,
    args: &ApplyArgs,
    store: &StoreHandle,
    max: u64,
    (findings_run, run_id): (i64, i64),
    plan_items: Option<&[i64]>,
    out: &mut impl Write,
) -> Result<(), AppError> {
    let (made, untried) = store
        .call(move |s| {
            Ok((
                s.sent_detaches(run_id)?,
                s.untried_findings(findings_run, run_id)?,
            ))
        })
        .await?;
    let left = match plan_items {
        Some(items) => untried
            .iter()
            .filter(|id| items.binary_search(id).is_ok())
            .count(),
        None => untried.len(),
    };
    if left == 0 {
        return Ok(());
    }
    let quote = |p: &std::path::Path| crate::report::shell_quote(&p.display().to_string());
    let mut source = match &args.plan {
        Some(path) => format!("--plan {}", quote(path)),
        None => format!("--run {findings_run}"),
    };
    // The same filters: what this run left out stays out.
    for (flag, globs) in [
        ("--exclude-user", &args.exclude_users),
        ("--exclude-policy", &args.exclude_policies),
        ("--only-policy", &args.only_policies),
    ] {
        for g in globs {
            source.push_str(&format!(" {flag} {}", crate::report::shell_quote(g)));
        }
    }
    if let Some(n) = args.max_detaches_per_account {
        source.push_str(&format!(" --max-detaches-per-account {n}"));
    }
    let _ = writeln!(
        out,
        "cap: {made} of --max-detaches {max} detaches sent; {left} findings of run {findings_run} are left for a later run; continue with:\n  iamsweep --db {} apply {source} --yes --max-detaches {max}",
        quote(&cli.db)
    );
    Ok(())
}

/// The accounts scan run `id` read: as the accounts file describes them now (its role and
/// filters), or as the scan ran them if the file no longer lists them.
async fn apply_targets(
    store: &StoreHandle,
    id: i64,
    file: &AccountsFile,
) -> Result<Vec<AccountTarget>, AppError> {
    let scanned = store.call(move |s| s.scanned_targets(id)).await?;
    if scanned.is_empty() {
        return Err(AppError::Usage(format!(
            "run {id} recorded no scanned account; run `iamsweep scan` first"
        )));
    }
    Ok(plan::as_configured(scanned, file))
}

/// What apply is about to do, per account.
fn prompt(
    id: i64,
    rows: &[FindingRow],
    options: &ApplyOptions,
    targets: &[AccountTarget],
) -> String {
    let mut text = format!("apply the findings of run {id}:\n");
    let mut total = 0;
    let now = crate::store::now();
    for t in targets {
        let mine: Vec<&FindingRow> = rows
            .iter()
            .filter(|r| {
                plan::would_detach(r, std::slice::from_ref(t), &now)
                    && !options.filters.user_excluded(&r.user_name)
                    && options.filters.policy_selected(&r.policy_arn)
            })
            .collect();
        let mut users: Vec<&str> = mine.iter().map(|r| r.user_name.as_str()).collect();
        users.dedup();
        total += mine.len();
        text.push_str(&format!(
            "  {}: up to {} detaches for {} users\n",
            t.label(),
            mine.len(),
            users.len()
        ));
    }
    text.push_str(&format!(
        "each is verified live first; direct-only attachments, groups and memberships are never touched.\ndetach up to {total} direct attachments? type yes to go ahead: "
    ));
    text
}
