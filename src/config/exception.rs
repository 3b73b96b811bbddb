//! `[[exception]]` tables of accounts.toml: read, checked (file:line and key), and handed to
//! the accounts they name.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::checks::line_of;
use crate::exceptions::Exception;
use crate::filters::Patterns;
use crate::model::AccountId;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawException {
    accounts: Option<Spanned<Vec<String>>>,
    users: Option<Spanned<Vec<String>>>,
    policies: Option<Spanned<Vec<String>>>,
    reason: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
    expires: Option<Spanned<toml::Value>>,
}

/// The exceptions that name `account` (or every account).
pub(super) fn covering(exceptions: &[Exception], account: &AccountId) -> Vec<Exception> {
    exceptions
        .iter()
        .filter(|e| e.accounts.is_empty() || e.accounts.iter().any(|a| a == account.as_str()))
        .cloned()
        .collect()
}

/// One `[[exception]]`: who asked (`owner`), why (`reason`) and until when (`expires`) are
/// required, and it names users, policies or both (never every finding at once).
pub(super) fn parse_exception(
    path: &str,
    text: &str,
    raw: Spanned<RawException>,
) -> Result<Exception, ConfigError> {
    let line = line_of(text, raw.span().start);
    let err = |span: Option<Range<usize>>, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        line: span.map_or(line, |s| line_of(text, s.start)),
        message,
    };
    let e = raw.into_inner();
    let required = |v: Option<Spanned<String>>, key: &str, what: &str| match v {
        Some(s) if !s.get_ref().trim().is_empty() => Ok(s.into_inner()),
        Some(s) => Err(err(Some(s.span()), format!("key `{key}`: empty; {what}"))),
        None => Err(err(
            None,
            format!("[[exception]]: key `{key}` is required: {what}"),
        )),
    };
    let reason = required(
        e.reason,
        "reason",
        "say why the finding must stay (a change ticket, say)",
    )?;
    let owner = required(
        e.owner,
        "owner",
        "say who answers for it (a team's address)",
    )?;
    let Some(expires) = e.expires else {
        return Err(err(
            None,
            "[[exception]]: key `expires` is required: a date (2027-01-31, through that day UTC) or a date-time (2027-01-31T18:00:00Z); exceptions that never end are not accepted".into(),
        ));
    };
    let span = expires.span();
    let toml::Value::Datetime(expires) = expires.into_inner() else {
        return Err(err(
            Some(span),
            "key `expires`: expected a TOML date without quotes (expires = 2027-01-31) or date-time (expires = 2027-01-31T18:00:00Z)".into(),
        ));
    };
    let until = crate::exceptions::until(&expires)
        .map_err(|m| err(Some(span), format!("key `expires`: {m}")))?;
    let globs = |v: Option<Spanned<Vec<String>>>, key: &str| -> Result<Patterns, ConfigError> {
        match v {
            Some(v) => {
                let span = v.span();
                if v.get_ref().is_empty() {
                    return Err(err(Some(span), format!("key `{key}`: empty list")));
                }
                Patterns::new(v.into_inner())
                    .map_err(|m| err(Some(span), format!("key `{key}`: {m}")))
            }
            None => Ok(Patterns::default()),
        }
    };
    let users = globs(e.users, "users")?;
    let policies = globs(e.policies, "policies")?;
    if users.is_empty() && policies.is_empty() {
        return Err(err(
            None,
            "[[exception]]: name `users`, `policies` or both (an exception for every finding would switch the tool off)".into(),
        ));
    }
    let accounts = match e.accounts {
        Some(list) => {
            let span = list.span();
            list.into_inner()
                .into_iter()
                .map(|a| {
                    AccountId::parse(&a)
                        .map(|id| id.to_string())
                        .map_err(|m| err(Some(span.clone()), format!("key `accounts`: {m}")))
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    Ok(Exception {
        line,
        accounts,
        users,
        policies,
        reason,
        owner,
        expires: expires.to_string(),
        until,
    })
}
