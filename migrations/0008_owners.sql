-- 0008: who answers for a finding: the value of the user's `owner_tag` tag (accounts.toml) when
-- the scan saw it; NULL without `owner_tag`, or when the user has no such tag.
ALTER TABLE findings ADD COLUMN owner TEXT;
