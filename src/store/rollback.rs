//! What a rollback undoes, and the history of changes users query.

use rusqlite::params;

use super::*;

impl Store {
    /// Detaches an account has made in a run (for the circuit breaker across resumes).
    pub fn detached_in_run(&self, run_id: i64, account: &AccountId) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM actions WHERE run_id = ?1 AND account_id = ?2
             AND status IN ('detached', 'reverted')",
            params![run_id, account.as_str()],
            |r| r.get(0),
        )?)
    }

    /// The detaches run `run_id` sent, in every account, whatever happened after: made (even if
    /// re-attached since) or possibly made (an intent or an answer lost, not settled yet). Its
    /// cap counts them when it is resumed; a possible one found not to have happened is given
    /// back when the resume settles it.
    pub fn sent_detaches(&self, run_id: i64) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            &format!(
                "SELECT count(*) FROM actions x WHERE x.run_id = ?1 AND x.operation = 'detach'
                 AND ({MADE_DETACH} OR x.status IN ('pending', 'unknown', 'reverted'))"
            ),
            params![run_id],
            |r| r.get(0),
        )?)
    }

    /// Redundant findings of run `findings_run` (ids) that are still to do after run
    /// `action_run`: not tried by it (no journal row, or one that says the call never
    /// happened), and not detached by another apply of the same scan. What a cap left for a
    /// later run, which `findings_to_apply` would take again.
    pub fn untried_findings(
        &self,
        findings_run: i64,
        action_run: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT f.id FROM findings f
             LEFT JOIN actions x ON x.id = (SELECT max(y.id) FROM actions y
                                            WHERE y.finding_id = f.id AND y.run_id = ?2)
             WHERE f.run_id = ?1 AND f.kind = 'redundant_direct'
               AND (x.id IS NULL OR x.status = 'interrupted')
               AND NOT {DETACHED_BY_ANOTHER_APPLY}
             ORDER BY f.id"
        ))?;
        let rows = stmt.query_map(params![findings_run, action_run], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // --- rollback ------------------------------------------------------------------------

    /// The successful detaches of `run_id` not rolled back yet (optionally of one account).
    pub fn rollback_items(
        &self,
        run_id: i64,
        account: Option<&AccountId>,
    ) -> Result<Vec<RollbackItem>, StoreError> {
        let findings_run = self.findings_run(run_id)?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT x.account_id, a.account_name, x.user_name, x.policy_arn, x.id, x.run_id,
                    x.finding_id, x.finished_at, x.request_id, a.role_arn, f.user_id, x.status
             FROM actions x
             JOIN run_accounts a ON a.run_id = x.run_id AND a.account_id = x.account_id
             {finding}
             WHERE x.run_id = ?1 AND x.operation = 'detach' AND {MADE_DETACH}
               AND x.rolled_back_by IS NULL AND (?2 IS NULL OR x.account_id = ?2)
             ORDER BY a.position, x.user_name, x.policy_arn",
            finding = finding_of_action("LEFT JOIN", "?3")
        ))?;
        let rows = stmt.query_map(
            params![run_id, account.map(AccountId::as_str), findings_run],
            |r| {
                let arn: String = r.get(3)?;
                Ok(RollbackItem {
                    account_id: r.get(0)?,
                    account_name: r.get(1)?,
                    user_name: r.get(2)?,
                    policy_name: PolicyArn::new(arn.clone()).policy_name().to_owned(),
                    policy_arn: arn,
                    action_id: r.get(4)?,
                    run_id: r.get(5)?,
                    finding_id: r.get(6)?,
                    detached_at: r.get(7)?,
                    request_id: r.get(8)?,
                    role_arn: r.get(9)?,
                    user_id: r.get(10)?,
                    state: match r.get::<_, String>(11)?.as_str() {
                        "detached" => DetachState::Detached,
                        "reverting" => DetachState::Reverting,
                        _ => DetachState::ReattachFailed,
                    },
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Attach intents of a rollback run left without outcome.
    pub fn open_attaches(
        &self,
        run_id: i64,
        account: &AccountId,
    ) -> Result<Vec<OpenAttach>, StoreError> {
        // The findings of the apply this rollback undoes.
        let findings_run = match self.run(run_id)?.source_run_id {
            Some(undone) => self.findings_run(undone)?,
            None => None,
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT x.id, x.user_name, x.policy_arn, f.user_id FROM actions x
             {finding}
             WHERE x.run_id = ?1 AND x.account_id = ?2 AND x.operation = 'attach'
               AND x.status = 'pending'
             ORDER BY x.id",
            finding = finding_of_action("LEFT JOIN", "?3")
        ))?;
        let rows = stmt.query_map(params![run_id, account.as_str(), findings_run], |r| {
            Ok(OpenAttach {
                action_id: r.get(0)?,
                user: UserName::new(r.get::<_, String>(1)?),
                policy: PolicyArn::new(r.get::<_, String>(2)?),
                user_id: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // --- history -------------------------------------------------------------------------

    /// Every action ever journaled, oldest first, filtered.
    pub fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT x.id, x.run_id, r.kind, coalesce(x.finished_at, x.intent_at), x.account_id,
                    a.account_name, x.user_name, x.policy_arn, x.operation, x.status, x.reason,
                    x.request_id, a.role_arn, a.session_name, x.rolled_back_by, x.undoes
             FROM actions x
             JOIN runs r ON r.id = x.run_id
             JOIN run_accounts a ON a.run_id = x.run_id AND a.account_id = x.account_id
             WHERE (?1 IS NULL OR x.account_id = ?1)
               AND (?2 IS NULL OR x.user_name = ?2 COLLATE NOCASE)
               AND (?3 IS NULL OR x.policy_arn = ?3)
               AND (?4 IS NULL OR x.intent_at >= ?4)
             ORDER BY x.id",
        )?;
        let rows = stmt.query_map(
            params![filter.account, filter.user, filter.policy, filter.since],
            |r| {
                Ok(HistoryRow {
                    action_id: r.get(0)?,
                    run_id: r.get(1)?,
                    run_kind: r.get(2)?,
                    time: r.get(3)?,
                    account_id: r.get(4)?,
                    account_name: r.get(5)?,
                    user_name: r.get(6)?,
                    policy_arn: r.get(7)?,
                    operation: r.get(8)?,
                    status: r.get(9)?,
                    reason: r.get(10)?,
                    request_id: r.get(11)?,
                    role_arn: r.get(12)?,
                    session_name: r.get(13)?,
                    rolled_back_by: r.get(14)?,
                    undoes: r.get(15)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // --- reading -------------------------------------------------------------------------
}
