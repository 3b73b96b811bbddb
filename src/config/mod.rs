//! accounts.toml: parsed with unknown keys refused, validated into [`AccountTarget`]s, every error
//! naming the file, line and key. No AWS and no database here.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

mod checks;
mod exception;

use checks::*;
use exception::{RawException, covering, parse_exception};

use crate::exceptions::Exception;
use crate::filters::{Filters, Patterns};
use crate::model::{AccountId, Partition};

pub const DEFAULT_ROLE_NAME: &str = "IamSweepRole";
pub const DEFAULT_SESSION_NAME: &str = "iamsweep";

/// One account to work on, fully resolved (defaults applied, role ARN built).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountTarget {
    pub id: AccountId,
    pub name: Option<String>,
    pub partition: Partition,
    pub access: Access,
    pub filters: Filters,
    /// Where the account came from: `None` for accounts.toml, the OU path
    /// (`Root/Prod/Web`) for an account discovered in the organization.
    #[serde(default)]
    pub origin: Option<String>,
    /// `owner_tag`: the user tag whose value names who answers for a user's findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_tag: Option<String>,
}

/// How iamsweep gets credentials for an account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Access {
    /// `sts:AssumeRole` from the base credentials.
    AssumeRole {
        role_arn: String,
        external_id: Option<String>,
        session_name: String,
        /// How long each assumed session lasts (`session_duration`; `None`: one hour).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_seconds: Option<u32>,
    },
    /// The base credentials themselves (`assume_role = false`); checked to belong to the account.
    BaseCredentials,
}

impl AccountTarget {
    /// `111111111111 (prod)` or `111111111111`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{} ({n})", self.id),
            None => self.id.to_string(),
        }
    }

    pub fn role_arn(&self) -> Option<&str> {
        match &self.access {
            Access::AssumeRole { role_arn, .. } => Some(role_arn),
            Access::BaseCredentials => None,
        }
    }

    pub fn session_name(&self) -> Option<&str> {
        match &self.access {
            Access::AssumeRole { session_name, .. } => Some(session_name),
            Access::BaseCredentials => None,
        }
    }
}

/// The parsed accounts file: its text (kept with each run), the accounts it lists, and the
/// organization to discover more from.
#[derive(Clone, Debug)]
pub struct AccountsFile {
    pub path: String,
    pub text: String,
    /// The `[[account]]` entries (after `organization::resolve`, every account to work on).
    pub accounts: Vec<AccountTarget>,
    pub organization: Option<OrgSpec>,
    /// The one partition every account of the file is in: every client (the base credential
    /// chain, STS, IAM, Organizations) is built for it.
    pub partition: Partition,
    /// `[[exception]]` tables, in file order, live or expired.
    pub exceptions: Vec<Exception>,
    defaults: RawDefaults,
}

/// `[organization]`: discover the accounts from AWS Organizations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrgSpec {
    /// Read the organization through this role (default: the base credentials).
    pub management_role_arn: Option<String>,
    pub external_id: Option<String>,
    /// Only accounts under these OUs (or roots), children included; empty: all.
    pub include_ous: Vec<String>,
    /// Never accounts under these OUs, children included.
    pub exclude_ous: Vec<String>,
    pub exclude_accounts: Vec<AccountId>,
    /// Also accounts that are not `ACTIVE` (suspended, pending closure).
    pub include_inactive: bool,
}

impl AccountsFile {
    /// An accounts file as a run stored it: its text and the accounts the run worked on.
    pub fn stored(path: String, text: String, accounts: Vec<AccountTarget>) -> Self {
        Self {
            partition: accounts.first().map_or(Partition::Aws, |a| a.partition),
            path,
            text,
            accounts,
            organization: None,
            exceptions: Vec::new(),
            defaults: RawDefaults::default(),
        }
    }

