//! The checks of single values: ids, names, ARNs, durations, and where in the file a value is.

use crate::model::{AccountId, Partition};

/// `r-xxxx` (a root) or `ou-xxxx-xxxxxxxx` (an organizational unit).
pub(super) fn check_ou_id(id: &str) -> Result<(), String> {
    let lower_alnum = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let ok = match id.split('-').collect::<Vec<_>>()[..] {
        ["r", rest] => (4..=32).contains(&rest.len()) && lower_alnum(rest),
        ["ou", root, rest] => {
            (4..=32).contains(&root.len())
                && lower_alnum(root)
                && (8..=32).contains(&rest.len())
                && lower_alnum(rest)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not an OU or root id (expected ou-abcd-12345678 or r-abcd)"
        ))
    }
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

pub(super) fn iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`; returns the partition and account.
pub(super) fn check_role_arn(arn: &str) -> Result<(Partition, String), String> {
    let bad = |why: &str| {
        Err(format!(
            "`{arn}` is not a role ARN ({why}); expected arn:aws:iam::111111111111:role/NAME"
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" {
        return bad("it needs six `:`-separated fields starting with `arn`");
    }
    let Ok(partition) = Partition::parse(parts[1]) else {
        return bad("unknown partition");
    };
    if parts[2] != "iam" || !parts[3].is_empty() {
        return bad("the service must be `iam` with an empty region");
    }
    if AccountId::parse(parts[4]).is_err() {
        return bad("the account is not 12 digits");
    }
    let Some(resource) = parts[5].strip_prefix("role/") else {
        return bad("the resource must start with `role/`");
    };
    if let Err(m) = check_role_name(resource) {
        return bad(&m);
    }
    Ok((partition, parts[4].to_owned()))
}

/// A role name, optionally with a path (`team/IamSweepRole`).
pub(super) fn check_role_name(name: &str) -> Result<(), String> {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.is_empty() || last.len() > 64 {
        return Err(format!("`{name}`: a role name has 1 to 64 characters"));
    }
    if name.starts_with('/') || !name.chars().all(|c| iam_name_char(c) || c == '/') {
        return Err(format!(
            "`{name}`: a role name uses letters, digits and +=,.@_- (and / for a path)"
        ));
    }
    Ok(())
}

/// A role session's length: what STS allows (15 minutes to 12 hours; the role's own maximum
/// session duration applies too, and role chaining caps it at one hour).
pub(super) fn check_session_duration(s: &str) -> Result<u32, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as \"1h\" or \"90m\" ({e})"))?;
    let secs = d.as_secs();
    if !(900..=43_200).contains(&secs) {
        return Err(format!(
            "{s:?} is outside what STS allows for a role session: 15m to 12h (and at most the role's own maximum session duration; 1h when the base credentials are themselves an assumed role)"
        ));
    }
    Ok(secs as u32)
}

pub(super) fn check_session_name(s: &str) -> Result<(), String> {
    if !(2..=64).contains(&s.len()) || !s.chars().all(iam_name_char) {
        return Err(format!(
            "`{s}` is not a valid session name (2 to 64 letters, digits or +=,.@_-)"
        ));
    }
    Ok(())
}

pub(super) fn check_external_id(s: &str) -> Result<(), String> {
    if !(2..=1224).contains(&s.len())
        || !s.chars().all(|c| iam_name_char(c) || c == ':' || c == '/')
    {
        return Err("not a valid external id (2 to 1224 letters, digits or +=,.@:/_-)".to_owned());
    }
    Ok(())
}
