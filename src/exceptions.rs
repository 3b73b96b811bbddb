//! `[[exception]]` in accounts.toml: a finding that must stay as it is, with who asked, why and
//! until when. A live exception keeps its findings attached (`skipped / exception`) and out of
//! `scan --fail-on`; an expired one no longer applies. Pure: matching and time, no I/O.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::filters::Patterns;

/// How soon an exception's end is called near (`iamsweep exceptions`: `expiring`).
pub const EXPIRING_WITHIN: Duration = Duration::from_secs(14 * 24 * 3600);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exception {
    /// Its line in the accounts file (where `[[exception]]` is).
    pub line: usize,
    /// Accounts it covers; empty: every account.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// User-name globs, matched as IAM matches names (whatever their case); empty: every user.
    #[serde(default)]
    pub users: Patterns,
    /// Policy-ARN globs; empty: every policy.
    #[serde(default)]
    pub policies: Patterns,
    pub reason: String,
    pub owner: String,
    /// As written in the file: a date (through that day, UTC) or a date-time.
    pub expires: String,
    /// The instant it stops applying, as the database stores times (UTC RFC 3339, ms).
    pub until: String,
}

/// What a finding records of the exception that covered it (the `exception` column, JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionMark {
    pub reason: String,
    pub owner: String,
    pub expires: String,
    pub line: usize,
}

impl Exception {
    /// Whether it names this account, user and policy (live or not).
    pub fn covers(&self, account: &str, user: &str, policy: &str) -> bool {
        (self.accounts.is_empty() || self.accounts.iter().any(|a| a == account))
            && (self.users.is_empty() || self.users.matches_any_case(user))
            && (self.policies.is_empty() || self.policies.matches(policy))
    }

    /// Whether it still applies at `now` (a stored time).
    pub fn live_at(&self, now: &str) -> bool {
        now < self.until.as_str()
    }

    pub fn state_at(&self, now: SystemTime) -> &'static str {
        let at = crate::store::stamp(now);
        if !self.live_at(&at) {
            "expired"
        } else if !self.live_at(&crate::store::stamp(now + EXPIRING_WITHIN)) {
            "expiring"
        } else {
            "live"
        }
    }

    pub fn mark(&self) -> ExceptionMark {
        ExceptionMark {
            reason: self.reason.clone(),
            owner: self.owner.clone(),
            expires: self.expires.clone(),
            line: self.line,
        }
    }
}

/// The first live exception of `list` covering the finding.
pub fn live<'e>(
    list: &'e [Exception],
    account: &str,
    user: &str,
    policy: &str,
    now: &str,
) -> Option<&'e Exception> {
    list.iter()
        .find(|e| e.live_at(now) && e.covers(account, user, policy))
}