    /// The target for an account discovered in the organization: `[defaults]` applied, as if
    /// it were listed with only its id and name.
    pub fn discovered(
        &self,
        id: &AccountId,
        name: &str,
        origin: &str,
    ) -> Result<AccountTarget, ConfigError> {
        let raw = RawAccount {
            id: Spanned::new(0..0, id.to_string()),
            name: Some(Spanned::new(0..0, name.to_owned())),
            role_arn: None,
            role_name: None,
            external_id: None,
            session_name: None,
            session_duration: None,
            partition: None,
            assume_role: None,
            exclude_users: None,
            exclude_policies: None,
            only_policies: None,
            owner_tag: None,
        };
        let mut target =
            resolve_account(&self.path, &self.text, raw, &self.defaults, self.partition)?;
        target.origin = Some(origin.to_owned());
        target.filters.exceptions = covering(&self.exceptions, &target.id);
        Ok(target)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read accounts file {path}: {source} (pass --accounts PATH, or create it from the documented example accounts.toml)"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
}

// Raw shapes: every key optional where the contract says so, unknown keys refused. `flatten`
// does not combine with `deny_unknown_fields`, so the shared keys are listed twice.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: Option<RawDefaults>,
    #[serde(default)]
    organization: Option<Spanned<RawOrganization>>,
    #[serde(default)]
    account: Vec<Spanned<RawAccount>>,
    #[serde(default)]
    exception: Vec<Spanned<RawException>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganization {
    management_role_arn: Option<Spanned<String>>,
    external_id: Option<Spanned<String>>,
    include_ous: Option<Spanned<Vec<String>>>,
    exclude_ous: Option<Spanned<Vec<String>>>,
    exclude_accounts: Option<Spanned<Vec<String>>>,
    include_inactive: Option<bool>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    role_name: Option<Spanned<String>>,
    external_id: Option<Spanned<String>>,
    session_name: Option<Spanned<String>>,
    session_duration: Option<Spanned<String>>,
    partition: Option<Spanned<String>>,
    assume_role: Option<Spanned<bool>>,
    exclude_users: Option<Spanned<Vec<String>>>,
    exclude_policies: Option<Spanned<Vec<String>>>,
    only_policies: Option<Spanned<Vec<String>>>,
    owner_tag: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    id: Spanned<String>,
    name: Option<Spanned<String>>,
    role_arn: Option<Spanned<String>>,
    role_name: Option<Spanned<String>>,
    external_id: Option<Spanned<String>>,
    session_name: Option<Spanned<String>>,
    session_duration: Option<Spanned<String>>,
    partition: Option<Spanned<String>>,
    assume_role: Option<Spanned<bool>>,
    exclude_users: Option<Spanned<Vec<String>>>,
    exclude_policies: Option<Spanned<Vec<String>>>,
    only_policies: Option<Spanned<Vec<String>>>,
    owner_tag: Option<Spanned<String>>,
}

/// Reads and validates an accounts file.
pub fn load(path: &Path) -> Result<AccountsFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

/// Validates accounts.toml text; `path` is only used in messages.
pub fn parse(path: &str, text: &str) -> Result<AccountsFile, ConfigError> {
    let err = |span: Option<Range<usize>>, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        line: span.map_or(1, |s| line_of(text, s.start)),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| err(e.span(), e.message().to_owned()))?;
    let defaults = raw.defaults.unwrap_or_default();
    let management_arn = raw
        .organization
        .as_ref()
        .and_then(|o| o.get_ref().management_role_arn.clone());
    let partition = run_partition(path, text, &defaults, management_arn.as_ref(), &raw.account)?;
    let organization = raw
        .organization
        .map(|o| parse_organization(path, text, o))
        .transpose()?;
    if raw.account.is_empty() && organization.is_none() {
        return Err(err(
            None,
            "no accounts: add at least one [[account]] table with an `id`, or an [organization] table".into(),
        ));
    }

    let exceptions = raw
        .exception
        .into_iter()
        .map(|e| parse_exception(path, text, e))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut accounts = Vec::with_capacity(raw.account.len());
    for entry in raw.account {
        let a = entry.into_inner();
        let id_span = a.id.span();
        let line = line_of(text, id_span.start);
        let mut target = resolve_account(path, text, a, &defaults, partition)?;
        target.filters.exceptions = covering(&exceptions, &target.id);
        if let Some(first) = seen.insert(target.id.to_string(), line) {
            return Err(err(
                Some(id_span),
                format!(
                    "key `id`: duplicate account id {} (first listed at line {first})",
                    target.id
                ),
            ));
        }
        accounts.push(target);
    }
    let file = AccountsFile {
        path: path.to_owned(),
        text: text.to_owned(),
        accounts,
        organization,
        partition,
        exceptions,
        defaults,
    };
    if file.accounts.is_empty() {
        // Check `[defaults]` now, not at the first discovered account.
        file.discovered(&AccountId::parse("000000000000").expect("valid"), "", "")?;
    }
    Ok(file)
}

