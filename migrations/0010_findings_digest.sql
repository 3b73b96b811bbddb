-- 0010: a digest of what each account's scan recorded (its findings, field for field, and its
-- counts), so that "this scan shows exactly what the one before showed" is one comparison:
-- `prune` forgets such scans without reading their findings. NULL: recorded before this
-- version, or no scan recorded (prune then compares the findings themselves).
ALTER TABLE run_accounts ADD COLUMN findings_digest TEXT;
