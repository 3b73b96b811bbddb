//! The Organizations adapter: the organization's tree through the SDK, as `OrgReader`.

use super::*;

/// AWS Organizations, read with the management account's credentials.
#[derive(Clone, Debug)]
pub struct SdkOrg {
    pub(super) client: aws_sdk_organizations::Client,
}

impl OrgReader for SdkOrg {
    async fn roots(&self) -> Result<Vec<OrgUnit>, AwsError> {
        let mut roots = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_roots()
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map_sdk_error(Op::ListRoots, e))?;
            roots.extend(out.roots().iter().filter_map(|r| {
                Some(OrgUnit {
                    id: r.id()?.to_owned(),
                    name: r.name().unwrap_or("Root").to_owned(),
                })
            }));
            match out.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(roots),
            }
        }
    }

    async fn child_units(
        &self,
        parent: &str,
        marker: Option<String>,
    ) -> Result<Page<OrgUnit>, AwsError> {
        let out = self
            .client
            .list_organizational_units_for_parent()
            .parent_id(parent)
            .set_next_token(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::ListOrganizationalUnitsForParent, e))?;
        Ok(Page {
            items: out
                .organizational_units()
                .iter()
                .filter_map(|u| {
                    Some(OrgUnit {
                        id: u.id()?.to_owned(),
                        name: u.name().unwrap_or_default().to_owned(),
                    })
                })
                .collect(),
            next_marker: out.next_token().map(str::to_owned),
        })
    }

    async fn accounts_in(
        &self,
        parent: &str,
        marker: Option<String>,
    ) -> Result<Page<OrgAccount>, AwsError> {
        let out = self
            .client
            .list_accounts_for_parent()
            .parent_id(parent)
            .set_next_token(marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::ListAccountsForParent, e))?;
        Ok(Page {
            items: out
                .accounts()
                .iter()
                .filter_map(|a| {
                    #[allow(deprecated)]
                    let status = a
                        .status()
                        .map(|s| s.as_str().to_owned())
                        .or_else(|| a.state().map(|s| s.as_str().to_owned()))
                        .unwrap_or_default();
                    Some(OrgAccount {
                        id: a.id()?.to_owned(),
                        name: a.name().unwrap_or_default().to_owned(),
                        status,
                    })
                })
                .collect(),
            next_marker: out.next_token().map(str::to_owned),
        })
    }
}
