//! `doctor`'s report: one line per account checked. Runs no check itself; `crate::doctor` does.

/// `doctor`: one line per account.
pub fn doctor(checks: &[crate::doctor::Checkup]) -> String {
    let mut out = String::new();
    for c in checks {
        let label = c.target.label();
        let line = match (&c.connect, &c.read) {
            (Err(e), _) => format!("FAIL  {label}: cannot use the role: {e}"),
            (Ok(()), Some(Err(e))) => format!(
                "FAIL  {label}: role ok, but the scan's read failed: {e} (the role needs iam:GetAccountAuthorizationDetails)"
            ),
            (Ok(()), _) => {
                let write = match &c.write {
                    Some(Ok(decisions)) if decisions.iter().all(|d| d.decision == "allowed") => {
                        "; apply: allowed".to_owned()
                    }
                    Some(Ok(decisions)) => {
                        let denied: Vec<String> = decisions
                            .iter()
                            .filter(|d| d.decision != "allowed")
                            .map(|d| format!("{} ({})", d.action, d.decision))
                            .collect();
                        format!("; apply: DENIED {}", denied.join(", "))
                    }
                    Some(Err(e)) => format!("; apply: could not check ({e})"),
                    None => match &c.write_unchecked {
                        Some(why) => format!("; apply: {why}"),
                        None => String::new(),
                    },
                };
                let status = if c.ok() { "ok  " } else { "FAIL" };
                format!("{status}  {label}: role ok, scan read ok{write}")
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    let bad = checks.iter().filter(|c| !c.ok()).count();
    out.push_str(&format!(
        "{} accounts checked, {bad} with problems\n",
        checks.len()
    ));
    out
}