fn parse_organization(
    path: &str,
    text: &str,
    raw: Spanned<RawOrganization>,
) -> Result<OrgSpec, ConfigError> {
    let err = |span: Range<usize>, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        line: line_of(text, span.start),
        message,
    };
    let o = raw.into_inner();
    let management_role_arn = match o.management_role_arn {
        Some(arn) => {
            check_role_arn(arn.get_ref())
                .map_err(|m| err(arn.span(), format!("key `management_role_arn`: {m}")))?;
            Some(arn.into_inner())
        }
        None => None,
    };
    let external_id = match o.external_id {
        Some(x) => {
            check_external_id(x.get_ref())
                .map_err(|m| err(x.span(), format!("key `external_id`: {m}")))?;
            Some(x.into_inner())
        }
        None => None,
    };
    let ous = |list: Option<Spanned<Vec<String>>>, key: &str| -> Result<Vec<String>, ConfigError> {
        let Some(list) = list else {
            return Ok(Vec::new());
        };
        let span = list.span();
        for ou in list.get_ref() {
            check_ou_id(ou).map_err(|m| err(span.clone(), format!("key `{key}`: {m}")))?;
        }
        Ok(list.into_inner())
    };
    let exclude_accounts = match o.exclude_accounts {
        Some(list) => {
            let span = list.span();
            list.into_inner()
                .iter()
                .map(|id| {
                    AccountId::parse(id)
                        .map_err(|m| err(span.clone(), format!("key `exclude_accounts`: {m}")))
                })
                .collect::<Result<_, _>>()?
        }
        None => Vec::new(),
    };
    Ok(OrgSpec {
        management_role_arn,
        external_id,
        include_ous: ous(o.include_ous, "include_ous")?,
        exclude_ous: ous(o.exclude_ous, "exclude_ous")?,
        exclude_accounts,
        include_inactive: o.include_inactive.unwrap_or(false),
    })
}

/// The partition of the whole file, from whichever of `partition` (in `[defaults]` or an
/// account), an account's `role_arn` or `management_role_arn` names one (`aws` if none does).
/// They must all agree: one run reaches one partition, whose credentials and endpoints are of
/// no use in another.
fn run_partition(
    path: &str,
    text: &str,
    defaults: &RawDefaults,
    management_role_arn: Option<&Spanned<String>>,
    accounts: &[Spanned<RawAccount>],
) -> Result<Partition, ConfigError> {
    // (partition, where it was said, which key said it)
    let mut claims: Vec<(Partition, Range<usize>, &str)> = Vec::new();
    let named = |p: &Spanned<String>| Partition::parse(p.get_ref()).ok();
    // An ARN's partition; a malformed ARN is reported by its own check.
    let of_arn = |a: &Spanned<String>| check_role_arn(a.get_ref()).ok().map(|(p, _)| p);
    if let Some(p) = &defaults.partition
        && let Some(part) = named(p)
    {
        claims.push((part, p.span(), "partition"));
    }
    if let Some(arn) = management_role_arn
        && let Some(part) = of_arn(arn)
    {
        claims.push((part, arn.span(), "management_role_arn"));
    }
    for a in accounts {
        let a = a.get_ref();
        if let Some(p) = &a.partition
            && let Some(part) = named(p)
        {
            claims.push((part, p.span(), "partition"));
        }
        if let Some(arn) = &a.role_arn
            && let Some(part) = of_arn(arn)
        {
            claims.push((part, arn.span(), "role_arn"));
        }
    }
    let Some((first, first_span, first_key)) = claims.first().cloned() else {
        return Ok(Partition::Aws);
    };
    if let Some((other, span, key)) = claims.iter().find(|(p, ..)| *p != first) {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            line: line_of(text, span.start),
            message: format!(
                "key `{key}`: partition {other}, but line {} (`{first_key}`) is in partition {first}; one run works in one partition (its credentials and endpoints are of no use in another): use one accounts file per partition",
                line_of(text, first_span.start)
            ),
        });
    }
    Ok(first)
}

