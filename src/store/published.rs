//! What `publish` sent to AWS Security Hub: per account and finding Id, its state and the
//! finding as sent.

use std::collections::HashMap;

use rusqlite::params;

use super::*;
use crate::aws::HubFinding;

/// A finding as last published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// `active` or `archived`.
    pub state: String,
    pub finding: HubFinding,
}

impl Store {
    /// Everything published for `account`, by finding Id.
    pub fn published(&self, account: &str) -> Result<HashMap<String, Published>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT finding_uid, state, finding_json FROM published WHERE account_id = ?1",
        )?;
        let rows = stmt.query_map(params![account], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (uid, state, json) = row?;
            let finding = serde_json::from_str(&json).map_err(|e| {
                StoreError::NotFound(format!("published finding {uid} is unreadable: {e}"))
            })?;
            out.insert(uid, Published { state, finding });
        }
        Ok(out)
    }

    /// The newest scan whose findings were published to an account scan run `findings_run`
    /// read (an apply counts as the scan it applied). Publishing an older scan after it would
    /// reopen what the newer one resolved.
    pub fn newest_published_scan(&self, findings_run: i64) -> Result<Option<i64>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT max(CASE WHEN r.kind = 'apply' AND r.source_run_id IS NOT NULL
                             THEN r.source_run_id ELSE r.id END)
             FROM published p JOIN runs r ON r.id = p.run_id
             WHERE p.account_id IN (SELECT account_id FROM run_accounts WHERE run_id = ?1)",
            params![findings_run],
            |r| r.get(0),
        )?)
    }

    /// Records findings Security Hub took (one transaction).
    pub fn record_published(
        &mut self,
        run_id: i64,
        findings: &[HubFinding],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO published (account_id, finding_uid, state, compliance, workflow,
                                        run_id, published_at, finding_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (account_id, finding_uid) DO UPDATE SET
                     state = excluded.state, compliance = excluded.compliance,
                     workflow = excluded.workflow, run_id = excluded.run_id,
                     published_at = excluded.published_at, finding_json = excluded.finding_json",
            )?;
            let at = now();
            for f in findings {
                stmt.execute(params![
                    f.account_id,
                    f.id,
                    f.record_state.to_ascii_lowercase(),
                    f.compliance,
                    f.workflow,
                    run_id,
                    at,
                    serde_json::to_string(f).expect("finding serializes"),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
