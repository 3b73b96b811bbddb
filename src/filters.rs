//! Name filters from accounts.toml and flags: `exclude_users`, `exclude_policies`, `only_policies`.
//! Globs (`*`, `?`, `[...]`) matched against whole user names or policy ARNs; pure, no I/O.
//! User names are matched as IAM treats them: case-insensitively (`break-glass-*` protects
//! `Break-Glass-Ops`).

use globset::{GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// A compiled list of glob patterns; keeps the patterns to show and store them.
#[derive(Clone, Debug, Default)]
pub struct Patterns {
    patterns: Vec<String>,
    set: GlobSet,
    /// The same patterns, ignoring case.
    folded: GlobSet,
}

impl Patterns {
    pub fn new(patterns: Vec<String>) -> Result<Self, String> {
        let compile = |fold: bool| -> Result<GlobSet, String> {
            let mut builder = GlobSetBuilder::new();
            for p in &patterns {
                let glob = globset::GlobBuilder::new(p)
                    .literal_separator(false)
                    .backslash_escape(true)
                    .case_insensitive(fold)
                    .build()
                    .map_err(|e| format!("`{p}` is not a valid glob: {}", e.kind()))?;
                builder.add(glob);
            }
            builder
                .build()
                .map_err(|e| format!("invalid glob list: {e}"))
        };
        Ok(Self {
            set: compile(false)?,
            folded: compile(true)?,
            patterns,
        })
    }

    /// The patterns as written.
    pub fn as_slice(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn matches(&self, s: &str) -> bool {
        !self.patterns.is_empty() && self.set.is_match(s)
    }

    /// Whether `s` matches, whatever the case of either.
    pub fn matches_any_case(&self, s: &str) -> bool {
        !self.patterns.is_empty() && self.folded.is_match(s)
    }
}

impl PartialEq for Patterns {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Serialize for Patterns {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.patterns.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Patterns::new(Vec::<String>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Which users and policies an account's scan and apply consider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Users never reported nor touched (e.g. `break-glass-*`).
    pub exclude_users: Patterns,
    /// Policies (ARN globs) apply never detaches.
    pub exclude_policies: Patterns,
    /// When not empty, apply detaches only these policies (ARN globs).
    pub only_policies: Patterns,
    /// `[[exception]]` tables that name this account (or every account), live or expired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<crate::exceptions::Exception>,
}

impl Filters {
    /// IAM user names are unique whatever their case, and so is their exclusion.
    pub fn user_excluded(&self, user: &str) -> bool {
        self.exclude_users.matches_any_case(user)
    }

    /// The live exception covering this finding of `account`, if any (`now`: a stored time).
    pub fn exception(
        &self,
        account: &str,
        user: &str,
        policy: &str,
        now: &str,
    ) -> Option<&crate::exceptions::Exception> {
        crate::exceptions::live(&self.exceptions, account, user, policy, now)
    }

    /// Whether apply may act on this policy.
    pub fn policy_selected(&self, arn: &str) -> bool {
        !self.exclude_policies.matches(arn)
            && (self.only_policies.is_empty() || self.only_policies.matches(arn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Patterns {
        Patterns::new(p.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn user_globs_match_whole_names() {
        let f = Filters {
            exclude_users: pats(&["break-glass-*", "admin?"]),
            ..Filters::default()
        };
        assert!(f.user_excluded("break-glass-1"));
        // IAM treats names case-insensitively: so does the exclusion.
        assert!(f.user_excluded("Break-Glass-Ops"));
        assert!(f.user_excluded("ADMIN1"));
        assert!(f.user_excluded("admin1"));
        assert!(!f.user_excluded("admin12"));
        assert!(!f.user_excluded("x-break-glass-1"));
    }

    #[test]
    fn policy_star_crosses_arn_paths() {
        let f = Filters {
            only_policies: pats(&["arn:aws:iam::aws:policy/*"]),
            exclude_policies: pats(&["*AdministratorAccess"]),
            ..Filters::default()
        };
        assert!(f.policy_selected("arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"));
        assert!(!f.policy_selected("arn:aws:iam::aws:policy/AdministratorAccess"));
        assert!(!f.policy_selected("arn:aws:iam::111111111111:policy/Mine"));
    }

    #[test]
    fn one_pattern_names_a_managed_policy_in_every_partition() {
        // The documented examples (README, accounts.toml) hold in GovCloud and China too.
        let f = Filters {
            only_policies: pats(&["arn:*:iam::aws:policy/*"]),
            exclude_policies: pats(&["arn:*:iam::aws:policy/AdministratorAccess"]),
            ..Filters::default()
        };
        for p in ["aws", "aws-us-gov", "aws-cn"] {
            assert!(f.policy_selected(&format!("arn:{p}:iam::aws:policy/ReadOnlyAccess")));
            assert!(!f.policy_selected(&format!("arn:{p}:iam::aws:policy/AdministratorAccess")));
            assert!(!f.policy_selected(&format!("arn:{p}:iam::111111111111:policy/Mine")));
        }
    }

    #[test]
    fn invalid_glob_is_named() {
        let err = Patterns::new(vec!["a[".into()]).unwrap_err();
        assert!(err.contains("`a[`"), "{err}");
    }
}
