-- 0009: what `iamsweep publish` sent to AWS Security Hub, per account and finding Id, so the
-- next publish knows what is new, what to update and what to resolve (archive).
CREATE TABLE published (
    account_id   TEXT NOT NULL,
    finding_uid  TEXT NOT NULL,               -- the ASFF Id
    state        TEXT NOT NULL,               -- 'active' or 'archived' (RecordState)
    compliance   TEXT NOT NULL,               -- 'FAILED' or 'PASSED'
    workflow     TEXT NOT NULL,               -- 'NEW', 'SUPPRESSED' or 'RESOLVED'
    run_id       INTEGER NOT NULL REFERENCES runs(id),   -- the run it was last published from
    published_at TEXT NOT NULL,
    finding_json TEXT NOT NULL,               -- the finding as sent (to send it again resolved)
    PRIMARY KEY (account_id, finding_uid)
) WITHOUT ROWID;
