//! Reads one account's users and groups with `GetAccountAuthorizationDetails`, following the
//! marker, and classifies its direct attachments. No SQL, no printing; the snapshot is dropped
//! as soon as the findings are made.

use crate::aws::{AwsError, Iam};
use crate::calls::Metered;
use crate::cancel::Cancel;
use crate::config::AccountTarget;
use crate::findings::{self, AccountFindings};

/// Pages through the account (~1000 entities a call) and returns its findings, or `None` when
/// `cancel` stopped it between pages. `on_page` hears (pages read, entities so far).
pub async fn read_account<I: Iam>(
    iam: &Metered<I>,
    target: &AccountTarget,
    cancel: &Cancel,
    mut on_page: impl FnMut(u32, u64),
) -> Result<Option<AccountFindings>, AwsError> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let page = iam.authorization_details(marker.take()).await?;
        pages += 1;
        users.extend(page.users);
        groups.extend(page.groups);
        on_page(pages, (users.len() + groups.len()) as u64);
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    let read_at = crate::store::now();
    let mut found = findings::classify(&users, &groups, &target.filters);
    // Who answers for each user: the value of its `owner_tag` tag.
    let owners: std::collections::HashMap<&str, &str> = match &target.owner_tag {
        Some(key) => users
            .iter()
            .filter_map(|u| {
                let (_, value) = u.tags.iter().find(|(k, _)| k == key)?;
                Some((u.name.as_str(), value.as_str()))
            })
            .collect(),
        None => Default::default(),
    };
    // A live exception is recorded with each finding it covers, as the scan saw it.
    for f in &mut found.findings {
        f.exception = target
            .filters
            .exception(
                target.id.as_str(),
                f.user_name.as_str(),
                f.policy_arn.as_str(),
                &read_at,
            )
            .map(|e| e.mark());
        f.owner = owners.get(f.user_name.as_str()).map(|o| o.to_string());
    }
    Ok(Some(AccountFindings {
        read_at: Some(read_at),
        ..found
    }))
}
