//! The journal: every write's intent before it is sent, its outcome after, and its settling.

use rusqlite::params;

use super::runs::parse_target;
use super::scan::finding_at;
use super::*;

impl Store {
    /// Runs `f` with `synchronous=FULL`: its commit is on disk, not only in the OS cache,
    /// when it returns (the WAL is synced, with every commit before it).
    pub(super) fn durably<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let result = f(self);
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        result
    }

    /// Writes and commits an action's intent, durably; returns its id. Called before the AWS
    /// call.
    pub fn journal_intent(&mut self, intent: &Intent) -> Result<i64, StoreError> {
        self.durably(|s| s.insert_intent(intent))
    }

    fn insert_intent(&mut self, intent: &Intent) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO actions (run_id, finding_id, account_id, user_name, policy_arn, operation,
                                  status, covering_group, intent_at, undoes, send_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?10)",
            params![
                intent.run_id,
                intent.finding_id,
                intent.account.as_str(),
                intent.user.as_str(),
                intent.policy.as_str(),
                intent.operation.as_str(),
                intent.covering_group,
                now(),
                intent.undoes,
                intent.send_by.map(stamp),
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Commits, durably, that no attempt of the pending write `action_id` will be sent after
    /// `send_by`: called before an attempt that would leave after the bound written so far.
    pub fn extend_send_by(
        &mut self,
        action_id: i64,
        send_by: SystemTime,
    ) -> Result<(), StoreError> {
        self.durably(|s| {
            s.conn.execute(
                "UPDATE actions SET send_by = ?2 WHERE id = ?1",
                params![action_id, stamp(send_by)],
            )?;
            Ok(())
        })
    }

    /// Commits, durably, that the post-check is about to re-attach a detached policy
    /// (`reverting`): a crash before the outcome leaves a row that says so.
    pub fn journal_reverting(&mut self, action_id: i64, reason: &str) -> Result<(), StoreError> {
        self.durably(|s| {
            s.conn.execute(
                "UPDATE actions SET status = 'reverting', reason = ?2, finished_at = ?3
                 WHERE id = ?1",
                params![action_id, reason, now()],
            )?;
            Ok(())
        })
    }

    /// Completes a journaled action with its outcome. A rollback's successful attach also marks
    /// the detach it undoes, in the same transaction.
    pub fn journal_outcome(&mut self, action_id: i64, outcome: &Outcome) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE actions SET status = ?2, reason = ?3, request_id = ?4, error_code = ?5,
                    error_message = ?6, revert_request_id = ?7, finished_at = ?8,
                    proof_age_ms = coalesce(?9, proof_age_ms)
             WHERE id = ?1",
            params![
                action_id,
                outcome.status.as_str(),
                outcome.reason,
                outcome.request_id,
                outcome.error.as_ref().map(|e| e.code.as_str()),
                outcome.error.as_ref().map(|e| e.message.as_str()),
                outcome.revert_request_id,
                now(),
                outcome.proof_age_ms
            ],
        )?;
        link_rollback(&tx, action_id, outcome.status)?;
        tx.commit()?;
        Ok(())
    }

    /// Records an action that needed no AWS call (skipped, already detached) in one write.
    pub fn journal_settled(
        &mut self,
        intent: &Intent,
        outcome: &Outcome,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        let id = {
            tx.execute(
                "INSERT INTO actions (run_id, finding_id, account_id, user_name, policy_arn,
                                      operation, status, reason, covering_group, intent_at,
                                      finished_at, undoes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
                params![
                    intent.run_id,
                    intent.finding_id,
                    intent.account.as_str(),
                    intent.user.as_str(),
                    intent.policy.as_str(),
                    intent.operation.as_str(),
                    outcome.status.as_str(),
                    outcome.reason,
                    intent.covering_group,
                    now(),
                    intent.undoes
                ],
            )?;
            tx.last_insert_rowid()
        };
        link_rollback(&tx, id, outcome.status)?;
        tx.commit()?;
        Ok(id)
    }

    // --- resuming ------------------------------------------------------------------------

    /// Detach rows of `run_id` in `account` left unsettled (by a dead process, a lost answer,
    /// or a run that ended before its post-checks): see [`OpenAction`].
    pub fn open_actions(
        &self,
        run_id: i64,
        account: &AccountId,
    ) -> Result<Vec<OpenAction>, StoreError> {
        let Some(findings_run) = self.findings_run(run_id)? else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT x.id, x.status, x.covering_group, x.request_id, x.intent_at, x.finished_at,
                    f.user_name, f.user_arn, f.policy_arn, f.policy_name, f.kind, f.covering_groups,
                    f.user_id, f.covering_group_ids, x.finding_id, x.reason, x.send_by
             FROM actions x {finding}
             WHERE x.run_id = ?1 AND x.account_id = ?2 AND x.operation = 'detach'
               AND x.id = (SELECT max(y.id) FROM actions y
                           WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)
               AND {OPEN_DETACH}
             ORDER BY f.user_name, f.policy_arn",
            finding = finding_of_action("JOIN", "?3")
        ))?;
        let rows = stmt.query_map(params![run_id, account.as_str(), findings_run], |r| {
            let status: String = r.get(1)?;
            Ok(OpenAction {
                action_id: r.get(0)?,
                finding_id: r.get(14)?,
                status: match status.as_str() {
                    "pending" => ActionStatus::Pending,
                    "unknown" => ActionStatus::Unknown,
                    "detached" => ActionStatus::Detached,
                    "reverting" => ActionStatus::Reverting,
                    _ => ActionStatus::Failed,
                },
                covering_group: r.get(2)?,
                request_id: r.get(3)?,
                intent_at: r.get(4)?,
                finished_at: r.get(5)?,
                reason: r.get(15)?,
                send_by: r.get(16)?,
                finding: finding_at(r, 6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many of run `run_id`'s journal rows are still open: a detach that needs settling
    /// (see [`OpenAction`]) or an attach intent without outcome.
    pub fn open_rows(&self, run_id: i64) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            &format!(
                "SELECT count(*) FROM actions x
                 WHERE x.run_id = ?1
                   AND ((x.operation = 'attach' AND x.status = 'pending')
                        OR (x.operation = 'detach' AND {OPEN_DETACH}
                            AND x.id = (SELECT max(y.id) FROM actions y
                                        WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)))"
            ),
            params![run_id],
            |r| r.get(0),
        )?)
    }

    /// Accounts of runs other than `except` whose journal has open rows (see
    /// [`OpenAction`], and rollback attaches without outcome), oldest run first.
    pub fn unsettled(&self, except: Option<i64>) -> Result<Vec<Unsettled>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT a.run_id, r.kind, a.target_json, count(*)
             FROM actions x
             JOIN runs r ON r.id = x.run_id
             JOIN run_accounts a ON a.run_id = x.run_id AND a.account_id = x.account_id
             WHERE (?1 IS NULL OR x.run_id <> ?1)
               AND ((x.operation = 'attach' AND x.status = 'pending')
                    OR (x.operation = 'detach' AND {OPEN_DETACH}
                        AND x.id = (SELECT max(y.id) FROM actions y
                                    WHERE y.run_id = x.run_id AND y.finding_id = x.finding_id)))
             GROUP BY a.run_id, a.account_id
             ORDER BY a.run_id, a.position"
        ))?;
        let rows = stmt.query_map(params![except], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (run_id, kind, json, open) = row?;
            out.push(Unsettled {
                run_id,
                kind: if kind == "rollback" {
                    RunKind::Rollback
                } else {
                    RunKind::Apply
                },
                target: parse_target(run_id, &json)?,
                open,
            });
        }
        Ok(out)
    }

    /// Records that the post-check confirmed these detaches.
    pub fn mark_checked(&mut self, action_ids: &[i64]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("UPDATE actions SET checked_at = ?2 WHERE id = ?1")?;
            let at = now();
            for id in action_ids {
                stmt.execute(params![id, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// When a rollback's attach took effect, the detach it undoes points to it.
pub(super) fn link_rollback(
    tx: &rusqlite::Transaction<'_>,
    action_id: i64,
    status: ActionStatus,
) -> Result<(), StoreError> {
    if matches!(
        status,
        ActionStatus::Attached | ActionStatus::AlreadyAttached
    ) {
        tx.execute(
            "UPDATE actions SET rolled_back_by = ?1
             WHERE id = (SELECT undoes FROM actions WHERE id = ?1)",
            params![action_id],
        )?;
    }
    Ok(())
}
