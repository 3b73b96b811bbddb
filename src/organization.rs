//! Discovers the accounts to work on from AWS Organizations: walks the tree from each root,
//! keeps `ACTIVE` accounts under `include_ous` and outside `exclude_ous` / `exclude_accounts`,
//! and merges in the `[[account]]` entries of accounts.toml, which override `[defaults]` for
//! their account. Each account's OU path is kept as its origin. Every Organizations call goes
//! through a [`Meter`] (paced at Organizations' own rate, retried when throttled, counted). No
//! printing, no SQL.

use std::collections::BTreeMap;
use std::future::Future;

use crate::aws::{AwsError, Op, OrgReader};
use crate::calls::Meter;
use crate::config::{AccountTarget, AccountsFile, ConfigError, OrgSpec};
use crate::model::AccountId;

/// An account found in the organization, with its place in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    pub name: String,
    pub status: String,
    /// `Root/Prod/Web`.
    pub path: String,
    /// The ids of the root and every OU above the account.
    pub ancestors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot list the organization's accounts: {0}")]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Every account of the organization, walking roots and OUs; each call through `meter`.
pub async fn walk<R: OrgReader>(reader: &R, meter: &Meter) -> Result<Vec<Found>, AwsError> {
    let mut found = Vec::new();
    // (parent id, its path, the ids above and including it)
    let mut queue: Vec<(String, String, Vec<String>)> = meter
        .call(Op::ListRoots, || reader.roots())
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r.name, vec![r.id]))
        .collect();
    while let Some((parent, path, ancestors)) = queue.pop() {
        let mut marker = None;
        loop {
            let page = meter
                .call(Op::ListAccountsForParent, || {
                    reader.accounts_in(&parent, marker.clone())
                })
                .await?;
            found.extend(page.items.into_iter().map(|a| Found {
                id: a.id,
                name: a.name,
                status: a.status,
                path: path.clone(),
                ancestors: ancestors.clone(),
            }));
            marker = page.next_marker;
            if marker.is_none() {
                break;
            }
        }
        loop {
            let page = meter
                .call(Op::ListOrganizationalUnitsForParent, || {
                    reader.child_units(&parent, marker.clone())
                })
                .await?;
            for ou in page.items {
                let mut above = ancestors.clone();
                above.push(ou.id.clone());
                queue.push((ou.id, format!("{path}/{}", ou.name), above));
            }
            marker = page.next_marker;
            if marker.is_none() {
                break;
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

/// Whether the `[organization]` filters keep an account.
pub fn selected(spec: &OrgSpec, a: &Found) -> bool {
    let under = |ous: &[String]| a.ancestors.iter().any(|x| ous.contains(x));
    (spec.include_inactive || a.status == "ACTIVE")
        && (spec.include_ous.is_empty() || under(&spec.include_ous))
        && !under(&spec.exclude_ous)
        && !spec.exclude_accounts.iter().any(|x| x.as_str() == a.id)
}

/// The accounts to work on: the organization's selected accounts with `[defaults]` applied,
/// where an `[[account]]` entry of the same id replaces the discovered one (keeping its OU
/// path as origin), plus `[[account]]` entries the organization does not list.
pub fn merge(
    file: &AccountsFile,
    spec: &OrgSpec,
    found: &[Found],
) -> Result<Vec<AccountTarget>, ConfigError> {
    let mut explicit: BTreeMap<&str, &AccountTarget> =
        file.accounts.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut out = Vec::new();
    for a in found.iter().filter(|a| selected(spec, a)) {
        let Ok(id) = AccountId::parse(&a.id) else {
            continue;
        };
        let target = match explicit.remove(a.id.as_str()) {
            Some(t) => AccountTarget {
                origin: Some(a.path.clone()),
                name: t.name.clone().or_else(|| Some(a.name.clone())),
                ..t.clone()
            },
            None => file.discovered(&id, &a.name, &a.path)?,
        };
        out.push(target);
    }
    // Listed in accounts.toml but not (or not selected) in the organization: still wanted.
    for t in file
        .accounts
        .iter()
        .filter(|t| explicit.contains_key(t.id.as_str()))
    {
        out.push(t.clone());
    }
    Ok(out)
}

/// Resolves the accounts file: with `[organization]`, opens a reader with `open` (counted as
/// the `AssumeRole` it makes when `management_role_arn` is set), walks and merges; else its
/// entries. The calls made, failed or not, are in `meter`.
pub async fn resolve<R, F, Fut>(
    file: &AccountsFile,
    meter: &Meter,
    mut open: F,
) -> Result<Vec<AccountTarget>, DiscoveryError>
where
    R: OrgReader,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, AwsError>>,
{
    let Some(spec) = &file.organization else {
        return Ok(file.accounts.clone());
    };
    let reader = if spec.management_role_arn.is_some() {
        meter.call(Op::AssumeRole, &mut open).await?
    } else {
        open().await?
    };
    let found = walk(&reader, meter).await?;
    Ok(merge(file, spec, &found)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{ErrorKind, OrgAccount, OrgUnit, Page};
    use crate::calls::{CallPolicy, RetryPolicy};
    use crate::config::{Access, parse};
    use std::sync::Mutex;
    use std::time::Duration;

    /// Root r-root: acct 100 (management), OU prod (ou-root-prod0000): 200, 201 (suspended),
    /// OU prod/web (ou-root-web00000): 300; OU dev (ou-root-dev00000): 400.
    struct Tree;

    impl OrgReader for Tree {
        async fn roots(&self) -> Result<Vec<OrgUnit>, AwsError> {
            Ok(vec![OrgUnit {
                id: "r-root".into(),
                name: "Root".into(),
            }])
        }

        async fn child_units(
            &self,
            parent: &str,
            _: Option<String>,
        ) -> Result<Page<OrgUnit>, AwsError> {
            let ou = |id: &str, name: &str| OrgUnit {
                id: id.into(),
                name: name.into(),
            };
            let items = match parent {
                "r-root" => vec![
                    ou("ou-root-prod0000", "prod"),
                    ou("ou-root-dev00000", "dev"),
                ],
                "ou-root-prod0000" => vec![ou("ou-root-web00000", "web")],
                _ => vec![],
            };
            Ok(Page {
                items,
                next_marker: None,
            })
        }

        async fn accounts_in(
            &self,
            parent: &str,
            marker: Option<String>,
        ) -> Result<Page<OrgAccount>, AwsError> {
            let acct = |n: u64, status: &str| OrgAccount {
                id: format!("{n:012}"),
                name: format!("acct{n}"),
                status: status.into(),
            };
            // Two pages under prod, to follow the marker.
            let (items, next_marker) = match (parent, marker.as_deref()) {
                ("r-root", _) => (vec![acct(100, "ACTIVE")], None),
                ("ou-root-prod0000", None) => (vec![acct(200, "ACTIVE")], Some("p2".into())),
                ("ou-root-prod0000", Some(_)) => (vec![acct(201, "SUSPENDED")], None),
                ("ou-root-web00000", _) => (vec![acct(300, "ACTIVE")], None),
                ("ou-root-dev00000", _) => (vec![acct(400, "ACTIVE")], None),
                _ => (vec![], None),
            };
            Ok(Page { items, next_marker })
        }
    }

    fn ids(targets: &[AccountTarget]) -> Vec<String> {
        targets.iter().map(|t| t.id.to_string()).collect()
    }

    fn meter() -> std::sync::Arc<Meter> {
        Meter::new(CallPolicy::default())
    }

    fn run(toml: &str) -> Vec<AccountTarget> {
        let file = parse("accounts.toml", toml).unwrap();
        futures::executor::block_on(resolve(&file, &meter(), || async { Ok(Tree) })).unwrap()
    }

    #[test]
    fn walks_the_whole_tree_with_paths() {
        let found = futures::executor::block_on(walk(&Tree, &meter())).unwrap();
        let paths: Vec<(&str, &str)> = found
            .iter()
            .map(|f| (f.id.as_str(), f.path.as_str()))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("000000000100", "Root"),
                ("000000000200", "Root/prod"),
                ("000000000201", "Root/prod"),
                ("000000000300", "Root/prod/web"),
                ("000000000400", "Root/dev"),
            ]
        );
    }

    #[test]
    fn only_active_accounts_by_default() {
        assert_eq!(
            ids(&run("[organization]\n")),
            [
                "000000000100",
                "000000000200",
                "000000000300",
                "000000000400"
            ]
        );
        assert_eq!(run("[organization]\ninclude_inactive = true\n").len(), 5);
    }

    #[test]
    fn include_and_exclude_ous_take_children_along() {
        assert_eq!(
            ids(&run(
                "[organization]\ninclude_ous = [\"ou-root-prod0000\"]\n"
            )),
            ["000000000200", "000000000300"]
        );
        assert_eq!(
            ids(&run(
                "[organization]\ninclude_ous = [\"ou-root-prod0000\"]\nexclude_ous = [\"ou-root-web00000\"]\n"
            )),
            ["000000000200"]
        );
        assert_eq!(
            ids(&run(
                "[organization]\nexclude_accounts = [\"000000000100\", \"000000000400\"]\n"
            )),
            ["000000000200", "000000000300"]
        );
    }

    #[test]
    fn explicit_entries_override_defaults_and_are_merged_in() {
        let targets = run(r#"
[defaults]
role_name = "Sweeper"

[organization]
exclude_ous = ["ou-root-dev00000"]

[[account]]
id = "000000000100"
name = "management"
assume_role = false

[[account]]
id = "999999999999"
"#);
        assert_eq!(
            ids(&targets),
            [
                "000000000100",
                "000000000200",
                "000000000300",
                "999999999999"
            ]
        );
        assert_eq!(targets[0].access, Access::BaseCredentials);
        assert_eq!(targets[0].name.as_deref(), Some("management"));
        assert_eq!(targets[0].origin.as_deref(), Some("Root"));
        assert_eq!(
            targets[1].role_arn(),
            Some("arn:aws:iam::000000000200:role/Sweeper")
        );
        assert_eq!(targets[1].name.as_deref(), Some("acct200"));
        assert_eq!(targets[2].origin.as_deref(), Some("Root/prod/web"));
        assert_eq!(targets[3].origin, None, "listed only in accounts.toml");
    }

    /// The tree of [`Tree`], behind Organizations' throttling: the first attempt of every
    /// call is refused with `TooManyRequestsException`; or every `ListAccountsForParent` fails.
    struct Throttled {
        attempts: Mutex<u64>,
        failing: Option<ErrorKind>,
    }

    impl Throttled {
        fn refuse(&self) -> Option<AwsError> {
            let mut n = self.attempts.lock().unwrap();
            *n += 1;
            (*n % 2 == 1).then(|| {
                AwsError::new(
                    ErrorKind::Throttled,
                    "TooManyRequestsException",
                    "Rate exceeded",
                )
            })
        }
    }

    impl OrgReader for Throttled {
        async fn roots(&self) -> Result<Vec<OrgUnit>, AwsError> {
            match self.refuse() {
                Some(e) => Err(e),
                None => Tree.roots().await,
            }
        }

        async fn child_units(
            &self,
            parent: &str,
            marker: Option<String>,
        ) -> Result<Page<OrgUnit>, AwsError> {
            match self.refuse() {
                Some(e) => Err(e),
                None => Tree.child_units(parent, marker).await,
            }
        }

        async fn accounts_in(
            &self,
            parent: &str,
            marker: Option<String>,
        ) -> Result<Page<OrgAccount>, AwsError> {
            if let Some(kind) = self.failing {
                return Err(AwsError::new(kind, "ServiceException", "injected"));
            }
            match self.refuse() {
                Some(e) => Err(e),
                None => Tree.accounts_in(parent, marker).await,
            }
        }
    }

    fn throttled(failing: Option<ErrorKind>) -> Throttled {
        Throttled {
            attempts: Mutex::new(0),
            failing,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_walk_is_retried_paced_and_counted() {
        let meter = Meter::new(CallPolicy::default().for_organizations());
        let started = tokio::time::Instant::now();
        let found = walk(&throttled(None), &meter).await.unwrap();
        // The same accounts as an unthrottled walk.
        assert_eq!(
            found,
            walk(&Tree, &Meter::new(CallPolicy::default()))
                .await
                .unwrap()
        );
        let counts = meter.counts();
        let of = |op| counts.iter().find(|(o, _)| *o == op).unwrap().1;
        // 1 root, 5 pages of accounts (prod has two), 4 of OUs: each sent twice.
        assert_eq!(of(Op::ListRoots).calls, 2);
        assert_eq!(of(Op::ListRoots).throttled, 1);
        assert_eq!(of(Op::ListAccountsForParent).calls, 10);
        assert_eq!(of(Op::ListAccountsForParent).throttled, 5);
        assert_eq!(of(Op::ListOrganizationalUnitsForParent).calls, 8);
        assert_eq!(counts.total(), 20);
        // Paced at Organizations' rate: 20 requests take at least 19 intervals.
        assert!(
            started.elapsed() >= Duration::from_secs_f64(19.0 / crate::calls::ORGANIZATIONS_RATE),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_walk_says_why_after_its_retries() {
        let policy = CallPolicy {
            retry: RetryPolicy {
                max_transient_attempts: 3,
                ..RetryPolicy::default()
            },
            ..CallPolicy::default()
        };
        let meter = Meter::new(policy.for_organizations());
        let file = parse("accounts.toml", "[organization]\n").unwrap();
        let err = resolve(&file, &meter, || async {
            Ok(throttled(Some(ErrorKind::Transient)))
        })
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot list the organization's accounts: ServiceException: injected"
        );
        let counts = meter.counts();
        let accounts = counts
            .iter()
            .find(|(o, _)| *o == Op::ListAccountsForParent)
            .unwrap()
            .1;
        assert_eq!((accounts.calls, accounts.errors), (3, 3));
        // A refusal that retrying cannot fix is not retried.
        let meter = Meter::new(CallPolicy::default().for_organizations());
        let err = resolve(&file, &meter, || async {
            Ok(throttled(Some(ErrorKind::AccessDenied)))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, DiscoveryError::Aws(_)), "{err}");
        let counts = meter.counts();
        assert_eq!(
            counts
                .iter()
                .find(|(o, _)| *o == Op::ListAccountsForParent)
                .unwrap()
                .1
                .calls,
            1
        );
    }
}
