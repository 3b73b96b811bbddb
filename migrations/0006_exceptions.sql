-- 0006: the `[[exception]]` (accounts.toml) that covered a finding when the scan saw it, as
-- JSON: {"reason": ..., "owner": ..., "expires": ..., "line": N}. NULL: none did.
ALTER TABLE findings ADD COLUMN exception TEXT;
