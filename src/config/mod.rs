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
mod tests;
