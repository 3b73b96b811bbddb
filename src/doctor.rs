//! `iamsweep doctor`: for each account, tries the role and the read the scan makes, and (with
//! `--apply`) asks IAM's policy simulator whether the role may make apply's calls. Changes
//! nothing: no detach or attach is ever used as a probe.

use futures::StreamExt;

use crate::aws::{AwsError, Connector, Decision, Needed, Op};
use crate::calls::{CallPolicy, Meter};
use crate::config::AccountTarget;

/// What doctor found in one account.
#[derive(Clone, Debug)]
pub struct Checkup {
    pub target: AccountTarget,
    /// Assuming the role (or checking the base credentials).
    pub connect: Result<(), AwsError>,
    /// The scan's read (`GetAccountAuthorizationDetails`, one page).
    pub read: Option<Result<(), AwsError>>,
    /// The apply calls, simulated; `None` when not asked or not checkable.
    pub write: Option<Result<Vec<Decision>, AwsError>>,
    /// Why the write permission was not checked, when asked.
    pub write_unchecked: Option<String>,
}

impl Checkup {
    /// Everything checked passed.
    pub fn ok(&self) -> bool {
        self.connect.is_ok()
            && self.read.as_ref().is_some_and(Result::is_ok)
            && match &self.write {
                Some(Ok(decisions)) => decisions.iter().all(|d| d.decision == "allowed"),
                Some(Err(_)) => false,
                None => true,
            }
    }
}

/// The IAM actions apply and rollback make with the role.
pub fn apply_actions() -> Vec<String> {
    actions(Needed::Apply)
}

/// The actions a command makes with the role in each account.
pub fn actions(which: Needed) -> Vec<String> {
    Op::ALL
        .iter()
        .filter(|op| op.needed_by_member_role() == Some(which))
        .map(|op| op.action())
        .collect()
}

/// Checks every account, `concurrency` at once, in the order given.
pub async fn check<C: Connector>(
    connector: &C,
    targets: &[AccountTarget],
    with: &[Needed],
    concurrency: usize,
    policy: CallPolicy,
) -> Vec<Checkup> {
    futures::stream::iter(targets)
        .map(|t| check_one(connector, t, with, policy))
        .buffered(concurrency.max(1))
        .collect()
        .await
}

async fn check_one<C: Connector>(
    connector: &C,
    target: &AccountTarget,
    with: &[Needed],
    policy: CallPolicy,
) -> Checkup {
    let mut checkup = Checkup {
        target: target.clone(),
        connect: Ok(()),
        read: None,
        write: None,
        write_unchecked: None,
    };
    let meter = Meter::new(policy);
    let iam = match meter.connect(connector, target).await {
        Ok(iam) => iam,
        Err(e) => {
            checkup.connect = Err(e);
            return checkup;
        }
    };
    checkup.read = Some(iam.authorization_details(None).await.map(drop));
    if !with.is_empty() {
        let wanted: Vec<String> = with.iter().flat_map(|w| actions(*w)).collect();
        match target.role_arn() {
            Some(role) => checkup.write = Some(iam.simulate(role, &wanted).await),
            None => {
                checkup.write_unchecked = Some(
                    "not checked: assume_role = false uses the base credentials, whose own policies apply".into(),
                )
            }
        }
    }
    checkup
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_needs_the_reads_and_the_two_writes() {
        assert_eq!(
            apply_actions(),
            [
                "iam:ListAttachedUserPolicies",
                "iam:ListGroupsForUser",
                "iam:ListAttachedGroupPolicies",
                "iam:GetGroup",
                "iam:GetPolicy",
                "iam:GetUser",
                "iam:DetachUserPolicy",
                "iam:AttachUserPolicy",
            ]
        );
    }
}

#[cfg(test)]
mod fake_tests {
    use super::*;
    use crate::aws::ErrorKind;
    use crate::aws::fake::FakeOrg;

    #[test]
    fn allowed_simulation_is_ok_and_a_refused_role_is_not() {
        let org = FakeOrg::new();
        org.refuse_assume(
            "222222222222",
            AwsError::new(ErrorKind::AccessDenied, "AccessDenied", "no trust"),
        );
        let file = crate::config::parse(
            "accounts.toml",
            "[[account]]\nid = \"111111111111\"\n[[account]]\nid = \"222222222222\"\n",
        )
        .unwrap();
        let checks = futures::executor::block_on(check(
            &org,
            &file.accounts,
            &[Needed::Apply],
            2,
            CallPolicy::default(),
        ));
        assert!(checks[0].ok());
        assert_eq!(checks[0].write.as_ref().unwrap().as_ref().unwrap().len(), 8);
        assert!(!checks[1].ok());
        // Nothing but reads and the simulation were called.
        assert_eq!(org.calls("111111111111", Op::DetachUserPolicy), 0);
        assert_eq!(org.calls("111111111111", Op::SimulatePrincipalPolicy), 1);
        let text = crate::report::doctor(&checks);
        assert!(
            text.contains("ok    111111111111: role ok, scan read ok; apply: allowed"),
            "{text}"
        );
        // A denied action on the simulator's second page is seen.
        org.set_page_size(5);
        org.deny_action("iam:AttachUserPolicy");
        let checks = futures::executor::block_on(check(
            &org,
            &file.accounts[..1],
            &[Needed::Apply],
            1,
            CallPolicy::default(),
        ));
        assert!(!checks[0].ok());
        assert_eq!(org.calls("111111111111", Op::SimulatePrincipalPolicy), 3);
        assert!(
            text.contains("ok    111111111111: role ok, scan read ok; apply: allowed"),
            "{text}"
        );
        assert!(
            text.contains("FAIL  222222222222: cannot use the role: AccessDenied: no trust"),
            "{text}"
        );
    }
}
