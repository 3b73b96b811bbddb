-- 0007: the SHA-256 of the reviewed plan (`apply --plan FILE`) an apply run applied exactly;
-- NULL for a run that applied every finding of its scan.
ALTER TABLE runs ADD COLUMN plan_digest TEXT;