/// One `[[account]]` entry, with `[defaults]` applied; `run_partition` is the file's.
fn resolve_account(
    path: &str,
    text: &str,
    a: RawAccount,
    defaults: &RawDefaults,
    run_partition: Partition,
) -> Result<AccountTarget, ConfigError> {
    let err = |span: Option<Range<usize>>, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        line: span.map_or(1, |s| line_of(text, s.start)),
        message,
    };
    let id_span = a.id.span();
    let id = AccountId::parse(a.id.get_ref())
        .map_err(|m| err(Some(id_span.clone()), format!("key `id`: {m}")))?;
    let pick = |own: &Option<Spanned<String>>, def: &Option<Spanned<String>>| {
        own.as_ref().or(def.as_ref()).cloned()
    };
    let partition = match pick(&a.partition, &defaults.partition) {
        Some(p) => Partition::parse(p.get_ref())
            .map_err(|m| err(Some(p.span()), format!("key `partition`: {m}")))?,
        None => run_partition,
    };
    let assume_role = a
        .assume_role
        .as_ref()
        .or(defaults.assume_role.as_ref())
        .is_none_or(|b| *b.get_ref());

    let access = if assume_role {
        let session = pick(&a.session_name, &defaults.session_name);
        let session_name = match session {
            Some(s) => {
                check_session_name(s.get_ref())
                    .map_err(|m| err(Some(s.span()), format!("key `session_name`: {m}")))?;
                s.into_inner()
            }
            None => DEFAULT_SESSION_NAME.to_owned(),
        };
        let session_seconds = match pick(&a.session_duration, &defaults.session_duration) {
            Some(d) => Some(
                check_session_duration(d.get_ref())
                    .map_err(|m| err(Some(d.span()), format!("key `session_duration`: {m}")))?,
            ),
            None => None,
        };
        let external_id = match pick(&a.external_id, &defaults.external_id) {
            Some(x) => {
                check_external_id(x.get_ref())
                    .map_err(|m| err(Some(x.span()), format!("key `external_id`: {m}")))?;
                Some(x.into_inner())
            }
            None => None,
        };
        let role_arn = match (&a.role_arn, pick(&a.role_name, &defaults.role_name)) {
            (Some(arn), _) => {
                let (arn_partition, arn_account) = check_role_arn(arn.get_ref())
                    .map_err(|m| err(Some(arn.span()), format!("key `role_arn`: {m}")))?;
                if arn_account != id.as_str() {
                    return Err(err(
                        Some(arn.span()),
                        format!(
                            "key `role_arn`: the role is in account {arn_account}, not in account {id}"
                        ),
                    ));
                }
                if arn_partition != partition {
                    return Err(err(
                        Some(arn.span()),
                        format!(
                            "key `role_arn`: the role is in partition {arn_partition}, but the account's partition is {partition}"
                        ),
                    ));
                }
                arn.get_ref().clone()
            }
            (None, name) => {
                let name = match name {
                    Some(n) => {
                        check_role_name(n.get_ref())
                            .map_err(|m| err(Some(n.span()), format!("key `role_name`: {m}")))?;
                        n.into_inner()
                    }
                    None => DEFAULT_ROLE_NAME.to_owned(),
                };
                format!("arn:{partition}:iam::{id}:role/{name}")
            }
        };
        Access::AssumeRole {
            role_arn,
            external_id,
            session_name,
            session_seconds,
        }
    } else {
        for (key, present) in [
            ("role_arn", a.role_arn.as_ref().map(|s| s.span())),
            ("role_name", a.role_name.as_ref().map(|s| s.span())),
            ("external_id", a.external_id.as_ref().map(|s| s.span())),
            (
                "session_duration",
                a.session_duration.as_ref().map(|s| s.span()),
            ),
        ] {
            if let Some(span) = present {
                return Err(err(
                    Some(span),
                    format!(
                        "key `{key}`: not used with `assume_role = false` (the base credentials are used as they are); remove one of the two"
                    ),
                ));
            }
        }
        Access::BaseCredentials
    };

    let list = |own: Option<Spanned<Vec<String>>>,
                def: &Option<Spanned<Vec<String>>>,
                key: &str|
     -> Result<Patterns, ConfigError> {
        match own.or_else(|| def.clone()) {
            Some(v) => {
                let span = v.span();
                Patterns::new(v.into_inner())
                    .map_err(|m| err(Some(span), format!("key `{key}`: {m}")))
            }
            None => Ok(Patterns::default()),
        }
    };
    let filters = Filters {
        exclude_users: list(a.exclude_users, &defaults.exclude_users, "exclude_users")?,
        exclude_policies: list(
            a.exclude_policies,
            &defaults.exclude_policies,
            "exclude_policies",
        )?,
        only_policies: list(a.only_policies, &defaults.only_policies, "only_policies")?,
        exceptions: Vec::new(),
    };
    let owner_tag = match a.owner_tag.or_else(|| defaults.owner_tag.clone()) {
        Some(t) if t.get_ref().trim().is_empty() || t.get_ref().len() > 128 => {
            return Err(err(
                Some(t.span()),
                "key `owner_tag`: a tag key of 1 to 128 characters (e.g. \"Owner\")".into(),
            ));
        }
        other => other.map(Spanned::into_inner),
    };
    let name = a.name.map(Spanned::into_inner).filter(|n| !n.is_empty());
    Ok(AccountTarget {
        id,
        name,
        partition,
        access,
        filters,
        origin: None,
        owner_tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<AccountTarget> {
        parse("accounts.toml", text).unwrap().accounts
    }

    fn parse_err(text: &str) -> String {
        parse("accounts.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_apply_and_accounts_override() {
        let accounts = parse_ok(
            r#"
[defaults]
role_name = "Sweeper"
external_id = "ext-123"
exclude_users = ["break-glass-*"]

[[account]]
id = "111111111111"
name = "prod"

[[account]]
id = "222222222222"
role_arn = "arn:aws:iam::222222222222:role/ops/Custom"
session_name = "audit"
exclude_users = []

[[account]]
id = "333333333333"
assume_role = false
"#,
        );
        assert_eq!(accounts.len(), 3);
        assert_eq!(accounts[0].label(), "111111111111 (prod)");
        assert_eq!(
            accounts[0].access,
            Access::AssumeRole {
                role_arn: "arn:aws:iam::111111111111:role/Sweeper".into(),
                external_id: Some("ext-123".into()),
                session_name: "iamsweep".into(),
                session_seconds: None,
            }
        );
        assert!(accounts[0].filters.user_excluded("break-glass-7"));
        assert_eq!(
            accounts[1].role_arn(),
            Some("arn:aws:iam::222222222222:role/ops/Custom")
        );
        assert_eq!(accounts[1].session_name(), Some("audit"));
        assert!(!accounts[1].filters.user_excluded("break-glass-7"));
        assert_eq!(accounts[2].access, Access::BaseCredentials);
    }

    #[test]
    fn partition_builds_the_role_arn() {
        let a = parse_ok("[[account]]\nid = \"111111111111\"\npartition = \"aws-cn\"\n");
        assert_eq!(
            a[0].role_arn(),
            Some("arn:aws-cn:iam::111111111111:role/IamSweepRole")
        );
        assert_eq!(a[0].partition.iam_region(), "cn-north-1");
    }

    #[test]
    fn the_partition_comes_from_a_role_arn_or_the_management_role() {
        let f = parse(
            "accounts.toml",
            "[[account]]\nid = \"111111111111\"\nrole_arn = \"arn:aws-us-gov:iam::111111111111:role/x\"\n\n[[account]]\nid = \"222222222222\"\n",
        )
        .unwrap();
        assert_eq!(f.partition, Partition::AwsUsGov);
        // The account without a role ARN follows the file's partition.
        assert_eq!(
            f.accounts[1].role_arn(),
            Some("arn:aws-us-gov:iam::222222222222:role/IamSweepRole")
        );
        let f = parse(
            "accounts.toml",
            "[organization]\nmanagement_role_arn = \"arn:aws-cn:iam::999999999999:role/OrgReader\"\n",
        )
        .unwrap();
        assert_eq!(f.partition, Partition::AwsCn);
        let found = f
            .discovered(&AccountId::parse("333333333333").unwrap(), "x", "Root")
            .unwrap();
        assert_eq!(found.partition, Partition::AwsCn);
        assert_eq!(
            found.role_arn(),
            Some("arn:aws-cn:iam::333333333333:role/IamSweepRole")
        );
        assert_eq!(
            parse("accounts.toml", "[[account]]\nid = \"111111111111\"\n")
                .unwrap()
                .partition,
            Partition::Aws
        );
    }

    #[test]
    fn mixed_partitions_are_refused_with_both_lines() {
        // Each way of naming a partition, against [defaults] partition = "aws-us-gov".
        for (entry, line, key) in [
            ("partition = \"aws\"", 5, "partition"),
            (
                "role_arn = \"arn:aws-cn:iam::111111111111:role/x\"",
                5,
                "role_arn",
            ),
        ] {
            let e = parse_err(&format!(
                "[defaults]\npartition = \"aws-us-gov\"\n[[account]]\nid = \"111111111111\"\n{entry}\n"
            ));
            assert!(
                e.starts_with(&format!("accounts.toml:{line}: key `{key}`: partition ")),
                "{e}"
            );
            assert!(
                e.contains("but line 2 (`partition`) is in partition aws-us-gov"),
                "{e}"
            );
            assert!(e.contains("one accounts file per partition"), "{e}");
        }
        let e = parse_err(
            "[organization]\nmanagement_role_arn = \"arn:aws:iam::999999999999:role/OrgReader\"\n\n[[account]]\nid = \"111111111111\"\npartition = \"aws-cn\"\n",
        );
        assert!(
            e.starts_with("accounts.toml:6: key `partition`: partition aws-cn, but line 2 (`management_role_arn`) is in partition aws"),
            "{e}"
        );
        // Two accounts, each consistent on its own, in two partitions.
        let e = parse_err(
            "[[account]]\nid = \"111111111111\"\nrole_arn = \"arn:aws:iam::111111111111:role/x\"\n[[account]]\nid = \"222222222222\"\nrole_arn = \"arn:aws-us-gov:iam::222222222222:role/x\"\n",
        );
        assert!(e.starts_with("accounts.toml:6: key `role_arn`"), "{e}");
    }

    #[test]
    fn the_documented_examples_parse() {
        let example = parse("accounts.toml", include_str!("../../accounts.toml")).unwrap();
        assert_eq!(example.partition, Partition::Aws);
        // Every ```toml block of the README and of every docs page.
        let root = env!("CARGO_MANIFEST_DIR");
        let mut pages = vec!["README.md".to_owned()];
        for entry in std::fs::read_dir(format!("{root}/docs")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".md") {
                pages.push(format!("docs/{name}"));
            }
        }
        let docs: Vec<(String, String)> = pages
            .into_iter()
            .map(|page| {
                let text = std::fs::read_to_string(format!("{root}/{page}")).unwrap();
                (page, text)
            })
            .collect();
        let blocks: Vec<(&str, &str)> = docs
            .iter()
            .flat_map(|(name, text)| {
                text.split("```toml\n")
                    .skip(1)
                    .map(move |b| (name.as_str(), b.split("```").next().unwrap()))
            })
            .collect();
        assert!(blocks.len() >= 3, "{}", blocks.len());
        let partitions: Vec<Partition> = blocks
            .iter()
            .map(|(name, b)| {
                parse(name, b)
                    .unwrap_or_else(|e| panic!("{e}\n{b}"))
                    .partition
            })
            .collect();
        assert!(partitions.contains(&Partition::AwsUsGov), "{partitions:?}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse_err("[[account]]\nid = \"111111111111\"\nrole = \"x\"\n");
        assert!(e.starts_with("accounts.toml:3: "), "{e}");
        assert!(e.contains("`role`"), "{e}");
    }

    #[test]
    fn unknown_key_in_defaults() {
        let e = parse_err("[defaults]\nrolename = \"x\"\n[[account]]\nid = \"111111111111\"\n");
        assert!(e.starts_with("accounts.toml:2: "), "{e}");
        assert!(e.contains("`rolename`"), "{e}");
    }

    #[test]
    fn unknown_top_level_table() {
        let e = parse_err("[[accounts]]\nid = \"111111111111\"\n");
        assert!(e.starts_with("accounts.toml:1: "), "{e}");
        assert!(e.contains("`accounts`"), "{e}");
    }

    #[test]
    fn duplicate_ids_name_both_lines() {
        let e =
            parse_err("[[account]]\nid = \"111111111111\"\n\n[[account]]\nid = \"111111111111\"\n");
        assert_eq!(
            e,
            "accounts.toml:5: key `id`: duplicate account id 111111111111 (first listed at line 2)"
        );
    }

    #[test]
    fn short_and_numeric_ids_are_refused() {
        let e = parse_err("[[account]]\nid = \"12345\"\n");
        assert_eq!(
            e,
            "accounts.toml:2: key `id`: `12345` is not a 12-digit AWS account id"
        );
        let e = parse_err("[[account]]\nname = \"x\"\nid = 111111111111\n");
        assert!(e.starts_with("accounts.toml:3: "), "{e}");
        assert!(e.contains("string"), "{e}");
    }

    #[test]
    fn malformed_role_arns_are_refused() {
        for (arn, why) in [
            ("arn:aws:iam::111111111111:user/x", "`role/`"),
            ("arn:aws:s3::111111111111:role/x", "`iam`"),
            ("arn:aws:iam::1111:role/x", "12 digits"),
            ("arn:aws:iam::111111111111:role/", "1 to 64"),
            ("arn:aws:iam::111111111111:role/a b", "letters"),
            ("arn:aws-xx:iam::111111111111:role/x", "partition"),
            ("role/x", "six"),
        ] {
            let e = parse_err(&format!(
                "[[account]]\nid = \"111111111111\"\nrole_arn = \"{arn}\"\n"
            ));
            assert!(e.starts_with("accounts.toml:3: key `role_arn`: "), "{e}");
            assert!(e.contains(why), "{arn}: {e}");
        }
    }

    #[test]
    fn role_arn_of_another_account_is_refused() {
        let e = parse_err(
            "[[account]]\nid = \"111111111111\"\nrole_arn = \"arn:aws:iam::222222222222:role/x\"\n",
        );
        assert!(
            e.contains("account 222222222222, not in account 111111111111"),
            "{e}"
        );
    }

    #[test]
    fn assume_role_false_with_a_role_is_contradictory() {
        let e = parse_err(
            "[[account]]\nid = \"111111111111\"\nassume_role = false\nrole_name = \"x\"\n",
        );
        assert!(e.starts_with("accounts.toml:4: key `role_name`"), "{e}");
    }

    #[test]
    fn session_duration_is_a_duration_sts_allows_and_named_when_it_is_not() {
        let accounts = parse_ok(
            "[defaults]\nsession_duration = \"4h\"\n[[account]]\nid = \"111111111111\"\n[[account]]\nid = \"222222222222\"\nsession_duration = \"90m\"\n",
        );
        let secs = |a: &AccountTarget| match &a.access {
            Access::AssumeRole {
                session_seconds, ..
            } => *session_seconds,
            Access::BaseCredentials => None,
        };
        assert_eq!(secs(&accounts[0]), Some(4 * 3600));
        assert_eq!(secs(&accounts[1]), Some(90 * 60));
        for (value, says) in [
            ("\"13h\"", "outside what STS allows"),
            ("\"soon\"", "not a duration"),
        ] {
            let e = parse(
                "accounts.toml",
                &format!("[[account]]\nid = \"111111111111\"\nsession_duration = {value}\n"),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.starts_with("accounts.toml:3: key `session_duration`"),
                "{e}"
            );
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn bad_glob_and_session_name_are_named() {
        let e = parse_err("[[account]]\nid = \"111111111111\"\nexclude_users = [\"a[\"]\n");
        assert!(e.starts_with("accounts.toml:3: key `exclude_users`"), "{e}");
        let e = parse_err(
            "[defaults]\nsession_name = \"has space\"\n[[account]]\nid = \"111111111111\"\n",
        );
        assert!(e.starts_with("accounts.toml:2: key `session_name`"), "{e}");
    }

    #[test]
    fn no_accounts_is_an_error() {
        let e = parse_err("[defaults]\nrole_name = \"x\"\n");
        assert!(e.contains("no accounts"), "{e}");
    }

    #[test]
    fn organization_section_is_validated() {
        let f = parse(
            "accounts.toml",
            "[organization]\nmanagement_role_arn = \"arn:aws:iam::999999999999:role/OrgReader\"\ninclude_ous = [\"ou-ab12-abcdefgh\", \"r-ab12\"]\nexclude_accounts = [\"111111111111\"]\n",
        )
        .unwrap();
        let spec = f.organization.unwrap();
        assert_eq!(spec.include_ous, ["ou-ab12-abcdefgh", "r-ab12"]);
        assert_eq!(spec.exclude_accounts[0].as_str(), "111111111111");
        assert!(!spec.include_inactive);
        assert!(f.accounts.is_empty());
        let e = parse_err("[organization]\ninclude_ous = [\"prod\"]\n");
        assert!(
            e.starts_with("accounts.toml:2: key `include_ous`: `prod` is not an OU"),
            "{e}"
        );
        let e = parse_err("[organization]\nexclude_accounts = [\"12\"]\n");
        assert!(
            e.starts_with("accounts.toml:2: key `exclude_accounts`"),
            "{e}"
        );
        let e = parse_err("[organization]\nmanagement_role_arn = \"nope\"\n");
        assert!(
            e.starts_with("accounts.toml:2: key `management_role_arn`"),
            "{e}"
        );
        let e = parse_err("[organization]\nous = []\n");
        assert!(e.starts_with("accounts.toml:2: "), "{e}");
        // Defaults are checked even with no [[account]] to apply them to.
        let e = parse_err("[defaults]\nrole_name = \"a b\"\n[organization]\n");
        assert!(e.starts_with("accounts.toml:2: key `role_name`"), "{e}");
    }

    #[test]
    fn toml_syntax_errors_carry_the_line() {
        let e = parse_err("[[account]]\nid = \"111111111111\n");
        assert!(e.starts_with("accounts.toml:2: "), "{e}");
    }

    const TWO: &str = "[[account]]\nid = \"111111111111\"\n\n[[account]]\nid = \"222222222222\"\n";

    #[test]
    fn exceptions_reach_the_accounts_they_name_with_their_line() {
        let text = format!(
            "{TWO}\n[[exception]]\naccounts = [\"111111111111\"]\nusers = [\"ci-*\"]\npolicies = [\"arn:*:iam::aws:policy/ReadOnlyAccess\"]\nreason = \"CHG-1234\"\nowner = \"platform@example.com\"\nexpires = 2027-01-31\n\n[[exception]]\nusers = [\"alice\"]\nreason = \"CHG-9\"\nowner = \"sec@example.com\"\nexpires = 2027-01-31T18:00:00+02:00\n"
        );
        let file = parse("accounts.toml", &text).unwrap();
        assert_eq!(file.exceptions.len(), 2);
        let (first, second) = (&file.exceptions[0], &file.exceptions[1]);
        assert_eq!((first.line, second.line), (7, 15));
        assert_eq!(first.until, "2027-02-01T00:00:00.000Z");
        assert_eq!(first.expires, "2027-01-31");
        assert_eq!(second.until, "2027-01-31T16:00:00.000Z");
        assert!(second.accounts.is_empty(), "every account");
        let of = |id: &str| {
            file.accounts
                .iter()
                .find(|a| a.id.as_str() == id)
                .unwrap()
                .filters
                .exceptions
                .iter()
                .map(|e| e.line)
                .collect::<Vec<_>>()
        };
        assert_eq!(of("111111111111"), vec![7, 15]);
        assert_eq!(of("222222222222"), vec![15]);
    }

    #[test]
    fn every_exception_key_is_checked_and_named_with_its_line() {
        let base =
            "users = [\"alice\"]\nreason = \"CHG-1\"\nowner = \"a@b.c\"\nexpires = 2027-01-31\n";
        let with = |body: &str| parse_err(&format!("{TWO}\n[[exception]]\n{body}"));
        // The table starts at line 7; a key's own error is on its own line.
        for (body, line, needle) in [
            (
                base.replace("reason = \"CHG-1\"\n", ""),
                7,
                "key `reason` is required",
            ),
            (
                base.replace("owner = \"a@b.c\"\n", ""),
                7,
                "key `owner` is required",
            ),
            (
                base.replace("expires = 2027-01-31\n", ""),
                7,
                "key `expires` is required",
            ),
            (base.replace("\"CHG-1\"", "\" \""), 9, "key `reason`: empty"),
            (base.replace("\"a@b.c\"", "\"\""), 10, "key `owner`: empty"),
            (
                base.replace("2027-01-31", "2027-01-31T18:00:00"),
                11,
                "key `expires`: a date-time needs its offset",
            ),
            (base.replace("2027-01-31", "\"soon\""), 11, "expires"),
            (
                base.replace("users = [\"alice\"]\n", ""),
                7,
                "name `users`, `policies` or both",
            ),
            (
                base.replace("[\"alice\"]", "[]"),
                8,
                "key `users`: empty list",
            ),
            (
                base.replace("[\"alice\"]", "[\"a[\"]"),
                8,
                "key `users`: `a[` is not a valid glob",
            ),
            (
                format!("policies = [\"arn:{{\"]\n{base}"),
                8,
                "key `policies`",
            ),
            (
                format!("accounts = [\"12345\"]\n{base}"),
                8,
                "key `accounts`",
            ),
            (
                format!("owners = \"x\"\n{base}"),
                8,
                "unknown field `owners`",
            ),
        ] {
            let e = with(&body);
            assert!(
                e.starts_with(&format!("accounts.toml:{line}: ")) && e.contains(needle),
                "{body:?}: {e}"
            );
        }
    }

    #[test]
    fn owner_tag_comes_from_defaults_an_account_may_override_it_and_it_is_checked() {
        let targets = parse_ok(
            "[defaults]\nowner_tag = \"Owner\"\n\n[[account]]\nid = \"111111111111\"\n\n[[account]]\nid = \"222222222222\"\nowner_tag = \"team\"\n",
        );
        assert_eq!(targets[0].owner_tag.as_deref(), Some("Owner"));
        assert_eq!(targets[1].owner_tag.as_deref(), Some("team"));
        assert_eq!(parse_ok(TWO)[0].owner_tag, None);
        let e = parse_err("[defaults]\nowner_tag = \"\"\n\n[[account]]\nid = \"111111111111\"\n");
        assert!(e.starts_with("accounts.toml:2: key `owner_tag`"), "{e}");
    }
}