/// `expires` as TOML gives it -> (as written, the instant it stops applying). A date runs
/// through that day in UTC; a date-time needs its offset (`Z` or `+02:00`).
pub fn until(expires: &toml::value::Datetime) -> Result<String, String> {
    let Some(d) = expires.date else {
        return Err("expected a date (2027-01-31) or a date-time with an offset (2027-01-31T18:00:00Z), not a bare time".into());
    };
    // Outside these years the instant cannot be stored (and no exception means them).
    if !(1971..=9998).contains(&d.year) {
        return Err(format!(
            "`{expires}` is out of range: give a date between 1971 and 9998"
        ));
    }
    let day = format!("{:04}-{:02}-{:02}", d.year, d.month, d.day);
    let (clock, offset_minutes, extra) = match (expires.time, expires.offset) {
        (None, _) => ("00:00:00".to_owned(), 0i64, Duration::from_secs(24 * 3600)),
        (Some(t), Some(offset)) => (
            format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
            match offset {
                toml::value::Offset::Z => 0,
                toml::value::Offset::Custom { minutes } => i64::from(minutes),
            },
            Duration::ZERO,
        ),
        (Some(_), None) => {
            return Err("a date-time needs its offset (2027-01-31T18:00:00Z): a local time means something else on every machine".into());
        }
    };
    let utc = humantime::parse_rfc3339(&format!("{day}T{clock}Z"))
        .map_err(|e| format!("`{expires}` is not a valid date: {e}"))?;
    // 18:00+02:00 is 16:00Z.
    let shifted = if offset_minutes >= 0 {
        utc - Duration::from_secs(offset_minutes as u64 * 60)
    } else {
        utc + Duration::from_secs(offset_minutes.unsigned_abs() * 60)
    };
    Ok(crate::store::stamp(shifted + extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> toml::value::Datetime {
        s.parse().unwrap()
    }

    fn exception(users: &[&str], policies: &[&str], until: &str) -> Exception {
        let p = |v: &[&str]| Patterns::new(v.iter().map(|s| s.to_string()).collect()).unwrap();
        Exception {
            line: 3,
            accounts: vec!["111111111111".into()],
            users: p(users),
            policies: p(policies),
            reason: "CHG-1".into(),
            owner: "team@example.com".into(),
            expires: "2027-01-31".into(),
            until: until.into(),
        }
    }

    #[test]
    fn a_date_runs_through_that_day_in_utc_and_a_date_time_keeps_its_offset() {
        assert_eq!(
            until(&dt("2027-01-31")).unwrap(),
            "2027-02-01T00:00:00.000Z"
        );
        assert_eq!(
            until(&dt("2027-12-31")).unwrap(),
            "2028-01-01T00:00:00.000Z"
        );
        assert_eq!(
            until(&dt("2027-01-31T18:00:00Z")).unwrap(),
            "2027-01-31T18:00:00.000Z"
        );
        assert_eq!(
            until(&dt("2027-01-31T18:00:00+02:00")).unwrap(),
            "2027-01-31T16:00:00.000Z"
        );
        assert_eq!(
            until(&dt("2027-01-31T18:00:00-05:30")).unwrap(),
            "2027-01-31T23:30:00.000Z"
        );
        assert!(
            until(&dt("2027-01-31T18:00:00"))
                .unwrap_err()
                .contains("offset")
        );
        assert!(until(&dt("18:00:00")).unwrap_err().contains("bare time"));
        // Dates TOML takes but a stored instant cannot hold: an error, never a panic.
        for far in [
            "9999-12-31",
            "9999-12-31T23:00:00-05:00",
            "1969-12-31",
            "1970-01-01T00:30:00+01:00",
            "0001-01-01",
        ] {
            assert!(
                until(&dt(far)).unwrap_err().contains("out of range"),
                "{far}"
            );
        }
        assert_eq!(
            until(&dt("9998-12-31")).unwrap(),
            "9999-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn an_exception_covers_its_accounts_users_any_case_and_policy_globs_until_it_expires() {
        let e = exception(
            &["ci-*"],
            &["arn:*:iam::aws:policy/ReadOnlyAccess"],
            "2027-02-01T00:00:00.000Z",
        );
        let ro = "arn:aws:iam::aws:policy/ReadOnlyAccess";
        assert!(e.covers("111111111111", "CI-deploy", ro));
        assert!(
            !e.covers("222222222222", "ci-deploy", ro),
            "another account"
        );
        assert!(!e.covers("111111111111", "alice", ro), "another user");
        assert!(!e.covers(
            "111111111111",
            "ci-deploy",
            "arn:aws:iam::aws:policy/PowerUserAccess"
        ));
        assert!(e.live_at("2027-01-31T23:59:59.999Z"));
        assert!(!e.live_at("2027-02-01T00:00:00.000Z"));
        let list = [e];
        assert!(
            live(
                &list,
                "111111111111",
                "ci-x",
                ro,
                "2027-01-01T00:00:00.000Z"
            )
            .is_some()
        );
        assert!(
            live(
                &list,
                "111111111111",
                "ci-x",
                ro,
                "2027-03-01T00:00:00.000Z"
            )
            .is_none()
        );
        let now = humantime::parse_rfc3339("2027-01-20T00:00:00Z").unwrap();
        assert_eq!(list[0].state_at(now), "expiring");
        let early = humantime::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
        assert_eq!(list[0].state_at(early), "live");
        let late = humantime::parse_rfc3339("2027-02-02T00:00:00Z").unwrap();
        assert_eq!(list[0].state_at(late), "expired");
    }
}
