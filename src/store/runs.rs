//! Runs and their accounts: creating, finishing, pausing and resuming them, what each holds.

use rusqlite::{OptionalExtension, params};

use super::*;

impl Store {
    /// Starts a run: the run row and one `pending` row per account, in one transaction.
    pub fn create_run(
        &mut self,
        kind: RunKind,
        source_run_id: Option<i64>,
        file: &AccountsFile,
        targets: &[AccountTarget],
        options_json: &str,
    ) -> Result<i64, StoreError> {
        self.create_run_as(kind, source_run_id, file, targets, options_json, None)
    }

    /// [`Store::create_run`], recording who the base credentials were (`caller_arn`).
    pub fn create_run_as(
        &mut self,
        kind: RunKind,
        source_run_id: Option<i64>,
        file: &AccountsFile,
        targets: &[AccountTarget],
        options_json: &str,
        caller_arn: Option<&str>,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (kind, status, source_run_id, started_at, iamsweep_version,
                               accounts_path, accounts_toml, options_json, caller_arn)
             VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                kind.as_str(),
                source_run_id,
                now(),
                env!("CARGO_PKG_VERSION"),
                file.path,
                file.text,
                options_json,
                caller_arn
            ],
        )?;
        let run_id = tx.last_insert_rowid();
        {
            // What stays the same from run to run is stored once (`account_targets`).
            let mut find = tx.prepare(
                "SELECT id FROM account_targets
                 WHERE target_json = ?1 AND account_name IS ?2 AND role_arn IS ?3
                   AND session_name IS ?4 AND origin IS ?5",
            )?;
            let mut add = tx.prepare(
                "INSERT INTO account_targets (target_json, account_name, role_arn, session_name,
                                              origin)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut stmt = tx.prepare(
                "INSERT INTO run_account_rows (run_id, account_id, position, target_id, status)
                 VALUES (?1, ?2, ?3, ?4, 'pending')",
            )?;
            for (i, t) in targets.iter().enumerate() {
                let json = serde_json::to_string(t).expect("targets serialize");
                let target = params![json, t.name, t.role_arn(), t.session_name(), t.origin];
                let id: i64 = match find.query_row(target, |r| r.get(0)).optional()? {
                    Some(id) => id,
                    None => {
                        add.execute(target)?;
                        tx.last_insert_rowid()
                    }
                };
                stmt.execute(params![run_id, t.id.as_str(), i as i64, id])?;
            }
        }
        tx.commit()?;
        Ok(run_id)
    }

    pub fn finish_run(&mut self, run_id: i64, status: RunStatus) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
            params![run_id, status.as_str(), now()],
        )?;
        Ok(())
    }

    pub fn mark_account_started(
        &mut self,
        run_id: i64,
        account: &AccountId,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE run_account_rows SET started_at = coalesce(started_at, ?3)
             WHERE run_id = ?1 AND account_id = ?2",
            params![run_id, account.as_str(), now()],
        )?;
        Ok(())
    }

    /// Ends an account's part of a run (after apply, or on failure or a stop).
    pub fn finish_account(
        &mut self,
        run_id: i64,
        account: &AccountId,
        status: AccountStatus,
        error: Option<&AwsError>,
        calls: &CallCounts,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE run_account_rows SET status = ?3, error_code = ?4, error_message = ?5,
                    finished_at = ?6
             WHERE run_id = ?1 AND account_id = ?2",
            params![
                run_id,
                account.as_str(),
                status.as_str(),
                error.map(|e| e.code.as_str()),
                error.map(|e| e.message.as_str()),
                now()
            ],
        )?;
        write_calls(&tx, run_id, account, calls)?;
        tx.commit()?;
        Ok(())
    }

    // --- the journal ---------------------------------------------------------------------

    /// Saves an interrupted account's calls, leaving its status (`pending` or `scanned`).
    pub fn pause_account(
        &mut self,
        run_id: i64,
        account: &AccountId,
        calls: &CallCounts,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        write_calls(&tx, run_id, account, calls)?;
        tx.commit()?;
        Ok(())
    }

    /// Runs left `running` by a process that died: called with the run lock held, so nobody
    /// is working on them. Marks them `interrupted` and returns their ids.
    pub fn interrupt_stale_runs(&mut self) -> Result<Vec<i64>, StoreError> {
        let ids: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id FROM runs WHERE status = 'running' ORDER BY id")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        self.conn.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'",
            params![now()],
        )?;
        Ok(ids)
    }

    /// The newest run that did not finish.
    pub fn unfinished_run(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT max(id) FROM runs WHERE status IN ('running', 'interrupted')",
            [],
            |r| r.get(0),
        )?)
    }

    /// The accounts file text and options a run started with.
    pub fn run_inputs(&self, run_id: i64) -> Result<(String, String, String), StoreError> {
        Ok(self.conn.query_row(
            "SELECT accounts_path, accounts_toml, options_json FROM runs WHERE id = ?1",
            params![run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    }

    /// Marks a run as working again.
    pub fn reopen_run(&mut self, run_id: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?1",
            params![run_id],
        )?;
        Ok(())
    }

    /// Every account of a run with what is left to do.
    pub fn resume_accounts(&self, run_id: i64) -> Result<Vec<ResumeAccount>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.target_json, a.status, a.users_seen IS NOT NULL,
                    EXISTS (SELECT 1 FROM actions x
                            WHERE x.run_id = a.run_id AND x.account_id = a.account_id
                              AND x.id = (SELECT max(y.id) FROM actions y
                                          WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)
                              AND (x.status IN ('pending', 'unknown', 'reverting', 'failed',
                                                 'interrupted')
                                   OR (x.status = 'detached' AND x.checked_at IS NULL)))
             FROM run_accounts a
             JOIN runs r ON r.id = a.run_id
             LEFT JOIN run_accounts s ON s.run_id = r.source_run_id AND s.account_id = a.account_id
             WHERE a.run_id = ?1 ORDER BY a.position",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (json, status, scanned, open_actions) = row?;
            let target = parse_target(run_id, &json)?;
            out.push(ResumeAccount {
                target,
                status,
                scanned,
                open_actions,
            });
        }
        Ok(out)
    }

    /// The calls an account already made in a run (a resume adds to them).
    pub fn prior_calls(&self, run_id: i64, account: &AccountId) -> Result<CallCounts, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT operation, calls, throttled, errors FROM api_calls
             WHERE run_id = ?1 AND account_id = ?2",
        )?;
        let rows = stmt.query_map(params![run_id, account.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                crate::calls::OpCount {
                    calls: r.get(1)?,
                    throttled: r.get(2)?,
                    errors: r.get(3)?,
                },
            ))
        })?;
        let mut counts = CallCounts::default();
        for row in rows {
            let (op, count) = row?;
            if let Some(op) = crate::aws::Op::parse(&op) {
                counts.set(op, count);
            }
        }
        Ok(counts)
    }

    /// Every account target of a run, as the run used them.
    pub fn run_targets(&self, run_id: i64) -> Result<Vec<AccountTarget>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT target_json FROM run_accounts WHERE run_id = ?1 ORDER BY position")?;
        let rows = stmt.query_map(params![run_id], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(parse_target(run_id, &json?)?);
        }
        Ok(out)
    }

    /// The accounts of `run_id` whose scan was recorded, with the targets they used.
    pub fn scanned_targets(&self, run_id: i64) -> Result<Vec<AccountTarget>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT target_json FROM run_accounts
             WHERE run_id = ?1 AND users_seen IS NOT NULL ORDER BY position",
        )?;
        let rows = stmt.query_map(params![run_id], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(parse_target(run_id, &json?)?);
        }
        Ok(out)
    }

    pub fn run(&self, run_id: i64) -> Result<RunRow, StoreError> {
        self.runs_where("WHERE r.id = ?1", params![run_id])?
            .pop()
            .ok_or_else(|| {
                StoreError::NotFound(format!("no run {run_id} in {}", self.path.display()))
            })
    }

    /// Who the base credentials were when run `run_id` started.
    pub fn run_caller(&self, run_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT caller_arn FROM runs WHERE id = ?1",
                params![run_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    pub fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        self.runs_where("", params![])
    }

    pub(super) fn runs_where(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!(
            "SELECT r.id, r.kind, r.status, r.source_run_id, r.started_at, r.finished_at,
                    (SELECT count(*) FROM run_accounts a WHERE a.run_id = r.id),
                    (SELECT count(*) FROM run_accounts a WHERE a.run_id = r.id AND a.status IN ('failed', 'stopped')),
                    (SELECT coalesce(sum(redundant_count), 0) FROM run_accounts a
                     WHERE a.run_id = coalesce(r.source_run_id, r.id)),
                    (SELECT coalesce(sum(direct_only_count), 0) FROM run_accounts a
                     WHERE a.run_id = coalesce(r.source_run_id, r.id)),
                    (SELECT count(*) FROM actions x WHERE x.run_id = r.id AND x.status IN ('detached', 'attached')),
                    (SELECT count(*) FROM actions x WHERE x.run_id = r.id AND x.status = 'failed'
                       AND x.id = (SELECT max(y.id) FROM actions y WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)),
                    (SELECT coalesce(sum(api_calls), 0) FROM run_accounts a WHERE a.run_id = r.id),
                    r.plan_digest
             FROM runs r {filter} ORDER BY r.id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(args, |r| {
            Ok(RunRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                status: r.get(2)?,
                source_run_id: r.get(3)?,
                started_at: r.get(4)?,
                finished_at: r.get(5)?,
                accounts: r.get(6)?,
                accounts_failed: r.get(7)?,
                redundant: r.get(8)?,
                direct_only: r.get(9)?,
                changed: r.get(10)?,
                actions_failed: r.get(11)?,
                api_calls: r.get(12)?,
                plan_digest: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the digest of the plan run `run_id` applies.
    pub fn set_plan_digest(&mut self, run_id: i64, digest: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET plan_digest = ?2 WHERE id = ?1",
            params![run_id, digest],
        )?;
        Ok(())
    }

    /// The finding run `run_id` recorded in `account` for `user` and `policy` (one at most):
    /// its id and kind.
    pub fn finding_in_run(
        &self,
        run_id: i64,
        account: &str,
        user: &str,
        policy: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT a.finding_base + s.slot, s.kind
                 FROM run_account_rows a
                 JOIN finding_stretches s ON s.account_id = a.account_id
                  AND s.user_name = ?3 AND s.policy_arn = ?4 AND s.first_run <= a.run_id
                  AND (s.last_run IS NULL OR s.last_run >= a.run_id)
                 WHERE a.run_id = ?1 AND a.account_id = ?2 AND a.finding_base IS NOT NULL",
                params![run_id, account, user, policy],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The run whose findings run `id` stands for: an apply of an earlier scan stands for that
    /// scan; a scan, or an apply that scanned itself, for itself. `None` for a rollback.
    pub fn findings_run(&self, id: i64) -> Result<Option<i64>, StoreError> {
        let run = self.run(id)?;
        Ok(match (run.kind.as_str(), run.source_run_id) {
            ("rollback", _) => None,
            ("apply", Some(source)) => Some(source),
            _ => Some(id),
        })
    }

    /// The newest run, optionally of one kind.
    pub fn latest_run(&self, kind: Option<RunKind>) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT max(id) FROM runs WHERE ?1 IS NULL OR kind = ?1",
                params![kind.map(RunKind::as_str)],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    pub fn run_accounts(&self, run_id: i64) -> Result<Vec<AccountRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.account_id, a.account_name, a.status, a.error_code, a.error_message,
                    a.users_seen, a.groups_seen, a.users_excluded,
                    coalesce(a.redundant_count, s.redundant_count),
                    coalesce(a.direct_only_count, s.direct_only_count), a.api_calls, a.role_arn, a.started_at, a.finished_at,
                    (SELECT count(*) FROM actions x WHERE x.run_id = a.run_id AND x.account_id = a.account_id AND x.status IN ('detached', 'attached')),
                    (SELECT count(*) FROM actions x WHERE x.run_id = a.run_id AND x.account_id = a.account_id AND x.status IN ('skipped', 'already_detached', 'already_attached')),
                    (SELECT count(*) FROM actions x WHERE x.run_id = a.run_id AND x.account_id = a.account_id AND x.status = 'failed'
                       AND x.id = (SELECT max(y.id) FROM actions y WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)),
                    (SELECT count(*) FROM actions x WHERE x.run_id = a.run_id AND x.account_id = a.account_id AND x.status = 'reverted'),
                    a.origin
             FROM run_accounts a
             JOIN runs r ON r.id = a.run_id
             LEFT JOIN run_accounts s ON s.run_id = r.source_run_id AND s.account_id = a.account_id
             WHERE a.run_id = ?1 ORDER BY a.position",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok(AccountRow {
                account_id: r.get(0)?,
                account_name: r.get(1)?,
                status: r.get(2)?,
                error_code: r.get(3)?,
                error_message: r.get(4)?,
                users_seen: r.get(5)?,
                groups_seen: r.get(6)?,
                users_excluded: r.get(7)?,
                redundant: r.get(8)?,
                direct_only: r.get(9)?,
                api_calls: r.get(10)?,
                role_arn: r.get(11)?,
                started_at: r.get(12)?,
                finished_at: r.get(13)?,
                changed: r.get(14)?,
                skipped: r.get(15)?,
                failed: r.get(16)?,
                reverted: r.get(17)?,
                origin: r.get(18)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

pub(super) fn write_calls(
    tx: &rusqlite::Transaction<'_>,
    run_id: i64,
    account: &AccountId,
    calls: &CallCounts,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO api_calls (run_id, account_id, operation, calls, throttled, errors)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (run_id, account_id, operation) DO UPDATE SET
             calls = excluded.calls, throttled = excluded.throttled, errors = excluded.errors",
    )?;
    for (op, c) in calls.iter() {
        stmt.execute(params![
            run_id,
            account.as_str(),
            op.as_str(),
            c.calls,
            c.throttled,
            c.errors
        ])?;
    }
    tx.execute(
        "UPDATE run_account_rows SET api_calls =
             (SELECT coalesce(sum(calls), 0) FROM api_calls WHERE run_id = ?1 AND account_id = ?2)
         WHERE run_id = ?1 AND account_id = ?2",
        params![run_id, account.as_str()],
    )?;
    Ok(())
}

/// An account target as a run stored it.
pub(super) fn parse_target(run_id: i64, json: &str) -> Result<AccountTarget, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::NotFound(format!(
            "run {run_id} holds an unreadable account target: {e}"
        ))
    })
}
